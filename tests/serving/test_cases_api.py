"""The case store through the API (TestClient), on SQLite and PostgreSQL: submissions with metadata,
retries, roles, labelling, adjudication, erasure, the queue and the study statistics."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lesionlens.cases.store import CaseStore
from lesionlens.serving.app import create_app
from lesionlens.serving.settings import ServeSettings

ADMIN = {"Authorization": "Bearer admin-secret"}


def photo(seed: int = 0, size=(120, 90), colour=(150, 100, 70)) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 40, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=92)
    return out.getvalue()


@pytest.fixture
def served(exported_bundle, store_url, tmp_path):
    settings = ServeSettings(db=store_url, case_images=str(tmp_path / "images"), token="admin-secret",
                             token_cache_s=0)
    with TestClient(create_app(exported_bundle, settings)) as client:
        store = CaseStore.open(store_url, tmp_path / "images")
        tokens = {role: {"Authorization": f"Bearer {store.add_token(f'{role}_user', role)}"}
                  for role in ("submit", "label")}
        tokens["label2"] = {"Authorization": f"Bearer {store.add_token('second_reader', 'label')}"}
        tokens["admin"] = ADMIN
        yield client, store, tokens
        store.close()


def submit(client, data: bytes, headers, **fields):
    return client.post("/v1/cases", files={"file": ("lesion.jpg", data, "image/jpeg")},
                       data={k: str(v) for k, v in fields.items()}, headers=headers)


def test_a_case_is_answered_like_predict_and_stored_with_its_metadata(served):
    client, store, tokens = served
    r = submit(client, photo(1), tokens["submit"], request_id="app-1", age=63, sex="female", site="back",
               patient_id="p-17", lesion_id="l-3", consent_research="true", consent_version="v2",
               device="DermLite DL4", app_version="3.1.0")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["created"] and len(body["case_id"]) == 32
    assert set(body["probabilities"]) == {"bcc", "mel", "nv"} and "decision" in body and "disclaimer" in body
    assert body["quality"] == [] or all({"code", "message"} <= set(q) for q in body["quality"])
    record = store.record(body["case_id"])
    assert record.metadata.age == 63 and record.metadata.site == "back" and record.metadata.consent_research
    assert record.model_version == body["model"]["version"] and record.probabilities == body["probabilities"]
    assert record.model_digest == body["model"]["digest"] and len(record.model_digest) == 64
    again = submit(client, photo(1), tokens["submit"], request_id="app-1", age=63)
    assert again.status_code == 200 and not again.json()["created"] and again.json()["case_id"] == body["case_id"]
    assert store.count() == 1


@pytest.mark.parametrize("field,value,problem", [
    ("age", "-3", "age"), ("age", "400", "age"), ("age", "old", "age"), ("site", "elbow", "site"),
    ("sex", "x", "sex"), ("consent_research", "maybe", "consent_research"),
    ("request_id", "../../etc/passwd", "request_id"), ("patient_id", "p" * 129, "patient_id"),
])
def test_bad_metadata_is_a_422_naming_the_field(served, field, value, problem):
    client, store, tokens = served
    r = submit(client, photo(2), tokens["submit"], **{field: value})
    assert r.status_code == 422, r.text
    assert problem in r.json()["error"]["message"]
    assert store.count() == 0


def test_a_10_mb_metadata_string_is_refused_cleanly(served):
    client, store, tokens = served
    r = submit(client, photo(3), tokens["submit"], device="x" * (10 * 1024 * 1024))
    assert 400 <= r.status_code < 500 and r.json()["error"]["code"]
    assert store.count() == 0


def test_roles(served):
    client, store, tokens = served
    case = submit(client, photo(4), tokens["submit"]).json()["case_id"]
    assert submit(client, photo(4), {}).status_code == 401  # tokens exist: submission needs one too
    assert client.get(f"/v1/cases/{case}", headers=tokens["submit"]).status_code == 403
    assert client.get(f"/v1/cases/{case}", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get(f"/v1/cases/{case}", headers=tokens["label"]).status_code == 200
    assert client.delete(f"/v1/cases/{case}", headers=tokens["label"]).status_code == 403
    assert client.get("/v1/labelling/queue?adjudicate=true", headers=tokens["label"]).status_code == 403
    assert client.get("/v1/whoami", headers=tokens["label"]).json() == {"name": "label_user", "role": "label"}
    store.revoke_token("label_user")
    assert client.get(f"/v1/cases/{case}", headers=tokens["label"]).status_code == 401


def test_labelling_agreement_adjudication_and_queue(served):
    client, store, tokens = served
    ids = [submit(client, photo(10 + i), tokens["submit"], consent_research="true").json()["case_id"] for i in range(4)]
    queue = client.get("/v1/labelling/queue", headers=tokens["label"]).json()
    assert {i["case"]["case_id"] for i in queue["items"]} == set(ids)
    assert set(queue["classes"]) == {"mel", "nv", "bcc"}
    assert queue["total"] == 4
    assert client.get("/v1/labelling/queue?limit=1", headers=tokens["label"]).json()["total"] == 4
    useful = [i["usefulness"] for i in queue["items"]]
    assert useful == sorted(useful, reverse=True)
    for i, case in enumerate(ids):
        r = client.post(f"/v1/cases/{case}/labels", json={"label": "mel", "source": "histo"}, headers=tokens["label"])
        assert r.status_code == 200, r.text
        other = "mel" if i < 3 else "nv"
        client.post(f"/v1/cases/{case}/labels", json={"label": other}, headers=tokens["label2"])
    assert client.get("/v1/labelling/queue", headers=tokens["label"]).json()["items"] == []  # all done by this reader
    disputed = client.get("/v1/labelling/queue?adjudicate=true", headers=ADMIN).json()["items"]
    assert [i["case"]["case_id"] for i in disputed] == [ids[3]]
    assert "disagree" in disputed[0]["reasons"][0]
    pairs = client.get("/v1/labelling/agreement", headers=tokens["label"]).json()["pairs"]
    assert pairs == [{"reader_a": "label_user", "reader_b": "second_reader", "cases": 4, "agreement": 0.75,
                      "kappa": 0.0}]
    r = client.post(f"/v1/cases/{ids[3]}/adjudication", json={"label": "nv", "note": "re-read"}, headers=ADMIN)
    assert r.json()["settlement"] == r.json()["settlement"] | {"status": "adjudicated", "label": "nv", "source": "consensus",
                                                               "adjudicator": "admin", "note": "re-read"}
    bad = client.post(f"/v1/cases/{ids[0]}/labels", json={"label": "dragon"}, headers=tokens["label"])
    assert bad.status_code == 422 and "dragon" in bad.json()["error"]["message"]
    missing = client.post(f"/v1/cases/{'0' * 32}/labels", json={"label": "mel"}, headers=tokens["label"])
    assert missing.status_code == 404
    assert client.get("/v1/cases/not-a-case-id", headers=tokens["label"]).status_code == 422


def test_erasure_through_the_api(served):
    client, store, tokens = served
    case = submit(client, photo(20), tokens["submit"]).json()["case_id"]
    image = client.get(f"/v1/cases/{case}/image", headers=tokens["label"])
    assert image.status_code == 200 and image.content.startswith(b"\xff\xd8")
    assert "no-store" in image.headers["cache-control"]
    assert client.delete(f"/v1/cases/{case}", headers=ADMIN).json() == {"case_id": case, "erased": True}
    assert client.get(f"/v1/cases/{case}", headers=ADMIN).status_code == 404
    assert client.get(f"/v1/cases/{case}/image", headers=ADMIN).status_code == 404
    assert client.delete(f"/v1/cases/{case}", headers=ADMIN).status_code == 404
    assert store.check().ok and store.count() == 0


def test_study_counts_and_subgroup_performance(served):
    client, store, tokens = served
    for i, (site, sex, age) in enumerate([("back", "male", 30), ("back", "female", 70), ("face", "male", 75)]):
        case = submit(client, photo(30 + i), tokens["submit"], site=site, sex=sex, age=age,
                      consent_research="true").json()["case_id"]
        client.post(f"/v1/cases/{case}/labels", json={"label": "mel"}, headers=tokens["label"])
    submit(client, photo(40), tokens["submit"], site="back")  # no consent: not in the study
    study = client.get("/v1/study", headers=tokens["label"]).json()
    assert study["cases"] == 3 and study["without_consent"] == 1
    groups = {(g["dimension"], g["value"]): g for g in study["groups"]}
    assert groups[("site", "back")]["cases"] == 2 and groups[("age_band", "60-79")]["cases"] == 2
    sens = groups[("all", "all")]["sensitivity"]["malignant"]
    assert sens["n"] == 3 and 0 <= sens["low"] <= sens["estimate"] <= sens["high"] <= 1


def test_predictions_are_kept_only_when_asked(exported_bundle, tmp_path):
    db = str(tmp_path / "c.sqlite")
    with TestClient(create_app(exported_bundle, ServeSettings(db=db))) as client:
        r = client.post("/v1/predict", files={"file": ("a.jpg", photo(50), "image/jpeg")})
        assert r.status_code == 200 and r.json()["case_id"] is None
    assert CaseStore.open(db).count() == 0
    with TestClient(create_app(exported_bundle, ServeSettings(db=db, store_predictions=True))) as client:
        r = client.post("/v1/predict", files={"file": ("a.jpg", photo(50), "image/jpeg")})
        case = r.json()["case_id"]
    record = CaseStore.open(db).record(case)
    assert record.origin == "predict" and not record.metadata.consent_research
    with pytest.raises(ValueError, match="--db"):
        create_app(exported_bundle, ServeSettings(store_predictions=True))


def test_no_image_bytes_or_metadata_in_the_logs(served, caplog):
    client, store, tokens = served
    caplog.set_level(logging.DEBUG)
    submit(client, photo(60), tokens["submit"], patient_id="SECRET-PATIENT-77", device="SECRET-DEVICE")
    text = caplog.text
    assert "SECRET-PATIENT-77" not in text and "SECRET-DEVICE" not in text and "\\xff\\xd8" not in text
