"""A bundle opened for explanation: its network behind the features / head seam, its layers by
name, and probabilities under its decision rule.

Every attribution method in :mod:`lesionlens.explain.attribution` targets a *layer*: a module whose
output is a stack of feature maps. ``features`` (the default) is the output of
``forward_features``, the maps the server's CAM and the classifier's pooling read; the stages a timm
model lists in ``feature_info`` (or a simple CNN's ``features.<i>`` blocks) give earlier, finer maps.
The network is wrapped so that ``features`` is a module of its own (an identity tap between
``forward_features`` and ``forward_head``): hooks on it see exactly the tensor the head pools,
for any architecture with the seam.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lesionlens.bundle.card import Card, read_card
from lesionlens.data.images import Preprocessing
from lesionlens.data.transforms import to_input

FEATURES = "features"


class Tapped(nn.Module):
    """``net`` with an identity module ``tap`` on the output of ``forward_features``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.tap = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.tap(self.net.forward_features(x)))


@dataclass(frozen=True)
class Layer:
    name: str  # "features", or a module name of the network ("blocks.4", "layer3", "features.1")
    channels: int
    height: int
    width: int

    def describe(self) -> str:
        return f"{self.name} ({self.channels} x {self.height} x {self.width})"


class Subject:
    """What the explainers need of a bundle (``Subject.open(path)``), or of any network with the
    seam (``Subject(model, classes, preprocessing)``, as the tests build it)."""

    def __init__(self, model: nn.Module, classes: list[str], preprocessing: Preprocessing, card: Card | None = None):
        if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
            raise TypeError(f"{type(model).__name__} has no forward_features / forward_head seam to explain")
        self.model = Tapped(model.float().eval()).eval()
        self.classes = list(classes)
        self.preprocessing = preprocessing
        self.card = card
        self._layers: list[Layer] | None = None

    @classmethod
    def open(cls, bundle: str | Path) -> "Subject":
        from lesionlens.inference import load_model

        card = read_card(bundle)
        return cls(load_model(card), card.classes, card.preprocessing, card)

    @property
    def net(self) -> nn.Module:
        return self.model.net

    @property
    def size(self) -> int:
        return self.preprocessing.image_size

    # -- layers -----------------------------------------------------------------------------------
    def layers(self) -> list[Layer]:
        """The layers a map can be taken at, input to output, with their output shapes at the
        bundle's image size; the last is ``features``."""
        if self._layers is None:
            names = stage_names(self.net)
            modules = [self.module(n) for n in names]
            shapes: dict[str, tuple] = {}
            hooks = [m.register_forward_hook(lambda _m, _i, out, n=n: shapes.__setitem__(n, tuple(out.shape)))
                     for n, m in zip(names, modules)]
            try:
                with torch.no_grad():
                    self.model(torch.zeros(1, 3, self.size, self.size))
            finally:
                for h in hooks:
                    h.remove()
            self._layers = [Layer(n, *shapes[n][1:4]) for n in names if n in shapes and len(shapes[n]) == 4]
        return self._layers

    def layer(self, name: str | None = None) -> Layer:
        """A layer by name (None: ``features``); an unknown name is an error listing the known ones."""
        name = name or FEATURES
        known = {layer.name: layer for layer in self.layers()}
        if name in known:
            return known[name]
        modules = dict(self.net.named_modules())
        if name not in modules:
            raise ValueError(f"no layer {name!r} in {type(self.net).__name__}; layers with feature maps: "
                             + ", ".join(layer.describe() for layer in self.layers()))
        shape: list = []
        hook = modules[name].register_forward_hook(lambda _m, _i, out: shape.append(tuple(out.shape)))
        try:
            with torch.no_grad():
                self.model(torch.zeros(1, 3, self.size, self.size))
        finally:
            hook.remove()
        if not shape or len(shape[0]) != 4:
            raise ValueError(f"layer {name!r} gives no feature maps (output {shape[0] if shape else 'none'}); choose one "
                             "of: " + ", ".join(layer.describe() for layer in self.layers()))
        return Layer(name, *shape[0][1:4])

    def module(self, name: str) -> nn.Module:
        return self.model.tap if name == FEATURES else dict(self.net.named_modules())[name]

    # -- inputs and outputs -----------------------------------------------------------------------
    def inputs(self, images: np.ndarray) -> torch.Tensor:
        """N x H x W x 3 uint8 -> the network's float input."""
        batch = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        return to_input(batch, self.preprocessing, channels_last=False).contiguous()

    @torch.no_grad()
    def logits(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        out = [self.model(self.inputs(images[i:i + batch_size])).float().numpy()
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def probabilities(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class probabilities of the plain view (no test-time augmentation: the maps explain one
        forward pass), with the bundle's temperature where it has one."""
        logits = self.logits(images, batch_size)
        if self.card is not None:
            return self.card.rule.probabilities(logits)
        return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


def stage_names(net: nn.Module) -> list[str]:
    """Candidate layers in order: timm's ``feature_info`` modules, else the blocks of a
    ``features`` Sequential, then ``features`` (the output of ``forward_features``)."""
    info = getattr(net, "feature_info", None)
    names: list[str] = []
    if info is not None:
        entries = info.get_dicts() if hasattr(info, "get_dicts") else info
        names = [e["module"] for e in entries if e.get("module")]
    elif isinstance(getattr(net, "features", None), nn.Sequential):
        names = [f"features.{i}" for i in range(len(net.features))]
    modules = dict(net.named_modules())
    return [n for n in names if n in modules] + [FEATURES]
