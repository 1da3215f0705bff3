"""Inside the network: layers and their shapes, feature maps, first-layer filters, receptive fields
and the top-activating patches (one streaming pass, checked against a brute-force search)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lesionlens.data.images import Preprocessing
from lesionlens.data.transforms import to_input
from lesionlens.explain.features import FEATURES, feature_maps, layer_shapes, stages
from lesionlens.explain.filters import first_filters
from lesionlens.explain.patches import receptive_field, top_patches
from lesionlens.models.registry import create_model
from lesionlens.models.simple import SimpleCNN

PRE = Preprocessing(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


class Stack(nn.Module):
    """conv 3x3 -> ReLU -> conv 3x3 -> ReLU -> max-pool 2x2 -> conv 3x3 (padding 1): receptive fields
    by hand 3, 5, 6 (stride 2) and 10 (stride 2); the first unit's field starts at -1, -2, -2, -4."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3, padding=1),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1))

    def forward_features(self, x):
        return self.features(x)

    def forward_head(self, x, pre_logits=False):
        return x.mean(dim=(2, 3))


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return SimpleCNN(3, widths=(8, 16)).eval()


def _images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _decodes(path) -> None:
    with Image.open(path) as im:
        im.load()
        assert im.size[0] > 50 and im.size[1] > 50


@pytest.fixture(scope="module")
def lite0() -> nn.Module:
    """An untrained EfficientNet-Lite0 (timm, TF "same" padding), for layer names and padding."""
    return create_model("efficientnet_lite0", 3).eval()


def test_stages_and_their_shapes_for_our_cnn_and_a_timm_model(lite0):
    model = _tiny()
    assert stages(model) == ["features.0", "features.1", FEATURES]
    assert layer_shapes(model, 32) == {"features.0": (8, 16, 16), "features.1": (16, 8, 8), FEATURES: (16, 8, 8)}
    timm_model = lite0
    assert stages(timm_model) == ["blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6", FEATURES]
    assert layer_shapes(timm_model, 64, ["blocks.2", FEATURES]) == {"blocks.2": (40, 8, 8), FEATURES: (1280, 2, 2)}
    with pytest.raises(ValueError, match="no layer named 'blocks.99'.*blocks.0, blocks.1"):
        layer_shapes(timm_model, 64, ["blocks.99"])


def test_feature_maps_are_the_raw_activations_with_a_figure(tmp_path):
    model = _tiny()
    image = _images(1)[0]
    maps = feature_maps(model, image, PRE, ["features.0", "features.1.0", FEATURES])
    assert {k: v.shape for k, v in maps.maps.items()} == {"features.0": (8, 16, 16), "features.1.0": (16, 16, 16),
                                                          FEATURES: (16, 8, 8)}
    x = to_input(torch.from_numpy(image).permute(2, 0, 1)[None], PRE, channels_last=False)
    with torch.no_grad():
        first = model.features[0](x)
        conv = model.features[1][0](first)  # the in-place ReLU after it must not change what was kept
    np.testing.assert_allclose(maps.maps["features.0"], first[0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps.maps["features.1.0"], conv[0].numpy(), rtol=1e-5, atol=1e-5)
    assert (maps.maps["features.1.0"] < 0).any()  # raw: a convolution's output is not normalised or cut
    top = maps.most_active("features.0")
    means = maps.maps["features.0"].mean(axis=(1, 2))
    assert means[top[0]] == means.max() and list(means[top]) == sorted(means[top], reverse=True)
    json.dumps(maps.to_dict())
    assert any("features.1.0: 16 x 16 x 16" in line for line in maps.lines())
    _decodes(maps.write_figures(tmp_path)["feature_maps"])
    with pytest.raises(ValueError, match="not C x h x w"):
        feature_maps(model, image, PRE, ["classifier"])
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        feature_maps(model, image.astype(np.float32), PRE)


def test_first_layer_filters_rgb_and_grey(tmp_path):
    model = _tiny()
    filters = first_filters(model)
    assert filters.layer == "features.0.0" and filters.weights.shape == (8, 3, 3, 3) and filters.rgb
    np.testing.assert_array_equal(filters.weights, model.features[0][0].weight.detach().numpy())
    tiles = filters.tiles()
    assert len(tiles) == 8 and all(t.shape == (3, 3, 3) and t.min() == 0 and t.max() == 1 for t, _ in tiles)
    _decodes(filters.write_figures(tmp_path / "rgb")["filters"])
    grey = first_filters(SimpleCNN(2, widths=(4,), in_chans=2))
    assert not grey.rgb and len(grey.tiles()) == 8 and grey.tiles()[0][0].shape == (3, 3)
    _decodes(grey.write_figures(tmp_path / "grey")["filters"])
    json.dumps(grey.to_dict())
    with pytest.raises(ValueError, match="no Conv2d"):
        first_filters(nn.Sequential(nn.Linear(3, 2)))


@pytest.mark.parametrize("layer, size, stride, offset", [
    ("features.0", 3, 1, -1), ("features.2", 5, 1, -2), ("features.4", 6, 2, -2), ("features.5", 10, 2, -4)])
def test_receptive_field_of_a_known_stack_is_the_hand_figure(layer, size, stride, offset):
    field = receptive_field(Stack(), layer, 32)
    assert (field.size, field.stride, field.offset, field.clipped) == ((size, size), (stride, stride),
                                                                       (offset, offset), False)


def test_receptive_fields_of_tiny_cnn_and_of_a_tf_same_padded_stem(lite0):
    # tiny_cnn's block = two 3x3 convs + a 2x2 max-pool: 6 px at stride 2, then 6 + 2*2 + 2*2 + 2 = 16 at 4
    assert receptive_field(_tiny(), "features.1", 32).size == (16, 16)
    assert receptive_field(_tiny(), "features.1", 32).offset == (-6, -6)
    stem = receptive_field(lite0, "conv_stem", 32)
    # TF "same" padding at stride 2 pads only the bottom / right: the first unit starts at pixel 0
    assert (stem.size, stem.stride, stem.offset) == ((3, 3), (2, 2), (0, 0))


def test_a_field_larger_than_twice_the_image_is_marked_clipped_and_crops_the_whole_image():
    field = receptive_field(_tiny(), "features.1", 6)
    assert field.clipped and field.stride == (4, 4)
    image = _images(1, 6)[0]
    np.testing.assert_array_equal(field.crop(image, 0, 0), image)


def _brute_force(model, images, layer, k):
    with torch.no_grad():
        x = to_input(torch.from_numpy(images).permute(0, 3, 1, 2), PRE, channels_last=False)
        act = dict(model.named_modules())[layer](x).numpy()  # the layer is the first module
    peak = act.reshape(len(act), act.shape[1], -1)
    best = np.argsort(-peak.max(axis=2), axis=0)[:k].T  # C x k image indices
    where = peak.argmax(axis=2)  # N x C
    return peak.max(axis=2).T, best, where, act.shape[3]


def test_top_patches_in_one_streaming_pass_equal_a_brute_force_search(tmp_path):
    model = _tiny()
    images = _images(23)
    calls = []
    model.features.register_forward_pre_hook(lambda *_: calls.append(1))
    result = top_patches(model, images, PRE, "features.0.0", k=9, batch_size=5, shown=3,
                         ids=[f"img{i}" for i in range(23)])
    assert len(calls) == 5  # ceil(23 / 5) batches, each seen once
    peaks, best, where, width = _brute_force(model, images, "features.0.0", 9)
    np.testing.assert_array_equal(result.images, best)
    np.testing.assert_allclose(result.values, np.take_along_axis(peaks, best, axis=1), rtol=1e-5)
    flat = where[best, np.arange(8)[:, None]]  # C x k positions of each winner's maximum
    np.testing.assert_array_equal(result.where[..., 0] * width + result.where[..., 1], flat)
    # the crops are the 3 x 3 fields of the winning units, grey past the border
    assert result.field.size == (3, 3) and result.shown == [0, 1, 2]
    for c in result.shown:
        for patch, i, (y, x) in zip(result.patches[c], result.images[c], result.where[c]):
            assert patch.shape == (3, 3, 3)
            y0, x0 = y - 1, x - 1
            for dy in range(3):
                for dx in range(3):
                    inside = 0 <= y0 + dy < 32 and 0 <= x0 + dx < 32
                    expected = images[i, y0 + dy, x0 + dx] if inside else np.full(3, 128)
                    np.testing.assert_array_equal(patch[dy, dx], expected)
    d = json.loads(json.dumps(result.to_dict()))
    assert d["top"]["0"][0]["image"] == f"img{best[0, 0]}" and len(d["top"]) == 3
    _decodes(result.write_figures(tmp_path)["top_patches"])


def test_top_patches_with_fewer_images_than_k_and_bad_requests():
    model = _tiny()
    result = top_patches(model, _images(4), PRE, "features.1", k=9, batch_size=3, channels=[15])
    assert result.values.shape == (16, 9) and np.isnan(result.values[:, 4:]).all() and (result.images[:, 4:] == -1).all()
    assert len(result.patches[15]) == 4 and result.patches[15][0].shape == (16, 16, 3)
    with pytest.raises(ValueError, match="has 16 channels; no channel 16"):
        top_patches(model, _images(4), PRE, "features.1", channels=[16])
    with pytest.raises(ValueError, match="no spatial map"):
        top_patches(model, _images(4), PRE, "classifier")
