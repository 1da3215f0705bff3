"""The card: one typed schema, read with a clear error for anything it cannot use, written once by
training and updated section by section afterwards, with the change logged."""

from __future__ import annotations

import json

import pytest

from lesionlens.bundle.card import BUNDLE_FORMAT, UPDATABLE, read_card, update_card
from lesionlens.bundle.schema import BundleError


def _edit(bundle, change) -> None:
    path = bundle / "card.json"
    card = json.loads(path.read_text())
    change(card)
    path.write_text(json.dumps(card))


def test_every_field_read_outside_training_has_a_typed_accessor(bundle_copy):
    card = read_card(bundle_copy)
    assert card.format == BUNDLE_FORMAT and card.updates[-1]["by"] == "lesionlens export"
    assert card.architecture == "tiny_cnn" and card.model.head == "linear" and card.model.parameters > 0
    assert card.classes == ["bcc", "mel", "nv"] and card.preprocessing.image_size == 32
    assert card.training.epochs_run == 2 and card.training.config["train"]["epochs"] == 2
    assert card.dataset.n_images == 36 and card.dataset.counts["val"]["mel"] >= 2
    assert 0 <= card.validation.balanced_accuracy <= 1 and card.validation.seen_in_training is False
    assert card.calibration.temperature > 0 and set(card.operating_points) == {"malignant", "melanoma"}
    assert card.onnx.cam.file == "cam_head.npz" and card.onnx.int8 is None
    assert card.rule.temperature == card.calibration.temperature
    assert card.file("split") == bundle_copy / "split.csv" and card.file("nothing") is None
    assert card.version.endswith(card.weights.sha256[:12])


def test_the_kept_epoch_is_named_with_the_rule_that_chose_it(bundle_copy):
    """The summary, the HTML report and the card all say which epoch's weights a bundle holds: the
    best by the monitored score, or, where the validation images were trained on, the last."""
    t = read_card(bundle_copy).training
    assert t.best_epoch in (1, 2) and t.monitor == "val_balanced_accuracy"
    assert read_card(bundle_copy).kept_epoch == f"best epoch {t.best_epoch} by val_balanced_accuracy"

    def trained_on_val(card):
        card["validation"]["seen_in_training"] = True

    _edit(bundle_copy, trained_on_val)
    assert read_card(bundle_copy).kept_epoch == (f"last epoch kept ({t.best_epoch}); the validation images were "
                                                 "trained on too")

    def features(card):
        card["training"] |= {"strategy": "features", "best_epoch": None, "epochs_run": 0}

    _edit(bundle_copy, features)
    assert read_card(bundle_copy).kept_epoch == "no epoch chosen (strategy features)"


def test_a_format_1_card_still_loads(bundle_copy):
    def to_format_1(card):
        card["format"] = "lesionlens-bundle/1"
        del card["updates"]

    _edit(bundle_copy, to_format_1)
    card = read_card(bundle_copy)
    assert card.updates == [] and card.architecture == "tiny_cnn"
    updated = update_card(bundle_copy, {"inference": {"tta": "flips"}}, by="test")
    assert updated.format == BUNDLE_FORMAT and updated.tta == "flips" and len(updated.updates) == 1


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(format="lesionlens-bundle/99"), "newer than this LesionLens reads.*upgrade LesionLens"),
    (lambda c: c.update(format="someone-else/1"), "unknown bundle format 'someone-else/1'"),
    (lambda c: c["model"].pop("architecture"), "model: missing 'architecture'"),
    (lambda c: c["training"].update(epochs_run="two"), "training.epochs_run must be"),
    (lambda c: c.pop("classes"), "the card has no 'classes'"),
])
def test_a_card_that_cannot_be_used_is_refused_with_the_file_and_the_field(bundle_copy, change, message):
    _edit(bundle_copy, change)
    with pytest.raises(BundleError, match=message) as e:
        read_card(bundle_copy)
    assert str(bundle_copy / "card.json") in str(e.value)


def test_an_update_replaces_one_section_keeps_the_rest_and_is_logged(bundle_copy):
    before = read_card(bundle_copy)
    after = update_card(bundle_copy, {"inference": {"tta": "d4"}}, by="lesionlens calibrate")
    assert after.tta == "d4"
    for kept in ("model", "training", "data", "validation", "weights", "versions", "created", "onnx"):
        assert after.data[kept] == before.data[kept], kept  # the training environment's versions stay
    last = after.updates[-1]
    assert last["by"] == "lesionlens calibrate" and last["sections"] == ["inference"] and "python" in last["versions"]
    assert len(after.updates) == len(before.updates) + 1


def test_the_training_record_cannot_be_updated(bundle_copy):
    assert "training" not in UPDATABLE
    with pytest.raises(BundleError, match=r"sections \['training', 'weights'\] are written once, by training"):
        update_card(bundle_copy, {"training": {}, "weights": {}, "onnx": None}, by="test")
    assert read_card(bundle_copy).training.epochs_run == 2
