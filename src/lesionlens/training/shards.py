"""Each process's share of an epoch under DDP: disjoint shares that together are the one-process epoch.

Training: every process draws the epoch's order the single process would (the shuffle, or the
balanced sampler's draws, from the same seeded generator), cuts it into global batches of
``train.batch_size`` images and takes its own slice of each. The processes' batches together are the
one-process batch, so N processes with the same seed and global batch take the steps one process
takes, up to the order of floating-point sums, batch-norm statistics (per process unless
``train.sync_batchnorm``) and the random draws of augmentation and dropout, which are per process.
Validation: process r scores rows r, r + N, r + 2N, ...; :func:`unshard` puts the gathered results
back in the rows' order, so every metric is computed once, on the whole validation set.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sized

import numpy as np
from torch.utils.data import Sampler


class GlobalBatchShard(Sampler[int]):
    """Process ``rank``'s slice of every global batch of the epoch order ``order`` yields."""

    def __init__(self, order: Iterable[int] | Sized, rank: int, world: int, global_batch: int, drop_last: bool):
        if global_batch % world:
            raise ValueError(f"a global batch of {global_batch} images cannot be shared out equally among {world} "
                             "processes")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not one of the {world} processes")
        self.order, self.rank, self.world = order, rank, world
        self.global_batch, self.local_batch, self.drop_last = global_batch, global_batch // world, drop_last

    def _rest(self, n: int) -> int:
        return 0 if self.drop_last else n % self.global_batch

    def __len__(self) -> int:
        n = len(self.order)
        rest = self._rest(n)
        share = len(np.array_split(np.arange(rest), self.world)[self.rank]) if rest else 0
        return (n // self.global_batch) * self.local_batch + share

    def __iter__(self) -> Iterator[int]:
        # Take as many indices as one process's loader takes: with drop_last it stops after the last
        # full batch, leaving the sampler suspended (a RandomSampler run to its end draws once more from
        # its generator, which would change every later epoch's order).
        n = len(self.order)
        full = n - n % self.global_batch
        epoch = [int(i) for i in itertools.islice(self.order, full if self.drop_last else n)]
        lo, hi = self.rank * self.local_batch, (self.rank + 1) * self.local_batch
        for start in range(0, full, self.global_batch):
            yield from epoch[start + lo:start + hi]
        if self._rest(len(epoch)):
            # a last, short global batch (kept only when the whole set is one batch): shared out as
            # evenly as it goes; every process needs at least one image of it (checked before training)
            yield from (int(i) for i in np.array_split(np.asarray(epoch[full:]), self.world)[self.rank])


class StridedShard(Sampler[int]):
    """Rows ``rank``, ``rank + world``, ... of ``n``: each validation row is scored by one process, once."""

    def __init__(self, n: int, rank: int, world: int):
        self.rows = range(rank, n, world)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[int]:
        return iter(self.rows)


def unshard(parts: list[np.ndarray], n: int) -> np.ndarray:
    """The strided shares of processes 0, 1, ... (as :class:`StridedShard` deals them) back in row order."""
    world = len(parts)
    positions = np.concatenate([np.arange(r, n, world) for r in range(world)])
    stacked = np.concatenate(parts)
    if len(stacked) != n:
        raise ValueError(f"the processes returned {len(stacked)} rows for a validation set of {n}")
    out = np.empty_like(stacked)
    out[positions] = stacked
    return out
