"""A simple CNN for from-scratch baselines: conv-BN-ReLU-pool blocks, global pooling, dense head.

It exposes the same seam as timm models (``forward_features`` / ``forward_head`` /
``reset_classifier`` / ``get_classifier``, and ``feature_info`` / ``forward_intermediates`` for the
multi-scale features a U-Net decoder reads), so freezing, embeddings, activation maps and
segmentation treat it like any backbone. With ``spatial_dims=3`` the same network takes volumes
(:class:`lesionlens.models.volume.SimpleCNN3D`).
"""

from __future__ import annotations

import torch
from torch import nn


# per number of spatial dimensions: convolution, batch norm, max pool, global average pool
LAYERS = {2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d),
          3: (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.AdaptiveAvgPool3d)}


class SimpleCNN(nn.Module):
    def __init__(self, num_classes: int, widths: tuple[int, ...] = (32, 64, 128, 256),
                 drop_rate: float = 0.0, in_chans: int = 3, spatial_dims: int = 2):
        super().__init__()
        if spatial_dims not in LAYERS:
            raise ValueError(f"SimpleCNN takes images (2) or volumes (3), got spatial_dims={spatial_dims}")
        conv, norm, pool, global_pool = LAYERS[spatial_dims]
        blocks, prev = [], in_chans
        for w in widths:
            blocks.append(nn.Sequential(
                conv(prev, w, 3, padding=1, bias=False),
                norm(w),
                nn.ReLU(inplace=True),
                conv(w, w, 3, padding=1, bias=False),
                norm(w),
                nn.ReLU(inplace=True),
                pool(2),
            ))
            prev = w
        self.features = nn.Sequential(*blocks)
        self.num_features = prev
        # each block ends with a 2x2 max pool: block i's output is at stride 2^(i+1)
        self.feature_info = [{"num_chs": w, "reduction": 2 ** (i + 1), "module": f"features.{i}"}
                             for i, w in enumerate(widths)]
        self.global_pool = global_pool(1)
        self.drop_rate = drop_rate
        self.classifier = nn.Linear(prev, num_classes) if num_classes > 0 else nn.Identity()
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_intermediates(self, x: torch.Tensor, intermediates_only: bool = False):
        """Every block's output (timm's seam); with ``intermediates_only=False`` also the last one,
        which is ``forward_features``'s."""
        intermediates = []
        for block in self.features:
            x = block(x)
            intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        x = nn.functional.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's parameter groups: the first block is the stem, each later block a stage."""
        return {"stem": r"^features\.0\.", "blocks": [(r"^features\.(\d+)", None), (r"^classifier", (99999,))]}

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
