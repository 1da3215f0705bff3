"""Attribution maps, their faithfulness and the sanity check, on a small CNN trained in seconds on
generated images where the class is the colour of a blob placed at random (so the evidence is
somewhere in particular, and a faithful map must find it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lesionlens.data.images import Preprocessing
from lesionlens.explain.attribution import attribute
from lesionlens.explain.faithfulness import compare, curves
from lesionlens.explain.sanity import CONTROL, sanity_check
from lesionlens.explain.settings import METHODS
from lesionlens.explain.subject import FEATURES, Subject
from lesionlens.models.simple import SimpleCNN

SIZE = 40


def blobs(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Light noisy skin with one blob anywhere; dark brown blob = class 1 ("mel"), light = class 0."""
    images = np.clip(rng.normal(170, 25, (n, SIZE, SIZE, 3)), 0, 255)
    y = rng.integers(0, 2, n)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i in range(n):
        cy, cx = rng.integers(10, SIZE - 10, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < rng.integers(5, 9) ** 2
        images[i][disc] = np.array((60, 40, 30) if y[i] else (150, 100, 70)) + rng.normal(0, 15, (disc.sum(), 3))
    return np.clip(images, 0, 255).astype(np.uint8), y


@pytest.fixture(scope="module")
def trained() -> tuple[Subject, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    x, y = blobs(192, rng)
    net = SimpleCNN(2, widths=(8, 16, 32))
    subject = Subject(net, ["nv", "mel"], Preprocessing(SIZE))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    net.train()
    for _ in range(50):
        idx = rng.integers(0, len(x), 24)
        loss = nn.functional.cross_entropy(net(subject.inputs(x[idx])), torch.as_tensor(y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    test_x, test_y = blobs(48, rng)
    assert (subject.probabilities(test_x).argmax(1) == test_y).mean() > 0.9  # it learned the blobs
    return subject, test_x, test_y


def test_every_method_gives_finite_raw_maps_of_the_image_size(trained):
    subject, x, y = trained
    for method in METHODS:
        maps = attribute(subject, x[:3], y[:3], method)
        assert maps.values.shape == (3, SIZE, SIZE) and maps.values.dtype == np.float32, method
        assert np.isfinite(maps.values).all(), method
        assert maps.values.std() > 0, method  # not a constant map
    cam = attribute(subject, x[:3], y[:3], "gradcam").values
    assert cam.min() >= 0 and cam.max() != pytest.approx(1.0)  # ReLU'd and raw, not min-max scaled


def test_layers_are_listed_and_an_unknown_one_is_refused_by_name(trained):
    subject = trained[0]
    names = [layer.name for layer in subject.layers()]
    assert names == ["features.0", "features.1", "features.2", FEATURES]
    assert subject.layer("features.0").height == SIZE // 2  # each block pools by 2
    early = attribute(subject, trained[1][:2], trained[2][:2], "gradcam", layer="features.0")
    assert early.layer == "features.0" and early.values.shape == (2, SIZE, SIZE)
    with pytest.raises(ValueError, match=r"no layer 'blocks.9'.*features.1 \(16 x 10 x 10\)"):
        subject.layer("blocks.9")


def test_gradcam_is_faithful_beyond_random_and_centre_on_off_centre_evidence(trained):
    """On the dark-blob images, whose evidence is the blob wherever it lies."""
    subject, x, y = trained
    x, y = x[y == 1], y[y == 1]
    all_curves = {m: curves(subject, x, attribute(subject, x, y, m), steps=8) for m in ("gradcam", "random", "centre")}
    result = compare(all_curves, n_resamples=500)
    verdict = {(c.baseline, c.kind): c for c in result.comparisons if c.method == "gradcam"}
    # the blob sits anywhere, so the centred map is no shortcut here: deleting Grad-CAM's pixels first
    # must lower the probability faster than deleting random or central ones. (Insertion saturates on
    # this toy: the blurred dark blob alone still reads as "mel", so it is reported, not asserted.)
    for baseline in ("random", "centre"):
        assert verdict[(baseline, "deletion")].beats, (baseline, verdict[(baseline, "deletion")].difference)
    assert {(c.baseline, c.kind) for c in result.comparisons if c.method == "gradcam"} == set(verdict) and len(verdict) == 4
    assert result.aucs["gradcam"]["deletion"].estimate < result.aucs["random"]["deletion"].estimate
    d = result.to_dict()
    assert len(d["curves"]["gradcam"]["deletion"]) == 9 and d["n_images"] == len(x)


def test_sanity_check_passes_gradcam_and_fails_guided_backprop(trained):
    subject, x, y = trained
    result = sanity_check(subject, x[:10], ["gradcam", CONTROL], targets=y[:10], n_resamples=300)
    by = {m.method: m for m in result.methods}
    assert result.blocks == ["classifier", "features.2", "features.1", "features.0"]
    assert by["gradcam"].passed, by["gradcam"].mean_over_cascade
    assert not by[CONTROL].passed, by[CONTROL].mean_over_cascade
    assert by[CONTROL].steps[0].rank_correlation.estimate > 0.9  # blind to the head, the known failure
    assert any("expected to fail" in line for line in result.lines())
    # the trained network is untouched by the cascade (it works on a copy)
    assert (subject.probabilities(x).argmax(1) == y).mean() > 0.9
