"""What identifies an image's content: a digest of its decoded pixels (exact copies) and perceptual
hashes under the 8 symmetries of the square (altered copies).

A plain perceptual hash does not survive a quarter turn or a mirror image, and dermoscopy has no up:
each image gets the pHash (imagehash's, 256 bits: 16 x 16 frequencies of a 64 x 64 grey square) of
each of its 8 dihedral views, and two images are compared by the smallest distance between any view
of one and the upright view of the other. 256 bits rather than the usual 64: dermoscopy images are
alike at 8 x 8 frequencies (a dark spot on skin), and among 8,484 HAM10000 images and altered copies
1,232 pairs of different lesions were within 4 of 64 bits (benchmarks/near_duplicates.py).

Two sources of pixels: :func:`scan_files` decodes every file at full resolution (``lesionlens
check``: exact pixels, the original size and the image-quality figures in the same pass);
:func:`fingerprint_arrays` hashes already decoded arrays (the decoded-image cache that training
reads anyway, which keeps the leakage check of every ``train`` cheap).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.fftpack
from PIL import Image

from lesionlens.data.images import ImageDecodeError, load_rgb
from lesionlens.quality.image import ImageMeasures, low_information, measure_image

# The 8 symmetries of the square, as PIL transposes; the first is the image itself. (The hashes
# take them as NumPy quarter turns and mirror images, in another order; only the set matters.)
DIHEDRAL = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270,
            Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.TRANSPOSE,
            Image.Transpose.TRANSVERSE)
HASH_SIZE = 16  # pHash frequencies per side: 16 x 16 = 256 bits
HASH_SIDE = 4 * HASH_SIZE  # pHash's own working size (imagehash's highfreq_factor 4)
HASH_WORDS = HASH_SIZE * HASH_SIZE // 64


def pixel_digest(rgb: np.ndarray) -> str:
    """sha256 of the decoded pixels and their shape: equal for copies however they were encoded
    losslessly (PNG vs BMP, metadata stripped), unequal after any change of a pixel."""
    rgb = np.ascontiguousarray(rgb)
    return hashlib.sha256(repr(rgb.shape).encode() + rgb.tobytes()).hexdigest()


def dihedral_phashes(rgb: np.ndarray) -> np.ndarray:
    """The 256-bit pHash of each of the 8 dihedral views of ``rgb`` (8 x 4 uint64, view 0 upright).

    The image is reduced once to pHash's 64 x 64 grey square and the views are taken of that, which
    equals hashing each view of the full image (the reduction commutes with the symmetries). View 0
    is exactly ``imagehash.phash(image, hash_size=16)``; the 8 views go through one batched DCT."""
    small = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").convert("L")
    pixels = np.asarray(small.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS))
    views = np.stack([np.rot90(pixels, k) for k in range(4)] + [np.rot90(pixels, k)[:, ::-1] for k in range(4)])
    dct = scipy.fftpack.dct(scipy.fftpack.dct(views, axis=1), axis=2)[:, :HASH_SIZE, :HASH_SIZE]
    bits = dct > np.median(dct.reshape(len(views), -1), axis=1)[:, None, None]
    return np.packbits(bits.reshape(len(views), -1), axis=1).view(">u8").astype(np.uint64)


@dataclass
class Fingerprints:
    """Per image (in table order): pixel digest, 8 dihedral hashes, original size; None / zeros
    where the image could not be read (listed in ``failures``)."""

    digests: list[str | None]
    hashes: np.ndarray  # N x 8 x HASH_WORDS uint64
    sizes: list[tuple[int, int] | None]  # (width, height) of the file
    measures: list[ImageMeasures | None] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.digests)

    @property
    def valid(self) -> np.ndarray:
        return np.array([d is not None for d in self.digests], dtype=bool)

    @property
    def hashable(self) -> np.ndarray:
        """Images whose perceptual hash means something: readable and not nearly uniform. The hash of
        a flat image is noise, and two flat images would be paired by chance (on the built-in
        synthetic data set, 3 pairs of different drawings were within the threshold, all flat)."""
        return self.valid & np.array([m is not None and not low_information(m) for m in self.measures], dtype=bool)


def scan_files(paths: list[Path], workers: int | None = None, progress: bool = False) -> Fingerprints:
    """Decode every file at full resolution once: pixel digest, dihedral hashes, size and quality."""
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    n = len(paths)
    digests: list[str | None] = [None] * n
    hashes = np.zeros((n, len(DIHEDRAL), HASH_WORDS), dtype=np.uint64)
    sizes: list[tuple[int, int] | None] = [None] * n
    measures: list[ImageMeasures | None] = [None] * n
    failures: dict[int, str] = {}

    def one(i: int) -> None:
        try:
            img = load_rgb(paths[i])
        except (ImageDecodeError, OSError) as e:
            failures[i] = str(e).split(": ", 1)[-1]
            return
        rgb = np.asarray(img)
        digests[i] = pixel_digest(rgb)
        sizes[i] = img.size
        hashes[i] = dihedral_phashes(rgb)
        measures[i] = measure_image(rgb)

    from tqdm.auto import tqdm

    with ThreadPoolExecutor(workers) as pool:
        for _ in tqdm(pool.map(one, range(n)), total=n, desc="scanning images", unit="img", leave=False,
                      disable=None if progress else True):
            pass
    return Fingerprints(digests, hashes, sizes, measures, failures)


def fingerprint_arrays(images: np.ndarray, rows: np.ndarray) -> Fingerprints:
    """Digests and hashes of already decoded images ``images[rows]`` (N x H x W x 3, e.g. the cache)."""
    rows = np.asarray(rows)
    hashes = np.zeros((len(rows), len(DIHEDRAL), HASH_WORDS), dtype=np.uint64)
    digests: list[str | None] = []
    measures: list[ImageMeasures | None] = []
    for k, r in enumerate(rows):
        rgb = np.asarray(images[r])
        digests.append(pixel_digest(rgb))
        hashes[k] = dihedral_phashes(rgb)
        measures.append(measure_image(rgb))
    return Fingerprints(digests, hashes, [None] * len(rows), measures)
