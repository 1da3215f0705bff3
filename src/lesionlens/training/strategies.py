"""The transfer-learning protocol: named strategies saying what trains, when, and how fast.

    full      fine-tune every parameter from the ImageNet weights (the default recipe); with
              ``model.frozen_stages`` N the stem and the first N stages stay frozen
    scratch   the same network from random initialisation (no pretrained weights)
    baseline  backbone frozen; only the last layer (the new classifier) trains
    shallow   backbone frozen; the whole top model trains (``model.head``: the own head, or a
              new avg / max / mlp one)
    deep      shallow first, then one more block unfreezes every ``train.unfreeze_every`` epochs,
              from the output towards the input; a block d steps below the top model learns at
              ``lr * train.lr_decay ** d`` (discriminative learning rates)
    features  no gradient training: the frozen backbone's embeddings + a scikit-learn classifier
              (``train.features_classifier``), see :mod:`lesionlens.training.features`

Frozen blocks keep their batch-norm layers in eval mode (:mod:`lesionlens.models.freeze`).
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
from torch import nn

from lesionlens.config import RunConfig, Strategy, check_covers, choices
from lesionlens.models.freeze import Blocks, freeze_stages, model_blocks, set_trainable
from lesionlens.models.registry import get_spec, top_modules

# the strategies that keep a pretrained backbone frozen, at least at first
KEEP_PRETRAINED = ("baseline", "shallow", "deep", "features")


def check_strategy(cfg: RunConfig) -> None:
    """Refuse combinations that cannot mean anything, with the reason."""
    strategy, model = cfg.train.strategy, cfg.model
    if strategy not in choices(Strategy):
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {choices(Strategy)}")
    if strategy in KEEP_PRETRAINED:
        if not model.pretrained:
            raise ValueError(f"strategy {strategy!r} keeps a pretrained backbone (frozen at first); it needs "
                             f"pretrained weights: drop --no-pretrained, or use --strategy scratch")
        if get_spec(model.name).weights is None:
            raise ValueError(f"strategy {strategy!r} needs pretrained weights and {model.name} has none; "
                             f"use --strategy scratch")
    if strategy == "scratch" and model.pretrained:
        raise ValueError("strategy 'scratch' starts from random weights: add --no-pretrained (model.pretrained: false)")
    if strategy == "baseline" and model.head != "linear":
        raise ValueError("strategy 'baseline' replaces only the architecture's last layer (head 'linear'); "
                         f"a new {model.head!r} top model is strategy 'shallow'")
    if strategy == "features" and model.head == "mlp":
        raise ValueError("strategy 'features' reads the embedding before the last layer; an untrained mlp "
                         "head would make it random: use head linear, avg or max")
    if model.frozen_stages and strategy != "full":
        raise ValueError(f"model.frozen_stages applies to strategy 'full'; strategy {strategy!r} decides "
                         "what is frozen itself")


@dataclass(frozen=True)
class FreezePlan:
    """What trains at each epoch, and each parameter's learning-rate factor."""

    strategy: str
    blocks: Blocks
    initial: frozenset[str]  # trainable from the first epoch
    unfreeze_every: int = 0  # deep: epochs between unfreezing blocks (0: never)
    lr_decay: float = 1.0

    def trainable_at(self, epoch: int) -> set[str]:
        trainable = set(self.initial)
        if self.unfreeze_every:
            features = self.blocks.features
            opened = min(len(features), epoch // self.unfreeze_every)
            for block in features[len(features) - opened:]:
                trainable.update(block)
        return trainable

    def trainable_blocks_at(self, epoch: int) -> list[str]:
        trainable = self.trainable_at(epoch)
        return [name for name, params in zip(self.blocks.names, self.blocks.params)
                if params and all(p in trainable for p in params)] or (["last layer"] if trainable else [])

    def optimized(self) -> set[str]:
        """Every parameter that ever trains (the optimizer holds them from the start)."""
        return self.trainable_at(10**9)

    def lr_scale(self) -> dict[str, float]:
        """deep: block d steps below the top model gets ``lr_decay ** d``; everything else 1."""
        scale = {}
        if self.unfreeze_every:
            features = self.blocks.features
            for depth, block in enumerate(reversed(features), start=1):
                scale.update({p: self.lr_decay ** depth for p in block})
        return scale

    def schedule(self, epochs: int) -> dict[str, list[str]]:
        """Epoch -> the blocks trainable from then on, at each epoch where that changes."""
        out, previous = {}, None
        for epoch in range(max(epochs, 1)):
            now = self.trainable_blocks_at(epoch)
            if now != previous:
                out[str(epoch)] = now
                previous = now
        return out


def plan_strategy(model: nn.Module, cfg: RunConfig) -> FreezePlan:
    """The freeze plan of ``cfg.train.strategy`` for ``model`` (built by create_model from ``cfg``)."""
    check_strategy(cfg)
    blocks = model_blocks(model, top_modules(cfg.model.name, model))
    return FreezePlan(cfg.train.strategy, blocks, **PLANS[cfg.train.strategy](model, cfg, blocks))


def _all_but_frozen_stages(model: nn.Module, cfg: RunConfig, blocks: Blocks) -> dict:
    return {"initial": frozenset(freeze_stages(model, top_modules(cfg.model.name, model), cfg.model.frozen_stages))}


def _last_layer(model: nn.Module, cfg: RunConfig, blocks: Blocks) -> dict:
    classifier = model.get_classifier()
    return {"initial": frozenset(name for name, p in model.named_parameters()
                                 if any(p is q for q in classifier.parameters()))}


# strategy -> what trains from the first epoch (and, for deep, how the rest opens up)
PLANS = {
    "full": _all_but_frozen_stages,
    "scratch": _all_but_frozen_stages,
    "baseline": _last_layer,
    "shallow": lambda model, cfg, blocks: {"initial": frozenset(blocks.top)},
    "deep": lambda model, cfg, blocks: {"initial": frozenset(blocks.top), "unfreeze_every": cfg.train.unfreeze_every,
                                        "lr_decay": cfg.train.lr_decay},
    "features": lambda model, cfg, blocks: {"initial": frozenset()},
}
check_covers(PLANS, Strategy, "strategy plan")


class GradualUnfreezing(L.Callback):
    """Applies the plan at the start of every training epoch (also after --resume), and keeps
    frozen batch norm in eval mode."""

    def __init__(self, plan: FreezePlan):
        self.plan = plan

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        set_trainable(pl_module.model, self.plan.trainable_at(trainer.current_epoch))
