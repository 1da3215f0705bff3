"""A corpus of malformed and hostile uploads, generated in memory, each with the answers allowed.

Used by the API test (TestClient) and by the real-server test. ``expect`` is the set of HTTP
statuses that count as right: a 4xx that names the problem, or 200 with a real prediction where
the file is a valid (if odd) JPEG or PNG.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    expect: frozenset[int]
    filename: str = "upload.jpg"


def _photo(size=(96, 72), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]]
    base = np.stack([x * 255 / size[0], y * 255 / size[1], np.full_like(x, 120.0)], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 15, base.shape), 0, 255).astype(np.uint8), "RGB")


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_raw(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes | None = None,
            zero_rows: int = 0, row_bytes: int = 0) -> bytes:
    """A PNG written by hand: for headers PIL would refuse to write (huge sizes, 16-bit RGB).
    ``zero_rows`` x ``row_bytes`` of zeros are compressed in a stream (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    if rows is None:
        comp = zlib.compressobj(9)
        line = b"\0" * (row_bytes + 1)
        parts = [comp.compress(line * 256) for _ in range(zero_rows // 256)]
        parts.append(comp.compress(line * (zero_rows % 256)))
        idat = b"".join(parts) + comp.flush()
    else:
        idat = zlib.compress(rows, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its frame header (SOF0) declaring another size."""
    i = jpeg.index(b"\xff\xc0")
    return jpeg[:i + 5] + struct.pack(">HH", height, width) + jpeg[i + 9:]


OK = frozenset({200})
CLIENT_ERROR = frozenset(range(400, 500))
OK_OR_ERROR = OK | CLIENT_ERROR


def corpus(max_upload_bytes: int = 10 * 1024 * 1024) -> list[Case]:
    photo = _photo()
    jpeg = encode(photo, "JPEG", quality=90)
    png = encode(photo, "PNG")
    cases: list[Case] = [Case("zero bytes", b"", frozenset({400}))]

    texts = [b"hello", b"GET / HTTP/1.1\r\n\r\n", b'{"image": "lesion"}', b"<html><body>x</body></html>",
             b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"a,b,c\n1,2,3\n", "caf\u00e9 \u2603".encode(),
             b"\x00" * 64, b" " * 1000, b"JFIF but not really"]
    cases += [Case(f"text {i}", t, frozenset({415})) for i, t in enumerate(texts)]
    other = {"GIF": encode(photo, "GIF"), "BMP": encode(photo, "BMP"), "TIFF": encode(photo, "TIFF"),
             "WEBP": encode(photo, "WEBP"), "ICO": encode(photo, "ICO"), "PDF": b"%PDF-1.4\n%%EOF",
             "ZIP": b"PK\x03\x04" + b"\0" * 40, "GZIP": zlib.compress(jpeg)[:2] and b"\x1f\x8b\x08" + b"\0" * 30,
             "HEIC-like": b"\0\0\0\x18ftypheic" + b"\0" * 40, "PPM": encode(photo, "PPM")}
    cases += [Case(f"other format {k}", v, frozenset({415}), filename="photo.jpg") for k, v in other.items()]
    rng = np.random.default_rng(0)
    cases += [Case(f"random bytes {i}", rng.integers(0, 256, int(n), dtype=np.uint8).tobytes(), frozenset({415}))
              for i, n in enumerate(rng.integers(1, 5000, 15))]
    cases += [Case("JPEG magic then garbage", b"\xff\xd8\xff" + rng.bytes(500), frozenset({422})),
              Case("PNG magic then garbage", b"\x89PNG\r\n\x1a\n" + rng.bytes(500), frozenset({422})),
              Case("JPEG magic only", b"\xff\xd8\xff", frozenset({422})),
              Case("PNG magic only", b"\x89PNG\r\n\x1a\n", frozenset({422}))]

    # Truncated files: cut everywhere from the header to just before the end.
    for fmt, data in (("JPEG", jpeg), ("PNG", png)):
        for frac in np.linspace(0.02, 0.98, 40):
            cut = max(len(b"\x89PNG\r\n\x1a\n") + 1, int(len(data) * frac))
            cases.append(Case(f"truncated {fmt} at {cut}/{len(data)}", data[:cut], CLIENT_ERROR))
    # Bytes flipped in the middle: a decoder may still produce an image (200) or refuse it (4xx).
    for fmt, data in (("JPEG", jpeg), ("PNG", png)):
        for k in range(30):
            r = np.random.default_rng(100 + k)
            buf = bytearray(data)
            for pos in r.integers(20, len(buf), 1 + k % 8):
                buf[pos] = int(r.integers(0, 256))
            cases.append(Case(f"corrupted {fmt} #{k}", bytes(buf), OK_OR_ERROR))

    # Huge declared dimensions and decompression bombs: refused from the header (413).
    cases += [Case("PNG declaring 100000x100000", png_raw(100_000, 100_000, 8, 2, rows=b"\0" * 10), frozenset({413})),
              Case("PNG declaring 2^31-1 x 1", png_raw(2**31 - 1, 1, 8, 0, rows=b"\0"), frozenset({413, 422})),
              Case("JPEG declaring 65000x65000", jpeg_with_size(jpeg, 65000, 65000), frozenset({413})),
              Case("JPEG declaring 0x0", jpeg_with_size(jpeg, 0, 0), CLIENT_ERROR),
              Case("PNG bomb 1-bit 30000x30000 (900 MP)", png_raw(30000, 30000, 1, 0, zero_rows=30000, row_bytes=3750),
                   frozenset({413})),
              Case("PNG bomb 8-bit grey 8000x6000 (48 MP)", png_raw(8000, 6000, 8, 0, zero_rows=6000, row_bytes=8000),
                   frozenset({413}))]
    huge_text = _chunk(b"zTXt", b"comment\0\0" + zlib.compress(b"A" * 30_000_000))
    cases.append(Case("PNG with a 30 MB compressed text chunk", png[:33] + huge_text + png[33:], OK_OR_ERROR))

    # Odd but valid images: converted and answered.
    grey = photo.convert("L")
    modes = {
        "grey JPEG": encode(grey, "JPEG"), "grey PNG": encode(grey, "PNG"),
        "grey+alpha PNG": encode(photo.convert("LA"), "PNG"), "RGBA PNG": encode(photo.convert("RGBA"), "PNG"),
        "palette PNG": encode(photo.convert("P"), "PNG"),
        "palette PNG with transparency": encode(photo.convert("P"), "PNG", transparency=0),
        "1-bit PNG": encode(photo.convert("1"), "PNG"), "CMYK JPEG": encode(photo.convert("CMYK"), "JPEG"),
        "16-bit grey PNG": png_raw(96, 72, 16, 0, rows=b"".join(
            b"\0" + (np.asarray(grey, np.uint16)[y] * 257).astype(">u2").tobytes() for y in range(72))),
        "16-bit RGB PNG": png_raw(96, 72, 16, 2, rows=b"".join(
            b"\0" + (np.asarray(photo, np.uint16)[y] * 257).astype(">u2").tobytes() for y in range(72))),
        "progressive JPEG": encode(photo, "JPEG", progressive=True),
        "JPEG quality 5": encode(photo, "JPEG", quality=5), "1x1 PNG": encode(photo.resize((1, 1)), "PNG"),
        "1x3000 PNG": encode(photo.resize((1, 3000)), "PNG"), "3000x1 JPEG": encode(photo.resize((3000, 1)), "JPEG"),
        "interlaced PNG": encode(photo, "PNG", optimize=True),
        "JPEG with ICC profile": encode(photo, "JPEG", icc_profile=b"\0" * 3000),
        "PNG named .gif": png, "JPEG named .txt": jpeg,
    }
    cases += [Case(f"valid {k}", v, OK, filename="x.gif" if "named" in k else "x.png") for k, v in modes.items()]
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        cases.append(Case(f"EXIF orientation {orientation}", encode(photo, "JPEG", exif=exif), OK))
    cases.append(Case("EXIF orientation 99 (invalid)", encode(photo, "JPEG", exif=_exif(99)), OK_OR_ERROR))

    # Oversized: refused before decoding.
    cases.append(Case("upload one byte over the limit", jpeg + b"\0" * (max_upload_bytes + 1 - len(jpeg)),
                      frozenset({413})))
    cases.append(Case("upload twice the limit", b"\xff\xd8\xff" + b"\0" * (2 * max_upload_bytes), frozenset({413})))
    return cases


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif
