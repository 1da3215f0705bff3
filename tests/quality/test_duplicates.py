"""Exact and near duplicates: planted copies are found, distinct images are not paired."""

from __future__ import annotations

import io

import numpy as np
import pytest
from helpers import textured
from PIL import Image, ImageEnhance

from lesionlens.quality.duplicates import (
    HASH_THRESHOLD,
    embedding_pairs,
    exact_groups,
    hash_distances,
    hash_pairs,
)
from lesionlens.quality.fingerprint import dihedral_phashes, pixel_digest


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


# No crop: a perceptual hash does not survive one (2% off each side of this image moves it 40 bits;
# benchmarks/near_duplicates.py measures it on HAM10000). Cropped copies are the embeddings' job.
ALTERATIONS = {
    "jpeg 60": lambda img: _jpeg(img, 60),
    "resize 0.5": lambda img: img.resize((img.width // 2, img.height // 2), Image.Resampling.BICUBIC),
    "resize 1.5": lambda img: img.resize((img.width * 3 // 2, img.height * 3 // 2), Image.Resampling.BICUBIC),
    "quarter turn": lambda img: img.transpose(Image.Transpose.ROTATE_90),
    "mirror": lambda img: img.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "transpose": lambda img: img.transpose(Image.Transpose.TRANSPOSE),
    "brightness +20%": lambda img: ImageEnhance.Brightness(img).enhance(1.2),
    "brightness -20%": lambda img: ImageEnhance.Brightness(img).enhance(0.8),
}


def _distance(a: np.ndarray, b: np.ndarray) -> int:
    hashes = np.stack([dihedral_phashes(a), dihedral_phashes(b)])
    return int(hash_distances(hashes, np.array([0]), np.array([1]))[0, 0])


@pytest.mark.parametrize("name", ALTERATIONS)
def test_an_altered_copy_is_within_the_threshold(name):
    original = Image.fromarray(textured(1, 200))
    copy = ALTERATIONS[name](original)
    assert _distance(np.asarray(original), np.asarray(copy)) <= HASH_THRESHOLD


def test_the_hashes_are_imagehash_phash_of_each_view():
    """imagehash is the oracle: the batched DCT gives its 256-bit pHash of each of the 8 views."""
    import imagehash

    from lesionlens.quality.fingerprint import DIHEDRAL, HASH_SIDE

    rgb = textured(7, 120)
    small = Image.fromarray(rgb).convert("L").resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS)
    ours = {"".join(f"{int(w):016x}" for w in view) for view in dihedral_phashes(rgb)}
    theirs = {str(imagehash.phash(small if t is None else small.transpose(t), hash_size=16)) for t in DIHEDRAL}
    assert ours == theirs and len(ours) == 8
    assert "".join(f"{int(w):016x}" for w in dihedral_phashes(rgb)[0]) == str(imagehash.phash(small, hash_size=16))


def test_distinct_images_are_not_paired_and_copies_are():
    images = [textured(s, 128) for s in range(40)]
    images.append(np.asarray(ALTERATIONS["quarter turn"](_jpeg(Image.fromarray(images[5]), 70))))  # 40: copy of 5
    hashes = np.stack([dihedral_phashes(i) for i in images])
    pairs = hash_pairs(hashes)
    assert [(p.a, p.b) for p in pairs] == [(5, 40)]
    # the distance is symmetric and every block size gives the same pairs
    assert [(p.a, p.b, p.score) for p in hash_pairs(hashes, block=7)] == [(p.a, p.b, p.score) for p in pairs]


def test_exact_duplicates_are_identical_decoded_pixels():
    a = textured(1, 64)
    b = a.copy()
    c = a.copy()
    c[0, 0, 0] ^= 1  # one bit of one pixel
    digests = [pixel_digest(x) for x in (a, textured(2, 64), b, c)]
    assert exact_groups(digests) == [[0, 2]]
    assert pixel_digest(a) != pixel_digest(a.reshape(32, 128, 3))  # same bytes, other shape


def test_embedding_pairs_are_mutual_nearest_neighbours_above_the_threshold():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 16))
    x[7] = x[3] + rng.normal(0, 0.05, 16)  # 3 and 7: the same lesion
    pairs = embedding_pairs(x, threshold=0.9)
    assert [(p.a, p.b) for p in pairs] == [(3, 7)] and pairs[0].score > 0.99
    assert embedding_pairs(x, threshold=0.99999) == []
