"""The registry, every model's forward and backward pass, and the pretrained-weight sources."""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from lesionlens.models import registry
from lesionlens.models.registry import MODELS, ModelSpec, create_model, get_spec
from lesionlens.models.weights import WeightsNotFound, efficientnet_lite_to_timm

SMALL = ["tiny_cnn", "simple_cnn", "efficientnet_lite0", "mobilenet_v2"]


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_builds_for_any_class_count_and_size(name):
    model = create_model(name, num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    features = model.forward_features(torch.randn(1, 3, 64, 64))
    assert model.forward_head(features).shape == (1, 5)
    assert model.get_classifier().out_features == 5


@pytest.mark.parametrize("name", SMALL)
def test_gradients_reach_every_trainable_parameter(name):
    model = create_model(name, num_classes=3, drop_rate=0.2).train()
    loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 64, 64)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert not missing


def test_reset_classifier_keeps_the_seam():
    model = create_model("tiny_cnn", 3)
    model.reset_classifier(7)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)


def test_names_are_unique_and_unknown_names_are_refused():
    spec = get_spec("tiny_cnn")
    with pytest.raises(ValueError, match="registered twice"):
        registry._index([spec, ModelSpec("tiny_cnn", spec.build, "again", spec.preprocessing)])
    with pytest.raises(ValueError, match="unknown model 'vgg99'.*efficientnet_lite0"):
        create_model("vgg99", 2)


def test_pretrained_preprocessing_travels_with_the_weights():
    assert get_spec("efficientnet_lite0").preprocessing_for(True).mean == (0.5, 0.5, 0.5)
    assert get_spec("efficientnet_lite2").preprocessing_for(True).image_size == 260
    assert get_spec("mobilenet_v2").preprocessing_for(True).interpolation == "bilinear"
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_model("simple_cnn", 2, pretrained=True)


def test_a_local_file_with_the_wrong_sha256_is_refused(tmp_path):
    fake = tmp_path / "tf_efficientnet_lite0.pth"
    torch.save({"x": torch.zeros(1)}, fake)
    with pytest.raises(WeightsNotFound, match="does not match the known tf_efficientnet_lite0.pth"):
        create_model("efficientnet_lite0", 2, pretrained=True, weights=tmp_path)
    with pytest.raises(WeightsNotFound, match="no such weights file"):
        create_model("efficientnet_lite0", 2, pretrained=True, weights=tmp_path / "nope.pth")


def test_a_verified_local_file_is_loaded(tmp_path, monkeypatch):
    source = create_model("efficientnet_lite0", 1000)
    path = tmp_path / "tf_efficientnet_lite0.pth"
    torch.save(source.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    spec = get_spec("efficientnet_lite0")
    patched = ModelSpec(spec.name, spec.build, spec.description, spec.preprocessing,
                        weights=type(spec.weights)(spec.weights.filename, digest, spec.weights.preprocessing,
                                                   spec.weights.description, hub=False),
                        timm_name=spec.timm_name)
    monkeypatch.setitem(registry.MODELS, "efficientnet_lite0", patched)
    model = create_model("efficientnet_lite0", 3, pretrained=True, weights=tmp_path)
    assert "sha256 verified" in model.pretrained_source
    assert torch.equal(model.conv_stem.weight, source.conv_stem.weight)
    assert model.get_classifier().out_features == 3


def test_efficientnet_lite_key_conversion():
    """Names the flat ``_blocks.N`` layout would give the timm model's tensors, then convert back."""
    model = create_model("efficientnet_lite0", 1000)
    target = model.state_dict()
    inverse_top = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head", "bn2": "_bn1",
                   "classifier": "_fc"}
    ds = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2"}
    ir = {"conv_pw": "_expand_conv", "bn1": "_bn0", "conv_dw": "_depthwise_conv", "bn2": "_bn1",
          "conv_pwl": "_project_conv", "bn3": "_bn2"}
    flat = {(s, j): n for n, (s, j) in enumerate((s, j) for s, st in enumerate(model.blocks) for j in range(len(st)))}
    source = {}
    for key, value in target.items():
        parts = key.split(".")
        if parts[0] == "blocks":
            s, j = int(parts[1]), int(parts[2])
            names = ds if s == 0 else ir
            source[".".join(["_blocks", str(flat[(s, j)]), names[parts[3]], *parts[4:]])] = value
        else:
            source[".".join([inverse_top[parts[0]], *parts[1:]])] = value
    converted = efficientnet_lite_to_timm(source, model)
    assert converted.keys() == target.keys()
    assert all(torch.equal(converted[k], target[k]) for k in target)
