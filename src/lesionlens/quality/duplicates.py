"""Pairs of images that are one picture (exact or altered copies) or one lesion (close embeddings).

Hashes find copies, embeddings find the same lesion: on known same-lesion pairs of HAM10000, a
64-bit pHash ranked the partner first for 1 pair in 8, ImageNet embeddings for 7 in 8 (issue 13).
Both searches work in blocks of rows, so memory stays at a few tens of MB for any N; the work is
N^2 (6,000 images: 36 million comparisons, about a second).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Largest pHash distance (of 256 bits, smallest over the 8 dihedral views) at which two images are
# called altered copies. Chosen on the planted set of benchmarks/near_duplicates.py: 500 HAM10000
# images x 5 altered copies (JPEG 60-90, resize 0.5-1.5x, a quarter turn and/or mirror, brightness
# +-20%) among the other 5,484 HAM10000 lesions, 7,500 true pairs. Without cropping, at 24 bits:
# recall 0.9996, pair precision 1.000 (0 false pairs); at 32: recall 1.000, precision 0.994 (42).
# With a crop of up to 10% added to every copy, a perceptual hash fails: at 24 bits recall 0.076
# (precision 1.000), at 48 recall 0.340 (precision 0.978). Cropped copies are left to the network's
# feature maps (quality.copies), where a network is given.
HASH_THRESHOLD = 24

# Cosine similarity of embeddings at or above which a mutual nearest-neighbour pair is reported as
# possibly the same lesion, for a person to review (benchmarks/same_lesion.py).
EMBEDDING_THRESHOLD = 0.92


@dataclass(frozen=True)
class Pair:
    a: int  # positions in the table, a < b
    b: int
    score: float  # hash distance in bits, or cosine similarity


def exact_groups(digests: list[str | None]) -> list[list[int]]:
    """Positions sharing one pixel digest, each group sorted, groups with two or more members."""
    by_digest: dict[str, list[int]] = {}
    for i, d in enumerate(digests):
        if d is not None:
            by_digest.setdefault(d, []).append(i)
    return sorted((g for g in by_digest.values() if len(g) > 1), key=lambda g: g[0])


def hash_distances(hashes: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """len(rows) x len(columns) smallest distance between any dihedral view of a row image and the
    upright view of a column image. The views commute with pHash's reduction, so this is the
    distance of the closest views of the two images either way round (within a bit or two)."""
    a, b = hashes[rows], hashes[columns]  # r x 8 x W, c x 8 x W
    return np.bitwise_count(a[:, :, None, :] ^ b[None, None, :, 0, :]).sum(axis=-1, dtype=np.int16).min(axis=1)


def hash_pairs(hashes: np.ndarray, threshold: int = HASH_THRESHOLD, valid: np.ndarray | None = None,
               block: int = 128) -> list[Pair]:
    """Every pair (a < b) whose hash distance is at most ``threshold``."""
    n = len(hashes)
    ok = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    index = np.flatnonzero(ok)
    pairs = []
    for start in range(0, len(index), block):
        rows = index[start:start + block]
        columns = index[start:]  # the upper triangle only
        d = hash_distances(hashes, rows, columns)
        for r, c in zip(*np.nonzero(d <= threshold)):
            a, b = int(rows[r]), int(columns[c])
            if a < b:
                pairs.append(Pair(a, b, float(d[r, c])))
    return pairs


def cross_hash_pairs(query: np.ndarray, reference: np.ndarray, threshold: int = HASH_THRESHOLD,
                     block: int = 256) -> list[Pair]:
    """Pairs (query position a, reference position b) of two different sets within ``threshold``."""
    both = np.concatenate([query, reference])
    columns = np.arange(len(query), len(both))
    pairs = []
    for start in range(0, len(query), block):
        rows = np.arange(start, min(start + block, len(query)))
        d = hash_distances(both, rows, columns)
        for r, c in zip(*np.nonzero(d <= threshold)):
            pairs.append(Pair(int(rows[r]), int(c), float(d[r, c])))
    return pairs


def embedding_pairs(embeddings: np.ndarray, threshold: float = EMBEDDING_THRESHOLD,
                    valid: np.ndarray | None = None, block: int = 1024) -> list[Pair]:
    """Mutual nearest neighbours (by cosine similarity) at or above ``threshold``: each image's
    likeliest other view of the same lesion, kept only when the partner picks it back."""
    x = np.asarray(embeddings, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    n = len(x)
    ok = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    best = np.full(n, -1, dtype=np.int64)
    best_sim = np.full(n, -np.inf, dtype=np.float32)
    for start in range(0, n, block):
        sim = x[start:start + block] @ x.T
        sim[np.arange(len(sim)), np.arange(start, start + len(sim))] = -np.inf
        sim[:, ~ok] = -np.inf
        best[start:start + block] = sim.argmax(axis=1)
        best_sim[start:start + block] = sim.max(axis=1)
    pairs = []
    for i in np.flatnonzero(ok):
        j = best[i]
        if i < j and best[j] == i and best_sim[i] >= threshold:
            pairs.append(Pair(int(i), int(j), round(float(best_sim[i]), 4)))
    return pairs
