"""Retraining: a snapshot of the champion's data + new labelled cases (grouped, hashed), trained with
the champion's recipe, registered as the challenger; bad inputs refused by name."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from case_helpers import prediction
from helpers import COLOURS, write_image

from lesionlens.bundle.registry import Registry
from lesionlens.bundle.split import read_split
from lesionlens.cases.export import export_cases
from lesionlens.cases.images import clean_image
from lesionlens.cases.store import CaseMetadata, CaseStore
from lesionlens.config import ConfigError
from lesionlens.digest import file_digest
from lesionlens.upkeep.retrain import retrain
from lesionlens.upkeep.snapshot import build_snapshot


def clinic_export(root: Path, per_class: int = 6, labels=None, retakes: int = 0) -> Path:
    """A case store with colour photos from a 'new clinic' (two photos per patient), labelled, exported;
    ``retakes`` photos are sent again as other patients' cases (slightly brighter copies)."""
    root.mkdir(parents=True, exist_ok=True)
    store = CaseStore.open(root / "cases.sqlite")
    for c, colour in COLOURS.items():
        for i in range(per_class):
            path = write_image(root / "photos" / f"{c}{i}.jpg", tuple(min(255, v + 15) for v in colour), seed=100 + i,
                               size=48)
            case = store.add(clean_image(path.read_bytes(), "JPEG"),
                             CaseMetadata(consent_research=True, patient_id=f"{c}-p{i // 2}"), prediction()).id
            store.add_label(case, (labels or {}).get(c, c), "histo", reader="pathologist")
            if i < retakes:
                pixels = np.clip(np.asarray(Image.open(path), dtype=np.int16) + 6, 0, 255).astype(np.uint8)
                copy = root / "photos" / f"{c}{i}-retake.png"
                Image.fromarray(pixels).save(copy)
                case = store.add(clean_image(copy.read_bytes(), "PNG"),
                                 CaseMetadata(consent_research=True, patient_id=f"{c}-other{i}"), prediction()).id
                store.add_label(case, c, "histo", reader="pathologist")
    export = export_cases(store, root / "export").folder
    store.close()
    return export


@pytest.fixture
def registry(exported_bundle, tmp_path) -> Registry:
    registry = Registry.open(tmp_path / "registry", create=True)
    digest, _ = registry.add(exported_bundle)
    registry.promote(digest, reason="first model")
    return registry


def read(table: Path) -> list[dict]:
    with open(table) as f:
        return list(csv.DictReader(f))


def test_a_snapshot_keeps_the_champions_partitions_and_splits_new_cases_by_patient(registry, tmp_path):
    champion = registry.card(registry.state().champion)
    snap = build_snapshot(champion, registry.state().champion, clinic_export(tmp_path), tmp_path / "snap", 0.34, 0)
    rows = read(snap.table)
    before = {r.path: r.partition for r in read_split(champion.path) if r.partition != "test"}
    assert {r["path"]: r["partition"] for r in rows if r["source"] == "champion"} == before
    new = [r for r in rows if r["source"] == "cases"]
    assert len(new) == 18 and {r["partition"] for r in new} == {"train", "val"}
    by_group: dict[str, set] = {}
    for r in new:
        by_group.setdefault(r["group"], set()).add(r["partition"])
    assert all(len(p) == 1 for p in by_group.values())  # no patient on both sides
    assert {r["label"] for r in new if r["partition"] == "val"} == set(COLOURS)  # stratified
    manifest = json.loads((snap.folder / "manifest.json").read_text())
    assert manifest["snapshot_sha256"] == snap.digest == file_digest(snap.table)
    assert all(file_digest(r["path"]) == r["sha256"] for r in rows)


def test_retrain_trains_with_the_champions_recipe_and_registers_a_challenger(registry, tmp_path):
    result = retrain(registry.root, clinic_export(tmp_path), tmp_path / "retrain", progress=False)
    state = registry.state()
    assert state.aliases["challenger"] == result.digest and state.champion == result.champion
    card = registry.card(result.digest)
    champion = registry.card(result.champion)
    assert card.architecture == champion.architecture and set(card.classes) == set(champion.classes)
    assert card.training.config["train"] == champion.training.config["train"]
    assert card.dataset.path == str(result.snapshot.table)
    assert all(p.validated for p in card.operating_points.values())  # fitted on held-out images
    trained = {r.path for r in card.training_rows()}
    assert any("photos" not in p and "export" in p for p in trained)  # the clinic's cases were trained on
    champion_val = {r.path for r in read_split(champion.path) if r.partition == "val"}
    assert champion_val and not champion_val & trained  # the champion's validation images stay held out
    assert "challenger" in "\n".join(result.lines())


def test_bad_inputs_are_refused_by_name(registry, exported_bundle, tmp_path):
    export = clinic_export(tmp_path / "a", labels={"bcc": "scc"})
    with pytest.raises(ValueError, match=r"labels \['scc'\] are not among the champion's"):
        retrain(registry.root, export, tmp_path / "r1", progress=False)
    export = clinic_export(tmp_path / "b")
    victim = sorted((export / "images").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:-10])
    with pytest.raises(ValueError, match=f"{victim.name}: changed since it was recorded"):
        retrain(registry.root, export, tmp_path / "r2", progress=False)
    with pytest.raises(FileNotFoundError, match="not a cases export"):
        retrain(registry.root, tmp_path, tmp_path / "r3", progress=False)
    config = tmp_path / "tov.yaml"
    config.write_text((exported_bundle / "config.yaml").read_text().replace("train_on_val: false",
                                                                             "train_on_val: true"))
    with pytest.raises(ConfigError, match="train_on_val"):
        retrain(registry.root, clinic_export(tmp_path / "c"), tmp_path / "r4", config=config, progress=False)
    empty = Registry.open(tmp_path / "empty", create=True)
    with pytest.raises(ValueError, match="no champion"):
        retrain(empty.root, export, tmp_path / "r5", progress=False)


def test_copies_sent_as_other_patients_cases_stay_in_one_partition(registry, tmp_path):
    """Training refuses a split with altered copies on both sides; the snapshot joins them first."""
    champion = registry.card(registry.state().champion)
    for seed in range(3):
        export = clinic_export(tmp_path / f"e{seed}", retakes=3)
        patient = {str((export / r["image"]).resolve()): r["patient"] for r in read(export / "cases.csv")}
        snap = build_snapshot(champion, registry.state().champion, export, tmp_path / f"snap{seed}", 0.5, seed)
        rows = [r for r in read(snap.table) if r["source"] == "cases"]
        for retake in (r for r in rows if "-other" in patient[r["path"]]):
            together = [r for r in rows if r["group"] == retake["group"]]
            assert {patient[r["path"]] for r in together} > {patient[retake["path"]]}  # joined with the original
            assert len({r["partition"] for r in together}) == 1
        assert {r["partition"] for r in rows} == {"train", "val"}
