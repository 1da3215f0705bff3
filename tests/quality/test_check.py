"""The whole check on a tiny folder: the library's result, and `lesionlens check` writing HTML + CSV."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from helpers import photo, save, textured
from PIL import Image, ImageFilter

from lesionlens.cli import main
from lesionlens.data.load import read_table
from lesionlens.quality.check import check_images
from lesionlens.quality.result import KINDS, summary_lines


def _folder(root):
    """root/<class>/: distinct images, plus a copy under another label, an altered copy, a blurred
    image and a thumbnail."""
    for k in range(6):
        for c in ("mel", "nv"):
            save(photo(10 * k + (c == "nv"), 160), root / c / f"{c}{k}.png")
    Image.open(root / "mel" / "mel0.png").save(root / "nv" / "copy_of_mel0.png")  # same pixels, other label
    Image.open(root / "nv" / "nv1.png").transpose(Image.Transpose.ROTATE_270).save(root / "nv" / "turned_nv1.jpg",
                                                                                    quality=80)
    Image.fromarray(textured(77, 160)).filter(ImageFilter.GaussianBlur(6)).save(root / "mel" / "blurred.png")
    save(photo(99, 60), root / "nv" / "tiny.png")
    return root


def _name(result, pos):
    return str(result.table.frame["image_id"].iat[pos]).split("/")[-1]  # a folder's ids are class/name


def _ids(result, kind):
    return sorted(tuple(sorted(_name(result, p) for p in (f.a, f.b) if p is not None)) for f in result.of_kind(kind))


def test_the_check_finds_each_planted_problem(tmp_path):
    table = read_table(_folder(tmp_path / "data"))
    result = check_images(table)
    ids = {k: _ids(result, k) for k in ("exact_duplicate", "near_duplicate", "conflicting_labels")}
    assert ids["exact_duplicate"] == [("copy_of_mel0", "mel0")]
    assert ids["near_duplicate"] == [("nv1", "turned_nv1")]
    assert ids["conflicting_labels"] == [("copy_of_mel0", "mel0")]
    quality = {(_name(result, f.a), f.code) for f in result.of_kind("image_quality")}
    assert ("blurred", "blurry") in quality and ("tiny", "too_small") in quality
    assert {i for i, _ in quality} <= {"blurred", "tiny"}  # nothing on the normal images
    assert set(result.skipped) == {"same_lesion", "leakage", "label_error"}
    frame = result.to_frame()
    assert len(frame) == len(result.findings) and set(frame["kind"]) <= set(KINDS)
    assert any("skipped" in line for line in summary_lines(result))


def test_embeddings_add_same_lesion_pairs_and_label_errors(tmp_path):
    table = read_table(_folder(tmp_path / "data"))
    y = table.targets()
    rng = np.random.default_rng(0)
    emb = np.eye(2)[y] * 4 + rng.normal(0, 0.5, (len(y), 2))
    emb = np.hstack([emb, rng.normal(0, 0.2, (len(y), 6))])
    ids = [i.split("/")[-1] for i in table.frame["image_id"]]
    emb[ids.index("nv3")] = emb[ids.index("nv4")] * 1.0001  # the same lesion twice
    emb[ids.index("copy_of_mel0")] = emb[ids.index("mel0")]  # the picture of a mel, labelled nv
    result = check_images(table, emb, "test embeddings")
    assert ("nv3", "nv4") in _ids(result, "same_lesion")
    # copy_of_mel0 is labelled nv but sits with the mel images: its label is suspected
    errors = {_name(result, f.a): f.code for f in result.of_kind("label_error")}
    assert errors.get("copy_of_mel0") == "mel"


def test_cli_writes_the_report_and_the_csv(tmp_path, capsys):
    data = _folder(tmp_path / "data")
    out = tmp_path / "check"
    assert main(["check", str(data), "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "exact_duplicate" in printed and "report.html" in printed
    csv = pd.read_csv(out / "findings.csv")
    assert {"kind", "image_id_a", "image_id_b", "path_a", "partition_a", "label_a", "label_b", "score",
            "reason"} <= set(csv.columns)
    assert (csv["kind"] == "conflicting_labels").sum() == 1
    html = (out / "report.html").read_text()
    thumbs = re.findall(r'src="(thumbs/[^"]+)"', html)
    assert thumbs and all((out / t).is_file() for t in thumbs)  # opens offline: every image is beside it
    assert "http" not in html.replace("http-equiv", "")
