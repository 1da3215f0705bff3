"""The REST API through FastAPI's TestClient: predictions, decisions, heatmaps, batch, card, auth."""

from __future__ import annotations

import base64
import io
import json
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers import write_image
from PIL import Image

from lesionlens.bundle.registry import bundle_digest
from lesionlens.predict import predict_paths
from lesionlens.serving.app import create_app
from lesionlens.serving.settings import ServeSettings


@pytest.fixture(scope="module")
def client(exported_bundle):
    with TestClient(create_app(exported_bundle)) as c:
        yield c


def _post(client, data: bytes, name: str = "x.jpg", url: str = "/v1/predict", **kw):
    return client.post(url, files={"file": (name, data, "application/octet-stream")}, **kw)


def _jpeg(tmp_path, colour=(60, 40, 30), seed=0, size=48) -> bytes:
    return write_image(tmp_path / f"i{seed}.jpg", colour, seed=seed, size=size).read_bytes()


def test_predict_returns_probabilities_decision_model_and_timing(client, tmp_path):
    r = _post(client, _jpeg(tmp_path))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["probabilities"]) == {"bcc", "mel", "nv"}
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-6
    assert body["top_class"] == max(body["probabilities"], key=body["probabilities"].get)
    mal = body["decision"]["malignant"]
    assert abs(mal["score"] - body["probabilities"]["mel"] - body["probabilities"]["bcc"]) < 1e-9
    point = json.loads((client.app.state.service.model.card.path / "card.json").read_text()).get(
        "operating_points", {}).get("malignant")
    if point:  # training fits operating points on validation data and stores them in the card
        assert mal["rule"]["threshold"] == point["threshold"]
        assert mal["positive"] == (mal["score"] >= point["threshold"])
    else:
        assert mal["rule"] == {"criterion": "argmax"} and mal["positive"] == (body["top_class"] in {"mel", "bcc"})
    assert body["model"]["architecture"] == "tiny_cnn" and body["model"]["runtime"].startswith("onnxruntime")
    assert body["model"]["digest"] == bundle_digest(client.app.state.service.model.card.path)
    assert body["timing"]["total_ms"] >= body["timing"]["model_ms"] > 0
    assert "not a diagnosis" in body["disclaimer"]
    assert body["heatmap"] is None


def test_server_and_predict_command_agree_on_the_same_files(client, exported_bundle, tmp_path):
    files = sorted((exported_bundle.parent / "images").rglob("*.jpg"))[::6]
    png = tmp_path / "as.png"
    Image.open(files[0]).save(png)  # a PNG too, not only JPEG
    rotated = tmp_path / "exif.jpg"
    img = Image.open(files[1])
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: must be turned upright by both
    img.transpose(Image.Transpose.ROTATE_90).save(rotated, exif=exif)
    files = files + [png, rotated]
    rows = predict_paths(exported_bundle, files)
    for f, row in zip(files, rows):
        served = _post(client, f.read_bytes(), f.name).json()["probabilities"]
        for c, p in served.items():
            assert abs(p - row[f"p_{c}"]) <= 1e-4, (f, c)


def test_operating_point_and_temperature_from_the_card_are_used(bundle_copy, tmp_path):
    card = json.loads((bundle_copy / "card.json").read_text())
    card["calibration"] = {"temperature": 2.0}
    card["operating_points"] = {"malignant": {"threshold": 0.0, "criterion": "sensitivity", "target": 0.95}}
    (bundle_copy / "card.json").write_text(json.dumps(card))
    data = _jpeg(tmp_path, colour=(150, 100, 70))
    with TestClient(create_app(bundle_copy)) as c:
        body = _post(c, data).json()
    assert body["decision"]["malignant"]["positive"] is True  # threshold 0: always positive
    assert body["decision"]["malignant"]["rule"]["threshold"] == 0.0
    assert body["decision"]["melanoma"]["rule"] == {"criterion": "argmax"}
    assert "operating point in the bundle card" in body["decision_basis"] and "temperature 2" in body["decision_basis"]


def test_without_operating_points_the_decision_is_the_top_class_and_says_so(bundle_copy, tmp_path):
    card = json.loads((bundle_copy / "card.json").read_text())
    card.pop("operating_points", None)
    card.pop("calibration", None)
    (bundle_copy / "card.json").write_text(json.dumps(card))
    with TestClient(create_app(bundle_copy)) as c:
        body = _post(c, _jpeg(tmp_path)).json()
    for view, classes in (("malignant", {"mel", "bcc"}), ("melanoma", {"mel"})):
        assert body["decision"][view]["rule"] == {"criterion": "argmax"}
        assert body["decision"][view]["positive"] == (body["top_class"] in classes)
    assert "no operating point" in body["decision_basis"] and "plain softmax" in body["decision_basis"]


def test_explain_returns_a_png_overlay(client, tmp_path):
    body = _post(client, _jpeg(tmp_path), url="/v1/predict?explain=true").json()
    png = base64.b64decode(body["heatmap"]["png_base64"])
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (320, 320)
    assert body["heatmap"]["class"] == body["top_class"]
    r = _post(client, _jpeg(tmp_path), url="/v1/explain")
    assert r.headers["content-type"] == "image/png" and r.content.startswith(b"\x89PNG")
    assert r.headers["x-top-class"] == body["top_class"]


def test_batch_answers_every_file_in_order(client, tmp_path):
    files = [("files", ("a.jpg", _jpeg(tmp_path, seed=1), "image/jpeg")),
             ("files", ("notes.jpg", b"hello, I am text", "image/jpeg")),
             ("files", ("c.jpg", _jpeg(tmp_path, seed=2), "image/jpeg"))]
    r = client.post("/v1/predict/batch", files=files)
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["filename"] for x in results] == ["a.jpg", "notes.jpg", "c.jpg"]
    assert results[0]["prediction"]["top_class"] and results[2]["prediction"]["top_class"]
    assert results[1]["error"]["code"] == "unsupported_format" and "text" in results[1]["error"]["message"]
    single = _post(client, _jpeg(tmp_path, seed=1)).json()["probabilities"]
    assert results[0]["prediction"]["probabilities"] == pytest.approx(single, abs=1e-6)


def test_batch_over_the_file_limit_is_refused(exported_bundle, tmp_path):
    with TestClient(create_app(exported_bundle, ServeSettings(max_batch_files=2))) as c:
        files = [("files", (f"{i}.jpg", _jpeg(tmp_path, seed=i), "image/jpeg")) for i in range(3)]
        r = c.post("/v1/predict/batch", files=files)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_files"


def test_model_health_ready_and_docs(client):
    m = client.get("/v1/model").json()
    assert m["card"]["model"]["architecture"] == "tiny_cnn" and m["serving"]["explain"] is True
    assert client.get("/healthz").json() == {"status": "ok"}
    digest = bundle_digest(client.app.state.service.model.card.path)
    assert m["serving"]["digest"] == digest and m["serving"]["registry"] is None
    assert client.get("/readyz").json() == {"status": "ready", "model_digest": digest, "registry_seq": None}
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/predict", "/v1/predict/batch", "/v1/model", "/healthz", "/readyz"} <= set(paths)
    docs = client.get("/docs")
    assert docs.status_code == 200
    # served offline: the page's script and style come from this server, not from a CDN
    scripts = re.findall(r'<script src="([^"]+)"', docs.text)
    assert scripts and all(src.startswith("/") for src in scripts), scripts
    assert all(client.get(src).status_code == 200 for src in scripts)
    redoc = client.get("/redoc")
    assert redoc.status_code == 200 and "cdn." not in redoc.text
    page = client.get("/")
    assert page.status_code == 200 and "not a diagnosis" in page.text.lower() and 'capture="environment"' in page.text


def test_token_is_required_when_set(exported_bundle, tmp_path):
    with TestClient(create_app(exported_bundle, ServeSettings(token="s3cret"))) as c:
        missing = _post(c, _jpeg(tmp_path))
        wrong = _post(c, _jpeg(tmp_path), headers={"Authorization": "Bearer nope"})
        right = _post(c, _jpeg(tmp_path), headers={"Authorization": "Bearer s3cret"})
        assert c.get("/healthz").status_code == 200  # probes stay open
        assert c.get("/v1/model").status_code == 401
    assert missing.status_code == 401 and "Authorization: Bearer" in missing.json()["error"]["message"]
    assert wrong.status_code == 401 and "wrong" in wrong.json()["error"]["message"]
    assert right.status_code == 200


@pytest.mark.parametrize("batching", [True, False])
def test_concurrent_requests_get_their_own_answers(exported_bundle, tmp_path, batching):
    """Requests that share a batch must each get the probabilities of their own image."""
    settings = ServeSettings(batching=batching, max_batch_size=8, max_wait_ms=20)
    colours = [(60, 40, 30), (150, 100, 70), (220, 150, 160)] * 4
    images = [_jpeg(tmp_path, colour=col, seed=i) for i, col in enumerate(colours)]
    with TestClient(create_app(exported_bundle, settings)) as c:
        alone = [_post(c, d).json()["probabilities"] for d in images]
        with ThreadPoolExecutor(12) as pool:
            together = list(pool.map(lambda d: _post(c, d).json()["probabilities"], images))
        batcher = c.app.state.service.current.batcher
        if batching:
            assert batcher.images >= len(images) * 2 and batcher.batches < batcher.images  # some grouped
    for a, b in zip(alone, together):
        assert a == pytest.approx(b, abs=1e-5)


def test_preprocessing_is_the_bundles(exported_bundle):
    from lesionlens.serving.runtime import BundleModel

    model = BundleModel(exported_bundle)
    assert model.preprocessing.image_size == 32
    x = np.zeros((2, 3, 32, 32), np.float32)
    assert model.run(x).logits.shape == (2, 3)


@pytest.mark.shared
def test_server_and_predict_agree_on_real_images(client, exported_bundle, shared):
    """Real HAM10000 JPEGs (600x450, decoded through the JPEG draft path) give the same probabilities."""
    files = sorted((shared / "data" / "ham10000" / "images").glob("*.jpg"))[:12]
    rows = predict_paths(exported_bundle, files)
    for f, row in zip(files, rows):
        served = _post(client, f.read_bytes(), f.name).json()["probabilities"]
        assert max(abs(p - row[f"p_{c}"]) for c, p in served.items()) <= 1e-4, f


@pytest.mark.shared
def test_export_checks_on_real_images(bundle_copy, shared):
    from lesionlens.export.onnx import export_bundle

    record = export_bundle(bundle_copy, [shared / "data" / "ham10000" / "images"], check_limit=40)
    assert record.check["images"].startswith("40 images from") and record.check["max_abs_prob_diff"] <= 1e-4
