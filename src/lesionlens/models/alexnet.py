"""AlexNet (Krizhevsky et al. 2012) as torchvision builds it, with timm's seam added.

timm has no AlexNet; torchvision's is the reference (61,100,840 parameters with 1,000 classes, the
single-tower variant of "One weird trick", arXiv:1404.5997). Subclassing keeps torchvision's
parameter names, so its state dicts load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import AlexNet as _TorchvisionAlexNet


class AlexNet(_TorchvisionAlexNet):
    """``features`` (five convolutions) | ``avgpool`` 6x6 + ``classifier`` (two 4,096-unit layers + output)."""

    def __init__(self, num_classes: int, drop_rate: float = 0.5):
        super().__init__(num_classes=max(num_classes, 1), dropout=drop_rate)
        self.num_features = 256  # channels of the feature map
        self.num_classes = num_classes
        if num_classes == 0:
            self.classifier[6] = nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        x = self.classifier[:6](x)
        return x if pre_logits else self.classifier[6](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def group_matcher(self, coarse: bool = False) -> dict:
        """The first convolution is the stem, each later convolution a stage, the dense layers the head."""
        return {"stem": r"^features\.0\.", "blocks": [(r"^features\.(\d+)", None), (r"^classifier", (99999,))]}

    def get_classifier(self) -> nn.Module:
        return self.classifier[6]

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier[6] = nn.Linear(4096, num_classes) if num_classes > 0 else nn.Identity()
