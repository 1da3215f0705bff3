"""Hostile input: every file of a generated corpus of 200+ gets a 4xx JSON error that names the
problem, or a correct answer; the server stays up. Odd colour modes and EXIF orientation decode to
the pixels they should."""

from __future__ import annotations

import io
import math
from collections import Counter

import numpy as np
import pytest
from fastapi.testclient import TestClient
from serving.hostile import corpus, encode, _photo
from PIL import Image

from lesionlens.data.images import Preprocessing
from lesionlens.serving.app import create_app
from lesionlens.serving.decode import decode_upload
from lesionlens.serving.errors import ApiError
from lesionlens.serving.settings import ServeSettings


def valid_prediction(case, body: dict) -> None:
    p = body["probabilities"]
    assert all(math.isfinite(v) for v in p.values()) and abs(sum(p.values()) - 1) < 1e-6, case.name


def check_answer(case, status: int, body: dict, valid=valid_prediction) -> None:
    """The shared judgement of one answer (also used against the real server and /v1/segment):
    an allowed status, and a 200 that ``valid(case, body)`` accepts or an error that names the problem."""
    assert status in case.expect, f"{case.name}: HTTP {status} {body}"
    if status == 200:
        valid(case, body)
    else:
        err = body["error"]
        assert err["status"] == status and err["code"] and len(err["message"]) > 10, case.name


def test_corpus_gets_4xx_or_correct_answers_and_the_server_stays_up(exported_bundle):
    cases = corpus()
    assert len(cases) >= 200
    statuses = Counter()
    with TestClient(create_app(exported_bundle), raise_server_exceptions=False) as client:
        for case in cases:
            r = client.post("/v1/predict", files={"file": (case.filename, case.data, "image/jpeg")})
            check_answer(case, r.status_code, r.json())
            statuses[r.status_code] += 1
        assert client.get("/healthz").status_code == 200
        ok = client.post("/v1/predict", files={"file": ("ok.png", encode(_photo(), "PNG"), "image/png")})
        assert ok.status_code == 200
    assert not any(s >= 500 for s in statuses), statuses
    assert statuses[200] >= 25 and statuses[413] >= 6 and statuses[415] >= 35 and statuses[422] >= 40, statuses


def test_limits_are_configurable(exported_bundle):
    settings = ServeSettings(max_upload_bytes=20_000, max_pixels=5_000)
    big = encode(_photo((200, 200)), "PNG")
    assert len(big) > 20_000
    with TestClient(create_app(exported_bundle, settings)) as client:
        too_big = client.post("/v1/predict", files={"file": ("a.png", big, "image/png")})
        too_many = client.post("/v1/predict", files={"file": ("b.png", encode(_photo((100, 60)), "PNG"), "image/png")})
        fine = client.post("/v1/predict", files={"file": ("c.png", encode(_photo((60, 60)), "PNG"), "image/png")})
    assert too_big.status_code == 413 and "20,000" in too_big.json()["error"]["message"]
    assert too_many.status_code == 413 and too_many.json()["error"]["code"] == "too_many_pixels"
    assert "100x60" in too_many.json()["error"]["message"]
    assert fine.status_code == 200


def test_requests_that_are_not_uploads_get_clear_errors(exported_bundle):
    with TestClient(create_app(exported_bundle)) as client:
        raw = client.post("/v1/predict", content=encode(_photo(), "JPEG"), headers={"content-type": "image/jpeg"})
        wrong_field = client.post("/v1/predict", files={"image": ("a.jpg", encode(_photo(), "JPEG"))})
        broken = client.post("/v1/predict", content=b"--xyz\r\nnonsense",
                             headers={"content-type": "multipart/form-data; boundary=xyz"})
        not_found = client.get("/v2/anything")
        bad_length = client.post("/v1/predict", content=b"x", headers={"content-length": "abc"})
    assert raw.status_code == 422 and "multipart/form-data" in raw.json()["error"]["message"]
    assert wrong_field.status_code == 422 and "file" in wrong_field.json()["error"]["message"]
    assert 400 <= broken.status_code < 500 and broken.json()["error"]["message"]
    assert not_found.status_code == 404 and not_found.json()["error"]["code"] == "not_found"
    assert 400 <= bad_length.status_code < 500


PRE = Preprocessing(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
_UPRIGHT = {2: [Image.Transpose.FLIP_LEFT_RIGHT], 3: [Image.Transpose.ROTATE_180],
            4: [Image.Transpose.FLIP_TOP_BOTTOM], 5: [Image.Transpose.TRANSPOSE],
            6: [Image.Transpose.ROTATE_270], 7: [Image.Transpose.TRANSVERSE], 8: [Image.Transpose.ROTATE_90]}


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_is_applied(orientation):
    photo = _photo((64, 40))
    exif = Image.Exif()
    exif[0x0112] = orientation
    tagged = encode(photo, "PNG", exif=exif)
    upright = photo
    for t in _UPRIGHT[orientation]:
        upright = upright.transpose(t)
    got = decode_upload(tagged, PRE, 10**6)
    assert np.array_equal(got, decode_upload(encode(upright, "PNG"), PRE, 10**6))
    assert not np.array_equal(got, decode_upload(encode(photo, "PNG"), PRE, 10**6))


def test_colour_modes_decode_to_the_same_pixels_as_their_rgb():
    photo = _photo()
    grey = photo.convert("L")
    rgb = decode_upload(encode(photo, "PNG"), PRE, 10**6)
    grey_rgb = decode_upload(encode(grey.convert("RGB"), "PNG"), PRE, 10**6)
    from serving.hostile import png_raw

    sixteen_grey = png_raw(96, 72, 16, 0, rows=b"".join(
        b"\0" + (np.asarray(grey, np.uint16)[y] * 257).astype(">u2").tobytes() for y in range(72)))
    sixteen_rgb = png_raw(96, 72, 16, 2, rows=b"".join(
        b"\0" + (np.asarray(photo, np.uint16)[y] * 257).astype(">u2").tobytes() for y in range(72)))
    assert np.array_equal(decode_upload(encode(grey, "PNG"), PRE, 10**6), grey_rgb)
    assert np.array_equal(decode_upload(sixteen_grey, PRE, 10**6), grey_rgb)
    assert np.array_equal(decode_upload(sixteen_rgb, PRE, 10**6), rgb)
    assert np.array_equal(decode_upload(encode(photo.convert("RGBA"), "PNG"), PRE, 10**6), rgb)
    transparent = photo.convert("RGBA")
    transparent.putalpha(0)  # fully transparent pixels are shown on white
    assert (decode_upload(encode(transparent, "PNG"), PRE, 10**6) == 255).all()
    cmyk = decode_upload(encode(photo.convert("CMYK"), "JPEG", quality=95), PRE, 10**6)
    assert np.abs(cmyk.astype(int) - rgb.astype(int)).mean() < 12  # lossy JPEG, same picture


def test_format_is_recognised_by_content_not_name():
    png = encode(_photo(), "PNG")
    assert decode_upload(png, PRE, 10**6).shape == (32, 32, 3)
    with pytest.raises(ApiError, match="GIF") as e:
        decode_upload(encode(_photo(), "GIF"), PRE, 10**6)
    assert e.value.status == 415
    with pytest.raises(ApiError) as e:
        decode_upload(io.BytesIO(png).read()[:60], PRE, 10**6)
    assert e.value.status == 422


def test_corpus_against_the_case_store_stores_only_the_good_images(exported_bundle, tmp_path):
    """The same corpus sent to POST /v1/cases (and to /v1/predict with --store-predictions): the
    same answers, every stored image clean and upright, nothing stored for a refused upload."""
    from lesionlens.cases.store import CaseStore

    cases = corpus()
    db = str(tmp_path / "cases.sqlite")
    statuses = Counter()
    settings = ServeSettings(db=db, store_predictions=True)
    with TestClient(create_app(exported_bundle, settings), raise_server_exceptions=False) as client:
        for i, case in enumerate(cases):
            url = "/v1/cases" if i % 2 else "/v1/predict"
            r = client.post(url, files={"file": (case.filename, case.data, "image/jpeg")},
                            data={"request_id": f"hostile-{i}"} if i % 2 else None)
            check_answer(case, r.status_code, r.json())
            statuses[r.status_code] += 1
        assert client.get("/healthz").status_code == 200
    assert not any(s >= 500 for s in statuses), statuses
    store = CaseStore.open(db)
    assert store.count() == statuses[200]
    assert store.check().ok and store.check().orphan_images == []
    for record in store.records():
        with Image.open(store.images.path(record.image)) as img:
            assert not img.getexif().get(0x0112) and (img.width, img.height) == (record.width, record.height)
