"""A bundle's predictions in several processes: one per GPU where there are enough, else CPU
processes that share the machine's cores, for ``lesionlens evaluate`` and ``predict`` over large
sets (``--devices N``).

The images are a memory-mapped array (the decoded-image cache, or the decoded files written to one):
each process opens it, loads the bundle itself, predicts its contiguous share of the rows and writes
its logits to a file; the shares are joined in order. The result is the one-process result, up to
the rounding of a different thread count.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

from lesionlens.data.images import Preprocessing
from lesionlens.inference import load_classifier, load_model, predict_logits
from lesionlens.training import allocator


def bundle_logits(model: torch.nn.Module, bundle: Path, images: np.ndarray, pre: Preprocessing,
                  rows: np.ndarray | None, tta: str, processes: int = 1, regression: bool = False,
                  progress: bool = False) -> np.ndarray:
    """The logits of ``model`` (the network of ``bundle``) for ``images[rows]``: in this process, or in
    ``processes`` processes that each load ``bundle``."""
    if processes > 1:
        return logits_in_processes(bundle, images, rows, tta, processes, regression)
    return predict_logits(model, images, pre, rows, tta=tta, progress=progress)


def logits_in_processes(bundle: Path, images: np.ndarray, rows: np.ndarray | None, tta: str,
                        processes: int, regression: bool = False) -> np.ndarray:
    """The bundle's logits (a regression bundle's standardised outputs) for ``images[rows]``, computed by
    ``processes`` processes (spawned; each loads the bundle from ``bundle``)."""
    rows = np.arange(len(images)) if rows is None else np.asarray(rows)
    if len(rows) == 0:
        from lesionlens.bundle.card import read_card

        return np.zeros((0, len(read_card(bundle, verify=False).classes)), np.float32)
    processes = max(1, min(processes, len(rows)))
    with tempfile.TemporaryDirectory(prefix="lesionlens-shards-") as tmp:
        tmp = Path(tmp)
        source = getattr(images, "filename", None)
        if source is None:  # decoded in memory: write it where the other processes can map it
            source = tmp / "images.npy"
            np.save(source, np.ascontiguousarray(images))
        shares = np.array_split(rows, processes)
        threads = max(1, (os.cpu_count() or 1) // processes)
        with allocator.inherited():  # the processes run on this one's jemalloc / tcmalloc
            mp.spawn(_predict_share, args=(str(bundle), str(source), shares, tta, str(tmp), threads, regression),
                     nprocs=processes, join=True)
        return np.concatenate([np.load(tmp / f"logits-{rank}.npy") for rank in range(processes)])


def device_for(rank: int, processes: int) -> torch.device:
    """GPU ``rank`` when there is one per process, else the CPU."""
    if torch.cuda.is_available() and torch.cuda.device_count() >= processes:
        return torch.device("cuda", rank)
    return torch.device("cpu")


def _predict_share(rank: int, bundle: str, source: str, shares: list[np.ndarray], tta: str, tmp: str,
                   threads: int, regression: bool) -> None:
    from lesionlens.bundle.card import read_card

    torch.set_num_threads(threads)
    allocator.prepare()  # LESIONLENS_ALLOCATOR=glibc: glibc told to keep freed memory
    card = read_card(bundle)
    model = (load_model(card) if regression else load_classifier(card)).to(device_for(rank, len(shares)))
    images = np.load(source, mmap_mode="r")
    logits = predict_logits(model, images, card.preprocessing, shares[rank], tta=tta)
    np.save(Path(tmp) / f"logits-{rank}.npy", logits)
