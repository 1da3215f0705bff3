"""Top models: linear (the architecture's own head), global average / max pooling, flatten + MLP."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lesionlens.models.freeze import freeze_stages
from lesionlens.models.heads import MLP_HIDDEN, WithHead
from lesionlens.models.profile import count_parameters, model_cost
from lesionlens.models.registry import create_model, own_head_modules, top_modules


def test_vgg_without_its_dense_layers_is_the_published_convolutional_base():
    """Keras' VGG16 / VGG19 with include_top=False have 14,714,688 / 20,024,384 parameters: a new
    avg or max top model adds one dense layer on the 512 channels, nothing else."""
    for name, base in (("vgg16", 14_714_688), ("vgg19", 20_024_384)):
        for head in ("avg", "max"):
            assert count_parameters(name, 7, head=head) == base + 512 * 7 + 7


def test_mlp_head_flattens_the_feature_map_at_the_input_size():
    """VGG16 at 64 px ends in a 512 x 2 x 2 map; EfficientNet-Lite0 at 160 px in 1280 x 5 x 5."""
    assert count_parameters("vgg16", 3, head="mlp", image_size=64) == (
        14_714_688 + 512 * 2 * 2 * MLP_HIDDEN + MLP_HIDDEN + MLP_HIDDEN * 3 + 3)
    lite0_base = count_parameters("efficientnet_lite0", 3, head="avg") - (1280 * 3 + 3)
    assert count_parameters("efficientnet_lite0", 3, head="mlp", image_size=160) == (
        lite0_base + 1280 * 5 * 5 * MLP_HIDDEN + MLP_HIDDEN + MLP_HIDDEN * 3 + 3)
    with pytest.raises(ValueError, match="needs the input size"):
        create_model("tiny_cnn", 3, head="mlp")


def test_the_own_head_is_what_forward_features_does_not_use():
    assert own_head_modules("vgg16") == ["pre_logits.fc1", "pre_logits.fc2", "head.fc"]
    assert own_head_modules("mobilenet_v3") == ["conv_head", "classifier"]
    assert own_head_modules("alexnet") == ["classifier.1", "classifier.4", "classifier.6"]
    assert own_head_modules("efficientnet_lite0") == ["classifier"]
    assert own_head_modules("lenet5") == ["pre_logits.0", "classifier"]


@pytest.mark.parametrize("head", ["avg", "max", "mlp"])
def test_top_models_train_and_keep_the_seam(head):
    model = create_model("simple_cnn", 3, head=head, image_size=48, drop_rate=0.3).train()
    assert isinstance(model, WithHead)
    out = model(torch.randn(4, 3, 48, 48))
    assert out.shape == (4, 3)
    nn.functional.cross_entropy(out, torch.tensor([0, 1, 2, 0])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    x = torch.randn(2, 3, 48, 48)
    features = model.forward_features(x)
    assert features.shape == (2, 256, 3, 3)
    assert torch.allclose(model.forward_head(features), model(x))
    embedding = model.forward_head(features, pre_logits=True)
    assert embedding.shape == (2, MLP_HIDDEN if head == "mlp" else 256)
    model.reset_classifier(5)
    assert model(x).shape == (2, 5) and model.get_classifier().out_features == 5


def test_max_and_avg_pool_what_their_names_say():
    model = create_model("tiny_cnn", 2, head="max").eval()
    features = torch.zeros(1, 16, 4, 4)
    features[0, :, 1, 2] = 8.0
    pooled = model.forward_head(features, pre_logits=True)
    assert torch.equal(pooled, torch.full((1, 16), 8.0))
    model = create_model("tiny_cnn", 2, head="avg").eval()
    assert torch.equal(model.forward_head(features, pre_logits=True), torch.full((1, 16), 0.5))


def test_a_top_model_keeps_the_backbones_stages_for_freezing():
    model = create_model("simple_cnn", 3, head="avg")
    names = {n for n, _ in model.named_parameters()}
    frozen = names - freeze_stages(model, top_modules("simple_cnn", model), 2)
    assert frozen == {n for n in names if n.startswith(("backbone.features.0.", "backbone.features.1.",
                                                         "backbone.features.2."))}
    assert {"head.fc.weight", "head.fc.bias"} <= names - frozen


def test_unknown_head_is_refused():
    with pytest.raises(ValueError, match="unknown head 'gap'.*linear"):
        create_model("tiny_cnn", 2, head="gap")


def test_macs_count_the_top_model():
    linear = model_cost("vgg16", 1000, 224).macs
    avg = model_cost("vgg16", 1000, 224, head="avg").macs
    assert linear - avg == 25088 * 4096 + 4096 * 4096 + 4096 * 1000 - 512 * 1000
