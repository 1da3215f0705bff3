"""One loaded model as the server runs it: the ONNX model, its digest, the thread that feeds it and
its request batcher.

A request takes the current :class:`Served` once (``with served.in_use():``) and uses only it, so a
model swapped out while the request runs still answers it; a model leaves the server only after
its last user is done (:meth:`Served.retire`). Every answer names the model by its digest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from lesionlens.bundle.card import BundleError
from lesionlens.bundle.registry import bundle_digest
from lesionlens.serving.batcher import MicroBatcher
from lesionlens.serving.runtime import BundleModel
from lesionlens.serving.settings import ServeSettings

log = logging.getLogger(__name__)

RETIRE_WAIT_S = 120.0  # a model leaves at the latest this long after its swap, even if a request still holds it


class Served:
    def __init__(self, model: BundleModel, digest: str, settings: ServeSettings, name: str | None = None):
        self.model = model
        self.digest = digest
        self.name = name or model.card.name  # a registry copy's folder is its digest: the registry knows its name
        # One thread feeds the model: one call already uses every core through ONNX Runtime's
        # intra-op threads. Each model has its own, so a model being retired never holds up another.
        self._pool = ThreadPoolExecutor(1, f"model-{digest[:8]}")
        self.batcher = (MicroBatcher(self._run, self._pool, settings.max_batch_size, settings.max_wait_ms)
                        if settings.batching else None)
        self.users = 0
        self.started = False
        self.stopped = False

    @classmethod
    def load(cls, bundle: str | Path, settings: ServeSettings, expected_digest: str | None = None,
             name: str | None = None) -> Served:
        """Load a bundle and compute its digest (blocking: the server runs it in a thread). A registry
        bundle is named by its digest: ``expected_digest`` is that name, and a bundle whose files do
        not match it was changed after it was registered, and is refused."""
        digest = bundle_digest(bundle)
        if expected_digest is not None and digest != expected_digest:
            raise BundleError(f"{bundle}: its files have digest {digest[:12]}, not {expected_digest[:12]} (its name "
                              "in the registry): it was changed after it was registered; refused")
        model = BundleModel(bundle, int8=settings.int8, threads=settings.resolved_threads())
        return cls(model, digest, settings, name)

    @property
    def short(self) -> str:
        return self.digest[:12]

    async def start(self) -> float:
        """Warm the model up (its first call allocates) and start its batcher; returns the seconds the
        warm-up took. A model takes traffic only after this."""
        if self.started:
            return 0.0
        size = self.model.preprocessing.image_size
        t = time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(self._pool, self._run, np.zeros((1, 3, size, size), np.float32))
        if self.batcher is not None:
            self.batcher.start()
        self.started = True
        return time.perf_counter() - t

    @contextmanager
    def in_use(self) -> Iterator[Served]:
        """Hold the model for one request (or one shadow batch): it is not stopped while held."""
        if self.stopped:
            raise RuntimeError(f"model {self.short} was stopped")  # never: the current model is never stopped
        self.users += 1
        try:
            yield self
        finally:
            self.users -= 1

    async def infer(self, x: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """Logits, feature maps and mask logits (each None where the model has none) for a normalised
        batch, through the batcher when batching."""
        if self.batcher is not None:
            return await self.batcher.submit(x)
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, x)

    async def retire(self) -> None:
        """Stop the model once nothing holds it (requests that started on it finish on it)."""
        deadline = time.monotonic() + RETIRE_WAIT_S
        try:
            while self.users and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            if self.users:
                log.warning("model %s stopped with %d requests still holding it after %.0f s", self.short, self.users,
                            RETIRE_WAIT_S)
        finally:  # also when the server shuts down meanwhile
            await self.stop()

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.batcher is not None:
            await self.batcher.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, x: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        out = self.model.run(x)
        return out.logits, out.features, out.masks

    def info(self) -> dict:
        """The ``model`` object of every answer."""
        card = self.model.card
        return {"name": self.name, "architecture": card.architecture, "version": card.version,
                "runtime": self.model.runtime, "digest": self.digest}
