"""Top models: what turns a backbone's feature map into class scores ("CNN for classification").

    linear  the architecture's own head (its pooling, and for VGG / AlexNet / LeNet its dense
            layers) with a new last layer for the classes: what ``create_model`` always built
    avg     global average pooling + one dense layer (softmax in the loss)
    max     global max pooling + one dense layer: keeps the strongest local response, which suits
            small lesion details more than an average over mostly-skin pixels may
    mlp     flatten + a dense hidden layer (ReLU, dropout) + a dense layer: the classic top model
            of the VGG era; its size depends on the feature map's, so on the input size

Every top model returns logits; the softmax is in the loss and in prediction. A model with a new top
model is a :class:`WithHead`: the backbone without whatever its own head had (VGG's 4,096-unit
layers, MobileNetV3's head convolution), plus ``head``. It keeps timm's seam, so freezing, embeddings
and activation maps treat it like any backbone.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from lesionlens.config import Head, choices

HEADS = choices(Head)  # "linear" first: the architecture's own head
MLP_HIDDEN = 256  # units of the mlp top model's hidden layer (the course's Dense(256))


class TopModel(nn.Module):
    def __init__(self, kind: str, feature_shape: tuple[int, int, int], num_classes: int, drop_rate: float = 0.0,
                 hidden: int = MLP_HIDDEN):
        super().__init__()
        if kind not in HEADS[1:]:
            raise ValueError(f"unknown top model {kind!r}; choose one of {list(HEADS)}")
        self.kind = kind
        channels, height, width = feature_shape
        if kind == "mlp":
            self.pool = nn.Flatten(1)
            self.hidden = nn.Sequential(nn.Linear(channels * height * width, hidden), nn.ReLU(inplace=True))
            self.num_features = hidden
        else:
            pool = nn.AdaptiveAvgPool2d(1) if kind == "avg" else nn.AdaptiveMaxPool2d(1)
            self.pool = nn.Sequential(pool, nn.Flatten(1))
            self.hidden = nn.Identity()
            self.num_features = channels
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.hidden(self.pool(x)))
        return x if pre_logits else self.fc(x)

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


class WithHead(nn.Module):
    """``backbone.forward_features`` followed by a :class:`TopModel`."""

    def __init__(self, backbone: nn.Module, head: TopModel):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_classes = head.fc.out_features if isinstance(head.fc, nn.Linear) else 0
        self.pretrained_source = getattr(backbone, "pretrained_source", None)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.forward_features(x))

    def group_matcher(self, coarse: bool = False) -> dict:
        """The backbone's groups under ``backbone.``; the top model matches none, so it comes last."""
        return {key: _prefixed(value) for key, value in self.backbone.group_matcher(coarse=coarse).items()}

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head.reset(num_classes)


def _prefixed(spec):
    def prefix(regex: str) -> str:
        return r"^backbone\.(?:" + re.sub(r"^\^", "", regex) + ")"

    if spec is None:
        return None
    if isinstance(spec, str):
        return prefix(spec)
    return [(prefix(regex), suffix) for regex, suffix in spec]


def modules_used_by_features(model: nn.Module, image_size: int) -> tuple[set[str], tuple[int, int, int]]:
    """Names of the modules ``model.forward_features`` calls, and the shape of the map it returns.

    Run on a ``meta``-device copy of the architecture (shapes only, no arithmetic), so it costs
    nothing even for VGG.
    """
    called: set[str] = set()
    hooks = [module.register_forward_pre_hook(lambda m, args, name=name: called.add(name))
             for name, module in model.named_modules()]
    try:
        with torch.no_grad():
            out = model.forward_features(torch.empty(1, 3, image_size, image_size, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return called, tuple(out.shape[1:])


def head_side_modules(model: nn.Module, used: set[str]) -> list[str]:
    """Modules holding parameters that ``forward_features`` never calls (nor any of its parents):
    the architecture's own head."""
    names = []
    for name, module in model.named_modules():
        if not name or not any(True for _ in module.parameters(recurse=False)):
            continue
        parts = name.split(".")
        if not any(".".join(parts[:i]) in used for i in range(1, len(parts) + 1)):
            names.append(name)
    return names


def strip_modules(model: nn.Module, names: list[str]) -> None:
    """Replace each named submodule with ``nn.Identity`` (its parameters leave the model)."""
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if isinstance(parent, nn.Sequential) or isinstance(parent, nn.ModuleList):
            parent[int(child)] = nn.Identity()
        else:
            setattr(parent, child, nn.Identity())
