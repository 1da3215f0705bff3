"""U-Net on any registered encoder: segmentation, and segmentation with classification (multi-task).

The encoder is a registered classifier built by :func:`~lesionlens.models.registry.create_model`,
so it brings the registry's ImageNet weights from local files (sha256-checked) and its
preprocessing. Its multi-scale features come through timm's ``forward_intermediates`` seam (our own
``SimpleCNN`` has it too); ``feature_info`` gives each level's channels and stride.

The decoder is Ronneberger et al.'s (2015), on the encoder's levels from the deepest up: at each
level the running map doubles its resolution, the encoder's map of that level is concatenated (the
skip connection), and two 3x3 convolution + batch norm + ReLU layers mix them. Doubling is a
setting: a learned 2x2 transposed convolution, or a bilinear resize followed by the 3x3
convolutions (resize-convolution, which avoids the checkerboard artefacts of transposed
convolutions: Odena, Dumoulin & Olah 2016). A last doubling brings the map from the shallowest
level (stride 2 in the registry's networks) to the input's size, and a 1x1 convolution gives one
lesion logit per pixel.

segmentation_models_pytorch was weighed: its U-Net decoder has no transposed-convolution option,
and its timm encoders would load ImageNet weights by another path than the registry's checked one
and could not share one encoder with the classifier's head for multi-task learning; the decoder is
a few standard layers, so it is written here.

With ``with_classifier`` the network's own head stays on the deepest features, and ``forward``
returns ``(mask_logits, class_logits)``: one encoder, two heads (multi-task).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

MIN_DECODER_CHANNELS = 16


def encoder_levels(encoder: nn.Module) -> list[dict]:
    """The encoder's feature levels (``{"num_chs", "reduction"}``), shallow to deep; an error names
    the architecture when it has no multi-scale seam."""
    info = getattr(encoder, "feature_info", None)
    if not info or not hasattr(encoder, "forward_intermediates"):
        raise ValueError(f"{type(encoder).__name__} has no multi-scale features (forward_intermediates / "
                         "feature_info): it cannot be a U-Net encoder; choose a timm network such as "
                         "efficientnet_lite0 or mobilenet_v2, or simple_cnn / tiny_cnn")
    levels = [{"num_chs": int(level["num_chs"]), "reduction": int(level["reduction"])} for level in info]
    reductions = [level["reduction"] for level in levels]
    if any(b != 2 * a for a, b in zip(reductions, reductions[1:])) or reductions[0] not in (1, 2):
        raise ValueError(f"{type(encoder).__name__}: feature levels at strides {reductions}; a U-Net needs each "
                         "level at twice the stride of the one before, from stride 1 or 2")
    return levels


def decoder_channels(width: int, steps: int) -> list[int]:
    """Channels after each decoder step from the deepest: ``width``, halved per step, at least 16."""
    if width < MIN_DECODER_CHANNELS:
        raise ValueError(f"decoder_width {width} is below the smallest decoder width, {MIN_DECODER_CHANNELS}")
    return [max(MIN_DECODER_CHANNELS, width >> k) for k in range(steps)]


class ConvBlock(nn.Sequential):
    """Two 3x3 convolution + batch norm + ReLU layers."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__(
            nn.Conv2d(in_chs, out_chs, 3, padding=1, bias=False), nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True),
            nn.Conv2d(out_chs, out_chs, 3, padding=1, bias=False), nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """Double the resolution of ``x``, join the skip connection, mix with a :class:`ConvBlock`."""

    def __init__(self, in_chs: int, skip_chs: int, out_chs: int, upsample: str):
        super().__init__()
        if upsample not in ("transposed", "resize"):
            raise ValueError(f"unknown decoder upsampling {upsample!r}; choose transposed or resize")
        self.upsample = upsample
        # The transposed convolution also halves the channels, as in the original U-Net.
        self.up = nn.ConvTranspose2d(in_chs, in_chs // 2, 2, stride=2) if upsample == "transposed" else None
        up_chs = in_chs // 2 if upsample == "transposed" else in_chs
        self.block = ConvBlock(up_chs + skip_chs, out_chs)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.up is not None:
            x = self.up(x)
        else:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.block(x)


class UNet(nn.Module):
    """``encoder`` (a registered network with the multi-scale seam) + a U-Net decoder; with
    ``with_classifier`` the encoder's own classification head as well (see the module docstring)."""

    def __init__(self, encoder: nn.Module, decoder_width: int = 128, upsample: str = "resize",
                 with_classifier: bool = False):
        super().__init__()
        levels = encoder_levels(encoder)
        self.encoder = encoder
        self.with_classifier = with_classifier
        self.upsample = upsample
        skips = [level["num_chs"] for level in levels]
        self.first_stride = levels[0]["reduction"]
        # One doubling per level above the deepest, and one more from stride 2 to the input's size.
        joins = [*skips[-2::-1], *([0] if self.first_stride == 2 else [])]  # skip channels per doubling
        outs = decoder_channels(decoder_width, len(joins))
        ins = [skips[-1], *outs[:-1]]
        self.decoder = nn.ModuleList(Up(i, j, o, upsample) for i, j, o in zip(ins, joins, outs))
        self.mask_head = nn.Conv2d(outs[-1] if outs else skips[-1], 1, 1)

    @property
    def pretrained_source(self) -> str | None:
        return getattr(self.encoder, "pretrained_source", None)

    def segment(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Mask logits (N x 1 x H x W) from the encoder's levels, shallow to deep."""
        x = features[-1]
        skips = features[-2::-1]
        for k, up in enumerate(self.decoder):
            x = up(x, skips[k] if k < len(skips) else None)
        return self.mask_head(x)

    def forward(self, x: torch.Tensor):
        if self.with_classifier:
            deepest, features = self.encoder.forward_intermediates(x)
            return self.segment(features), self.encoder.forward_head(deepest)
        return self.segment(self.encoder.forward_intermediates(x, intermediates_only=True))


def drop_classifier(encoder: nn.Module) -> nn.Module:
    """Remove what only the classification head uses (timm's ``prune_intermediate_layers``: the
    final 1x1 convolution, its norm and the classifier; else ``reset_classifier(0)``), so a
    segmentation-only network holds no parameter that never trains."""
    source = getattr(encoder, "pretrained_source", None)
    if hasattr(encoder, "prune_intermediate_layers"):
        encoder.prune_intermediate_layers(len(encoder.feature_info), prune_norm=True, prune_head=True)
    elif hasattr(encoder, "reset_classifier"):
        encoder.reset_classifier(0)
    encoder.pretrained_source = source
    return encoder


def create_unet(name: str, num_classes: int, *, multitask: bool = False, pretrained: bool = False,
                weights: str | None = None, drop_rate: float = 0.0, decoder_width: int = 128,
                upsample: str = "resize") -> UNet:
    """A U-Net on the registered network ``name`` (its ImageNet weights where ``pretrained``); with
    ``multitask`` the network keeps a ``num_classes`` head beside the mask head."""
    from lesionlens.models.registry import create_model, get_spec

    get_spec(name).require(2, "a U-Net on a registered encoder (for volumes, unet3d is the U-Net)", output="classes")
    encoder = create_model(name, num_classes if multitask else 1, pretrained=pretrained, weights=weights,
                           drop_rate=drop_rate)
    return UNet(encoder if multitask else drop_classifier(encoder), decoder_width, upsample, with_classifier=multitask)


class ClassifierView(nn.Module):
    """A multi-task U-Net seen as a classifier (its class logits only), for the classification
    evaluation, calibration and operating points."""

    def __init__(self, unet: UNet):
        super().__init__()
        if not unet.with_classifier:
            raise ValueError("this U-Net has no classification head (a segmentation-only bundle)")
        self.unet = unet

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(x)[1]

    def get_classifier(self) -> nn.Module:
        return self.unet.encoder.get_classifier()
