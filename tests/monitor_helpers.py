"""A case store the tiny bundle answered through the real API, and the bundle's reference profile,
for the monitor's tests (tests/upkeep) and its server routes and page (tests/serving): in-distribution
photos first (the training data's three colours, new images), then photos of a colour it never saw."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from helpers import COLOURS, write_image
from PIL import Image

from lesionlens.serving.app import create_app
from lesionlens.serving.settings import ServeSettings
from lesionlens.upkeep.reference import build_reference, reference_images
from lesionlens.upkeep.settings import ReferenceSettings

WINDOW = 10
SETTINGS = ReferenceSettings(windows=(WINDOW,), draws=200, permutations=200)
SHIFTED = (40, 200, 60)  # a colour the tiny model never saw
ADMIN = "admin-secret"


def photo(colour, seed: int, size: int = 160) -> bytes:
    """A noisy JPEG of one colour, 160 px (so the quality check does not call it too small)."""
    rng = np.random.default_rng([seed, *colour])
    pixels = np.clip(np.array(colour) + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=92)
    return out.getvalue()


def make_reference(bundle: Path, root: Path) -> Path:
    """The bundle's profile on 60 new photos of its three colours."""
    for c, colour in COLOURS.items():
        for i in range(20):
            write_image(root / "images" / c / f"{c}_ref_{i}.jpg", colour, size=160, seed=100 + i)
    return build_reference(bundle, reference_images(bundle, root / "images"), SETTINGS).save(root / "reference.npz")


@dataclass
class Monitored:
    bundle: Path
    reference: Path
    db: Path
    images: Path
    case_ids: list[str]  # in submission order: 2 windows in distribution, then 2 shifted


def fill_store(bundle: Path, reference: Path, root: Path) -> Monitored:
    """Four windows of cases sent through POST /v1/cases: two in distribution, then two shifted."""
    db, images = root / "cases.sqlite", root / "images"
    settings = ServeSettings(db=str(db), case_images=str(images), token=ADMIN)
    colours = list(COLOURS.values())
    photos = [photo(colours[i % 3], 200 + i) for i in range(2 * WINDOW)] + \
             [photo(SHIFTED, 300 + i) for i in range(2 * WINDOW)]
    ids = []
    with TestClient(create_app(bundle, settings)) as client:
        for i, data in enumerate(photos):
            r = client.post("/v1/cases", files={"file": (f"{i}.jpg", data, "image/jpeg")},
                            data={"consent_research": "true"}, headers={"Authorization": f"Bearer {ADMIN}"})
            assert r.status_code == 200, r.text
            ids.append(r.json()["case_id"])
    return Monitored(bundle, reference, db, images, ids)
