"""The tiny trained and exported bundle of the serving tests (also used by scripts/check_serve_install.sh)."""

from __future__ import annotations

from pathlib import Path

from helpers import COLOURS, write_image


def make_exported_bundle(root: Path) -> Path:
    """Train tiny_cnn for 2 epochs on three colour classes (named as diagnoses, so the malignant /
    melanoma views exist), then export it to ONNX with the check on its validation images."""
    from lesionlens.config import load_config
    from lesionlens.export.onnx import export_bundle
    from lesionlens.training.fit import train

    data = root / "images"
    for c, colour in COLOURS.items():
        for i in range(12):
            write_image(data / c / f"{c}_{i}.jpg", colour, seed=i, size=48)
    cfg = load_config(overrides={
        "data.path": str(data), "data.num_workers": 0, "data.cache_dir": str(root / "cache"),
        "model.name": "tiny_cnn", "model.pretrained": False, "model.image_size": 32,
        "train.epochs": 2, "train.batch_size": 8, "train.warmup_epochs": 0.0, "train.lr": 0.01,
    })
    bundle = root / "bundle"
    train(cfg, bundle, progress=False)
    export_bundle(bundle)
    return bundle
