"""Feature maps inside a network: which layers there are, and what they hold for an image.

Layers are named by the model's own module names (``dict(model.named_modules())``); their outputs are
read with forward hooks, which only read activations (attribution methods live in
:mod:`lesionlens.explain.attribution`). ``features`` names the output of ``model.forward_features``,
the seam every model of the registry exposes. The *stages* are the layers worth offering by default,
shallow to deep: a timm model's ``feature_info`` modules, or the blocks of a ``features`` sequence
(SimpleCNN, tiny_cnn, AlexNet, LeNet), then ``features``.

The figure shows, for each chosen layer, the channels most active on the image (by mean activation),
each normalised to its own range for display only; the result keeps the raw maps.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from lesionlens.data.images import Preprocessing  # noqa: E402
from lesionlens.data.transforms import to_input  # noqa: E402
from lesionlens.explain.display import display, save_figure  # noqa: E402
from lesionlens.explain.subject import FEATURES  # noqa: E402
from lesionlens.explain.subject import stage_names as stages  # noqa: E402

TOP_CHANNELS = 8  # channels per layer in the figure: enough to see variety, small enough to read


def check_layers(model: nn.Module, layers: Sequence[str]) -> list[str]:
    """``layers`` as given, or a ValueError naming the unknown ones and the stages to choose from."""
    modules = dict(model.named_modules())
    unknown = [name for name in layers if name != FEATURES and name not in modules]
    if unknown:
        raise ValueError(f"no layer named {', '.join(map(repr, unknown))} in {type(model).__name__}; "
                         f"its stages are {', '.join(stages(model))} (any module name works)")
    return list(layers)


@contextmanager
def hooked(model: nn.Module, layers: Sequence[str], keep_graph: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """While open, every forward pass writes the outputs of ``layers`` into the yielded dict.

    Outputs are detached copies (a later in-place ReLU must not change them) unless ``keep_graph``,
    where they stay in the autograd graph so a gradient can start from them.
    """
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_module, _inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            seen[name] = out if keep_graph else out.detach().clone()
        return hook

    handles = [modules[name].register_forward_hook(keep(name)) for name in check_layers(model, layers)
               if name != FEATURES]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def run_to(model: nn.Module, x: torch.Tensor, layers: Sequence[str], keep_graph: bool = False) -> dict[str, torch.Tensor]:
    """The outputs of ``layers`` for input ``x``; the head runs only when a layer sits in it."""
    with hooked(model, layers, keep_graph) as seen:
        features = model.forward_features(x)
        if any(name not in seen for name in layers if name != FEATURES):
            model.forward_head(features)
    missing = [name for name in layers if name != FEATURES and name not in seen]
    if missing:
        raise ValueError(f"layer {', '.join(map(repr, missing))} of {type(model).__name__} did not run "
                         f"in forward_features / forward_head")
    if FEATURES in layers:
        seen[FEATURES] = features if keep_graph else features.detach()
    return {name: seen[name] for name in layers}


@torch.no_grad()
def layer_shapes(model: nn.Module, image_size: int, layers: Sequence[str] | None = None) -> dict[str, tuple[int, ...]]:
    """Output shape (channels, height, width) of each of ``layers`` (the stages by default) for a
    square input of ``image_size`` pixels: what ``--layer`` can be, and how coarse each map is."""
    layers = stages(model) if layers is None else layers
    was_training = model.training
    model.eval()
    try:
        out = run_to(model, torch.zeros(1, 3, image_size, image_size), layers)
    finally:
        model.train(was_training)
    return {name: tuple(out[name].shape[1:]) for name in layers}


@dataclass
class FeatureMaps:
    """Raw activations of some layers for one image (C x h x w per layer)."""

    image: np.ndarray  # H x W x 3 uint8, as the model saw it
    maps: dict[str, np.ndarray]
    top: int = TOP_CHANNELS

    def most_active(self, layer: str) -> np.ndarray:
        """Channel indices of ``layer``, most active first (mean activation over the map)."""
        values = self.maps[layer]
        return np.argsort(-values.reshape(len(values), -1).mean(axis=1), kind="stable")[:self.top]

    def to_dict(self) -> dict:
        return {layer: {"shape": list(values.shape),
                        "most_active": [{"channel": int(c), "mean": float(values[c].mean()),
                                         "max": float(values[c].max())} for c in self.most_active(layer)]}
                for layer, values in self.maps.items()}

    def lines(self) -> list[str]:
        out = ["Feature maps (raw activations; most active channels by mean):"]
        for layer, values in self.maps.items():
            channels = ", ".join(str(int(c)) for c in self.most_active(layer))
            out.append(f"  {layer}: {' x '.join(map(str, values.shape))}, channels {channels}")
        return out

    def write_figures(self, out_dir: str | Path) -> dict[str, Path]:
        rows = [(layer, [(display(self.maps[layer][c]), f"ch {c}") for c in self.most_active(layer)])
                for layer in self.maps]
        width = max(len(tiles) for _, tiles in rows) + 1
        fig, axes = plt.subplots(len(rows), width, figsize=(1.6 * width, 1.7 * len(rows)), squeeze=False)
        for r, (layer, tiles) in enumerate(rows):
            axes[r, 0].imshow(self.image)
            axes[r, 0].set_title(layer, fontsize=8)
            for c, (tile, title) in enumerate(tiles, start=1):
                axes[r, c].imshow(tile, cmap="viridis", vmin=0, vmax=1)
                axes[r, c].set_title(title, fontsize=7)
        for ax in axes.ravel():
            ax.axis("off")
        fig.suptitle("Most active channels per layer (each normalised for display)", fontsize=10)
        return {"feature_maps": save_figure(fig, Path(out_dir) / "feature_maps.png")}


@torch.no_grad()
def feature_maps(model: nn.Module, image: np.ndarray, pre: Preprocessing, layers: Sequence[str] | None = None,
                 top: int = TOP_CHANNELS) -> FeatureMaps:
    """Raw feature maps of ``layers`` (the stages by default) for one decoded H x W x 3 uint8 image."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"feature maps need one H x W x 3 uint8 image, got {image.dtype} {image.shape}")
    layers = stages(model) if layers is None else check_layers(model, layers)
    pixels = torch.from_numpy(image.copy())  # a copy: a row of the decoded-image cache is read-only
    x = to_input(pixels.permute(2, 0, 1)[None], pre, channels_last=False)
    model.eval()
    out = run_to(model, x, layers)
    maps = {}
    for name in layers:
        value = out[name][0].float().numpy()
        if value.ndim != 3:
            raise ValueError(f"layer {name!r} gives a {value.ndim}-D output per image ({value.shape}), "
                             f"not C x h x w feature maps; choose a convolutional layer: {', '.join(stages(model))}")
        maps[name] = value
    return FeatureMaps(image, maps, top)
