"""`lesionlens cases`: tokens, export, study (with its plots), erasure, the integrity check and
partitions, as a user runs them."""

from __future__ import annotations

import csv

import pytest
from case_helpers import clean, prediction
from PIL import Image

from lesionlens.cli import main
from lesionlens.cases.store import CaseMetadata, CaseStore


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "cases.sqlite"
    store = CaseStore.open(path)
    people = [("back", "male", 35, "mel", True), ("face", "female", 72, "nv", False), ("back", "female", 50, "nv", True)]
    for i, (site, sex, age, label, positive) in enumerate(people):
        case = store.add(clean(i), CaseMetadata(site=site, sex=sex, age=age, consent_research=True),
                         prediction(top="mel" if positive else "nv", p=0.8)).id
        store.add_label(case, label, "histo", reader="a")
    store.add(clean(9), CaseMetadata(), prediction())
    store.close()
    return str(path)


def test_tokens(db, capsys):
    assert main(["cases", "token", "add", "alice", "--role", "label", "--db", db]) == 0
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    assert CaseStore.open(db).token_owner(secret) == ("alice", "label")
    main(["cases", "token", "list", "--db", db])
    assert "alice" in capsys.readouterr().out
    assert main(["cases", "token", "revoke", "alice", "--db", db]) == 0
    assert main(["cases", "token", "revoke", "alice", "--db", db]) == 2
    assert "no live token" in capsys.readouterr().err


def test_export_then_erase(db, tmp_path, capsys):
    assert main(["cases", "export", "--db", db, "--out", str(tmp_path / "x")]) == 0
    out = capsys.readouterr().out
    assert "exported 3 cases" in out and "left out 1: no research consent" in out
    with open(tmp_path / "x" / "cases.csv") as f:
        first = next(csv.DictReader(f))["case_id"]
    assert main(["cases", "erase", first, "--db", db, "--by", "dpo"]) == 0
    assert main(["cases", "export", "--db", db, "--out", str(tmp_path / "y")]) == 0
    assert first not in (tmp_path / "y" / "cases.csv").read_text()
    assert main(["cases", "erase", first, "--db", db, "--by", "dpo"]) == 2


def test_study_prints_the_table_and_writes_plots(db, tmp_path, capsys):
    assert main(["cases", "study", "--db", db, "--out", str(tmp_path / "study")]) == 0
    out = capsys.readouterr().out
    assert "3 cases with research consent (1 without, left out)" in out
    assert "site: back" in out and "malignant sensitivity" in out
    for name in ("study_site.png", "study_age_band.png", "study_sex.png", "study.csv", "study.json"):
        assert (tmp_path / "study" / name).stat().st_size > 0
    with Image.open(tmp_path / "study" / "study_site.png") as img:
        assert img.width > 400


def test_check_and_orphans(db, capsys):
    store = CaseStore.open(db)
    orphan = store.images.put(clean(50))
    assert main(["cases", "check", "--db", db]) == 0
    assert "orphan photos: 1" in capsys.readouterr().out
    assert main(["cases", "check", "--db", db, "--collect-orphans", "--grace-minutes", "0"]) == 0
    assert not orphan.exists()
    store.image_path(store.records()[0].id).unlink()
    assert main(["cases", "check", "--db", db]) == 1
    assert "photo is missing: 1" in capsys.readouterr().out


def test_partition(db, capsys):
    ids = [r.id for r in CaseStore.open(db).records()]
    assert main(["cases", "partition", "test", *ids[:2], "--db", db]) == 0
    assert [r.partition for r in CaseStore.open(db).records()][:2] == ["test", "test"]
    assert main(["cases", "partition", "val", "f" * 32, "--db", db]) == 2
