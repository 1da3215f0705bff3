"""Which model: a bundle's digest (its identity everywhere: registry, gate, served answers, stored
cases, monitor reports), its folder name and its card's version (what stored cases record today)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from lesionlens.bundle.card import read_card
from lesionlens.bundle.registry import bundle_digest


@dataclass(frozen=True)
class BundleIdentity:
    digest: str
    name: str
    version: str  # the card's version: creation time and the weights' sha256

    @classmethod
    def of(cls, folder: str | Path) -> "BundleIdentity":
        card = read_card(folder)
        return cls(bundle_digest(card.path), card.name, card.version)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.name} ({self.digest[:12]})"
