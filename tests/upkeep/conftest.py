"""A case store the tiny bundle answered through the real API, and the bundle's reference profile:
in-distribution photos first (the training data's colours, new images), then shifted ones."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
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


def photo(colour, seed: int, size: int = 160) -> bytes:
    rng = np.random.default_rng([seed, *colour])
    pixels = np.clip(np.array(colour) + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=92)
    return out.getvalue()


@dataclass
class Monitored:
    bundle: Path
    reference: Path
    db: Path
    images: Path
    case_ids: list[str]  # in submission order: 2 windows in distribution, then 2 shifted


@pytest.fixture(scope="session")
def reference_profile(exported_bundle, tmp_path_factory) -> Path:
    """The tiny bundle's profile on 60 new photos of its three colours (160 px, so none is too small)."""
    root = tmp_path_factory.mktemp("reference")
    for c, colour in COLOURS.items():
        for i in range(20):
            write_image(root / "images" / c / f"{c}_ref_{i}.jpg", colour, size=160, seed=100 + i)
    profile = build_reference(exported_bundle, reference_images(exported_bundle, root / "images"), SETTINGS)
    return profile.save(root / "reference.npz")


@pytest.fixture(scope="session")
def monitored(exported_bundle, reference_profile, tmp_path_factory) -> Monitored:
    root = tmp_path_factory.mktemp("store")
    db, images = root / "cases.sqlite", root / "images"
    settings = ServeSettings(db=str(db), case_images=str(images), token="admin-secret")
    colours = list(COLOURS.values())
    photos = [photo(colours[i % 3], 200 + i) for i in range(2 * WINDOW)] + \
             [photo(SHIFTED, 300 + i) for i in range(2 * WINDOW)]
    ids = []
    with TestClient(create_app(exported_bundle, settings)) as client:
        for i, data in enumerate(photos):
            r = client.post("/v1/cases", files={"file": (f"{i}.jpg", data, "image/jpeg")},
                            data={"consent_research": "true"}, headers={"Authorization": "Bearer admin-secret"})
            assert r.status_code == 200, r.text
            ids.append(r.json()["case_id"])
    return Monitored(exported_bundle, reference_profile, db, images, ids)
