"""The torch dataset over preprocessed volumes (with masks for segmentation), and the stack that
holds them in memory.

Volumes are preprocessed once (:func:`lesionlens.data.volumes.preprocess_volume`) into one float32
N x D x H x W array: at the default 32^3 grid a volume is 128 KiB, so a few hundred fit in memory and
no file is opened while training. Items are ``(volume, target)`` for classification and
``(volume, mask, target)`` for segmentation, the batch layouts of
:class:`~lesionlens.training.module.Classifier` and :class:`~lesionlens.training.segment_module.Segmenter`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from lesionlens.data.volume_transforms import VolumeAugment, apply, volume_transform


class Volumes(Dataset):
    """Rows ``rows`` of ``array`` (N x D x H x W float32) with their class indices (or regression
    targets) and, for
    segmentation, masks (aligned with ``rows``); augmented when ``augment`` is given."""

    def __init__(self, array: np.ndarray, rows: np.ndarray, targets: np.ndarray, masks: np.ndarray | None = None,
                 augment: VolumeAugment | None = None, seed: int = 0):
        self.array, self.rows = array, np.asarray(rows, dtype=np.int64)
        targets = np.asarray(targets)  # class indices, or float rows (N x K) for regression
        self.targets = targets.astype(np.float32) if np.issubdtype(targets.dtype, np.floating) \
            else targets.astype(np.int64)
        self.masks = masks
        if len(self.targets) != len(self.rows) or (masks is not None and len(masks) != len(self.rows)):
            raise ValueError(f"{len(self.rows)} volumes, {len(self.targets)} targets and "
                             f"{'no' if masks is None else len(masks)} masks")
        self.augment, self.seed = augment, seed
        self.transform = None if augment is None else volume_transform(augment, seed, masks is not None)
        self._worker: int | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def _reseed_in_worker(self) -> None:
        """A data-loading worker starts with a copy of the parent's random state: give it its own."""
        info = get_worker_info()
        if info is not None and self._worker != info.id and self.transform is not None:
            self.transform.set_random_state(seed=info.seed % 2 ** 32)
            self._worker = info.id

    def __getitem__(self, i: int):
        volume = self.array[self.rows[i]]
        mask = None if self.masks is None else self.masks[i]
        if self.transform is None:
            x = torch.from_numpy(np.array(volume, dtype=np.float32))[None]
            m = None if mask is None else torch.from_numpy(np.array(mask, dtype=np.uint8))[None]
        else:
            self._reseed_in_worker()
            x, m = apply(self.transform, volume, mask)
        target = torch.from_numpy(self.targets[i]) if self.targets.dtype == np.float32 else int(self.targets[i])
        return (x, target) if m is None else (x, m, target)
