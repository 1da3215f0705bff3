"""Altered copies found by CNN feature maps compared over the 8 dihedral views (quality.copies), by the hash, and by either, on the planted set
of benchmarks/near_duplicates.py (HAM10000 images, each planted one with 5 altered copies: JPEG
60-90, resize 0.5-1.5x, crop up to 10%, a quarter turn and/or mirror, brightness +-20%) among
other HAM10000 lesions. Prints recall and pair precision per cosine threshold for the copy
embeddings alone and for their union with the hash (pHash distance <= the library's threshold).

    PYTHONPATH=src python benchmarks/copies.py --weights ../shared/weights --planted 100 --distractors 1000 --sizes 64 96
    PYTHONPATH=src python benchmarks/copies.py --weights ../shared/weights --planted 500
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from near_duplicates import COPIES, altered
from PIL import Image

from lesionlens.data.images import resize_square
from lesionlens.models.registry import create_model, get_spec
from lesionlens.quality.copies import (
    COPY_SIZE,
    COPY_THRESHOLD,
    copy_descriptors,
    copy_similarity,
)
from lesionlens.quality.duplicates import HASH_THRESHOLD, hash_distances
from lesionlens.quality.fingerprint import dihedral_phashes

COSINES = (0.85, 0.88, 0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/ham10000"))
    ap.add_argument("--weights", type=Path, default=Path("../shared/weights"))
    ap.add_argument("--architecture", default="efficientnet_lite0")
    ap.add_argument("--planted", type=int, default=500, help="images given altered copies")
    ap.add_argument("--distractors", type=int, default=None, help="other images (default: all the rest)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[COPY_SIZE])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-crop", type=float, default=0.10)
    args = ap.parse_args()
    torch.set_num_threads(2)
    paths = sorted((args.data / "images").glob("*.jpg"))
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(paths))
    planted = set(order[:args.planted].tolist())
    keep = order if args.distractors is None else order[:args.planted + args.distractors]
    seeds = rng.integers(0, 2**31, len(paths))
    spec = get_spec(args.architecture)
    pres = {s: spec.preprocessing_for(True).resized(s) for s in args.sizes}
    started = time.perf_counter()

    def one(i: int):
        with Image.open(paths[i]) as f:
            img = f.convert("RGB")
        images = [img]
        if i in planted:
            r = np.random.default_rng(seeds[i])
            images += [altered(img, r, args.max_crop) for _ in range(COPIES)]
        return ([dihedral_phashes(np.asarray(m)) for m in images],
                {s: [resize_square(m, p) for m in images] for s, p in pres.items()})

    with ThreadPoolExecutor(2) as pool:
        per_image = list(pool.map(one, sorted(keep.tolist())))
    hashes = np.stack([h for hs, _ in per_image for h in hs])
    source = np.concatenate([np.full(len(hs), k) for k, (hs, _) in enumerate(per_image)])
    is_planted = np.isin(source, [k for k, i in enumerate(sorted(keep.tolist())) if i in planted])
    prepared = time.perf_counter() - started
    n = len(hashes)
    n_true = args.planted * COPIES * (COPIES + 1) // 2
    print(f"{len(keep)} HAM10000 images, {args.planted} with {COPIES} altered copies (crop up to {args.max_crop:.0%}): "
          f"{n} images, {n_true} true pairs; decoding, copies, hashes and squares {prepared:.0f} s")

    for size, pre in pres.items():
        clock = time.perf_counter()
        model = create_model(args.architecture, 2, pretrained=True, weights=args.weights, image_size=size)
        squares = np.stack([q for _, qs in per_image for q in qs[size]])
        emb = copy_descriptors(model, squares, pre)
        embedded = time.perf_counter() - clock
        # per pair: cosine bin, true or not, found by the hash or not, touching a planted image or not
        bins = len(COSINES) + 1
        counts = np.zeros((2, 2, 2, bins), np.int64)  # true, hash hit, touches planted, bin
        for start in range(0, n, 256):
            rows = np.arange(start, min(start + 256, n))
            cols = np.arange(start, n)
            upper = cols[None, :] > rows[:, None]
            sim = np.maximum(copy_similarity(emb, rows, cols), copy_similarity(emb, cols, rows).T)
            hit = hash_distances(hashes, rows, cols) <= HASH_THRESHOLD
            same = source[rows][:, None] == source[cols][None, :]
            touch = is_planted[rows][:, None] | is_planted[cols][None, :]
            b = np.digitize(sim, COSINES)
            for t in (0, 1):
                for h in (0, 1):
                    for p in (0, 1):
                        mask = upper & (same == t) & (hit == h) & (touch == p)
                        counts[t, h, p] += np.bincount(b[mask], minlength=bins)
        searched = time.perf_counter() - clock - embedded
        print(f"\n{args.architecture} at {size} px, closest of 8 dihedral views: embedding {embedded:.0f} s "
              f"({1000 * embedded / n:.0f} ms/image), search {searched:.0f} s")
        hash_true, hash_false = counts[1, 1].sum(), counts[0, 1].sum()
        print(f"hash alone (<= {HASH_THRESHOLD} bits): recall {hash_true / n_true:.4f}, precision "
              f"{hash_true / max(1, hash_true + hash_false):.4f} ({hash_false} false pairs)")
        print(f"{'cosine':>6s} | {'embedding alone':^34s} | {'union with the hash':^34s}")
        print(f"{'':>6s} | {'recall':>7s} {'precision':>9s} {'false':>6s} {'prec planted':>12s} | "
              f"{'recall':>7s} {'precision':>9s} {'false':>6s} {'prec planted':>12s}")
        for k, c in enumerate(COSINES):
            above = slice(k + 1, bins)
            e_true, e_false = counts[1, :, :, above].sum(), counts[0, :, :, above].sum()
            e_false_p = counts[0, :, 1, above].sum()
            u_true = e_true + counts[1, 1, :, :k + 1].sum()
            u_false = e_false + counts[0, 1, :, :k + 1].sum()
            u_false_p = e_false_p + counts[0, 1, 1, :k + 1].sum()
            mark = "  <- library" if abs(c - COPY_THRESHOLD) < 1e-9 else ""
            print(f"{c:6.2f} | {e_true / n_true:7.4f} {e_true / max(1, e_true + e_false):9.4f} {e_false:6d} "
                  f"{e_true / max(1, e_true + e_false_p):12.4f} | {u_true / n_true:7.4f} "
                  f"{u_true / max(1, u_true + u_false):9.4f} {u_false:6d} {u_true / max(1, u_true + u_false_p):12.4f}{mark}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
