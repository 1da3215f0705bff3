"""Shadow mode (``serve --registry DIR --shadow``): the registry's challenger scores the requests the
champion answered, after the answer is sent; its answers are stored beside stored cases
(``shadow_answers``) and never returned.

The champion's answers come first: shadow work waits in a bounded queue and is dropped (and
counted) when the queue is full, so under overload shadow mode costs the champion no memory and
no queueing, only the CPU the challenger uses while there is room. One task takes what is
waiting (up to a batch), decodes it with the challenger's own preprocessing and runs it as one
call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from lesionlens.data.images import normalize
from lesionlens.serving.decode import decode_upload
from lesionlens.serving.errors import ApiError
from lesionlens.serving.served import Served
from lesionlens.serving.service import answers
from lesionlens.serving.settings import ServeSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Job:
    name: str
    data: bytes
    champion_top: str  # the champion's top class, for the agreement count
    case_id: str | None  # the stored case, or None when nothing was stored


@dataclass
class ShadowCounts:
    """What shadow mode did since the server started (in /v1/model)."""

    queued: int = 0
    answered: int = 0
    agreed: int = 0  # the challenger's top class was the champion's
    stored: int = 0
    dropped: int = 0  # the queue was full: overload
    skipped: int = 0  # no challenger was loaded when the job's turn came
    failed: int = 0

    def to_dict(self) -> dict:
        return {**self.__dict__, "agreement": round(self.agreed / self.answered, 4) if self.answered else None}


class ShadowScorer:
    def __init__(self, challenger: Callable[[], Served | None], settings: ServeSettings, decode_pool: Executor,
                 keep: Callable[[str, float, list[tuple[str, dict]]], Awaitable[int]] | None = None):
        """``challenger()`` is the loaded challenger or None; ``keep(digest, latency_ms, [(case id,
        answer), ...])`` stores answers to stored cases and returns how many it stored (the case
        store's, :meth:`CaseService.keep_shadow`; None without a case store)."""
        self.challenger = challenger
        self.settings = settings
        self.decode_pool = decode_pool
        self.keep = keep
        self.queue: asyncio.Queue[_Job] = asyncio.Queue(settings.shadow_queue)
        self.counts = ShadowCounts()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def submit(self, name: str, data: bytes, answer: dict, case_id: str | None = None) -> None:
        """Queue the challenger's turn at a request the champion answered; never waits."""
        if self.challenger() is None:
            return
        try:
            self.queue.put_nowait(_Job(name, data, answer["top_class"], case_id))
            self.counts.queued += 1
        except asyncio.QueueFull:
            self.counts.dropped += 1

    def describe(self) -> dict:
        challenger = self.challenger()
        return self.counts.to_dict() | {"challenger": challenger.digest if challenger else None,
                                        "waiting": self.queue.qsize(), "queue_limit": self.settings.shadow_queue}

    async def _loop(self) -> None:
        while True:
            jobs = [await self.queue.get()]
            while len(jobs) < self.settings.max_batch_size and not self.queue.empty():
                jobs.append(self.queue.get_nowait())
            try:
                await self._score(jobs)
            except Exception:  # shadow work never takes the server down
                self.counts.failed += len(jobs)
                log.exception("shadow scoring failed for %d requests", len(jobs))

    async def _score(self, jobs: list[_Job]) -> None:
        served = self.challenger()
        if served is None:
            self.counts.skipped += len(jobs)
            return
        with served.in_use():
            started = time.perf_counter()
            loop = asyncio.get_running_loop()
            pre = served.model.preprocessing
            decoded = await asyncio.gather(*(loop.run_in_executor(self.decode_pool, decode_upload, j.data, pre,
                                                                  self.settings.max_pixels, j.name) for j in jobs),
                                           return_exceptions=True)
            good = [(j, d) for j, d in zip(jobs, decoded) if not isinstance(d, BaseException)]
            self.counts.failed += len(jobs) - len(good)  # the champion decoded it; only another size could fail
            for d in decoded:
                if isinstance(d, BaseException) and not isinstance(d, ApiError):
                    log.error("shadow decoding failed: %r", d)
            if not good:
                return
            logits, _, _ = await served.infer(normalize(np.stack([d for _, d in good]), pre))
            latency_ms = (time.perf_counter() - started) * 1000 / len(good)
            rows = answers(served.model, logits)
        self.counts.answered += len(rows)
        self.counts.agreed += sum(a["top_class"] == j.champion_top for (j, _), a in zip(good, rows))
        kept = [(j.case_id, a) for (j, _), a in zip(good, rows) if j.case_id is not None]
        if kept and self.keep is not None:
            self.counts.stored += await self.keep(served.digest, latency_ms, kept)
