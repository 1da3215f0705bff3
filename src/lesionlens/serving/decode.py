"""Untrusted upload bytes -> the network's input, or an :class:`ApiError` that says what was wrong.

Only JPEG and PNG are accepted, recognised by their first bytes (never by the file name or the
declared content type). The pixel count is read from the header and checked before any pixel is
decoded; decoding and resizing are :func:`lesionlens.data.images.preprocess_image`, the same
function training and ``lesionlens predict`` use, so the server sees what the network was trained on.
Segmentation also needs the image at its own size (:func:`decode_upload_full`): the mask is
returned, and the lesion measured, there.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image

from lesionlens.data.images import ImageDecodeError, Preprocessing, load_rgb, preprocess_image, resize_square
from lesionlens.serving.errors import ApiError

log = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# What other common uploads start with, to say what was sent instead.
_KNOWN = (
    (b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP"), (b"\x1f\x8b", "gzip"), (b"<svg", "SVG"), (b"<?xml", "XML"), (b"<!DOCTYPE", "HTML"),
    (b"<html", "HTML"), (b"{", "JSON"),
)


def sniff_format(data: bytes) -> str:
    """"JPEG" or "PNG" from the file's first bytes; an ApiError (415) for anything else."""
    if not data:
        raise ApiError(400, "empty_file", "the uploaded file is empty (0 bytes)")
    if data.startswith(JPEG_MAGIC):
        return "JPEG"
    if data.startswith(PNG_MAGIC):
        return "PNG"
    head = data[:16]
    if head[4:8] == b"ftyp":
        what = "HEIC/MP4/AVIF (ISO media)"
    elif head.startswith(b"RIFF") and data[8:12] == b"WEBP":
        what = "WebP"
    else:
        what = next((name for magic, name in _KNOWN if head.lstrip().startswith(magic)), None)
        if what is None:
            what = "text" if _looks_like_text(data[:512]) else f"unknown (first bytes {head[:8].hex(' ')})"
    raise ApiError(415, "unsupported_format",
                   f"only JPEG and PNG images are accepted (recognised by their content); this file is {what}")


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def decode_upload(data: bytes, pre: Preprocessing, max_pixels: int, name: str = "file") -> np.ndarray:
    """Check and decode one upload into the network's H x W x 3 uint8 view."""
    fmt = _check_header(data, max_pixels, name)
    with _decoder_errors(fmt, name):
        return preprocess_image(data, pre, max_pixels=max_pixels)


def decode_upload_full(data: bytes, pre: Preprocessing, max_pixels: int,
                       name: str = "file") -> tuple[np.ndarray, np.ndarray]:
    """Check and decode one upload into the network's view and the upright image at its own size
    (H x W x 3 uint8), for a mask at that size and the lesion's colours. The view is exactly
    :func:`decode_upload`'s: a JPEG is decoded a second time with the draft scaling that
    training's and ``predict``'s decoding uses; a PNG's view is resized from the full image."""
    fmt = _check_header(data, max_pixels, name)
    with _decoder_errors(fmt, name):
        full = load_rgb(data, draft_size=None, max_pixels=max_pixels)
        view = preprocess_image(data, pre, max_pixels=max_pixels) if fmt == "JPEG" else resize_square(full, pre)
        return view, np.asarray(full, dtype=np.uint8)


def _check_header(data: bytes, max_pixels: int, name: str) -> str:
    """The upload's format, once its header is readable and declares no more than ``max_pixels``."""
    fmt = sniff_format(data)
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:
            width, height = img.size
    except Image.DecompressionBombError as e:  # Pillow's own guard, for sizes far past any limit
        raise ApiError(413, "too_many_pixels", f"{name}: the {fmt} header declares more pixels than the limit of "
                                               f"{max_pixels:,} (a guard against decompression bombs): {e}") from e
    except Exception as e:  # the header itself is broken; hostile input must never become a 500
        raise ApiError(422, "undecodable_image", f"{name}: not a readable {fmt} file: {_reason(e)}") from e
    if width * height > max_pixels:
        raise ApiError(413, "too_many_pixels",
                       f"{name}: {width}x{height} = {width * height:,} pixels is more than the limit of "
                       f"{max_pixels:,} (a guard against decompression bombs)")
    return fmt


@contextmanager
def _decoder_errors(fmt: str, name: str) -> Iterator[None]:
    """Decoding failures as 422 answers that name the file."""
    try:
        yield
    except ImageDecodeError as e:
        raise ApiError(422, "undecodable_image", f"{name}: {_reason(e.__cause__ or e)}") from e
    except Exception as e:  # a decoder failure on hostile bytes is the sender's problem, not a 500
        log.info("decoder failure on %s: %r", name, e)
        raise ApiError(422, "undecodable_image", f"{name}: the {fmt} data cannot be decoded: {_reason(e)}") from e


def _reason(e: BaseException) -> str:
    text = str(e).replace("<bytes>: ", "").replace("cannot decode image: ", "")
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
