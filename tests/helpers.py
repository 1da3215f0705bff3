"""Small images and tables for the tests, written into tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, colour: tuple[int, int, int] = (200, 120, 90), size: int = 40,
                seed: int = 0, fmt: str | None = None) -> Path:
    """A small noisy image of one dominant colour."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path, format=fmt)
    return path


COLOURS = {"mel": (60, 40, 30), "nv": (150, 100, 70), "bcc": (220, 150, 160)}


def write_class_folder(root: Path, per_class: int = 12) -> Path:
    """root/<class>/*.jpg: three classes told apart by colour, ``per_class`` images each."""
    for c, colour in COLOURS.items():
        for i in range(per_class):
            write_image(root / c / f"{c}_{i}.jpg", colour, seed=i)
    return root


def reloaded_matches_saved(bundle: Path):
    """Reload ``bundle`` as a Predictor, predict its validation images from their files, and check
    the probabilities against those its training run saved; returns the predictor and them."""
    import pandas as pd

    from lesionlens.inference import Predictor

    predictor = Predictor(bundle)
    split = pd.read_csv(bundle / "split.csv")
    val = split[split["partition"] == "val"]
    probs, failures = predictor.predict_files(list(val["path"]))
    assert not failures
    saved = pd.read_csv(bundle / "evaluation" / "predictions.csv").set_index("image_id")
    expected = saved.loc[val["image_id"], [f"p_{c}" for c in predictor.classes]].to_numpy()
    assert np.allclose(probs, expected, atol=1e-5)
    return predictor, probs


def without_internet(monkeypatch) -> None:
    """timm's hub answers as it does here without internet: building works, downloading weights fails."""
    import timm

    build = timm.create_model

    def offline(*args, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("no internet")
        return build(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
