"""Small images and tables for the tests, written into tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, colour: tuple[int, int, int] = (200, 120, 90), size: int = 40,
                seed: int = 0, fmt: str | None = None) -> Path:
    """A small noisy image of one dominant colour; its noise depends on the seed and the colour, so
    images of different classes are never copies of each other (the leakage check would see them)."""
    rng = np.random.default_rng([seed, *colour])
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


def textured(seed: int, size: int = 96) -> np.ndarray:
    """A photograph-like RGB image (uint8), distinct per seed: detail at every scale, stronger at
    the coarse ones (as in photographs), and room for +-20% brightness without clipping."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((size, size, 3))
    for cells, amplitude in ((4, 40), (8, 24), (16, 14), (32, 8)):
        layer = rng.normal(0, amplitude, (cells, cells, 3))
        lo, hi = layer.min(), layer.max()
        scaled = Image.fromarray(((layer - lo) / (hi - lo) * 255).astype(np.uint8), "RGB")
        scaled = np.asarray(scaled.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64)
        pixels += scaled / 255 * (hi - lo) + lo
    return np.clip(115 + pixels, 0, 255).astype(np.uint8)


def photo(seed: int, size: int = 160) -> np.ndarray:
    """:func:`textured` with the fine grain of skin and hair: sharp enough for the quality check."""
    grain = np.random.default_rng([seed, size]).normal(0, 8, (size, size, 3))
    return np.clip(textured(seed, size) * 0.8 + 20 + grain, 0, 255).astype(np.uint8)


def save(pixels: np.ndarray, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path, **kwargs)
    return path


def lesion_image(seed: int, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A skin-coloured noisy image with one dark elliptical "lesion" at a random place, and its
    mask (bool): a segmentation task a tiny U-Net learns in a few epochs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(0.3, 0.7, 2) * size
    ry, rx = rng.uniform(0.12, 0.3, 2) * size
    mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    skin = np.array([205, 160, 135]) + rng.normal(0, 12, (size, size, 3))
    dark = np.array([95, 60, 45]) + rng.normal(0, 12, (size, size, 3))
    return np.clip(np.where(mask[..., None], dark, skin), 0, 255).astype(np.uint8), mask


def save_mask(mask: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(mask, np.uint8) * 255, "L").save(path)
    return path


def write_lesion_pairs(root: Path, n: int = 40, size: int = 48) -> Path:
    """root/images/*.jpg and root/masks/*_mask.png: ``n`` generated lesions (a folder pair)."""
    for i in range(n):
        image, mask = lesion_image(i, size)
        save(image, root / "images" / f"case_{i:03d}.jpg", quality=95)
        save_mask(mask, root / "masks" / f"case_{i:03d}_mask.png")
    return root


def tiny_run_config(data, **train):
    """A tiny_cnn run on 32-px images for the training tests: 2 epochs of batches of 8, no warm-up;
    ``train`` overrides train.* settings."""
    from lesionlens.config import load_config

    overrides = {"data.path": str(data), "data.num_workers": 0, "model.name": "tiny_cnn",
                 "model.pretrained": False, "model.image_size": 32, "train.epochs": 2, "train.batch_size": 8,
                 "train.warmup_epochs": 0.0, "train.lr": 0.01}
    overrides.update({f"train.{k}": v for k, v in train.items()})
    return load_config(overrides=overrides)
