"""Is one photograph usable? Blur, exposure, information, size and shape, with reasons a person reads.

Torch-, pandas- and scikit-learn-free on purpose (NumPy and Pillow only): the server calls
:func:`assess_image` when a case is submitted, and a phone app shows each problem's ``message``.

Every measure is taken on a working copy whose longer side is at most ``WORKING_SIDE`` pixels,
so the thresholds do not depend on the camera's resolution. The thresholds were chosen on the 5,984
HAM10000 images and on degraded copies of 500 of them (benchmarks/quality_thresholds.py prints the
table; the figures are quoted beside each threshold below).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

# Measures are taken at this longer side: the 600 x 450 HAM10000 images become 256 x 192.
WORKING_SIDE = 256

# Sharpness = variance of the 4-neighbour Laplacian of the grey image (0-255) at the working size,
# divided by the grey image's own variance (so that a low-contrast but sharp image is not "blurry").
# HAM10000 (5,984 images): 0.1st percentile 0.0075, 1st 0.0135, median 0.090. The same images
# blurred (Gaussian, radius 4 px at 600 px): median 0.0026, 95th percentile 0.013. Dermoscopy is
# smooth, so the two overlap; 0.0075 flags about 1 HAM10000 image in 1,000 and most blurred copies.
BLUR_THRESHOLD = 0.0075
# Mean grey level (0-255). HAM10000: 0.1st percentile 85.5, 1st 106. At 30% of their brightness,
# 99% of them are below 60.5. 60 flags no HAM10000 image.
DARK_THRESHOLD = 60.0
# HAM10000: 99.9th percentile 220. At 180% brightness the median is 234. 225 flags about 1 HAM10000
# image in 1,000.
LIGHT_THRESHOLD = 225.0
# Standard deviation of the grey level: HAM10000's 0.1st percentile is 7.4, its 1st 9.7; at 10% of
# their contrast the median is 2.7 and the 99th percentile 6.3.
LOW_CONTRAST_THRESHOLD = 6.0
# Entropy of the grey-level histogram, in bits (8 at most): HAM10000's 0.1st percentile is 4.4;
# at 10% contrast the median is 2.9.
LOW_ENTROPY_THRESHOLD = 3.5
# The smaller side of the original file. The models see 128 to 224 pixels: a smaller photograph
# is upsampled and its detail invented.
MIN_SIDE = 128
# Longer side / shorter side. HAM10000 is 1.33 throughout; cameras give 1.33-1.78 (2.17 for a
# 19.5:9 phone screen grab). Above 2.5 the square input squashes the lesion badly.
MAX_ASPECT = 2.5


@dataclass(frozen=True)
class ImageProblem:
    """One reason an image is unusable: a stable ``code`` for programs, a ``message`` for people,
    the measured ``value`` and the ``threshold`` it crossed."""

    code: str  # blurry, too_dark, too_light, low_information, too_small, odd_aspect
    message: str
    value: float
    threshold: float


MESSAGES = {
    "blurry": "too blurry: retake the photo holding the camera still, with the lesion in focus",
    "too_dark": "too dark: retake the photo with more light",
    "too_light": "too bright: retake the photo with less light or without the flash glare",
    "low_information": "almost nothing visible: retake the photo with the lesion filling the picture",
    "too_small": "too small: send the original photo, not a thumbnail",
    "odd_aspect": "unusual shape: send the whole photo, not a cut-out strip",
}
CODES = tuple(MESSAGES)


@dataclass(frozen=True)
class ImageMeasures:
    """The figures behind the assessment, at the working size."""

    sharpness: float  # var(Laplacian) / var(grey)
    brightness: float  # mean grey, 0-255
    contrast: float  # standard deviation of grey
    entropy: float  # bits of the grey histogram
    width: int  # the original's
    height: int


def working_copy(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` with its longer side reduced to ``WORKING_SIDE`` (never enlarged), as grey float32."""
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    scale = WORKING_SIDE / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.BILINEAR)
    return np.asarray(img.convert("L"), dtype=np.float32)


def measure_image(rgb: np.ndarray, original_size: tuple[int, int] | None = None) -> ImageMeasures:
    """The quality figures of an H x W x 3 uint8 image; ``original_size`` (width, height) is the
    file's own size when ``rgb`` was already reduced (default: ``rgb``'s)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 image, got {rgb.shape} {rgb.dtype}")
    width, height = original_size if original_size is not None else (rgb.shape[1], rgb.shape[0])
    grey = working_copy(rgb)
    variance = float(grey.var())
    edges = laplacian(grey)
    # under 3 x 3 pixels there is no Laplacian: no focus to judge (such images are too_small anyway)
    sharpness = float(edges.var()) / variance if variance > 1e-6 and edges.size else 0.0
    counts = np.bincount(grey.astype(np.uint8).ravel(), minlength=256).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    entropy = float(-(p * np.log2(p)).sum())
    return ImageMeasures(sharpness, float(grey.mean()), float(np.sqrt(variance)), entropy, int(width), int(height))


def laplacian(grey: np.ndarray) -> np.ndarray:
    """The 4-neighbour Laplacian of the interior pixels (empty for an image under 3 x 3)."""
    return (grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1])


def low_information(m: ImageMeasures) -> bool:
    """Nearly uniform: too little contrast or too few grey levels to judge (or hash) the image."""
    return m.contrast < LOW_CONTRAST_THRESHOLD or m.entropy < LOW_ENTROPY_THRESHOLD


def problems_of(m: ImageMeasures) -> list[ImageProblem]:
    """The problems the figures show, in the order of ``CODES``."""
    found = []

    def add(code: str, value: float, threshold: float) -> None:
        found.append(ImageProblem(code, MESSAGES[code], round(value, 4), threshold))

    # A flat image has no edges to judge focus by: it is reported as low information, not blurry.
    if not low_information(m) and m.sharpness < BLUR_THRESHOLD:
        add("blurry", m.sharpness, BLUR_THRESHOLD)
    if m.brightness < DARK_THRESHOLD:
        add("too_dark", m.brightness, DARK_THRESHOLD)
    if m.brightness > LIGHT_THRESHOLD:
        add("too_light", m.brightness, LIGHT_THRESHOLD)
    if m.contrast < LOW_CONTRAST_THRESHOLD:
        add("low_information", m.contrast, LOW_CONTRAST_THRESHOLD)
    elif m.entropy < LOW_ENTROPY_THRESHOLD:
        add("low_information", m.entropy, LOW_ENTROPY_THRESHOLD)
    if min(m.width, m.height) < MIN_SIDE:
        add("too_small", min(m.width, m.height), MIN_SIDE)
    if max(m.width, m.height) / max(1, min(m.width, m.height)) > MAX_ASPECT:
        add("odd_aspect", max(m.width, m.height) / max(1, min(m.width, m.height)), MAX_ASPECT)
    return found


def assess_image(rgb: np.ndarray, original_size: tuple[int, int] | None = None) -> list[ImageProblem]:
    """What is wrong with a photograph (an empty list when nothing is): ``rgb`` is H x W x 3 uint8,
    ``original_size`` the file's (width, height) when ``rgb`` is a reduced copy."""
    return problems_of(measure_image(rgb, original_size))


def assess_encoded(data: bytes) -> list[ImageProblem]:
    """:func:`assess_image` of an encoded photo (JPEG or PNG bytes, already upright: a stored case's
    file). A JPEG is decoded straight at about the working size (the decoder scales by 2, 4 or 8:
    three times faster); the server's cases and the monitor's reference images are both checked here."""
    with Image.open(io.BytesIO(data)) as img:
        size = img.size
        scale = WORKING_SIDE / max(size)
        if img.format == "JPEG" and scale < 1:
            img.draft("RGB", (max(1, round(size[0] * scale)), max(1, round(size[1] * scale))))
        rgb = np.asarray(img.convert("RGB"))
    return assess_image(rgb, size)
