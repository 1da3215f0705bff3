"""Content hashes: of files (the cache key, the data fingerprint, the bundle's weight check), of
folders (a registered bundle's name) and of JSON documents (a gate report's identity). Torch-free."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_files(folder: str | Path, exclude: tuple[str, ...] = ()) -> list[Path]:
    """The regular files under ``folder`` (relative, sorted), leaving out the top-level entries
    named in ``exclude`` and hidden files (temporary files of an atomic write start with a dot)."""
    folder = Path(folder)
    out = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if relative.parts[0] in exclude or any(p.startswith(".") for p in relative.parts):
            continue
        if path.is_file() and not path.is_symlink():
            out.append(relative)
    return sorted(out, key=lambda p: p.as_posix())


def tree_digest(folder: str | Path, exclude: tuple[str, ...] = ()) -> str:
    """sha256 over every file's relative path and content digest (see ``tree_files``): two
    folders have the same digest exactly when they hold the same files with the same bytes."""
    h = hashlib.sha256()
    for relative in tree_files(folder, exclude):
        h.update(f"{relative.as_posix()}\0{file_digest(Path(folder) / relative)}\n".encode())
    return h.hexdigest()


def canonical_json(obj: Any) -> bytes:
    """The one byte form of a JSON document: sorted keys, no spaces, UTF-8. A report written this
    way has the same digest whenever it holds the same content."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def json_digest(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj)).hexdigest()
