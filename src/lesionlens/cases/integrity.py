"""Integrity of the case store: the database's own check, every case's image present and matching
its hash, and the orphan files a crash between writing an image and committing its row leaves.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass

from sqlalchemy import Engine, select, text

from lesionlens.cases import schema
from lesionlens.cases.images import ImageFiles, image_name


@dataclass
class StoreCheck:
    """The outcome of :meth:`CaseStore.check`; ``ok`` when nothing is wrong (orphans are not wrong:
    they are what a crash leaves, and are collected)."""

    database: str  # "ok" or what the database's own check said
    missing_images: list[str]  # case ids whose image file is absent
    damaged_images: list[str]  # case ids whose file does not match its hash
    orphan_images: list[str]  # files no case points at
    temporary_files: int

    @property
    def ok(self) -> bool:
        return self.database == "ok" and not self.missing_images and not self.damaged_images

    def to_dict(self) -> dict:
        return asdict(self) | {"ok": self.ok}


class Integrity:
    """The integrity half of :class:`~lesionlens.cases.store.CaseStore` (a mixin over its ``engine``
    and ``images``)."""

    engine: Engine
    images: ImageFiles

    # -- integrity --------------------------------------------------------------------------------

    def check(self, verify_hashes: bool = True) -> StoreCheck:
        """The database's own integrity check, every case's image present (and matching its hash),
        and the files no case points at."""
        with self.engine.connect() as c:
            if self.engine.dialect.name == "sqlite":
                result = [r[0] for r in c.execute(text("PRAGMA integrity_check"))]
                fk = c.execute(text("PRAGMA foreign_key_check")).all()
                database = "ok" if result == ["ok"] and not fk else "; ".join(result + [f"foreign key: {r}" for r in fk])
            else:
                orphans = c.execute(text("SELECT count(*) FROM labels l LEFT JOIN cases c ON c.id = l.case_id "
                                         "WHERE c.id IS NULL")).scalar_one()
                database = "ok" if not orphans else f"{orphans} labels without a case"
            rows = c.execute(select(schema.cases.c.id, schema.cases.c.image_sha256, schema.cases.c.image_format)).all()
        referenced = set()
        missing, damaged = [], []
        for r in rows:
            name = image_name(r.image_sha256, r.image_format)
            referenced.add(name)
            path = self.images.path(name)
            if not path.is_file():
                missing.append(r.id)
            elif verify_hashes and hashlib.sha256(path.read_bytes()).hexdigest() != r.image_sha256:
                damaged.append(r.id)
        orphans = sorted(set(self.images.names()) - referenced)
        return StoreCheck(database, missing, damaged, orphans, sum(1 for _ in self.images.temporary_files()))

    def collect_orphans(self, older_than_s: float = 600.0) -> list[str]:
        """Delete image files no case points at (and half-written temporary files), if older than
        ``older_than_s`` seconds, so that a submission between its file and its row is left alone."""
        cutoff = time.time() - older_than_s
        removed = []
        for name in self.check(verify_hashes=False).orphan_images:
            path = self.images.path(name)
            if path.stat().st_mtime <= cutoff and self.images.remove(name):
                removed.append(name)
        for tmp in list(self.images.temporary_files()):
            if tmp.stat().st_mtime <= cutoff:
                tmp.unlink(missing_ok=True)
        return removed
