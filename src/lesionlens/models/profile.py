"""What a registered model costs: parameters and multiply-accumulates (MACs) at an input size.

Both are counted on PyTorch's ``meta`` device, where tensors have shapes but no storage: building
VGG19 and running it there takes milliseconds and no memory, so the table of every model
(`lesionlens models`) and the parameter-count tests stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from lesionlens.models.registry import MODELS, create_model, get_spec


@dataclass(frozen=True)
class ModelCost:
    name: str
    num_classes: int
    image_size: int  # a 3D model's: the side of its (cubic) grid
    parameters: int
    macs: int  # per image (or volume), at image_size; torch.utils.flop_counter counts a multiply-add as 2 FLOPs


def meta_model(name: str, num_classes: int, **kwargs) -> torch.nn.Module:
    """The registered model with shape-only tensors (for counting, never for computing)."""
    with torch.device("meta"):
        return create_model(name, num_classes, pretrained=False, **kwargs)


def count_parameters(name: str, num_classes: int = 1000, **kwargs) -> int:
    return sum(p.numel() for p in meta_model(name, num_classes, **kwargs).parameters())


def model_cost(name: str, num_classes: int = 1000, image_size: int | None = None, **kwargs) -> ModelCost:
    """Parameters and MACs per image; ``image_size`` defaults to the pretrained weights' (or, without
    weights, the model's own) input size."""
    spec = get_spec(name)
    if spec.dims == 3:  # a volume: the model's default grid, or a cube of side image_size
        grid = (image_size,) * 3 if image_size else spec.volume_preprocessing().size
        spec.check_volume_size(grid)
        size, model, shape = grid[0], meta_model(name, num_classes, **kwargs).eval(), (1, 1, *grid)
    else:
        size = image_size or spec.preprocessing_for(spec.weights is not None).image_size
        spec.check_input_size(size)
        model, shape = meta_model(name, num_classes, image_size=size, **kwargs).eval(), (1, 3, size, size)
    with torch.device("meta"):
        x = torch.empty(shape)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    parameters = sum(p.numel() for p in model.parameters())
    return ModelCost(name, num_classes, size, parameters, counter.get_total_flops() // 2)


def models_table(num_classes: int = 1000) -> list[str]:
    """``lesionlens models``: every registered model's parameters, input size, MACs and weights."""
    lines = [f"{'name':<20}{'parameters':>13}{'input':>7}{'GMACs':>8}  pretrained weights  ({num_classes} classes)"]
    for name, spec in MODELS.items():
        cost = model_cost(name, num_classes if spec.output == "classes" else 1)  # a mask model: one channel
        weights = spec.weights.description if spec.weights else "none (train from scratch)"
        size = f"{cost.image_size}^3" if spec.dims == 3 else str(cost.image_size)
        lines.append(f"{name:<20}{cost.parameters:>13,}{size:>7}{cost.macs / 1e9:>8.2f}  {weights}")
    return lines
