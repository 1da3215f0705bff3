"""Image files named on a command line: every file given, and every image under every folder given."""

from __future__ import annotations

from pathlib import Path

from lesionlens.data.images import IMAGE_SUFFIXES


def collect_images(inputs: list[Path]) -> list[tuple[Path, str | None]]:
    """Every file named, and every image file under every folder named (sorted); a path that is
    neither, or a file in a folder that is not an image, comes back with the reason."""
    found: list[tuple[Path, str | None]] = []
    for item in inputs:
        if item.is_dir():
            for f in sorted(item.rglob("*")):
                if f.is_file() and not f.name.startswith("."):
                    ok = f.suffix.lower() in IMAGE_SUFFIXES
                    found.append((f, None if ok else f"not an image file (suffix {f.suffix!r})"))
        elif item.is_file():
            found.append((item, None))
        else:
            found.append((item, "no such file or folder"))
    return found
