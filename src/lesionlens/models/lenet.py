"""LeNet-5 as LeCun et al. described it (Proc. IEEE 1998, section II.B), for the history lesson
and for from-scratch baselines on tiny inputs.

Kept from the paper: the layer sizes, the scaled tanh ``1.7159 tanh(2x/3)``, the trainable
sub-sampling layers (S2, S4: average of 2x2, times a coefficient, plus a bias, per map) and the
partial connection table between S2 and C3 (Table I), which gives the paper's parameter counts:
C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164. Changed: the RBF output units become a
linear classifier (trained with cross-entropy like every other model here), the input is RGB
turned into one luminance channel by fixed (not trained) ITU-R BT.601 weights, and inputs larger
than 32x32 are accepted: C5 then gives a map, which the head averages.
"""

from __future__ import annotations

import torch
from torch import nn

# Table I of the paper: the S2 maps each C3 map reads. 6 maps read 3 neighbours, 6 read 4
# neighbours, 3 read 4 non-neighbours and the last reads all 6.
C3_TABLE = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)
MIN_INPUT = 32  # C5's 5x5 kernel needs S4 to be at least 5x5


class ScaledTanh(nn.Module):
    """The paper's squashing function: f(a) = 1.7159 tanh(2a/3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


class Subsampling(nn.Module):
    """S2/S4: 2x2 average, times a trainable coefficient, plus a trainable bias, per map."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.avg_pool2d(x, 2)
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class PartialConv(nn.Module):
    """C3: each output map is a 5x5 convolution over only the input maps its row of ``table`` names.

    Output maps that read the same number of inputs share one grouped convolution over the
    gathered input channels, so the trainable parameters are exactly the table's: 1,516.
    """

    def __init__(self, table: tuple[tuple[int, ...], ...], kernel_size: int = 5):
        super().__init__()
        sizes = sorted({len(row) for row in table})
        self.convs = nn.ModuleList()
        order = []
        for size in sizes:
            rows = [i for i, row in enumerate(table) if len(row) == size]
            gather = torch.tensor([c for i in rows for c in table[i]])
            self.register_buffer(f"gather{size}", gather, persistent=False)
            self.convs.append(nn.Conv2d(len(gather), len(rows), kernel_size, groups=len(rows)))
            order += rows
        self.sizes = sizes
        # grouped outputs come out size by size; put them back in the table's order
        self.register_buffer("order", torch.argsort(torch.tensor(order)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [conv(x.index_select(1, getattr(self, f"gather{size}")))
                for size, conv in zip(self.sizes, self.convs)]
        return torch.cat(outs, 1).index_select(1, self.order)


class LeNet5(nn.Module):
    def __init__(self, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.register_buffer("luma", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1), persistent=False)
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5), ScaledTanh(),  # C1: 156 parameters
            Subsampling(6), ScaledTanh(),  # S2: 12
            PartialConv(C3_TABLE), ScaledTanh(),  # C3: 1,516
            Subsampling(16), ScaledTanh(),  # S4: 32
            nn.Conv2d(16, 120, 5), ScaledTanh(),  # C5: 48,120
        )
        self.num_features = 120
        self.global_pool = nn.AdaptiveAvgPool2d(1)  # 1x1 already at 32x32 input
        self.pre_logits = nn.Sequential(nn.Linear(120, 84), ScaledTanh())  # F6: 10,164
        self.drop_rate = drop_rate
        self.num_classes = num_classes
        self.classifier = nn.Linear(84, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < MIN_INPUT:
            raise ValueError(f"LeNet-5 needs inputs of at least {MIN_INPUT}x{MIN_INPUT} pixels, got {tuple(x.shape[-2:])}")
        x = (x * self.luma).sum(1, keepdim=True)
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(self.global_pool(x).flatten(1))
        x = nn.functional.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def group_matcher(self, coarse: bool = False) -> dict:
        """C1 is the stem; C3 and C5 (with the sub-sampling before each) are the stages."""
        return {"stem": r"^features\.0\.", "blocks": [(r"^features\.[2-5]\.", (1,)), (r"^features\.[6-9]\.", (2,))]}

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(84, num_classes) if num_classes > 0 else nn.Identity()
