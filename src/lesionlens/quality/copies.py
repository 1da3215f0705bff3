"""Altered copies found by CNN feature maps, compared over the 8 dihedral views.

A perceptual hash does not survive a crop of a few per cent of a dermoscopy image; a CNN's feature
map at stride 32 does (and survives resizing, JPEG and brightness), but not a quarter turn or a
mirror. So each image is squashed to a small square, its 8 dihedral views (4 quarter turns, each
mirrored or not) go through the network, and each view is described by its feature map pooled to a
GRID x GRID grid and scaled to unit length. Two images are as close as the closest view of one to
the upright view of the other (as the hash does): the 8 views of a turned or mirrored copy are the
8 views of the original in another order, so nothing of the turn or mirror remains.

    image -> S x S square -> 8 views -> feature map (stride 32) -> GRID x GRID average -> L2

Globally pooled features averaged over the 8 views (exactly invariant, one vector per image) were
tried first and confused distinct lesions sooner: in a scratch comparison at 96 px (40 HAM10000
images x 5 cropped copies among 400 other lesions), the share of true pairs above the closest
false pair was 0.76 for them and 0.93 for these 3 x 3 grids. Dermoscopy images are alike once
their layout is pooled away.

Copies are pairs whose similarity is at least ``COPY_THRESHOLD``; that is far stricter than the
"possibly the same lesion" cosine of ordinary embeddings (duplicates.EMBEDDING_THRESHOLD).
"""

from __future__ import annotations

import numpy as np

from lesionlens.quality.duplicates import Pair

# Side of the square the views are taken of: 8 forward passes per image, so kept small.
COPY_SIZE = 96
GRID = 3  # cells per side of the pooled feature map (96 px at stride 32 is 3 x 3)
# Similarity (cosine of the closest views) at or above which two images are called altered copies.
# Chosen for precision on benchmarks/copies.py's small planted set with ImageNet EfficientNet-Lite0
# (100 HAM10000 images x 5 copies: JPEG 60-90, resize 0.5-1.5x, crop up to 10%, a quarter turn
# and/or mirror, brightness +-20%, among 1,000 other lesions; 1,500 true pairs): at 0.93 recall
# 0.837, precision 0.999 (1 false pair); at 0.92 0.903 / 0.994 (8); at 0.91 0.943 / 0.977 (34).
# Among 2,000 other lesions: 0.93 gives 0.837 / 0.998 (3), 0.92 0.903 / 0.985 (21). False pairs
# grow with the square of the number of images, hence the stricter threshold. At the size
# (500 x 5 among the other 5,484 lesions, 7,500 true pairs): 0.93 gives 0.842 / 0.996 (28).
COPY_THRESHOLD = 0.93


def dihedral_views(x):
    """B x C x S x S -> 8B x C x S x S: the 4 quarter turns of x, then those of its mirror."""
    import torch

    mirrored = x.flip(-1)
    return torch.cat([torch.rot90(v, k, (-2, -1)) for v in (x, mirrored) for k in range(4)])


def feature_map(model, x):
    """The stride-32 feature map before the last stage: an EfficientNet / MobileNet (timm) stops
    one block stage early, where the map still tells one lesion from another; other models give
    ``forward_features``."""
    if hasattr(model, "conv_stem") and hasattr(model, "blocks"):
        return model.blocks[:-1](model.bn1(model.conv_stem(x)))
    return model.forward_features(x)


def copy_descriptors(model, images: np.ndarray, pre, batch_size: int = 32, grid: int = GRID) -> np.ndarray:
    """N x 8 x D float16 unit vectors: the pooled feature map of each dihedral view of each of
    ``images`` (N x S x S x 3 uint8, square: a quarter turn keeps the shape); view 0 upright."""
    import torch
    import torch.nn.functional as F

    from lesionlens.data.transforms import to_input

    if images.ndim != 4 or images.shape[1] != images.shape[2]:
        raise ValueError(f"square N x S x S x 3 images expected, got {images.shape}")
    model = model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.array(images[start:start + batch_size]))  # a copy: the cache is read-only
            x = to_input(batch.permute(0, 3, 1, 2), pre, channels_last=False)
            f = F.adaptive_avg_pool2d(feature_map(model, dihedral_views(x)).float(), grid)
            f = f.reshape(8, len(x), -1).transpose(0, 1)
            out.append((f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)).numpy().astype(np.float16))
    return np.concatenate(out) if out else np.zeros((0, 8, 0), np.float16)


def copy_similarity(descriptors: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """len(rows) x len(columns): the largest cosine between any view of a row image and the
    upright view of a column image."""
    a = np.asarray(descriptors[rows], dtype=np.float32)  # r x 8 x D
    b = np.asarray(descriptors[columns, 0], dtype=np.float32)  # c x D
    return (a @ b.T).max(axis=1)


def copy_pairs(descriptors: np.ndarray, threshold: float = COPY_THRESHOLD, valid: np.ndarray | None = None,
               block: int = 256) -> list[Pair]:
    """Every pair (a < b) whose copy similarity, either way round, is at least ``threshold``. Not
    only mutual nearest neighbours: an image with five copies forms fifteen pairs, and all count."""
    descriptors = np.asarray(descriptors, dtype=np.float32)  # once, not per block
    n = len(descriptors)
    ok = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    index = np.flatnonzero(ok)
    pairs = []
    for start in range(0, len(index), block):
        rows = index[start:start + block]
        columns = index[start:]
        sim = np.maximum(copy_similarity(descriptors, rows, columns),
                         copy_similarity(descriptors, columns, rows).T)
        for r, c in zip(*np.nonzero(sim >= threshold)):
            a, b = int(rows[r]), int(columns[c])
            if a < b:
                pairs.append(Pair(a, b, round(float(sim[r, c]), 4)))
    return pairs
