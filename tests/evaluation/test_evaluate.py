"""Evaluating a bundle on data other than its own: class alignment, label views, split choice."""

from __future__ import annotations

import pytest

from lesionlens.bundle.card import read_card
from lesionlens.config import load_config
from lesionlens.evaluation.bundles import evaluate_bundle
from lesionlens.training.fit import train


@pytest.fixture(scope="module")
def malignant_bundle(tmp_path_factory):
    from helpers import COLOURS, write_image

    root = tmp_path_factory.mktemp("ham")
    lines = ["lesion_id,image_id,dx,dx_type,age,sex,localization"]
    for n in range(42):
        dx = ("mel", "nv", "bcc", "akiec", "bkl", "df", "vasc")[n % 7]
        write_image(root / "images" / f"ISIC_{n:07d}.jpg", COLOURS.get(dx, (100, 100, 100)), seed=n)
        lines.append(f"HAM_{n},ISIC_{n:07d},{dx},histo,50,male,back")
    (root / "HAM10000_metadata.csv").write_text("\n".join(lines) + "\n")
    cfg = load_config(overrides={"data.path": str(root), "data.labels": "malignant", "model.name": "tiny_cnn",
                                 "model.pretrained": False, "model.image_size": 32, "train.epochs": 1,
                                 "train.batch_size": 8})
    out = tmp_path_factory.mktemp("run") / "b"
    train(cfg, out, progress=False)
    return root, read_card(out)


def test_a_binary_bundle_is_evaluated_through_its_label_view(malignant_bundle, tmp_path):
    root, card = malignant_bundle
    assert card.classes == ["benign", "malignant"]
    written = evaluate_bundle(card, root, tmp_path / "all", split="all", progress=False, allow_leakage=True).written
    ev, out = written.ev, written.folder
    assert ev.classes == ["benign", "malignant"] and len(ev.y_true) == 42
    assert int(ev.y_true.sum()) == 18  # mel, bcc, akiec: 3 of every 7
    assert (out / "metrics.json").is_file()


def test_auto_split_on_own_data_is_the_validation_split(malignant_bundle):
    root, card = malignant_bundle
    written = evaluate_bundle(card, root, split="auto", progress=False).written
    ev, out = written.ev, written.folder
    assert len(ev.y_true) == card.data["data"]["counts"]["val"]["benign"] + card.data["data"]["counts"]["val"]["malignant"]
    assert out == card.path / "evaluations" / f"{root.name}-own-val"


def test_missing_partition_is_a_clear_error(malignant_bundle, tmp_path):
    root, card = malignant_bundle
    with pytest.raises(ValueError, match="no 'test' partition"):
        evaluate_bundle(card, root, tmp_path / "x", split="test", progress=False)
