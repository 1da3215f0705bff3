"""What excites each channel: the top-activating image patches over a data set (Zeiler & Fergus 2014).

For every channel of one layer, the ``k`` images whose maximum activation in that channel is highest,
found in ONE streaming pass: each batch's per-image maxima (and where they sit) are merged with the
running best ``k`` by ``torch.topk``, so memory holds C x (k + batch) numbers, never the activations
of the data set. Each winner is cropped to the receptive field of the unit that fired.

The receptive field is measured, not derived by hand, so it holds for any architecture: on a copy of
the network (float64, eval mode) whose weights are made positive and normalised to sum to one per
output unit (biases 0, batch norms the identity, max pooling replaced by average pooling with the
same window, in-place activations made out-of-place), a positive input gives positive activations
everywhere, so no ReLU or max-pool cuts the gradient, and the support of the input gradient of one
unit is exactly the set of pixels that can reach it: its theoretical receptive field. Three units
(the centre and its neighbours down and right) give size, stride and offset. When the support
touches the probe's border the probe is measured again at twice the image's size (at most 1,024 px);
when it touches that one's border too, the size is a lower bound (``clipped``): the field then spans
at least twice the image, so every crop is the whole image and a larger probe would change no crop
(the stride then comes from how the layer's map grows between 256 and 512 px inputs).
Max pooling written as a function call rather than a module (rare) is not replaced, and layer or
group norms (which subtract a mean) are left as they are; either can only shrink the measured field.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from lesionlens.data.images import Preprocessing  # noqa: E402
from lesionlens.data.transforms import to_input  # noqa: E402
from lesionlens.explain.display import save_figure  # noqa: E402
from lesionlens.explain.features import FEATURES, check_layers, hooked, run_to  # noqa: E402

TOP_K = 9  # Zeiler & Fergus show a 3 x 3 mosaic per channel
SHOWN_CHANNELS = 16
MAX_PROBE = 1024  # pixels: the largest input used to measure a receptive field


@dataclass(frozen=True)
class ReceptiveField:
    """Unit (y, x) of the layer sees input rows ``offset[0] + y * stride[0]`` onwards, ``size[0]`` of
    them (columns likewise); ``offset`` is negative where padding extends the field past the image."""

    size: tuple[int, int]
    stride: tuple[int, int]
    offset: tuple[int, int]
    clipped: bool = False  # the field outgrew the largest probe: ``size`` is a lower bound

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of unit (y, x)'s field, before clipping to an image."""
        top, left = self.offset[0] + y * self.stride[0], self.offset[1] + x * self.stride[1]
        return top, left, top + self.size[0], left + self.size[1]

    def crop(self, image: np.ndarray, y: int, x: int) -> np.ndarray:
        """Unit (y, x)'s field cut from ``image`` (H x W x 3). Along an axis where the field fits in
        the image, the part past the border is grey, so the crops of a layer share one size and the
        unit sits at their centre; where the field is larger than the image, the crop is the image
        (all of it when the field outgrew the probe)."""
        h, w = image.shape[:2]
        if self.clipped:
            return np.asarray(image).copy()
        top, left, bottom, right = self.box(y, x)
        t, l, b, r = max(top, 0), max(left, 0), min(bottom, h), min(right, w)
        if b <= t or r <= l:
            raise ValueError(f"unit ({y}, {x}) of a {self.size} px field lies outside a {h} x {w} image")
        height, row = (self.size[0], t - top) if self.size[0] <= h else (b - t, 0)
        width, col = (self.size[1], l - left) if self.size[1] <= w else (r - l, 0)
        out = np.full((height, width, 3), 128, dtype=np.uint8)
        out[row:row + b - t, col:col + r - l] = image[t:b, l:r]
        return out

    def to_dict(self) -> dict:
        return {"size": list(self.size), "stride": list(self.stride), "offset": list(self.offset),
                "clipped": self.clipped}


def _positive_copy(model: nn.Module) -> nn.Module:
    """The probe network described in the module docstring."""
    probe = copy.deepcopy(model).double().eval()
    for name, module in list(probe.named_modules()):
        # a deep copy keeps the hooks others registered on the model (an attribution library's, say)
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
        module._backward_hooks.clear()
        if hasattr(module, "inplace"):
            module.inplace = False
        if isinstance(module, nn.MaxPool2d):
            parent, _, child = name.rpartition(".")
            setattr(probe.get_submodule(parent) if parent else probe, child,
                    nn.AvgPool2d(module.kernel_size, module.stride, module.padding, module.ceil_mode))
    with torch.no_grad():
        for module in probe.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.zero_()
                module.running_var.fill_(1.0 - module.eps)
                if module.affine:
                    module.weight.fill_(1.0)
                    module.bias.zero_()
            elif getattr(module, "weight", None) is not None and module.weight.dim() >= 2:
                w = module.weight.abs() + 1e-3
                module.weight.copy_(w / w.sum(dim=tuple(range(1, w.dim())), keepdim=True))
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
    return probe


def _supports(probe: nn.Module, layer: str, size: int) -> tuple[list[tuple[int, int, int, int]], tuple[int, int],
                                                                 tuple[int, int], bool]:
    """Bounding boxes (top, left, bottom, right) of the input support of the centre unit and of its
    neighbours below and to the right, the centre's position, the map's size, and whether any box
    touches a border (or the map is too small to have neighbours)."""
    x = torch.full((3, 3, size, size), 1e-6, dtype=torch.float64, requires_grad=True)
    out = _forward_until(probe, x, layer)
    if out.dim() != 4:
        raise ValueError(f"layer {layer!r} has no spatial map ({tuple(out.shape)}); choose a convolutional layer")
    h, w = out.shape[2:]
    cy, cx = (h - 1) // 2, (w - 1) // 2
    units = [(cy, cx), (min(cy + 1, h - 1), cx), (cy, min(cx + 1, w - 1))]
    (sum(out[i, :, uy, ux].sum() for i, (uy, ux) in enumerate(units))).backward()
    boxes, touches = [], False
    for i in range(3):
        support = x.grad[i].abs().sum(dim=0) > 0
        rows, cols = np.flatnonzero(support.any(dim=1).numpy()), np.flatnonzero(support.any(dim=0).numpy())
        boxes.append((int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1))
        touches |= rows[0] == 0 or cols[0] == 0 or rows[-1] == size - 1 or cols[-1] == size - 1
    stride_ok = units[1][0] != cy and units[2][1] != cx
    return boxes, (cy, cx), (int(h), int(w)), bool(touches or not stride_ok)


class _Reached(Exception):
    """Raised by a hook to stop the probe's forward pass at the layer measured (deeper layers at up
    to 1,024 px in float64 would only cost time)."""


def _forward_until(probe: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    if layer == FEATURES:
        return run_to(probe, x, [layer], keep_graph=True)[layer]

    def stop(_module, _inputs, _output):
        raise _Reached

    with hooked(probe, [layer], keep_graph=True) as seen:
        handle = probe.get_submodule(layer).register_forward_hook(stop)
        try:
            probe.forward_head(probe.forward_features(x))
        except _Reached:
            return seen[layer]
        finally:
            handle.remove()
    raise ValueError(f"layer {layer!r} did not run in forward_features / forward_head")


@torch.no_grad()
def _stride_from_growth(probe: nn.Module, layer: str) -> tuple[int, int]:
    """The layer's stride as the growth of its map with the input: between 256 and 512 px (multiples
    of every stride in use, so no rounding at a layer's borders) the map grows by 256 / stride."""
    shapes = [_forward_until(probe, torch.zeros(1, 3, size, size, dtype=torch.float64), layer).shape[2:]
              for size in (256, 512)]
    return tuple(max(round(256 / max(b - a, 1)), 1) for a, b in zip(*shapes))


@torch.enable_grad()  # callers may hold torch.no_grad(); the measurement needs a gradient
def receptive_field(model: nn.Module, layer: str, image_size: int) -> ReceptiveField:
    """The exact receptive field of ``layer``'s units for square inputs of ``image_size`` pixels."""
    check_layers(model, [layer])
    probe = _positive_copy(model)
    boxes, (cy, cx), _, touches = _supports(probe, layer, image_size)
    if touches and image_size < MAX_PROBE:
        boxes, (cy, cx), _, touches = _supports(probe, layer, min(2 * image_size, MAX_PROBE))
    # clipped supports do not move with their unit: the stride then comes from the map's growth
    stride = (_stride_from_growth(probe, layer) if touches else
              (boxes[1][0] - boxes[0][0], boxes[2][1] - boxes[0][1]))
    top, left, bottom, right = boxes[0]
    return ReceptiveField((bottom - top, right - left), stride, (top - cy * stride[0], left - cx * stride[1]),
                          clipped=touches)


@dataclass
class TopPatches:
    """For each channel of ``layer``, the ``k`` images with the highest maximum activation."""

    layer: str
    field: ReceptiveField
    values: np.ndarray  # C x k, highest first (NaN where the data set had fewer than k images)
    images: np.ndarray  # C x k positions in the data set (-1 where none)
    where: np.ndarray  # C x k x 2, (y, x) of the maximum in the layer's map
    shown: list[int]  # the channels whose patches are kept for the figure
    patches: dict[int, list[np.ndarray]] = field(default_factory=dict)
    ids: list[str] | None = None  # image ids, by data-set position

    def _name(self, position: int) -> str | int:
        return self.ids[position] if self.ids is not None else int(position)

    def to_dict(self) -> dict:
        return {"layer": self.layer, "receptive_field": self.field.to_dict(), "channels": len(self.values),
                "top": {int(c): [{"image": self._name(int(i)), "activation": float(v), "y": int(y), "x": int(x)}
                                 for v, i, (y, x) in zip(self.values[c], self.images[c], self.where[c]) if i >= 0]
                        for c in self.shown}}

    def lines(self) -> list[str]:
        f = self.field
        line = (f"Top-{self.values.shape[1]} patches of {self.layer} ({len(self.values)} channels): receptive "
                f"field {f.size[0]} x {f.size[1]} px{' (at least)' if f.clipped else ''}, stride {f.stride[0]}, "
                f"offset {f.offset[0]}; mosaics of channels {', '.join(map(str, self.shown))}")
        return [line]

    def write_figures(self, out_dir: str | Path) -> dict[str, Path]:
        cols = min(4, len(self.shown))
        rows = int(np.ceil(len(self.shown) / cols))
        fig = plt.figure(figsize=(2.4 * cols, 2.6 * rows))
        grid = fig.add_gridspec(rows, cols, wspace=0.15, hspace=0.3)
        for n, channel in enumerate(self.shown):
            cell = grid[n // cols, n % cols].subgridspec(3, 3, wspace=0.03, hspace=0.03)
            for j in range(9):
                ax = fig.add_subplot(cell[j // 3, j % 3])
                ax.axis("off")
                if j < len(self.patches.get(channel, [])):
                    ax.imshow(self.patches[channel][j])
                if j == 1:
                    ax.set_title(f"channel {channel}", fontsize=8)
        fig.suptitle(f"Top-activating patches, {self.layer} (receptive field {self.field.size[0]} px)", fontsize=10)
        return {"top_patches": save_figure(fig, Path(out_dir) / "top_patches.png", tight=False)}


@torch.no_grad()
def top_patches(model: nn.Module, images: np.ndarray, pre: Preprocessing, layer: str,
                rows: np.ndarray | None = None, k: int = TOP_K, batch_size: int = 32,
                channels: Sequence[int] | None = None, shown: int = SHOWN_CHANNELS,
                ids: Sequence[str] | None = None) -> TopPatches:
    """Top-``k`` activating images of every channel of ``layer`` over ``images[rows]`` (N x H x W x 3
    uint8; all rows by default), in one pass of ``batch_size`` images; patches are cut for
    ``channels`` (the first ``shown`` by default)."""
    rows = np.arange(len(images)) if rows is None else np.asarray(rows)
    if len(rows) == 0:
        raise ValueError("top-activating patches need at least one image")
    if ids is not None and len(ids) != len(rows):
        raise ValueError(f"{len(ids)} image ids for {len(rows)} images")
    check_layers(model, [layer])
    model.eval()
    best_v = best_i = best_p = None
    for start in range(0, len(rows), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[rows[start:start + batch_size]]))
        act = run_to(model, to_input(batch.permute(0, 3, 1, 2), pre, channels_last=False), [layer])[layer]
        if act.dim() != 4:
            raise ValueError(f"layer {layer!r} has no spatial map ({tuple(act.shape)}); choose a convolutional layer")
        peak, at = act.float().flatten(2).max(dim=2)  # B x C: each image's maximum per channel
        if best_v is None:
            c = peak.shape[1]
            best_v = torch.full((c, 0), -torch.inf)
            best_i, best_p = torch.zeros((c, 0), dtype=torch.long), torch.zeros((c, 0), dtype=torch.long)
            map_width = act.shape[3]
        positions = torch.arange(start, start + len(batch)).expand(peak.shape[1], -1)
        cand_v, cand_i, cand_p = torch.cat([best_v, peak.T], 1), torch.cat([best_i, positions], 1), torch.cat([best_p, at.T], 1)
        best_v, order = cand_v.topk(min(k, cand_v.shape[1]), dim=1)
        best_i, best_p = cand_i.gather(1, order), cand_p.gather(1, order)
    n_channels, found = best_v.shape
    values = np.full((n_channels, k), np.nan)
    index = np.full((n_channels, k), -1, dtype=np.int64)
    where = np.zeros((n_channels, k, 2), dtype=np.int64)
    values[:, :found], index[:, :found] = best_v.numpy(), best_i.numpy()
    where[:, :found, 0], where[:, :found, 1] = best_p.numpy() // map_width, best_p.numpy() % map_width
    chosen = list(range(min(shown, n_channels))) if channels is None else [int(c) for c in channels]
    bad = [c for c in chosen if not 0 <= c < n_channels]
    if bad:
        raise ValueError(f"layer {layer!r} has {n_channels} channels; no channel {', '.join(map(str, bad))}")
    field = receptive_field(model, layer, images.shape[1])
    patches = {c: [field.crop(np.asarray(images[rows[i]]), int(y), int(x))
                   for i, (y, x) in zip(index[c], where[c]) if i >= 0] for c in chosen}
    return TopPatches(layer, field, values, index, where, chosen, patches, None if ids is None else list(ids))
