"""The model-randomisation sanity check (Adebayo et al., "Sanity checks for saliency maps", 2018).

A map that explains the model must depend on the model's weights. Cascading randomisation
re-initialises the network from the head down, one block more at each step, and recomputes every
method's maps for the same images and classes; the maps should stop resembling the trained model's.
Similarity is the Spearman rank correlation of the absolute maps and the SSIM of the min-max
scaled maps, as in the paper. Guided backpropagation is the known failure (its maps stay close to
an edge detector of the image, whatever the weights), so it is the control: if the check does not
fail it, the check is not working.

A method passes when its mean rank correlation with the trained model's maps, averaged over the
steps of the cascade (the area under the curve of the figure, per step), is below ``PASS_BELOW``: a
map that ignores the top of the network stays near 1 for the first steps and fails, however much
randomising the stem finally changes it (guided backpropagation, on EfficientNet-Lite0: 0.99 after
the head, 0.96 after the last block, 0.33 only with the stem randomised).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lesionlens.evaluation.bootstrap import Interval, mean_interval
from lesionlens.explain.agreement import rank_correlations, structural_similarities
from lesionlens.explain.attribution import attribute
from lesionlens.explain.subject import Subject

PASS_BELOW = 0.5  # Spearman rank correlation with the trained maps, mean over the cascade's steps
CONTROL = "guided_backprop"


@dataclass
class Step:
    randomised: str  # the block re-initialised at this step (all those above it are too)
    rank_correlation: Interval
    ssim: Interval

    def to_dict(self) -> dict:
        return {"randomised_down_to": self.randomised, "rank_correlation": self.rank_correlation.to_dict(),
                "ssim": self.ssim.to_dict()}


@dataclass
class MethodSanity:
    method: str
    steps: list[Step]
    example_maps: list[np.ndarray]  # the first image's map: trained, then after each step

    @property
    def final(self) -> float:
        return self.steps[-1].rank_correlation.estimate

    @property
    def mean_over_cascade(self) -> float:
        return float(np.nanmean([s.rank_correlation.estimate for s in self.steps]))

    @property
    def passed(self) -> bool:
        return self.mean_over_cascade < PASS_BELOW

    def to_dict(self) -> dict:
        return {"method": self.method, "passed": self.passed, "mean_rank_correlation": self.mean_over_cascade,
                "final_rank_correlation": self.final,
                "steps": [s.to_dict() for s in self.steps]}


@dataclass
class Sanity:
    n_images: int
    blocks: list[str]
    methods: list[MethodSanity]

    def to_dict(self) -> dict:
        return {"n_images": self.n_images, "pass_below": PASS_BELOW, "control": CONTROL,
                "blocks_head_first": self.blocks, "methods": [m.to_dict() for m in self.methods]}

    def lines(self) -> list[str]:
        out = [f"sanity check (cascading randomisation of {len(self.blocks)} blocks, head first, {self.n_images} images):"]
        for m in self.methods:
            verdict = "PASSED" if m.passed else "FAILED"
            role = " (the control, expected to fail)" if m.method == CONTROL else ""
            out.append(f"  {m.method}{role}: rank correlation with the trained model's maps "
                       f"{m.steps[0].rank_correlation} after the head, {m.steps[-1].rank_correlation} with "
                       f"everything randomised (SSIM {m.steps[-1].ssim}); mean over the cascade "
                       f"{m.mean_over_cascade:.3f} -> {verdict} (pass: below {PASS_BELOW})")
        control = next((m for m in self.methods if m.method == CONTROL), None)
        if control is not None and control.passed:
            out.append(f"  warning: the control {CONTROL} passed: the check cannot tell methods apart on this model")
        return out

    def write_figures(self, out: str | Path) -> dict[str, Path]:
        from lesionlens.explain.figures import sanity_figure

        return {"sanity": sanity_figure(self, Path(out) / "sanity.png")}


def cascade_blocks(net: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """The network's blocks with parameters, head first: top-level children, with Sequential /
    ModuleList children (timm's ``blocks``, torchvision's ``features``, ResNet's ``layerN``)
    opened one level. Each block is a name and the modules whose parameters it re-initialises."""
    blocks: list[tuple[str, list[nn.Module]]] = []
    for name, child in net.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(child) > 1:
            blocks += [(f"{name}.{i}", [c]) for i, c in enumerate(child) if _has_params(c)]
        elif _has_params(child):
            blocks.append((name, [child]))
    return blocks[::-1]


def randomise(modules: list[nn.Module], seed: int) -> None:
    torch.manual_seed(seed)
    for top in modules:
        for m in top.modules():
            if hasattr(m, "reset_parameters"):  # convolutions, linear layers, norms (their running stats too)
                m.reset_parameters()


def sanity_check(subject: Subject, images: np.ndarray, methods: list[str], layer: str | None = None,
                 targets: np.ndarray | None = None, n_resamples: int = 2000, seed: int = 0) -> Sanity:
    """Cascade from the head down over ``images``, comparing every method's maps with the trained
    model's at each step (classes: ``targets``, else the trained model's predictions)."""
    if targets is None:
        targets = subject.probabilities(images).argmax(axis=1)
    trained = {m: attribute(subject, images, targets, m, layer).values for m in methods}
    work = Subject(copy.deepcopy(subject.net), subject.classes, subject.preprocessing)
    blocks = cascade_blocks(work.net)
    results = {m: MethodSanity(m, [], [trained[m][0]]) for m in methods}
    for k, (name, modules) in enumerate(blocks):
        randomise(modules, seed + k)
        for m in methods:
            maps = attribute(work, images, targets, m, layer).values
            results[m].steps.append(Step(name, mean_interval(rank_correlations(trained[m], maps), n_resamples=n_resamples, seed=seed),
                                         mean_interval(structural_similarities(trained[m], maps), n_resamples=n_resamples, seed=seed)))
            results[m].example_maps.append(maps[0])
    return Sanity(len(images), [name for name, _ in blocks], list(results.values()))


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())
