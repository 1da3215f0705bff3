"""Class-activation maps (Zhou et al. 2016) in NumPy, and their overlay as a PNG.

For a network that ends in global average pooling + a linear layer, the logit of class c is
``W[c] . mean(A) + b[c]`` over the last feature maps A, so ``W[c] . A`` at each position is that
position's contribution. Keeping its positive part gives the same map as Grad-CAM on those feature
maps (up to a constant factor); ``lesionlens export`` measures that agreement.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# A perceptually ordered map from dark blue through green and yellow to red (anchors of "turbo").
_ANCHORS = np.array([
    [48, 18, 59], [70, 107, 227], [40, 188, 235], [50, 241, 153],
    [164, 252, 60], [239, 205, 58], [251, 128, 34], [211, 51, 6], [122, 4, 3],
], dtype=np.float64)


def class_activation_maps(features: np.ndarray, weight: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """ReLU(W[c_i] . A_i) for feature maps ``features`` (N x K x h x w), classifier ``weight``
    (C x K) and one class per image; returns N x h x w."""
    n, k, h, w = features.shape
    rows = weight[np.asarray(classes)]  # N x K
    maps = np.einsum("nk,nkp->np", rows.astype(np.float64), features.reshape(n, k, h * w).astype(np.float64))
    return np.maximum(maps, 0.0).reshape(n, h, w)


def colorize(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (H x W) -> H x W x 3 uint8 colours."""
    t = np.clip(values, 0.0, 1.0) * (len(_ANCHORS) - 1)
    lo = np.floor(t).astype(int)
    hi = np.minimum(lo + 1, len(_ANCHORS) - 1)
    frac = (t - lo)[..., None]
    return (_ANCHORS[lo] * (1 - frac) + _ANCHORS[hi] * frac).round().astype(np.uint8)


def overlay_png(image: np.ndarray, cam: np.ndarray, size: int = 320, alpha: float = 0.45) -> bytes:
    """The network's input view (H x W x 3 uint8) enlarged to ``size``, with ``cam`` (scaled to its
    maximum) blended over it; PNG bytes."""
    base = np.asarray(Image.fromarray(image, "RGB").resize((size, size), Image.Resampling.BICUBIC), np.float64)
    top = float(cam.max())
    scaled = cam / top if top > 0 else np.zeros_like(cam)
    heat = Image.fromarray((scaled * 255).astype(np.uint8), "L").resize((size, size), Image.Resampling.BILINEAR)
    colours = colorize(np.asarray(heat, np.float64) / 255.0).astype(np.float64)
    blended = ((1 - alpha) * base + alpha * colours).round().clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(blended, "RGB").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
