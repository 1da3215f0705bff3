"""Decode each image once: a memory-mapped uint8 array of resized images, kept between runs.

On two cores, decoding and resizing JPEGs every epoch would leave the model waiting for data. The
array is keyed by the content of every file (sha256) and by the preprocessing that shapes it (size,
resize mode, interpolation), so editing an image, or training at another size, makes a new entry,
and a second run or a later epoch decodes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock
from tqdm.auto import tqdm

from lesionlens.config import cache_root
from lesionlens.data.images import ImageDecodeError, Preprocessing, preprocess_image
from lesionlens.digest import file_digest

log = logging.getLogger(__name__)

_VERSION = 1  # bump when the decoding itself changes


@dataclass
class DecodedImages:
    array: np.ndarray  # N x H x W x 3 uint8, memory-mapped
    digests: list[str | None]  # sha256 of each file; None where it could not be read
    failures: dict[int, str]  # position -> why it could not be decoded (its row of the array is black)
    path: Path | None = None  # the cache file


def decode_images(paths: list[Path], pre: Preprocessing, cache_dir: str | Path | None = None,
                  workers: int | None = None, progress: bool = True) -> DecodedImages:
    """Every image in ``paths`` at ``pre``'s size, from the cache when it has them."""
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    digests, failures = _digests(paths, workers)
    key = hashlib.sha256(json.dumps({
        "version": _VERSION, "digests": digests, "size": pre.image_size,
        "interpolation": pre.interpolation, "resize": pre.resize,
        # crop-then-classify: the segmenter (by its graph's digest) and the margin shape the images too
        **({"lesion_crop": [pre.lesion_crop.digest, pre.lesion_crop.margin]} if pre.lesion_crop else {}),
    }).encode()).hexdigest()[:32]
    folder = cache_root(cache_dir) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    # Several training processes (DDP) or runs may want the same entry at once: the first decodes,
    # the others wait for it and read it.
    with FileLock(folder / f"{key}.lock"):
        return _read_or_decode(paths, pre, folder / key, digests, failures, workers, progress)


def _read_or_decode(paths: list[Path], pre: Preprocessing, stem: Path, digests: list[str | None],
                    failures: dict[int, str], workers: int, progress: bool) -> DecodedImages:
    data_file, meta_file = stem.with_suffix(".npy"), stem.with_suffix(".json")
    if data_file.is_file() and meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        failures.update({int(k): v for k, v in meta["failures"].items()})
        log.info("read %d decoded images from the cache %s", len(paths), data_file)
        return DecodedImages(np.load(data_file, mmap_mode="r"), digests, failures, data_file)

    tmp = stem.parent / f"{stem.name}.{os.getpid()}.tmp.npy"
    size = pre.image_size
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))

    def decode(i: int) -> None:
        if i in failures:
            return
        try:
            array[i] = preprocess_image(paths[i], pre)
        except ImageDecodeError as e:
            failures[i] = str(e).split(": ", 1)[-1]

    with ThreadPoolExecutor(workers) as pool:
        jobs = pool.map(decode, range(len(paths)))
        for _ in tqdm(jobs, total=len(paths), desc=f"decoding images at {size}px", disable=None if progress else True,
                      unit="img", leave=False):
            pass
    array.flush()
    del array
    meta_file.write_text(json.dumps({"failures": {str(k): v for k, v in failures.items()},
                                     "count": len(paths), "size": size}))
    os.replace(tmp, data_file)
    log.info("decoded %d images at %dpx into the cache %s", len(paths), size, data_file)
    return DecodedImages(np.load(data_file, mmap_mode="r"), digests, failures, data_file)


def _digests(paths: list[Path], workers: int) -> tuple[list[str | None], dict[int, str]]:
    failures: dict[int, str] = {}

    def digest(i: int) -> str | None:
        try:
            return file_digest(paths[i])
        except OSError as e:
            failures[i] = f"cannot read file: {e.strerror or e}"
            return None

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(digest, range(len(paths)))), failures
