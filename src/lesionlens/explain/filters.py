"""The first convolution's filters as images: what the network looks for in raw pixels.

A first layer trained on natural images holds edge and colour-blob detectors; noise there means the
layer did not learn (or was never trained). With three input channels each filter is shown as an RGB
tile; with any other channel count, each input channel of each filter is a grey tile. Every tile is
min-max scaled on its own, for display only; the result keeps the raw weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch import nn  # noqa: E402

from lesionlens.explain.display import display, save_figure  # noqa: E402


@dataclass
class Filters:
    """The raw weights (out x in x k x k) of a model's first Conv2d."""

    layer: str
    weights: np.ndarray

    @property
    def rgb(self) -> bool:
        return self.weights.shape[1] == 3

    def tiles(self) -> list[tuple[np.ndarray, str]]:
        """One display tile per filter (RGB), or per filter and input channel (grey)."""
        if self.rgb:
            return [(display(w.transpose(1, 2, 0)), f"{f}") for f, w in enumerate(self.weights)]
        return [(display(w[c]), f"{f}.{c}") for f, w in enumerate(self.weights) for c in range(len(w))]

    def to_dict(self) -> dict:
        norms = np.sqrt((self.weights.reshape(len(self.weights), -1) ** 2).sum(axis=1))
        return {"layer": self.layer, "shape": list(self.weights.shape), "shown_as": "rgb" if self.rgb else "grey",
                "filter_norms": [float(v) for v in norms]}

    def lines(self) -> list[str]:
        out, k, h, w = self.weights.shape
        line = (f"First-layer filters: {self.layer}, {out} filters of {k} x {h} x {w}, shown as "
                f"{'RGB' if self.rgb else 'grey'} tiles (each scaled to its own range)")
        return [line]

    def write_figures(self, out_dir: str | Path) -> dict[str, Path]:
        tiles = self.tiles()
        cols = int(np.ceil(np.sqrt(len(tiles))))
        rows = int(np.ceil(len(tiles) / cols))
        fig, axes = plt.subplots(rows, cols, figsize=(0.9 * cols + 0.4, 0.95 * rows + 0.6), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for ax, (tile, title) in zip(axes.ravel(), tiles):
            ax.imshow(tile, cmap=None if self.rgb else "gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(title, fontsize=6)
        fig.suptitle(f"First-layer filters ({self.layer})", fontsize=10)
        return {"filters": save_figure(fig, Path(out_dir) / "filters.png")}


def first_filters(model: nn.Module) -> Filters:
    """The weights of the first Conv2d in the model's module order (the stem)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return Filters(name, module.weight.detach().float().cpu().numpy().copy())
    raise ValueError(f"{type(model).__name__} has no Conv2d layer: there are no filters to show")
