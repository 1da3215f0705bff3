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


def make_segmentation_bundle(root: Path, task: str = "segmentation", epochs: int = 6, export: bool = True) -> Path:
    """Train a tiny_cnn U-Net (32 px) on generated dark lesions on skin (``task`` segmentation or
    multitask, whose class is the lesion's tone) for ``epochs``, then export it to ONNX with the
    mask check (the probabilities of every pixel, and the cleaned-up masks)."""
    import numpy as np
    import pandas as pd
    from helpers import lesion_image, save, save_mask

    from lesionlens.config import load_config
    from lesionlens.export.onnx import export_bundle
    from lesionlens.training.fit import train

    data = root / "pairs"
    rows = []
    for i in range(48):
        image, mask = lesion_image(i, 48)
        label = "light" if i % 2 else "dark"
        if task == "multitask" and label == "light":  # the class is the lesion's tone: something to learn
            image = np.where(mask[..., None], np.clip(image.astype(int) + 70, 0, 255), image).astype(np.uint8)
        save(image, data / "images" / f"case_{i:03d}.jpg", quality=95)
        save_mask(mask, data / "masks" / f"case_{i:03d}.png")
        rows.append({"image": f"case_{i:03d}", "mask": f"case_{i:03d}.png", "label": label})
    pd.DataFrame(rows).to_csv(data / "cases.csv", index=False)
    cfg = load_config(overrides={
        "data.path": str(data / "cases.csv"), "data.num_workers": 0, "data.cache_dir": str(root / "cache"),
        "train.task": task, "model.name": "tiny_cnn", "model.pretrained": False, "train.strategy": "scratch",
        "model.image_size": 32, "train.epochs": epochs, "train.batch_size": 8, "train.warmup_epochs": 0.0,
        "train.lr": 0.01, "segment.decoder_width": 16, "augment.rotation": 0.0, "augment.zoom": [1.0, 1.0],
    })
    bundle = root / "bundle"
    train(cfg, bundle, progress=False)
    if export:
        export_bundle(bundle)
    return bundle
