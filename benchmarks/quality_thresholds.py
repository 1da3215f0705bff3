"""Where the image-quality thresholds of lesionlens.quality.image come from: the figures of every
HAM10000 image, and of degraded copies of some of them (blurred, darkened, brightened), as percentiles.

    PYTHONPATH=src python benchmarks/quality_thresholds.py --data ../shared/data/ham10000 --degraded 500
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from lesionlens.quality.image import (
    BLUR_THRESHOLD,
    DARK_THRESHOLD,
    LIGHT_THRESHOLD,
    LOW_CONTRAST_THRESHOLD,
    LOW_ENTROPY_THRESHOLD,
    assess_image,
    measure_image,
)

PERCENTILES = (0.1, 1, 5, 50, 95, 99, 99.9)
DEGRADATIONS = {
    "original": lambda img: img,
    "blurred (Gaussian r=4)": lambda img: img.filter(ImageFilter.GaussianBlur(4)),
    "blurred (Gaussian r=2)": lambda img: img.filter(ImageFilter.GaussianBlur(2)),
    "dark (30% brightness)": lambda img: ImageEnhance.Brightness(img).enhance(0.3),
    "dark (40% brightness)": lambda img: ImageEnhance.Brightness(img).enhance(0.4),
    "light (180% brightness)": lambda img: ImageEnhance.Brightness(img).enhance(1.8),
    "flat (10% contrast)": lambda img: ImageEnhance.Contrast(img).enhance(0.1),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/ham10000"))
    ap.add_argument("--degraded", type=int, default=500, help="images given each degradation")
    args = ap.parse_args()
    paths = sorted((args.data / "images").glob("*.jpg"))
    rng = np.random.default_rng(0)
    chosen = set(rng.choice(len(paths), min(args.degraded, len(paths)), replace=False).tolist())

    def one(i: int) -> dict[str, tuple]:
        with Image.open(paths[i]) as f:
            img = f.convert("RGB")
        out = {}
        for name, degrade in DEGRADATIONS.items():
            if name != "original" and i not in chosen:
                continue
            rgb = np.asarray(degrade(img))
            m = measure_image(rgb)
            out[name] = (m.sharpness, m.brightness, m.contrast, m.entropy,
                         frozenset(p.code for p in assess_image(rgb)))
        return out

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, range(len(paths))))
    print(f"thresholds: blur {BLUR_THRESHOLD}, dark {DARK_THRESHOLD}, light {LIGHT_THRESHOLD}, "
          f"contrast {LOW_CONTRAST_THRESHOLD}, entropy {LOW_ENTROPY_THRESHOLD}")
    print(f"{'set':26s} {'n':>5s} {'measure':10s} " + " ".join(f"p{p:<6g}" for p in PERCENTILES) + "  flagged as")
    for name in DEGRADATIONS:
        rows = [r[name] for r in results if name in r]
        flags: dict[str, int] = {}
        for r in rows:
            for code in r[4]:
                flags[code] = flags.get(code, 0) + 1
        flagged = ", ".join(f"{c} {n / len(rows):.1%}" for c, n in sorted(flags.items())) or "nothing"
        for k, measure in enumerate(("sharpness", "brightness", "contrast", "entropy")):
            values = np.array([r[k] for r in rows])
            cells = " ".join(f"{v:<7.4g}" for v in np.percentile(values, PERCENTILES))
            print(f"{name if k == 0 else '':26s} {len(rows) if k == 0 else '':>5} {measure:10s} {cells}"
                  + (f"  {flagged}" if k == 0 else ""))


if __name__ == "__main__":
    main()
