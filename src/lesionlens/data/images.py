"""Decode an image file into the RGB square the network sees.

Torch-free on purpose: training (through the cache), ``predict`` and the server all call
:func:`preprocess_image`, so a bundle's preprocessing is applied identically everywhere.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class LesionCrop:
    """Segment, then classify: the image is cut to the box around the lesion a segmentation bundle
    finds (grown by ``margin`` of its side on every side, squared where the image allows) before it
    is resized for the classifier. :mod:`lesionlens.data.crop` does it."""

    segmenter: str  # the segmentation bundle's folder; in a card, relative to the classifier's bundle
    margin: float = 0.15
    digest: str = ""  # sha256 of the segmenter's ONNX graph: a changed segmenter is refused, and keys the cache

    def relative_to(self, folder: Path) -> LesionCrop:
        """The same crop with the segmenter's path relative to ``folder`` where it lies inside it."""
        path = Path(self.segmenter)
        try:
            return LesionCrop(str(path.resolve().relative_to(Path(folder).resolve())), self.margin, self.digest)
        except ValueError:
            return self

    def resolved(self, folder: Path) -> LesionCrop:
        """The same crop with a relative segmenter path taken from ``folder`` (the bundle's)."""
        path = Path(self.segmenter)
        return self if path.is_absolute() else LesionCrop(str(Path(folder) / path), self.margin, self.digest)


@dataclass(frozen=True)
class Preprocessing:
    """How a file becomes the network's input; travels with the weights and with every bundle.

    ``resize="squash"`` scales the whole image to a square (nothing of the lesion is cut off; the
    HAM10000 images in ../shared were made this way); ``"crop"`` keeps the aspect ratio and cuts
    the centre square. ``lesion_crop`` first cuts the image to its lesion (crop-then-classify).
    """

    image_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: Literal["bilinear", "bicubic", "lanczos", "nearest"] = "bicubic"
    resize: Literal["squash", "crop"] = "squash"
    lesion_crop: LesionCrop | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.lesion_crop is None:
            del d["lesion_crop"]  # cards of bundles without it stay as they were
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        crop = d.get("lesion_crop")
        return cls(
            image_size=int(d["image_size"]),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
            interpolation=d.get("interpolation", "bicubic"),
            resize=d.get("resize", "squash"),
            lesion_crop=None if crop is None else LesionCrop(str(crop["segmenter"]), float(crop["margin"]),
                                                             str(crop.get("digest", ""))),
        )

    def resized(self, image_size: int) -> Preprocessing:
        return replace(self, image_size=image_size)


class ImageDecodeError(ValueError):
    """The file is not an image this tool can read; the message says why."""


def load_rgb(source: str | Path | bytes, draft_size: int | None = None,
             max_pixels: int | None = 100_000_000) -> Image.Image:
    """Open ``source`` fully (truncated files fail here, not later) as an upright 8-bit RGB image.

    EXIF orientation is applied; grayscale, palette, CMYK, alpha and 16-bit images are converted.
    ``draft_size`` lets the JPEG decoder scale down by 2/4/8 while decoding, never below that size.
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with Image.open(fp) as img:
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise ImageDecodeError(
                    f"{name}: {img.width}x{img.height} pixels is more than the limit of {max_pixels}"
                )
            if draft_size is not None and img.format == "JPEG":
                img.draft("RGB", (draft_size, draft_size))
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except ImageDecodeError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageDecodeError(f"{name}: cannot decode image: {e}") from e


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        if img.mode == "F":
            top = max(float(a.max()), 1e-12)
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def resize_square(img: Image.Image, pre: Preprocessing) -> np.ndarray:
    """Resize an RGB image to ``pre.image_size`` squared; returns HxWx3 uint8."""
    size = pre.image_size
    resample = _RESAMPLE[pre.interpolation]
    if pre.resize == "crop":
        scale = size / min(img.width, img.height)
        w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
        img = img.resize((w, h), resample)
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
    elif img.size != (size, size):
        img = img.resize((size, size), resample)
    return np.asarray(img, dtype=np.uint8)


def restore_geometry(values: np.ndarray, size: tuple[int, int], pre: Preprocessing, fill: float = 0.0) -> np.ndarray:
    """A per-pixel map on the network's square (S x S, e.g. lesion probabilities) brought back to its
    image's own ``size`` (width, height), undoing :func:`resize_square`'s geometry: "squash" stretches
    it back over the whole image; "crop" puts it where the centre square was cut from and ``fill``s
    the rest, which the network never saw. Bilinear, so a map of values in [0, 1] stays in [0, 1]."""
    size_px = pre.image_size
    values = np.asarray(values, dtype=np.float32)
    if values.shape != (size_px, size_px):
        raise ValueError(f"expected a {size_px} x {size_px} map (the bundle's input size), got {values.shape}")
    width, height = size
    if pre.resize == "crop":
        scale = size_px / min(width, height)
        w, h = max(size_px, round(width * scale)), max(size_px, round(height * scale))
        left, top = (w - size_px) // 2, (h - size_px) // 2
        canvas = np.full((h, w), fill, dtype=np.float32)
        canvas[top:top + size_px, left:left + size_px] = values
        values = canvas
    if values.shape == (height, width):
        return values.copy()
    resized = Image.fromarray(values, "F").resize((width, height), Image.Resampling.BILINEAR)
    lo, hi = float(min(values.min(), fill)), float(max(values.max(), fill))
    return np.clip(np.asarray(resized, dtype=np.float32), lo, hi)  # float rounding may step a hair outside


def preprocess_image(source: str | Path | bytes, pre: Preprocessing,
                     max_pixels: int | None = 100_000_000) -> np.ndarray:
    """File -> HxWx3 uint8 at the bundle's size: the cached form of an image (cut to its lesion
    first where the preprocessing says so)."""
    if pre.lesion_crop is None:
        return resize_square(load_rgb(source, draft_size=pre.image_size, max_pixels=max_pixels), pre)
    from lesionlens.data.crop import CROP_DRAFT, crop_to_lesion

    img = load_rgb(source, draft_size=CROP_DRAFT * pre.image_size, max_pixels=max_pixels)
    name = "upload" if isinstance(source, bytes) else str(source)
    return resize_square(crop_to_lesion(img, pre.lesion_crop, name), pre)


def normalize(batch: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """NxHxWx3 uint8 -> Nx3xHxW float32, scaled to [0, 1] then standardised with the weights' mean/std."""
    x = batch.astype(np.float32) / 255.0
    x = (x - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
