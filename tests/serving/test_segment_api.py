"""POST /v1/segment through TestClient: the mask at the uploaded image's size, its outline and its
measurements (in mm with a scale); no lesion is an answer; each endpoint answers 400 when the served
model lacks its head; a multi-task model answers both; the hostile corpus gets no 5xx; serving set-ups
that cannot take a segmentation model refuse it at start."""

from __future__ import annotations

from collections import Counter

import pytest
from fastapi.testclient import TestClient
from serving.hostile import corpus
from serving.segment_helpers import blank_upload, decoded_mask, lesion_upload, valid_segmentation
from serving.test_hostile import check_answer

from lesionlens.bundle.card import read_card
from lesionlens.bundle.registry import Registry, bundle_digest
from lesionlens.serving.app import create_app
from lesionlens.serving.settings import ServeSettings


def _segment(client, data: bytes, name: str = "lesion.png", **form):
    return client.post("/v1/segment", files={"file": (name, data, "image/png")}, data=form)


@pytest.fixture(scope="module")
def client(segmentation_bundle):
    with TestClient(create_app(segmentation_bundle), raise_server_exceptions=False) as c:
        yield c


def test_the_mask_comes_at_the_images_size_with_outline_and_measurements(client, segmentation_bundle):
    data, truth = lesion_upload(size=(96, 64))
    r = _segment(client, data)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["lesion"] is True and (body["width"], body["height"]) == (96, 64)
    mask = decoded_mask(body)
    assert mask.shape == (64, 96)
    assert (mask & truth).sum() / (mask | truth).sum() > 0.7  # the tiny model found the lesion
    valid_segmentation("lesion", body)
    m = body["measurements"]
    assert m["components"] == 1 and m["diameter_px"] > 20 and m["colours"] >= 1
    assert m["mm_per_pixel"] is None and m["area_mm2"] is None
    assert abs(sum(m["colour_shares"].values()) - 1) < 1e-9
    card = read_card(segmentation_bundle)
    assert body["mask_rule"]["threshold"] == card.segmentation.threshold
    assert body["model"]["digest"] == bundle_digest(segmentation_bundle)
    t = body["timing"]
    assert t["total_ms"] >= t["decode_ms"] + t["model_ms"] + t["mask_ms"] - 0.05 and t["mask_ms"] > 0
    assert "not a diagnosis" in body["disclaimer"]


def test_the_scale_gives_sizes_in_mm(client):
    data, _ = lesion_upload(seed=5, size=(80, 80), fmt="JPEG")
    m = _segment(client, data, "lesion.jpg", mm_per_pixel="0.02").json()["measurements"]
    assert m["mm_per_pixel"] == 0.02
    assert m["area_mm2"] == pytest.approx(m["area_px"] * 0.0004)
    assert m["diameter_mm"] == pytest.approx(m["diameter_px"] * 0.02)


def test_a_blank_image_has_no_lesion(client):
    r = _segment(client, blank_upload((40, 30)))
    assert r.status_code == 200
    body = r.json()
    assert body["lesion"] is False and body["measurements"] is None and body["outline"] == []
    assert decoded_mask(body).shape == (30, 40) and not decoded_mask(body).any()


@pytest.mark.parametrize("scale", ["0", "-1", "abc", "nan", "inf"])
def test_a_bad_scale_is_a_422_naming_the_field(client, scale):
    r = _segment(client, lesion_upload()[0], mm_per_pixel=scale)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid_request" and "mm_per_pixel" in error["message"]


def test_a_segmentation_model_has_no_classification_head(client):
    data, _ = lesion_upload()
    for path, files in (("/v1/predict", {"file": ("a.png", data)}), ("/v1/predict/batch", {"files": ("a.png", data)}),
                        ("/v1/explain", {"file": ("a.png", data)})):
        r = client.post(path, files=files)
        assert r.status_code == 400, path
        assert r.json()["error"]["code"] == "no_classification_head" and "/v1/segment" in r.json()["error"]["message"]
    serving = client.get("/v1/model").json()["serving"]
    assert serving["task"] == "segmentation" and serving["heads"] == ["segmentation"]


def test_a_classifier_has_no_mask_head(exported_bundle):
    with TestClient(create_app(exported_bundle)) as c:
        r = _segment(c, lesion_upload()[0])
        serving = c.get("/v1/model").json()["serving"]
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "no_mask_head" and "/v1/predict" in r.json()["error"]["message"]
    assert serving["task"] == "classification" and serving["heads"] == ["classification"]


def test_a_multitask_model_answers_both(multitask_bundle):
    data, _ = lesion_upload()
    with TestClient(create_app(multitask_bundle)) as c:
        predicted = c.post("/v1/predict", files={"file": ("a.png", data, "image/png")})
        segmented = _segment(c, data)
        serving = c.get("/v1/model").json()["serving"]
    assert predicted.status_code == 200 and set(predicted.json()["probabilities"]) == {"dark", "light"}
    assert segmented.status_code == 200
    valid_segmentation("multitask", segmented.json())
    assert serving["task"] == "multitask" and serving["heads"] == ["classification", "segmentation"]


def test_the_hostile_corpus_gets_no_5xx(client):
    statuses = Counter()
    for case in corpus():
        r = client.post("/v1/segment", files={"file": (case.filename, case.data, "image/jpeg")})
        check_answer(case, r.status_code, r.json(), valid=valid_segmentation)
        statuses[r.status_code] += 1
    assert not any(s >= 500 for s in statuses), statuses
    assert statuses[200] >= 25 and statuses[413] >= 6 and statuses[415] >= 35 and statuses[422] >= 40, statuses
    assert client.get("/healthz").status_code == 200


def test_set_ups_that_need_a_classifier_refuse_a_segmentation_model(segmentation_bundle, tmp_path):
    with pytest.raises(ValueError, match="no classification head; serve it without --db"):
        create_app(segmentation_bundle, ServeSettings(db=str(tmp_path / "cases.sqlite")))
    registry = Registry.open(tmp_path / "registry", create=True)
    digest, _ = registry.add(segmentation_bundle)
    registry.promote(digest, reason="a segmentation model")
    with pytest.raises(ValueError, match="serving from a registry takes classifiers only"):
        create_app(None, ServeSettings(registry=str(tmp_path / "registry")))


def test_the_api_docs_describe_the_answer(client):
    spec = client.get("/openapi.json").json()
    assert "/v1/segment" in spec["paths"]
    fields = spec["components"]["schemas"]["Segmentation"]["properties"]
    assert {"lesion", "mask_png_base64", "outline", "measurements", "timing"} <= set(fields)
    assert "diameter_mm" in spec["components"]["schemas"]["LesionMeasurements"]["properties"]
