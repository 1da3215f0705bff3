"""Class-activation maps: the server's NumPy CAM is the library's Grad-CAM (pytorch-grad-cam) up to scale, and the overlay it draws."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from lesionlens.bundle.card import read_card
from lesionlens.explain.agreement import map_correlations
from lesionlens.explain.attribution import feature_cam
from lesionlens.explain.cam import class_activation_maps, overlay_png
from lesionlens.inference import load_model


def test_numpy_cam_is_gradcam_up_to_scale(exported_bundle):
    card = read_card(exported_bundle)
    model = load_model(card)
    x = torch.randn(4, 3, 32, 32)
    weight = np.load(exported_bundle / "cam_head.npz", allow_pickle=False)["weight"]
    features = model.forward_features(x).detach().numpy()
    targets = np.array([0, 1, 2, 0])
    cam = class_activation_maps(features, weight, targets)
    gc = feature_cam(model, x, targets)
    h, w = features.shape[2:]
    np.testing.assert_allclose(cam / (h * w), gc, rtol=1e-3, atol=1e-5)


def test_map_correlations_by_hand():
    rng = np.random.default_rng(0)
    a = rng.random((3, 4, 4))
    b = np.stack([2 * a[0] + 1, -a[1], np.ones((4, 4))])  # scaled, inverted, constant
    r = map_correlations(a, b)
    assert r[0] == 1.0 or abs(r[0] - 1) < 1e-12
    assert abs(r[1] + 1) < 1e-12 and np.isnan(r[2])


def test_overlay_is_a_png_of_the_asked_size_hot_where_the_map_is():
    image = np.full((32, 32, 3), 128, np.uint8)
    cam = np.zeros((4, 4))
    cam[0, 0] = 5.0  # all the activation in the top-left cell
    png = Image.open(io.BytesIO(overlay_png(image, cam, size=64)))
    assert png.format == "PNG" and png.size == (64, 64)
    pixels = np.asarray(png.convert("RGB"), np.int32)
    assert pixels[2, 2, 0] > pixels[60, 60, 0]  # red end of the map top-left, dark blue elsewhere
    flat = Image.open(io.BytesIO(overlay_png(image, np.zeros((4, 4)), size=16)))
    assert flat.size == (16, 16)  # an all-zero map draws without dividing by zero
