"""Near-duplicate detection on a planted set: real HAM10000 images, each with 5 altered copies
(JPEG quality 60-90, resize 0.5-1.5x, crop up to 10%, a quarter turn and/or mirror, brightness
+-20%, all applied together), among the rest of HAM10000 (one image per lesion) as distractors.
Prints recall and pair precision at each pHash distance threshold (256 bits, smallest over the 8
dihedral views, lesionlens.quality.fingerprint) and the threshold the library uses; --max-crop 0
measures the same copies without the crop.

    PYTHONPATH=src python benchmarks/near_duplicates.py --data ../shared/data/ham10000 --planted 500
    PYTHONPATH=src python benchmarks/near_duplicates.py --data ../shared/data/ham10000 --planted 500 --max-crop 0
"""

from __future__ import annotations

import argparse
import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from lesionlens.quality.duplicates import HASH_THRESHOLD, hash_distances
from lesionlens.quality.fingerprint import DIHEDRAL, dihedral_phashes

COPIES = 5
THRESHOLDS = range(8, 81, 8)


def altered(img: Image.Image, rng: np.random.Generator, max_crop: float = 0.10) -> Image.Image:
    """One altered copy: crop, resize, dihedral view, brightness, JPEG."""
    w, h = img.size
    cx, cy = rng.uniform(0, max_crop) * w, rng.uniform(0, max_crop) * h  # up to 10% of each side removed
    left, top = rng.uniform(0, cx), rng.uniform(0, cy)
    img = img.crop((round(left), round(top), round(w - (cx - left)), round(h - (cy - top))))
    scale = rng.uniform(0.5, 1.5)
    img = img.resize((max(8, round(img.width * scale)), max(8, round(img.height * scale))), Image.Resampling.BICUBIC)
    view = DIHEDRAL[int(rng.integers(1, 8))]  # never the upright view: every copy is turned or mirrored
    img = img.transpose(view)
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.8, 1.2))
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=int(rng.integers(60, 91)))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/ham10000"))
    ap.add_argument("--planted", type=int, default=500, help="images given altered copies")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-crop", type=float, default=0.10, help="largest share of each side cropped off")
    args = ap.parse_args()
    paths = sorted((args.data / "images").glob("*.jpg"))
    rng = np.random.default_rng(args.seed)
    planted = set(rng.choice(len(paths), args.planted, replace=False).tolist())
    seeds = rng.integers(0, 2**31, len(paths))
    started = time.perf_counter()

    def one(i: int) -> list[np.ndarray]:
        with Image.open(paths[i]) as f:
            img = f.convert("RGB")
        out = [dihedral_phashes(np.asarray(img))]
        if i in planted:
            r = np.random.default_rng(seeds[i])
            out += [dihedral_phashes(np.asarray(altered(img, r, args.max_crop))) for _ in range(COPIES)]
        return out

    with ThreadPoolExecutor(2) as pool:
        per_image = list(pool.map(one, range(len(paths))))
    hashes = np.stack([h for hs in per_image for h in hs])
    source = np.concatenate([np.full(len(hs), i) for i, hs in enumerate(per_image)])
    hashed = time.perf_counter() - started

    # distances of every pair, accumulated per threshold in blocks
    n, top = len(hashes), max(THRESHOLDS)
    true_hist = np.zeros(top + 1, np.int64)
    false_hist = np.zeros(top + 1, np.int64)
    false_planted_hist = np.zeros(top + 1, np.int64)  # false pairs touching a planted image or copy
    is_planted = np.isin(source, sorted(planted))
    for start in range(0, n, 128):
        rows = np.arange(start, min(start + 128, n))
        cols = np.arange(start, n)
        d = hash_distances(hashes, rows, cols)
        upper = cols[None, :] > rows[:, None]
        same = source[rows][:, None] == source[cols][None, :]
        touch = is_planted[rows][:, None] | is_planted[cols][None, :]
        for hist, mask in ((true_hist, same & upper), (false_hist, ~same & upper),
                           (false_planted_hist, ~same & upper & touch)):
            hist += np.bincount(np.minimum(d[mask], top + 1).ravel(), minlength=top + 2)[:top + 1]
    n_true = args.planted * COPIES * (COPIES + 1) // 2
    print(f"{len(paths)} HAM10000 images, {args.planted} of them with {COPIES} altered copies (crop up to "
          f"{args.max_crop:.0%}): {n} images, "
          f"{n_true} true pairs; hashing {hashed:.0f} s, search {time.perf_counter() - started - hashed:.0f} s")
    print(f"{'threshold':>9s} {'recall':>7s} {'precision':>9s} {'found':>6s} {'false':>6s} "
          f"{'precision (planted only)':>24s}")
    for t in THRESHOLDS:
        found_true = true_hist[:t + 1].sum()
        found_false = false_hist[:t + 1].sum()
        fp_planted = false_planted_hist[:t + 1].sum()
        mark = "  <- library" if t == HASH_THRESHOLD else ""
        print(f"{t:9d} {found_true / n_true:7.4f} {found_true / max(1, found_true + found_false):9.4f} "
              f"{found_true + found_false:6d} {found_false:6d} "
              f"{found_true / max(1, found_true + fp_planted):24.4f}{mark}")


if __name__ == "__main__":
    main()
