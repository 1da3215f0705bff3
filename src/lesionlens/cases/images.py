"""A submitted photo as it is kept: metadata removed, upright, content-addressed, written durably.

Phones put the place a photo was taken (EXIF GPS), the device's serial number and a thumbnail in
the file. :func:`clean_image` removes all of it. When the file needs no turning, it does so without
decoding: a JPEG keeps only the segments that decoding needs (JFIF, the ICC profile, Adobe's colour
transform, the tables and the scan), a PNG only its image chunks, so the pixels are bit for bit
the ones sent. A photo whose EXIF orientation asks for a turn is decoded, turned and re-encoded
(JPEG quality 95), because a stored image must look the way the photographer saw it.

Files are named by the sha256 of their cleaned bytes (``ab/cd/abcd....jpg``), written to a
temporary name, fsync'ed and renamed, so a file under its final name is always complete. A crash
between the file and the database row leaves an orphan file, never a row without its image;
:meth:`ImageFiles.orphans` finds those.
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from lesionlens.durable import fsync_dir, write_atomic

EXIF_ORIENTATION = 0x0112
SUFFIX = {"JPEG": ".jpg", "PNG": ".png"}

# JPEG markers kept: APP0 (JFIF), APP14 (Adobe: needed to decode CMYK / YCCK), and every
# non-APP, non-comment segment (tables, frame, scan). APP2 is kept only for an ICC profile.
_KEEP_APP = {0xE0, 0xEE}
# PNG chunks kept: what decoding and colour need; text, time and eXIf chunks go.
_PNG_KEEP = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT"}


def image_name(sha256: str, fmt: str) -> str:
    """A stored image's file name: its content hash and its format's suffix."""
    return sha256 + SUFFIX[fmt]


@dataclass(frozen=True)
class CleanImage:
    data: bytes
    format: str  # "JPEG" or "PNG"
    width: int  # after turning
    height: int
    sha256: str

    @property
    def name(self) -> str:
        return image_name(self.sha256, self.format)


def clean_image(data: bytes, fmt: str) -> CleanImage:
    """``data`` (an already validated JPEG or PNG) without metadata and upright."""
    with Image.open(io.BytesIO(data), formats=[fmt]) as img:
        orientation = img.getexif().get(EXIF_ORIENTATION, 1)
        size = img.size
        if orientation not in (1, None):
            img.load()
            upright = ImageOps.exif_transpose(img)
            return _encoded(upright, fmt)
    try:
        cleaned = _strip_jpeg(data) if fmt == "JPEG" else _strip_png(data)
    except ValueError:  # an unusual file structure: re-encode rather than keep what we cannot parse
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:
            img.load()
            return _encoded(img, fmt)
    return CleanImage(cleaned, fmt, size[0], size[1], hashlib.sha256(cleaned).hexdigest())


def _encoded(img: Image.Image, fmt: str) -> CleanImage:
    out = io.BytesIO()
    if fmt == "JPEG":
        keep = img if img.mode in ("RGB", "L", "CMYK") else img.convert("RGB")
        keep.save(out, "JPEG", quality=95, icc_profile=img.info.get("icc_profile"))
    else:
        img.save(out, "PNG", icc_profile=img.info.get("icc_profile"))
    data = out.getvalue()
    return CleanImage(data, fmt, img.width, img.height, hashlib.sha256(data).hexdigest())


def _strip_jpeg(data: bytes) -> bytes:
    """The JPEG without APPn (but JFIF, ICC and Adobe) and COM segments, ending at its EOI marker
    (phones append further images, with their own EXIF, after it)."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("no SOI marker")
    out = [b"\xff\xd8"]
    i, n = 2, len(data)
    while i < n:
        if data[i] != 0xFF:
            raise ValueError(f"expected a marker at byte {i}")
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            raise ValueError("truncated")
        marker = data[i]
        i += 1
        if marker == 0xD9:  # EOI
            out.append(b"\xff\xd9")
            return b"".join(out)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length
            out.append(bytes((0xFF, marker)))
            continue
        if i + 2 > n:
            raise ValueError("truncated segment length")
        (length,) = struct.unpack(">H", data[i:i + 2])
        end = i + length
        if length < 2 or end > n:
            raise ValueError(f"bad segment length at byte {i}")
        segment = data[i - 2:end]
        keep = (not (0xE0 <= marker <= 0xEF) and marker != 0xFE) or marker in _KEEP_APP \
            or (marker == 0xE2 and data[i + 2:i + 14] == b"ICC_PROFILE\x00")
        if keep:
            out.append(segment)
        i = end
        if marker == 0xDA:  # start of scan: copy the entropy-coded data up to the next real marker
            j = i
            while True:
                j = data.find(b"\xff", j)
                if j < 0 or j + 1 >= n:
                    raise ValueError("scan runs to the end of the file without EOI")
                following = data[j + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    j += 1 if following == 0xFF else 2
                    continue
                break
            out.append(data[i:j])
            i = j
    raise ValueError("no EOI marker")


def _strip_png(data: bytes) -> bytes:
    signature = data[:8]
    out, i, n = [signature], 8, len(data)
    while i + 8 <= n:
        (length,) = struct.unpack(">I", data[i:i + 4])
        kind = data[i + 4:i + 8]
        end = i + 12 + length
        if end > n:
            raise ValueError("truncated chunk")
        if kind in _PNG_KEEP:
            out.append(data[i:end])
        i = end
        if kind == b"IEND":
            return b"".join(out)
    raise ValueError("no IEND chunk")


class ImageFiles:
    """A folder of images named by their sha256: ``put`` is idempotent and durable."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        """The file for ``name`` (a stored hash + suffix; never a client's string)."""
        stem, _, suffix = name.partition(".")
        if len(stem) != 64 or any(c not in "0123456789abcdef" for c in stem) or f".{suffix}" not in SUFFIX.values():
            raise ValueError(f"not a stored image name: {name!r}")
        return self.root / stem[:2] / stem[2:4] / name

    def put(self, image: CleanImage) -> Path:
        target = self.path(image.name)
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, image.data)
        return target

    def remove(self, name: str) -> bool:
        target = self.path(name)
        try:
            target.unlink()
        except FileNotFoundError:
            return False
        fsync_dir(target.parent)
        return True

    def names(self) -> Iterator[str]:
        for suffix in SUFFIX.values():
            for p in self.root.glob(f"??/??/*{suffix}"):
                yield p.name

    def temporary_files(self) -> Iterator[Path]:
        """Half-written files a crash left behind."""
        return self.root.glob("??/??/.*.tmp")

