"""A planted shortcut is caught: a tiny CNN trained where an ink-coloured corner mark decides the
class fails the shortcut test and looks outside the lesion; one trained on the lesion's colour
passes. Plus artifacts: seeded, outside the lesion, no room counted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lesionlens.data.images import Preprocessing
from lesionlens.data.transforms import to_input
from lesionlens.decision import DecisionRule, OperatingPoint
from lesionlens.explain.artifacts import (
    INK,
    add_artifact,
    add_artifacts,
    allowed_region,
)
from lesionlens.explain.attribution import feature_cam
from lesionlens.explain.focus import FocusSettings, lesion_focus
from lesionlens.explain.shortcuts import ShortcutSettings, benign_rows, shortcut_test
from lesionlens.models.registry import create_model

SIZE = 32  # the network's input
FILE_SIZE = 40  # the files, squashed to SIZE by the bundle's preprocessing
LESION = {"mel": (75, 50, 40), "nv": (150, 100, 70)}
CLASSES = ("mel", "nv")  # diagnoses, so the melanoma and malignant views exist
PRE = Preprocessing(image_size=SIZE)
# a bundle's rule: plain softmax, operating points at 0.5 (as if chosen on validation data)
RULE = DecisionRule(CLASSES, 1.0, tuple(OperatingPoint(v, 0.5, "youden") for v in ("melanoma", "malignant")))


def _picture(rng: np.random.Generator, lesion: tuple[int, int, int], mark: bool, size: int = FILE_SIZE) -> np.ndarray:
    """Skin-coloured noise with a lesion disc in the middle (radius a quarter of the side) and,
    if ``mark``, an ink-coloured square in a random corner."""
    skin = np.array((215, 170, 150)) + rng.normal(0, 12, (size, size, 3))
    yy, xx = np.mgrid[:size, :size]
    centre = (size - 1) / 2 + rng.normal(0, 1, 2)
    disc = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < (size / 4) ** 2
    pixels = np.where(disc[..., None], np.array(lesion) + rng.normal(0, 10, (size, size, 3)), skin)
    if mark:
        s, y, x = size // 5, *(rng.integers(0, 2, 2) * (size - size // 5 - 2) + 1)
        pixels[y:y + s, x:x + s] = INK[0]
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _train(planted: bool):
    """tiny_cnn (from the model registry) trained on 'mel' / 'nv' pictures. ``planted``: the lesions
    are alike and the mark on every 'mel' picture decides; otherwise the lesion's colour decides, and
    random artifacts on half the pictures of both classes teach the network that they mean nothing.
    A plain loop of full-size batches: a few seconds, where the bundle pipeline takes a minute."""
    torch.manual_seed(0)
    rng = np.random.default_rng(1 if planted else 2)
    images, labels = [], []
    for k, c in enumerate(CLASSES):
        for _ in range(32):
            pixels = _picture(rng, LESION["nv"] if planted else LESION[c], mark=planted and c == "mel", size=SIZE)
            if not planted and rng.random() < 0.5:
                drawn = add_artifact(pixels, ("ink", "ruler", "patch")[rng.integers(3)], rng)
                pixels = pixels if drawn is None else drawn
            images.append(pixels)
            labels.append(k)
    x = to_input(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2), PRE, channels_last=False)
    y = torch.tensor(labels)
    model = create_model("tiny_cnn", len(CLASSES), pretrained=False)
    opt = torch.optim.AdamW(model.parameters(), 0.01)
    model.train()
    for _ in range(30):
        batch = torch.randperm(len(x))[:32]
        loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _benign(seed: int, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Unmarked 'nv' pictures at the network's size, and their lesion masks."""
    rng = np.random.default_rng(seed)
    images = np.stack([_picture(rng, LESION["nv"], mark=False, size=SIZE) for _ in range(n)])
    yy, xx = np.mgrid[:SIZE, :SIZE]
    disc = (yy - (SIZE - 1) / 2) ** 2 + (xx - (SIZE - 1) / 2) ** 2 < (SIZE / 4 + 1.5) ** 2
    return images, np.broadcast_to(disc, (n, SIZE, SIZE)).copy()


@pytest.fixture(scope="module")
def planted():
    return _train(planted=True)


@pytest.fixture(scope="module")
def honest():
    return _train(planted=False)


SETTINGS = ShortcutSettings(kinds=("ink", "patch"), n_resamples=300)


def test_planted_mark_fails_the_shortcut_test(planted, tmp_path):
    model = planted
    images, masks = _benign(10)
    r = shortcut_test(model, RULE, PRE, images, ["nv"] * len(images), masks, settings=SETTINGS)
    ink = r.kind("ink")
    assert ink.failed and r.failed
    mel = ink.views["melanoma"]
    assert mel.change.low > SETTINGS.margin and mel.up_flips > 0
    assert ink.verdict().startswith("FAILED: adding a surgical-ink mark raises the melanoma probability by +")
    assert f"{mel.up_flips}/{ink.n_tested}" in ink.verdict()
    text = "\n".join(r.lines())
    assert "verdict rule:" in text and "FAILED" in text
    json.dumps(r.to_dict())
    files = r.write_figures(tmp_path)
    assert set(files) == {"shortcut_changes", "shortcut_gallery"}
    for path in files.values():
        assert Image.open(path).size[0] > 300


def test_planted_model_looks_outside_the_lesion(planted):
    """Grad-CAM of the planted model on marked pictures puts most of its mass outside the lesion,
    less inside than the centred baseline."""
    model = planted
    rng = np.random.default_rng(20)
    images = np.stack([_picture(rng, LESION["nv"], mark=True, size=SIZE) for _ in range(24)])
    _, masks = _benign(0, n=24)
    x = to_input(torch.from_numpy(images).permute(0, 3, 1, 2), PRE, channels_last=False)
    mel = CLASSES.index("mel")
    maps = feature_cam(model, x, np.full(len(images), mel))
    maps = torch.nn.functional.interpolate(torch.from_numpy(maps)[:, None], size=(SIZE, SIZE), mode="bilinear",
                                           align_corners=False)[:, 0].numpy()
    assert maps.shape == (24, SIZE, SIZE) and np.isfinite(maps).all()
    r = lesion_focus(maps, masks, settings=FocusSettings(n_resamples=300), method="Grad-CAM")
    all_ = r.group("all")
    assert all_.model["mass_share"].estimate < 0.5
    assert all_.difference["mass_share"].high < 0
    assert all_.model["pointing"].estimate < 0.5


def test_lesion_colour_model_passes(honest):
    model = honest
    images, masks = _benign(11)
    r = shortcut_test(model, RULE, PRE, images, ["nv"] * len(images), masks, settings=SETTINGS)
    assert not r.failed, "\n".join(r.lines())
    assert all(k.verdict().startswith("passed") for k in r.kinds)


def test_benign_rows_and_bad_input(planted):
    assert benign_rows(["nevus", "melanoma", "seborrheic_keratosis", "bcc"]).tolist() == [True, False, True, False]
    assert benign_rows(["a", "b"], benign_classes=["a"]).tolist() == [True, False]
    with pytest.raises(ValueError, match="'lump' are not known diagnoses"):
        benign_rows(["lump"])
    model = planted
    with pytest.raises(ValueError, match="uint8"):
        shortcut_test(model, RULE, PRE, np.zeros((2, 8, 8, 3), np.uint8), ["nv", "nv"])
    with pytest.raises(ValueError, match="no benign image"):
        shortcut_test(model, RULE, PRE, np.zeros((1, SIZE, SIZE, 3), np.uint8), ["mel"])
    images, _ = _benign(4, n=3)
    full = np.ones((3, SIZE, SIZE), bool)  # lesions filling the picture: no room anywhere, and it is said
    r = shortcut_test(model, RULE, PRE, images, ["nv"] * 3, full, ["a", "b", "c"], settings=SETTINGS)
    assert r.kind("ink").no_room == ["a", "b", "c"] and not r.failed
    assert r.kind("ink").verdict().startswith("not tested: a surgical-ink mark fitted outside the lesion on none of 3")
    assert "no room outside the lesion on 3 image(s): a, b, c" in "\n".join(r.lines())
    json.dumps(r.to_dict())


def test_artifacts_are_seeded_outside_the_lesion_and_no_room_is_counted():
    images, masks = _benign(3, n=6)
    for kind in ("ink", "ruler", "patch"):
        a, placed = add_artifacts(images, kind, masks, seed=5)
        b, _ = add_artifacts(images, kind, masks, seed=5)
        assert placed.all() and np.array_equal(a, b)
        changed = (a != images).any(axis=3)
        assert changed.any(axis=(1, 2)).all()
        assert not (changed & masks).any()  # the lesion itself is never touched
        assert not (changed & ~allowed_region(SIZE, SIZE, masks[0])).any()
    other, _ = add_artifacts(images, "patch", masks, seed=6)
    assert not np.array_equal(a, other)  # another seed, other positions
    no_mask, placed = add_artifacts(images, "patch", None, seed=0)
    centre = ~allowed_region(SIZE, SIZE)
    assert placed.all() and not ((no_mask != images).any(axis=3) & centre).any()
    whole = np.ones((SIZE, SIZE), bool)  # a lesion filling the image leaves no room
    assert add_artifact(images[0], "ruler", np.random.default_rng(0), whole) is None
    everything = np.ones((3, SIZE, SIZE), bool)
    _, placed = add_artifacts(images[:3], "ink", everything)
    assert not placed.any()
    with pytest.raises(ValueError, match="unknown artifact kind 'pen'"):
        add_artifacts(images[:1], "pen")
