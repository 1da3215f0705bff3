"""Mixup and CutMix: each training batch blended with a shuffled copy of itself.

Mixup (Zhang et al., ICLR 2018) blends whole image pairs, ``lam * x + (1 - lam) * x[partner]``;
CutMix (Yun et al., ICCV 2019) pastes a box of the partner image, ``1 - lam`` of the area, into each
image. ``lam`` is drawn from ``Beta(alpha, alpha)`` once per batch, as both papers and timm's ``Mixup`` do;
CutMix's ``lam`` is then corrected to the box's true share after clipping at the image's edges.

The loss is ``lam * loss(own label) + (1 - lam) * loss(partner's label)``, the two-label form of both
papers' code, rather than one loss on blended one-hot targets (torchvision's ``v2.MixUp`` / ``v2.CutMix``,
timm's ``Mixup``): with class weights, PyTorch's cross-entropy divides a batch of hard labels by the
sum of their weights but a batch of soft targets by the batch size, so soft targets would rescale
the loss, and with it the effective learning rate, whenever mixing is switched on. The two-label form
keeps class weights, label smoothing and logit adjustment exactly as they act on unmixed batches.

Images are mixed after normalisation, on the training device, over all spatial dimensions, so 2D
images and 3D volumes are mixed alike (a CutMix box is a cuboid for volumes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lesionlens.config import ConfigError, TrainConfig


@dataclass(frozen=True)
class MixedBatch:
    inputs: torch.Tensor
    partners: torch.Tensor  # each row's partner: an index into the batch
    lam: float  # the share of each row's own image, and of its own label in the loss
    kind: str  # "mixup" or "cutmix"


def mixing_requested(cfg: TrainConfig) -> bool:
    return cfg.mixup > 0 or cfg.cutmix > 0


def describe_mixing(cfg: TrainConfig) -> str:
    """``, mixing ...`` for the plan sentence, or nothing."""
    if not mixing_requested(cfg):
        return ""
    kinds = " or ".join(f"{name} (alpha {alpha:g})" for name, alpha in (("mixup", cfg.mixup), ("CutMix", cfg.cutmix))
                        if alpha > 0)
    share = "every batch" if cfg.mix_prob >= 1 else f"{cfg.mix_prob:.0%} of the batches"
    return f", {kinds} on {share}"


def check_mixing(cfg: TrainConfig, task: str | None = None) -> None:
    """Refuse settings that cannot mean anything, or that ``task`` (when given) cannot honour, naming
    the key: only classifiers mix (a mask or a number would need mixing too), and only when a network
    is trained (the features strategy fits scikit-learn on fixed embeddings)."""
    for key in ("mixup", "cutmix"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"train.{key} is a Beta distribution's alpha: 0 (off) or more, got {getattr(cfg, key)}")
    if not 0.0 < cfg.mix_prob <= 1.0:
        raise ConfigError(f"train.mix_prob is the share of batches mixed: above 0 and at most 1, got {cfg.mix_prob}")
    if not mixing_requested(cfg) or task is None:
        return
    if task != "classification":
        raise ConfigError(f"train.mixup / train.cutmix mix images and class labels; --task {task} has masks or "
                          f"numbers as targets: set them to 0")
    if cfg.strategy == "features":
        raise ConfigError("train.mixup / train.cutmix need a trained network; the features strategy fits a "
                          "scikit-learn classifier on fixed embeddings: set them to 0 or choose another strategy")


class BatchMixing:
    """Draws, per batch: whether to mix (``prob``), Mixup or CutMix (even odds when both alphas are
    set), ``lam`` and the partners. Every draw uses torch's global generator, which ``train.seed``
    seeds, so a seeded run mixes alike every time."""

    def __init__(self, mixup: float = 0.0, cutmix: float = 0.0, prob: float = 1.0):
        self.mixup, self.cutmix, self.prob = float(mixup), float(cutmix), float(prob)
        if self.mixup <= 0 and self.cutmix <= 0:
            raise ValueError("BatchMixing needs mixup or cutmix above 0")

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> "BatchMixing | None":
        check_mixing(cfg)
        return cls(cfg.mixup, cfg.cutmix, cfg.mix_prob) if mixing_requested(cfg) else None

    def __call__(self, inputs: torch.Tensor) -> MixedBatch | None:
        """``inputs`` (N x C x spatial...) mixed, or None for a batch left as it is."""
        if len(inputs) < 2 or (self.prob < 1.0 and float(torch.rand(())) >= self.prob):
            return None
        cutmix = self.cutmix > 0 and (self.mixup <= 0 or float(torch.rand(())) < 0.5)
        alpha = self.cutmix if cutmix else self.mixup
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        partners = torch.randperm(len(inputs)).to(inputs.device)
        if cutmix:
            mixed, lam = paste_box(inputs, partners, lam)
        else:
            mixed = inputs * lam + inputs[partners] * (1.0 - lam)
        if inputs.dim() == 4 and inputs.is_contiguous(memory_format=torch.channels_last):
            mixed = mixed.contiguous(memory_format=torch.channels_last)  # the network's fast layout kept
        return MixedBatch(mixed, partners, lam, "cutmix" if cutmix else "mixup")


def paste_box(inputs: torch.Tensor, partners: torch.Tensor, lam: float) -> tuple[torch.Tensor, float]:
    """CutMix: a box of ``1 - lam`` of the spatial extent (each side ``(1 - lam) ** (1 / k)`` of its
    dimension for k spatial dimensions), centred uniformly at random and clipped at the edges, taken
    from each row's partner. Returns the images and the share of each image left its own."""
    spatial = inputs.shape[2:]
    side = (1.0 - lam) ** (1.0 / len(spatial))
    box = []
    for size in spatial:
        length = int(round(size * side))
        centre = int(torch.randint(size, ()))
        box.append(slice(max(centre - length // 2, 0), min(centre + length - length // 2, size)))
    mixed = inputs.clone()
    region = (slice(None), slice(None), *box)
    mixed[region] = inputs[partners][region]
    pasted = 1
    for s in box:
        pasted *= s.stop - s.start
    total = 1
    for size in spatial:
        total *= size
    return mixed, 1.0 - pasted / total
