"""`lesionlens predict` on a segmentation bundle: one mask PNG per image at the image's own size
(the mask /v1/segment returns), a CSV row of measurements per file, unreadable files listed with
the reason, and what it needs asked for clearly."""

from __future__ import annotations

import base64
import csv
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from serving.segment_helpers import blank_upload, lesion_upload

from lesionlens.cli import main
from lesionlens.data.masks import read_mask
from lesionlens.serving.app import create_app


def test_masks_and_measurements_for_every_file(segmentation_bundle, tmp_path, capsys):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    data, truth = lesion_upload(seed=2, size=(110, 70))
    (folder / "a.png").write_bytes(data)
    (folder / "sub" / "a.png").write_bytes(lesion_upload(seed=4, size=(50, 60))[0])  # the same stem, elsewhere
    (folder / "blank.png").write_bytes(blank_upload((30, 20)))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    out = tmp_path / "out" / "measurements.csv"
    code = main(["predict", str(segmentation_bundle), str(folder), "--out", str(out), "--mm-per-pixel", "0.1"])
    assert code == 1  # one file could not be read
    rows = {r["path"].removeprefix(str(folder) + "/"): r for r in csv.DictReader(out.open())}
    assert set(rows) == {"a.png", "sub/a.png", "blank.png", "broken.jpg"}
    assert "cannot decode" in rows["broken.jpg"]["error"] and not rows["broken.jpg"]["mask"]
    masks = tmp_path / "out" / "masks"  # beside --out by default
    assert sorted(p.name for p in masks.iterdir()) == ["a_2_mask.png", "a_mask.png", "blank_mask.png"]

    a = rows["a.png"]
    mask = read_mask(a["mask"])
    assert a["lesion"] == "yes" and mask.shape == (70, 110)
    assert (mask & truth).sum() / (mask | truth).sum() > 0.7
    assert int(a["area_px"]) == mask.sum() and float(a["area_mm2"]) == pytest.approx(mask.sum() * 0.01)
    assert int(a["components"]) == 1 and 0 <= float(a["asymmetry_major_axis"]) < 1 and int(a["colours"]) >= 1
    assert read_mask(rows["sub/a.png"]["mask"]).shape == (60, 50)
    assert rows["blank.png"]["lesion"] == "no" and not rows["blank.png"]["area_px"]
    assert not read_mask(rows["blank.png"]["mask"]).any()
    assert "a pixel is lesion where its probability is >= 0.5" in capsys.readouterr().err

    # the same mask as the server's
    with TestClient(create_app(segmentation_bundle)) as client:
        served = client.post("/v1/segment", files={"file": ("a.png", data, "image/png")}).json()
    served_mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(served["mask_png_base64"])))) == 255
    assert np.array_equal(served_mask, mask)


def test_what_segmentation_needs_is_asked_for(segmentation_bundle, tmp_path, capsys):
    image = tmp_path / "a.png"
    image.write_bytes(lesion_upload()[0])
    assert main(["predict", str(segmentation_bundle), str(image)]) == 2
    assert "give --masks DIR" in capsys.readouterr().err
    assert main(["predict", str(segmentation_bundle), str(image), "--masks", str(tmp_path / "m"),
                 "--mm-per-pixel", "-2"]) != 0
    assert "--mm-per-pixel must be a positive number, got -2.0" in capsys.readouterr().err
    assert main(["predict", str(segmentation_bundle), str(image), "--masks", str(tmp_path / "m")]) == 0
    printed = capsys.readouterr().out  # the measurements as CSV on standard output
    assert printed.startswith("path,lesion,mask,area_px") and str(tmp_path / "m" / "a_mask.png") in printed


def test_a_multitask_bundle_gives_the_class_too(multitask_bundle, tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(lesion_upload()[0])
    out = tmp_path / "out.csv"
    assert main(["predict", str(multitask_bundle), str(image), "--out", str(out)]) == 0
    (row,) = csv.DictReader(out.open())
    assert row["lesion"] == "yes" and read_mask(row["mask"]).shape == (64, 96)
    assert row["predicted"] in {"dark", "light"}
    assert float(row["p_dark"]) + float(row["p_light"]) == pytest.approx(1, abs=1e-5)
    assert float(row["confidence"]) == max(float(row["p_dark"]), float(row["p_light"]))
