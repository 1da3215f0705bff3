"""`lesionlens check --db`: the case store's settled cases checked like any data set."""

from __future__ import annotations

import csv

import numpy as np
from case_helpers import prediction
from PIL import Image

from lesionlens.cases.images import clean_image
from lesionlens.cases.store import CaseMetadata, CaseStore
from lesionlens.cases.table import store_table
from lesionlens.cli import main


def textured(seed: int) -> bytes:
    import io

    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, (24, 32, 3))
    pixels = np.clip(128 + 40 * np.kron(base, np.ones((8, 8, 1))) + rng.normal(0, 6, (192, 256, 3)), 0, 255)
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, "JPEG", quality=92)
    return out.getvalue()


def test_check_on_the_case_store_finds_a_photo_sent_twice_with_two_labels(tmp_path, capsys):
    db = tmp_path / "cases.sqlite"
    store = CaseStore.open(db)
    ids = []
    for i, seed in enumerate([1, 2, 3, 1]):  # the first photo comes again for another patient
        ids.append(store.add(clean_image(textured(seed), "JPEG"), CaseMetadata(patient_id=f"p{i}"), prediction()).id)
        store.add_label(ids[-1], "nv" if i == 3 else ("mel", "nv", "bcc")[i], "histo", reader="a")
    store.add(clean_image(textured(9), "JPEG"), CaseMetadata(), prediction())  # unlabelled: not checked
    table, unsettled = store_table(store)
    assert len(table) == 4 and unsettled == 1 and table.classes == ["mel", "nv", "bcc"]
    assert list(table.frame["group"]) == ["p0", "p1", "p2", "p3"]
    out = tmp_path / "check"
    assert main(["check", "--db", str(db), "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "4 cases with a settled label (1 without one are not checked)" in printed
    with open(out / "findings.csv") as f:
        findings = list(csv.DictReader(f))
    kinds = {row["kind"] for row in findings}
    assert "conflicting_labels" in kinds and "exact_duplicate" in kinds, kinds
    assert any({ids[0], ids[3]} <= set(row.values()) for row in findings if row["kind"] == "conflicting_labels")
