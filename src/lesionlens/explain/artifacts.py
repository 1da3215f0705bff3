"""Synthetic acquisition artifacts for shortcut tests: a surgical-ink mark, a ruler, a colour patch,
drawn outside the lesion.

Dermoscopic images carry marks that correlate with the diagnosis: surgical ink on naevi raised a
commercial CNN's melanoma scores (Winkler et al. 2019); rulers and colour calibration patches go
with particular clinics and diagnoses in ISIC data (Bissoto et al. 2019/2020). Each kind here is
drawn with PIL on a canvas ``supersample`` times larger and reduced with a box filter, so edges are
anti-aliased, then alpha-blended into the image:
- ``ink``: a blue-violet skin-marker stroke along a curve, or a row of dots along one;
- ``ruler``: a light strip with black ticks (a longer one every fifth) and, from 150 px up, digits;
- ``patch``: a small square or disc of four saturated calibration colours in a white rim.

Placement keeps the lesion untouched: with a mask, the artifact lies wholly outside the mask dilated
by ``margin`` (a fraction of the side); without one, outside a central disc of radius
``central_radius``. Shapes, orientations and positions are drawn from a seeded generator (same seed,
same pictures); when no attempt fits, at full size or at 3/4 or 1/2 of it, the image gets no artifact
and the caller counts it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy.ndimage import distance_transform_edt
from scipy.signal import fftconvolve

ARTIFACT_KINDS = ("ink", "ruler", "patch")
INK = ((88, 52, 150), (70, 45, 160), (105, 60, 140))  # blue-violet surgical skin markers
CALIBRATION = ((230, 30, 35), (30, 170, 60), (35, 70, 220), (250, 210, 30))  # red, green, blue, yellow


@dataclass(frozen=True)
class ArtifactSettings:
    central_radius: float = 0.3  # no mask: stay outside this disc (fraction of the side; covers 28% of the image)
    margin: float = 0.03  # with a mask: stay this far from the lesion (fraction of the side; 7 px at 224)
    attempts: int = 6  # shapes and orientations tried at each of the sizes 1, 3/4 and 1/2
    supersample: int = 4  # drawing scale before the anti-aliasing reduction


def allowed_region(height: int, width: int, mask: np.ndarray | None = None,
                   settings: ArtifactSettings = ArtifactSettings()) -> np.ndarray:
    """Bool H x W: where an artifact may go (outside the dilated lesion, or the central disc)."""
    side = min(height, width)
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != (height, width):
            raise ValueError(f"the mask is {mask.shape[1]}x{mask.shape[0]} but the image is {width}x{height}")
        if not mask.any():
            return np.ones((height, width), bool)
        return distance_transform_edt(~mask) > settings.margin * side
    yy, xx = np.mgrid[:height, :width]
    r2 = (yy - (height - 1) / 2) ** 2 + (xx - (width - 1) / 2) ** 2
    return r2 > (settings.central_radius * side) ** 2


def draw_sprite(kind: str, side: int, rng: np.random.Generator, scale: float = 1.0,
                supersample: int = 4) -> np.ndarray:
    """One artifact of ``kind`` sized for an image of ``side`` pixels: h x w x 4 float RGBA in [0, 1].
    The drawing functions get the canvas size and ``px``, one target pixel on the canvas, so thin
    parts keep a visible width on small images."""
    if kind not in _DRAW:
        raise ValueError(f"unknown artifact kind {kind!r}; choose one of {', '.join(ARTIFACT_KINDS)}")
    k = supersample
    canvas = _DRAW[kind](side * scale * k, k, rng)
    small = canvas.reduce(k) if k > 1 else canvas  # box filter: the anti-aliasing
    return np.asarray(small, np.float64) / 255.0


def _ink(size: float, px: float, rng: np.random.Generator) -> Image.Image:
    length = 0.3 * size
    width = max(1.5 * px, 0.025 * size)  # >= 1.5 px however small the image
    box = int(length + 4 * width)
    img = Image.new("RGBA", (box, box), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    colour = (*INK[rng.integers(len(INK))], int(255 * rng.uniform(0.8, 0.95)))
    angle = rng.uniform(0, np.pi)
    bend = rng.uniform(-0.35, 0.35) * length
    t = np.linspace(-0.5, 0.5, 40)[:, None]
    along = np.array([np.cos(angle), np.sin(angle)])
    across = np.array([-np.sin(angle), np.cos(angle)])
    points = box / 2 + t * length * along + (1 - 4 * t ** 2) * bend * across  # a quadratic arc
    if rng.random() < 0.5:
        draw.line([tuple(p) for p in points], fill=colour, width=int(round(width)), joint="curve")
    else:
        for p in points[:: int(rng.integers(6, 10))]:
            r = width * rng.uniform(0.9, 1.4)
            draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=colour)
    return img.crop(img.getbbox() or (0, 0, 1, 1))


def _ruler(size: float, px: float, rng: np.random.Generator) -> Image.Image:
    length, breadth = 0.55 * size, max(0.09 * size, 4 * px)
    img = Image.new("RGBA", (int(length), int(breadth)), (236, 233, 222, 255))
    draw = ImageDraw.Draw(img)
    step = max(2.2 * px, size / 45)  # >= 2.2 px: ticks that stay apart
    line = max(1, int(round(0.6 * px)))
    digits = size / px >= 150  # readable digits only on images of 150 px and more
    font = ImageFont.load_default(size=max(8, int(0.35 * breadth))) if digits else None
    for i, x in enumerate(np.arange(step, length - step / 2, step)):
        tall = i % 5 == 4
        draw.line([(x, 0), (x, breadth * (0.55 if tall else 0.3))], fill=(15, 15, 15, 255), width=line)
        if tall and digits:
            draw.text((x, breadth * 0.6), str((i + 1) // 5), fill=(15, 15, 15, 255), font=font, anchor="mt")
    return img.rotate(float(rng.uniform(0, 180)), resample=Image.Resampling.BICUBIC, expand=True)


def _patch(size: float, px: float, rng: np.random.Generator) -> Image.Image:
    d = max(0.12 * size, 6 * px)
    rim = max(0.08 * d, px)
    box = int(d + 2 * rim)
    img = Image.new("RGBA", (box, box), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    order = rng.permutation(len(CALIBRATION))
    colours = [(*CALIBRATION[i], 255) for i in order]
    if rng.random() < 0.5:
        draw.rectangle([0, 0, box - 1, box - 1], fill=(250, 250, 250, 255))
        half = d / 2
        for q, colour in enumerate(colours):
            x0, y0 = rim + (q % 2) * half, rim + (q // 2) * half
            draw.rectangle([x0, y0, x0 + half, y0 + half], fill=colour)
    else:
        draw.ellipse([0, 0, box - 1, box - 1], fill=(250, 250, 250, 255))
        for q, colour in enumerate(colours):
            draw.pieslice([rim, rim, box - 1 - rim, box - 1 - rim], 90 * q, 90 * (q + 1), fill=colour)
    return img.rotate(float(rng.uniform(0, 90)), resample=Image.Resampling.BICUBIC, expand=True)


_DRAW = {"ink": _ink, "ruler": _ruler, "patch": _patch}


def add_artifact(image: np.ndarray, kind: str, rng: np.random.Generator, mask: np.ndarray | None = None,
                 settings: ArtifactSettings = ArtifactSettings()) -> np.ndarray | None:
    """``image`` (H x W x 3 uint8) with one artifact of ``kind`` blended in where
    :func:`allowed_region` allows, or None when no attempt fits there."""
    h, w = image.shape[:2]
    forbidden = (~allowed_region(h, w, mask, settings)).astype(np.float64)
    for scale in (1.0, 0.75, 0.5):
        for _ in range(settings.attempts):
            sprite = draw_sprite(kind, min(h, w), rng, scale, settings.supersample)
            sh, sw = sprite.shape[:2]
            if sh > h or sw > w:
                continue
            footprint = sprite[..., 3] > 0.02
            # forbidden pixels under the footprint, for every top-left corner at once
            clash = fftconvolve(forbidden, footprint[::-1, ::-1].astype(np.float64), mode="valid")
            free = np.argwhere(clash < 0.5)
            if len(free) == 0:
                continue
            y, x = free[rng.integers(len(free))]
            out = image.astype(np.float64)
            alpha = sprite[..., 3:4]
            region = out[y:y + sh, x:x + sw]
            out[y:y + sh, x:x + sw] = region * (1 - alpha) + 255.0 * sprite[..., :3] * alpha
            return np.clip(out.round(), 0, 255).astype(np.uint8)
    return None


def add_artifacts(images: np.ndarray, kind: str, masks: np.ndarray | None = None, seed: int = 0,
                  settings: ArtifactSettings = ArtifactSettings()) -> tuple[np.ndarray, np.ndarray]:
    """Each image (N x H x W x 3 uint8) with an artifact of ``kind``, and which got one (N bool; the
    others come back unchanged). Image i draws from the generator seeded ``(seed, kind, i)``, so
    the result does not depend on which other images are in the batch."""
    out, placed = np.array(images, copy=True), np.zeros(len(images), bool)
    for i in range(len(images)):
        rng = np.random.default_rng([seed, ARTIFACT_KINDS.index(kind) if kind in ARTIFACT_KINDS else 99, i])
        drawn = add_artifact(images[i], kind, rng, None if masks is None else masks[i], settings)
        if drawn is not None:
            out[i], placed[i] = drawn, True
    return out, placed
