"""Small photos and predictions for the case-store tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from lesionlens.cases.images import clean_image


def jpeg_bytes(seed: int = 0, size: tuple[int, int] = (64, 48), exif: bytes | None = None) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90, **({"exif": exif} if exif else {}))
    return out.getvalue()


def clean(seed: int = 0):
    return clean_image(jpeg_bytes(seed), "JPEG")


DIGEST = "d1" * 32  # a model digest (sha256 hex)


def prediction(top: str = "mel", p: float = 0.7, classes=("mel", "nv", "bcc"), digest: str | None = DIGEST) -> dict:
    rest = (1 - p) / (len(classes) - 1)
    probs = {c: (p if c == top else rest) for c in classes}
    malignant = sum(v for c, v in probs.items() if c in ("mel", "bcc"))
    return {"top_class": top, "top_probability": p, "probabilities": probs,
            "decision": {"malignant": {"score": malignant, "positive": malignant >= 0.5,
                                       "rule": {"criterion": "specificity", "threshold": 0.5}}},
            "model": {"name": "tiny", "architecture": "tiny", "version": "v1", "runtime": "test", "digest": digest}}
