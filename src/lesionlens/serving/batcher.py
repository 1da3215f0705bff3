"""Group concurrent requests' images into one model call, off the event loop.

Requests put their images on a queue and await a future. One task takes the first waiting
request, gathers more until ``max_batch_size`` images or ``max_wait_ms`` have passed, and runs the
model in a worker thread; while that call runs, new requests queue up and form the next batch, so
under load batches grow by themselves and an idle server adds at most ``max_wait_ms``.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class _Job:
    x: np.ndarray  # k x 3 x H x W
    future: asyncio.Future


class MicroBatcher:
    def __init__(self, run: Callable[[np.ndarray], tuple[np.ndarray, ...]], executor: Executor,
                 max_batch_size: int, max_wait_ms: float):
        self._run = run
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.images = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def submit(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """The model's outputs for the rows of ``x``, computed in some batch."""
        job = _Job(x, asyncio.get_running_loop().create_future())
        await self._queue.put(job)
        return await job.future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            size = len(jobs[0].x)
            deadline = loop.time() + self.max_wait
            while size < self.max_batch_size:
                try:
                    job = self._queue.get_nowait() if self.max_wait <= 0 else \
                        await asyncio.wait_for(self._queue.get(), max(0.0, deadline - loop.time()))
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                jobs.append(job)
                size += len(job.x)
            await self._run_jobs(loop, jobs)

    async def _run_jobs(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        x = np.concatenate([j.x for j in jobs]) if len(jobs) > 1 else jobs[0].x
        try:
            outputs = await loop.run_in_executor(self._executor, self._run, x)
        except Exception as e:  # pragma: no cover - a model failure goes to every waiting request
            log.exception("model call failed")
            for j in jobs:
                if not j.future.done():
                    j.future.set_exception(e)
            return
        self.batches += 1
        self.images += len(x)
        start = 0
        for j in jobs:
            end = start + len(j.x)
            if not j.future.done():  # its client may have gone away
                j.future.set_result(tuple(None if o is None else o[start:end] for o in outputs))
            start = end
