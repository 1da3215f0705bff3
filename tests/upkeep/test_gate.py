"""The promotion gate on a tiny trained bundle: a frozen gate set, the leakage refusal, a passing
identical challenger, a failing less sensitive one, a byte-identical report on a re-run; and the
statistics on cases whose figures are known by hand."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import COLOURS, write_image

from lesionlens.bundle.card import read_card, update_card
from lesionlens.cli import main
from lesionlens.decision import DecisionRule, OperatingPoint
from lesionlens.digest import file_digest
from lesionlens.evaluation.bootstrap import calibration_rows
from lesionlens.evaluation.result import Evaluation
from lesionlens.upkeep.gate import GateLeakageError, run_gate, unvalidated_note
from lesionlens.upkeep.gate_settings import GateSettings
from lesionlens.upkeep.gateset import GateSetError, freeze_gate_set, open_gate_set
from lesionlens.upkeep.noninferiority import judge

FAST = GateSettings(resamples=200)
SEXES, SITES = ("female", "male"), ("back", "face", "ear")


def write_gate_data(root: Path, per_class: int = 40) -> Path:
    """Images the tiny bundle never saw (other seeds), in a CSV with sex, age and body site."""
    lines = ["image,label,sex,age,site"]
    for c, colour in COLOURS.items():
        for i in range(per_class):
            name = f"images/{c}_gate_{i}.jpg"
            write_image(root / name, colour, seed=1000 + i, size=48)
            site = "ear" if i % 10 == 0 else SITES[i % 2]
            lines.append(f"{name},{c},{SEXES[i % 2]},{25 + 10 * (i % 5)},{site}")
    (root / "gate.csv").write_text("\n".join(lines) + "\n")
    return root / "gate.csv"


@pytest.fixture(scope="module")
def gate_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gate")
    return freeze_gate_set(write_gate_data(root / "data"), root / "gateset", progress=False).path


def test_freeze_writes_a_manifest_with_hashes_labels_and_metadata(gate_set, tmp_path):
    gs = open_gate_set(gate_set)
    assert len(gs.images) == 120 and gs.counts() == {"bcc": 40, "mel": 40, "nv": 40}
    first = next(i for i in gs.images if i.image_id == "images/mel_gate_1.jpg")
    assert (first.label, first.sex, first.age, first.site) == ("mel", "male", "35", "face")
    assert first.sha256 == file_digest(gate_set / first.path) and not Path(first.path).is_absolute()
    assert set(gs.subgroups()) == {"sex", "age_band", "site"}
    assert sorted(set(gs.subgroups()["age_band"])) == ["20-39", "40-59", "60-79"]
    info = json.loads((gate_set / "gateset.json").read_text())
    assert info["digest"] == gs.digest and info["format"] == "lesionlens-gateset/1"
    # the digest is the content's, wherever the set lies
    assert freeze_gate_set(gate_set.parent / "data" / "gate.csv", tmp_path / "again", progress=False).digest == gs.digest


def test_freeze_from_the_command_line_leaves_out_what_a_bundle_trained_on(exported_bundle, tmp_path, capsys):
    out = tmp_path / "gs"
    assert main(["gate", "freeze", str(exported_bundle / "split.csv"), "--exclude-trained-by", str(exported_bundle),
                 "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    gs = open_gate_set(out)
    trained = sum(1 for line in (exported_bundle / "split.csv").read_text().splitlines() if ",train," in line)
    assert gs.source["left_out_as_trained_on"] == {exported_bundle.name: trained}
    assert len(gs.images) == 36 - trained and f"digest {gs.digest}" in printed
    assert main(["gate", "freeze", str(exported_bundle / "split.csv"), "--out", str(out), "-q"]) == 2  # frozen once


def test_freeze_leaves_out_altered_copies_of_training_images_as_the_gate_would(exported_bundle, tmp_path):
    """A mirrored, re-encoded copy of a training image has another sha256; freeze finds it by the
    gate's own perceptual-hash check, so the set it writes is one the gate accepts."""
    from PIL import Image

    rows = [line.split(",") for line in (exported_bundle / "split.csv").read_text().splitlines()[1:]]
    train = next(r for r in rows if r[1] == "train")
    held_out = [r for r in rows if r[1] != "train"]
    copy = tmp_path / "copy_of_train.png"
    Image.open(train[5]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(copy)
    lines = ["image,label", f"{copy},{train[2]}", *(f"{r[5]},{r[2]}" for r in held_out)]
    (tmp_path / "gate.csv").write_text("\n".join(lines) + "\n")
    gs = freeze_gate_set(tmp_path / "gate.csv", tmp_path / "gs", exclude_trained_by=[exported_bundle], progress=False)
    assert gs.source["left_out_as_trained_on"] == {exported_bundle.name: 1}
    assert len(gs.images) == len(held_out) and all("copy_of_train" not in i.image_id for i in gs.images)
    # without the exclusion the gate itself refuses that copy
    unchecked = freeze_gate_set(tmp_path / "gate.csv", tmp_path / "gs2", progress=False)
    with pytest.raises(GateLeakageError, match="copy_of_train.png: an altered copy of training image"):
        run_gate(exported_bundle, exported_bundle, unchecked.path, settings=FAST, progress=False)


def test_a_changed_gate_image_is_refused(gate_set, tmp_path):
    copy = Path(shutil.copytree(gate_set, tmp_path / "gs"))
    image = next((copy / "images").iterdir())
    write_image(image, (10, 200, 10), seed=5, size=48)
    with pytest.raises(GateSetError, match=rf"(?s)1 of 120 gate images changed.*{re.escape(image.name)}: sha256"):
        open_gate_set(copy)


def test_an_edited_manifest_is_refused(gate_set, tmp_path):
    copy = Path(shutil.copytree(gate_set, tmp_path / "gs"))
    manifest = copy / "manifest.csv"
    manifest.write_text(manifest.read_text().replace(",mel,", ",nv,", 1))
    with pytest.raises(GateSetError, match="manifest was changed after the gate set was frozen"):
        open_gate_set(copy)


def test_bad_gate_set_folders_are_refused_by_name(tmp_path):
    with pytest.raises(GateSetError, match=f"{tmp_path / 'nowhere'}: no such gate set folder"):
        open_gate_set(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GateSetError, match="not a gate set: no gateset.json"):
        open_gate_set(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "gateset.json").write_text('{"format": "something-else/1"}')
    (tmp_path / "other" / "manifest.csv").write_text("image_id\n")
    with pytest.raises(GateSetError, match="unknown gate set format 'something-else/1'"):
        open_gate_set(tmp_path / "other")


def test_freezing_into_a_used_folder_is_refused(gate_set, tmp_path):
    with pytest.raises(FileExistsError, match="frozen once"):
        freeze_gate_set(gate_set / "manifest.csv", gate_set, progress=False)


def test_an_identical_challenger_passes_and_a_rerun_gives_the_same_bytes(exported_bundle, gate_set, tmp_path):
    challenger = Path(shutil.copytree(exported_bundle, tmp_path / "challenger"))
    first = run_gate(exported_bundle, challenger, gate_set, tmp_path / "a", FAST, progress=False)
    assert first.decision == "pass", first.summary()
    again = run_gate(exported_bundle, challenger, gate_set, tmp_path / "b", FAST, progress=False)
    assert (tmp_path / "a" / "gate.json").read_bytes() == (tmp_path / "b" / "gate.json").read_bytes()
    report = json.loads((tmp_path / "a" / "gate.json").read_text())
    assert report["format"] == "lesionlens-gate/1" and report["decision"] == "pass"
    assert report["champion"]["digest"] == report["challenger"]["digest"]  # the same files, another folder
    assert report["gate_set"]["digest"] == open_gate_set(gate_set).digest
    assert {c["metric"] for c in report["criteria"]} == {"sensitivity", "specificity", "auc", "ece", "brier"}
    assert all(c["advantage"] == {"estimate": 0.0, "low": 0.0, "high": 0.0, "level": 0.95}
               for c in report["criteria"] + report["subgroups"]["judged"])
    assert report["subgroups"]["judged"]  # sex female / male: 20 melanomas and 40 others each
    # the ear subgroup (12 of 120 images) is listed, not dropped
    assert any(t["value"] == "ear" for t in report["subgroups"]["too_few"])
    assert str(tmp_path) not in (tmp_path / "a" / "gate.json").read_text()
    assert "PASS" in (tmp_path / "a" / "gate.html").read_text() and (tmp_path / "a" / "forest-melanoma.png").is_file()
    assert again.summary() == first.summary()


def test_a_less_sensitive_challenger_fails_with_exit_code_1(exported_bundle, gate_set, tmp_path, capsys):
    challenger = Path(shutil.copytree(exported_bundle, tmp_path / "challenger"))
    card = read_card(challenger)
    points = {v: {"threshold": p.threshold, "criterion": p.criterion, "target": p.target}
              for v, p in card.operating_points.items()}
    points["melanoma"]["threshold"] = 1.01  # no melanoma called positive any more
    update_card(challenger, {"operating_points": points}, by="test")
    code = main(["gate", str(exported_bundle), str(challenger), "--gate-set", str(gate_set), "--out",
                 str(tmp_path / "gate"), "--resamples", "200", "-q"])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "gate" / "gate.json").read_text())
    assert code == 1 and report["decision"] == "fail" and "Decision: FAIL" in out
    failed = [c for c in report["criteria"] if c["verdict"] == "fail"]
    assert [(c["view"], c["metric"]) for c in failed] == [("melanoma", "sensitivity")]
    assert any(r.startswith("melanoma sensitivity:") for r in report["reasons"])
    assert main(["gate", str(exported_bundle), str(exported_bundle), "--gate-set", str(gate_set), "--out",
                 str(tmp_path / "same"), "--resamples", "200", "-q"]) == 0


def test_a_passed_gate_report_promotes_through_the_registry(exported_bundle, gate_set, tmp_path, capsys):
    """The contract with `lesionlens registry promote`: it accepts this gate's report."""
    from lesionlens.bundle.registry import Registry

    challenger = Path(shutil.copytree(exported_bundle, tmp_path / "challenger"))
    card = json.loads((challenger / "card.json").read_text())
    card["created"] = "2026-01-02T00:00:00+00:00"  # another bundle (another digest), the same weights
    (challenger / "card.json").write_text(json.dumps(card))
    registry = Registry.open(tmp_path / "models", create=True)
    champion, _ = registry.add(exported_bundle)
    registry.promote(champion, reason="first model")
    new, _ = registry.add(challenger)
    registry.assign_challenger(new)
    assert main(["gate", "champion", "challenger", "--registry", str(registry.root), "--gate-set", str(gate_set),
                 "--out", str(tmp_path / "gate"), "--resamples", "200", "-q"]) == 0
    assert main(["registry", "promote", str(registry.root), "challenger", "--gate", str(tmp_path / "gate" / "gate.json"),
                 "--reason", "passed the gate"]) == 0
    assert registry.state().champion == new


def test_gate_images_a_bundle_trained_on_are_refused(exported_bundle, tmp_path):
    trained = freeze_gate_set(exported_bundle / "split.csv", tmp_path / "leaky", partition="train", progress=False)
    with pytest.raises(GateLeakageError, match=rf"the champion {re.escape(str(exported_bundle))} trained on \d+ of the gate"):
        run_gate(exported_bundle, exported_bundle, trained.path, None, FAST, progress=False)
    code = main(["gate", str(exported_bundle), str(exported_bundle), "--gate-set", str(trained.path),
                 "--out", str(tmp_path / "out"), "-q"])
    assert code == 2 and not (tmp_path / "out" / "gate.json").exists()


def test_a_threshold_fitted_on_trained_images_is_marked_unvalidated(exported_bundle, bundle_copy, gate_set, tmp_path):
    card_path = bundle_copy / "card.json"
    data = json.loads(card_path.read_text())
    data["validation"]["seen_in_training"] = True  # as a data.train_on_val run writes it
    for point in data["operating_points"].values():
        point.update(validated=False, validation_sensitivity=None, validation_specificity=None)
    card_path.write_text(json.dumps(data))
    assert "so unvalidated" in unvalidated_note(read_card(bundle_copy))
    validation = freeze_gate_set(bundle_copy / "split.csv", tmp_path / "val", partition="val", progress=False)
    with pytest.raises(GateLeakageError, match="of the gate images"):  # its validation images were trained on too
        run_gate(bundle_copy, bundle_copy, validation.path, None, FAST, progress=False)
    result = run_gate(exported_bundle, bundle_copy, gate_set, None, FAST, progress=False)
    report = result.to_dict()
    mel = report["challenger"]["operating_points"]["melanoma"]
    assert report["challenger"]["threshold_validated"] is False and mel["validated"] is False
    assert mel["card_sensitivity"] is None and "unvalidated" in report["challenger"]["threshold_note"]
    assert report["champion"]["threshold_validated"] is True
    assert report["champion"]["operating_points"]["melanoma"]["card_sensitivity"] is not None
    assert any("challenger" in line and "unvalidated" in line for line in result.lines())


# The statistics, on figures known by hand.

def two_model_evaluations(n_pos: int = 40, n_neg: int = 60, missed: int = 0):
    """A melanoma / nevus model (threshold 0.5) and a copy that misses ``missed`` more melanomas."""
    y = np.r_[np.zeros(n_pos, int), np.ones(n_neg, int)]  # classes mel, nv
    p = np.where(y == 0, 0.8, 0.2)
    p[:4] = 0.3  # four melanomas both models miss
    p_b = p.copy()
    p_b[4:4 + missed] = 0.45
    rule = DecisionRule(("mel", "nv"), 1.0, (OperatingPoint("melanoma", 0.5, "sensitivity", 0.9),))
    ids = [str(i) for i in range(len(y))]
    return (Evaluation(["mel", "nv"], y, np.c_[p, 1 - p], ids, rule=rule),
            Evaluation(["mel", "nv"], y, np.c_[p_b, 1 - p_b], ids, rule=rule))


def test_sensitivity_difference_known_by_hand():
    a, b = two_model_evaluations(missed=2)
    j = judge(a, b, {}, FAST)
    sens = next(c for c in j.primary if c.metric == "sensitivity")
    assert (sens.champion, sens.challenger) == (36 / 40, 34 / 40)
    assert sens.advantage.estimate == pytest.approx(-0.05) and sens.advantage.high <= 0
    assert sens.verdict == "fail" and not j.passed
    spec = next(c for c in j.primary if c.metric == "specificity")
    assert spec.advantage.estimate == 0 and spec.verdict == "pass"
    assert judge(a, a, {}, FAST).passed


def test_calibration_figures_known_by_hand():
    # scores 0.1 (2 images, 0 positive) and 0.9 (2 images, 1 positive): ECE = (2*0.1 + 2*0.4) / 4 = 0.25
    truth, score = np.array([0, 0, 1, 0]), np.array([0.1, 0.1, 0.9, 0.9])
    out = calibration_rows(truth, score, np.arange(4)[None])
    assert out["ece"][0] == pytest.approx(0.25)
    assert out["brier"][0] == pytest.approx((0.01 + 0.01 + 0.01 + 0.81) / 4)


def test_subgroups_below_the_minimum_are_listed_and_a_worse_subgroup_fails():
    a, b = two_model_evaluations(n_pos=120, n_neg=60, missed=12)  # b misses melanomas 4-15 as well
    site = np.array(["back"] * 20 + ["face"] * 100 + ["back"] * 30 + ["face"] * 30)
    sex = np.array(["female"] * 5 + ["male"] * 175)  # 5 female melanomas, no female nevus: too few
    # margins wide enough that all images pass: sensitivity 108 vs 96 of 120, advantage -0.1
    settings = GateSettings(resamples=400, delta=0.25, ece_margin=0.5, brier_margin=0.5)
    j = judge(a, b, {"site": list(site), "sex": list(sex)}, settings)
    assert all(c.verdict == "pass" for c in j.primary)
    back = next(c for c in j.subgroups if c.view == "melanoma" and c.metric == "sensitivity" and c.subgroup.value == "back")
    assert (back.champion, back.challenger) == (16 / 20, 4 / 20) and back.verdict == "worse"
    assert {(t.view, t.subgroup.dimension, t.subgroup.value, t.positives, t.negatives) for t in j.too_few} == \
        {(v, "sex", "female", 5, 0) for v in ("malignant", "melanoma")}
    assert not j.passed and any(r.startswith("melanoma sensitivity (site back): the challenger is worse")
                                for r in j.reasons())
