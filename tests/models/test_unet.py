"""The U-Net on registered encoders: shapes at every input size the encoder takes, both decoder
upsamplings, gradients reaching every parameter, the multi-task head, and the errors."""

from __future__ import annotations

import pytest
import torch

from lesionlens.models.unet import ClassifierView, UNet, create_unet, decoder_channels


@pytest.mark.parametrize("upsample", ["resize", "transposed"])
@pytest.mark.parametrize("name,size", [("tiny_cnn", 32), ("efficientnet_lite0", 64), ("mobilenet_v2", 64)])
def test_mask_logits_have_the_input_size_and_every_parameter_learns(name, size, upsample):
    torch.manual_seed(0)
    net = create_unet(name, 3, decoder_width=32, upsample=upsample)
    x = torch.randn(2, 3, size, size)
    y = net(x)
    assert y.shape == (2, 1, size, size) and torch.isfinite(y).all()
    y.mean().backward()
    silent = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert silent == []  # the segmentation-only network holds no head that never trains


def test_transposed_and_resize_decoders_differ_in_their_layers():
    resize, transposed = (create_unet("tiny_cnn", 2, upsample=u) for u in ("resize", "transposed"))
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in resize.modules())
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in transposed.modules()) == len(transposed.decoder)


def test_multitask_gives_masks_and_class_logits_from_one_encoder():
    net = create_unet("tiny_cnn", 3, multitask=True, decoder_width=16).eval()
    x = torch.randn(2, 3, 32, 32)
    masks, logits = net(x)
    assert masks.shape == (2, 1, 32, 32) and logits.shape == (2, 3)
    assert torch.equal(ClassifierView(net)(x), logits)
    # the class head reads the same encoder features as a plain classifier would
    assert torch.allclose(logits, net.encoder(x), atol=1e-6)
    with pytest.raises(ValueError, match="no classification head"):
        ClassifierView(create_unet("tiny_cnn", 3))


def test_decoder_widths_halve_to_a_floor_and_refuse_too_small():
    assert decoder_channels(128, 5) == [128, 64, 32, 16, 16]
    with pytest.raises(ValueError, match="below the smallest"):
        decoder_channels(8, 3)


def test_an_encoder_without_multiscale_features_is_refused():
    from lesionlens.models.registry import create_model

    with pytest.raises(ValueError, match="lenet5|LeNet5.*cannot be a U-Net encoder"):
        UNet(create_model("lenet5", 2))


@pytest.mark.shared
def test_pretrained_encoder_comes_from_the_registry_weights(shared):
    net = create_unet("efficientnet_lite0", 1, pretrained=True, weights=shared / "weights")
    assert "sha256 verified" in net.pretrained_source
