"""A bundle's outputs on images, torch-free: calibrated probabilities, penultimate embeddings and
the image-quality check, computed with the bundle's ONNX model (the runtime the server answers with).

The embedding is the global average of the last feature maps (the input of the linear head), which
the export keeps for class-activation maps; a bundle exported without them has no embeddings, and
the monitor then runs every test but the embeddings' one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesionlens.data.images import ImageDecodeError, normalize, preprocess_image
from lesionlens.quality.image import assess_encoded
from lesionlens.serving.runtime import BundleModel

BATCH = 32


class MonitorError(ValueError):
    """Something the monitor cannot work with (a reference, a bundle, a store); the message says what
    and where."""


@dataclass(frozen=True)
class ModelOutputs:
    probabilities: np.ndarray  # N x C, calibrated by the card's temperature
    embeddings: np.ndarray | None  # N x D, the averaged last feature maps (None without them)
    flagged: np.ndarray  # N bool: the image-quality check found a problem (all False when not checked)

    def __len__(self) -> int:
        return len(self.probabilities)


def compute_outputs(model: BundleModel, sources: Sequence[str | Path | bytes], names: Sequence[str] | None = None,
                    check_quality: bool = True, batch_size: int = BATCH,
                    progress: Callable[[int, int], None] | None = None) -> ModelOutputs:
    """The outputs on each image in ``sources`` (files or encoded bytes). ``names`` say which image
    failed in an error (default: the file paths). ``progress(done, total)`` is called after each batch."""
    names = [str(s) if not isinstance(s, bytes) else f"image {i}" for i, s in enumerate(sources)] \
        if names is None else list(names)
    pre = model.preprocessing
    probs, embeddings, flagged = [], [], []
    for start in range(0, len(sources), batch_size):
        batch = []
        for source, name in zip(sources[start:start + batch_size], names[start:start + batch_size]):
            try:
                data = source if isinstance(source, bytes) else Path(source).read_bytes()
                batch.append(preprocess_image(data, pre))
                flagged.append(bool(assess_encoded(data)) if check_quality else False)
            except (OSError, ImageDecodeError) as e:
                raise MonitorError(f"{name}: cannot read the image: {e}") from e
        out = model.run(normalize(np.stack(batch), pre), features=True)
        probs.append(model.rule.probabilities(out.logits))
        if out.features is not None:
            embeddings.append(out.features.mean(axis=(2, 3), dtype=np.float64).astype(np.float32))
        if progress is not None:
            progress(min(start + batch_size, len(sources)), len(sources))
    c = len(model.classes)
    return ModelOutputs(np.concatenate(probs) if probs else np.zeros((0, c)),
                        np.concatenate(embeddings) if embeddings else None,
                        np.asarray(flagged, dtype=bool))
