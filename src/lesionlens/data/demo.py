"""A small synthetic data set, so the tool runs out of the box where no real images are at hand.

Three kinds of drawn "lesions" on a skin-coloured background: a round dark spot, an irregular
spot with a variegated border, and a pale pink spot. It exercises every step (reading a class
folder, caching, training, evaluating, predicting); its figures say nothing about dermoscopy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

DEMO_CLASSES = ("round_dark", "irregular", "pale")


def _draw(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    skin = np.array([225, 180, 150]) + rng.normal(0, 12, 3)
    pixels = np.clip(skin + rng.normal(0, 6, (size, size, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(img)
    cx, cy = size / 2 + rng.normal(0, size / 12, 2)
    r = size * rng.uniform(0.18, 0.3)
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    if kind == "round_dark":
        radii = r * (1 + rng.normal(0, 0.03, len(angles)))
        colour = tuple(int(c) for c in np.array([95, 60, 40]) + rng.normal(0, 10, 3))
    elif kind == "irregular":
        radii = r * (1 + 0.3 * np.sin(3 * angles + rng.uniform(0, 6)) + rng.normal(0, 0.12, len(angles)))
        colour = tuple(int(c) for c in np.array([70, 45, 45]) + rng.normal(0, 12, 3))
    else:
        radii = r * (1 + rng.normal(0, 0.05, len(angles)))
        colour = tuple(int(c) for c in np.array([205, 120, 120]) + rng.normal(0, 10, 3))
    points = [(cx + rr * np.cos(a), cy + rr * np.sin(a)) for rr, a in zip(radii, angles)]
    draw.polygon(points, fill=colour)
    if kind == "irregular":  # blue-grey blotches, as in regression structures
        for _ in range(3):
            x, y = cx + rng.normal(0, r / 3), cy + rng.normal(0, r / 3)
            s = r * rng.uniform(0.15, 0.3)
            draw.ellipse((x - s, y - s, x + s, y + s), fill=(110, 110, 140))
    return img.filter(ImageFilter.GaussianBlur(size / 96))


def make_demo_dataset(root: Path, per_class: int = 80, size: int = 96, seed: int = 0) -> Path:
    """Write ``root/<class>/<class>_NNN.jpg`` (skipped when already complete); returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for kind in DEMO_CLASSES:
        folder = root / kind
        if folder.is_dir() and len(list(folder.glob("*.jpg"))) == per_class:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            _draw(kind, size, rng).save(folder / f"{kind}_{i:03d}.jpg", quality=92)
    return root
