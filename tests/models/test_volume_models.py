"""The 3D models of the registry: shapes, finite gradients that reach every parameter, the timm seam
of the classifiers, parameter counts by hand, and the refusals that keep 2D and 3D models apart."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lesionlens.models.profile import count_parameters, model_cost
from lesionlens.models.registry import MODELS, create_model, get_spec

VOLUME_MODELS = [name for name, spec in MODELS.items() if spec.dims == 3]
CLASSIFIERS_3D = [name for name in VOLUME_MODELS if get_spec(name).output == "classes"]


def assert_gradients_everywhere(model: nn.Module) -> None:
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_the_registry_holds_3d_classifiers_and_a_3d_unet():
    assert {"tiny_cnn3d", "simple_cnn3d", "resnet3d", "unet3d"} <= set(VOLUME_MODELS)
    assert get_spec("unet3d").output == "mask"
    assert all(get_spec(n).volume_preprocessing().size == (32, 32, 32) for n in VOLUME_MODELS)


@pytest.mark.parametrize("name", CLASSIFIERS_3D)
def test_every_3d_classifier_trains_and_predicts(name):
    torch.manual_seed(0)
    side = get_spec(name).min_size
    model = create_model(name, num_classes=3, drop_rate=0.2).train()
    out = model(torch.randn(2, 1, side, side, side))
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    nn.functional.cross_entropy(out, torch.tensor([0, 2])).backward()
    assert_gradients_everywhere(model)
    assert model.get_classifier().weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():  # the seam, at another grid (not a cube)
        features = model.forward_features(torch.randn(1, 1, side, side + 16, side))
        assert features.shape[1] == model.num_features
        assert model.forward_head(features).shape == (1, 3)
        assert model.forward_head(features, pre_logits=True).shape == (1, model.num_features)
    model.reset_classifier(5)
    assert model(torch.randn(1, 1, side, side, side)).shape == (1, 5)


def test_the_3d_unet_gives_one_logit_per_voxel_and_learns_everywhere():
    torch.manual_seed(0)
    model = create_model("unet3d", 1).train()
    x = torch.randn(2, 1, 16, 24, 16)
    out = model(x)
    assert out.shape == (2, 1, 16, 24, 16) and torch.isfinite(out).all()
    target = (x > 0).float()
    nn.functional.binary_cross_entropy_with_logits(out, target).backward()
    assert_gradients_everywhere(model)
    assert create_model("unet3d", 2)(x).shape == (2, 2, 16, 24, 16)


def test_simple_cnn3d_parameters_by_hand():
    """Four blocks of two 3x3x3 convolutions (no bias) + batch norm, widths 16-32-64-128, a dense layer."""
    prev, expected = 1, 0
    for w in (16, 32, 64, 128):
        expected += 27 * prev * w + 2 * w + 27 * w * w + 2 * w
        prev = w
    assert count_parameters("simple_cnn3d", 4) == expected + 128 * 4 + 4


def test_resnet3d_is_monais_resnet18_with_one_input_channel():
    """MONAI's resnet18 (spatial_dims=3, one channel in) and ours hold the same parameters; the stem
    is the 7^3 stride-2 convolution, so a 32^3 volume is 1^3 after the last stage."""
    from monai.networks.nets import resnet18

    with torch.device("meta"):
        monai_net = resnet18(spatial_dims=3, n_input_channels=1, num_classes=3)
    assert count_parameters("resnet3d", 3) == sum(p.numel() for p in monai_net.parameters())
    model = create_model("resnet3d", 3)
    assert model.net.conv1.stride == (2, 2, 2)
    with torch.no_grad():
        assert model.eval().forward_features(torch.randn(1, 1, 32, 32, 32)).shape == (1, 512, 1, 1, 1)


def test_costs_cover_3d_models():
    cost = model_cost("tiny_cnn3d", 3)
    assert cost.image_size == 32 and cost.macs > 0
    assert model_cost("tiny_cnn3d", 3, 16).macs < cost.macs


def test_2d_and_3d_models_refuse_each_others_uses():
    with pytest.raises(ValueError, match="simple_cnn3d is a 3D model for volumes.*needs a 2D model: .*tiny_cnn"):
        get_spec("simple_cnn3d").check_input_size(128)
    with pytest.raises(ValueError, match="resnet18 is a 2D model for images; volume preprocessing needs a 3D"):
        get_spec("resnet18").volume_preprocessing()
    with pytest.raises(ValueError, match="the avg top model needs a 2D model"):
        create_model("simple_cnn3d", 2, head="avg")
    with pytest.raises(ValueError, match="has no pretrained weights"):
        create_model("resnet3d", 2, pretrained=True)
    with pytest.raises(ValueError, match="unet3d needs volume sides of at least 8 voxels and multiples of 8"):
        get_spec("unet3d").check_volume_size((32, 32, 20))
    from lesionlens.models.unet import create_unet

    with pytest.raises(ValueError, match="tiny_cnn3d is a 3D model .*for volumes, unet3d is the U-Net"):
        create_unet("tiny_cnn3d", 1)
