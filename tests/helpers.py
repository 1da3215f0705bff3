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
