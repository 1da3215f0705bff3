"""Every optimizer and schedule builds and steps; schedules have the shapes they promise."""

from __future__ import annotations

import math

import pytest
import torch

from lesionlens.config import TrainConfig
from lesionlens.models.registry import create_model
from lesionlens.training.optim import OPTIMIZERS, build_optimizer, build_scheduler, l1_penalty, lr_multiplier


def _problem():
    torch.manual_seed(0)
    model = create_model("tiny_cnn", 2)
    x = torch.randn(8, 3, 16, 16)
    y = torch.tensor([0, 1] * 4)
    return model, x, y


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_builds_and_steps(name):
    model, x, y = _problem()
    lr = 1.0 if name == "adadelta" else 0.01
    opt = build_optimizer(model, TrainConfig(optimizer=name, lr=lr, weight_decay=1e-3))
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_weight_decay_spares_biases_and_norm_parameters():
    model, _, _ = _problem()
    groups = build_optimizer(model, TrainConfig(weight_decay=0.1)).param_groups
    assert groups[0]["weight_decay"] == 0.1 and all(p.ndim > 1 for p in groups[0]["params"])
    assert groups[1]["weight_decay"] == 0.0 and all(p.ndim == 1 for p in groups[1]["params"])


def test_l1_penalty_is_the_sum_of_absolute_weights():
    model, _, _ = _problem()
    opt = build_optimizer(model, TrainConfig())
    expected = sum(p.abs().sum() for p in model.parameters() if p.ndim > 1)
    assert torch.isclose(l1_penalty(opt), expected)


@pytest.mark.parametrize("schedule", ["constant", "step", "exponential", "inverse_time", "cosine", "plateau"])
def test_every_schedule_builds_and_steps(schedule):
    model, x, y = _problem()
    cfg = TrainConfig(schedule=schedule, epochs=4, warmup_epochs=0)
    opt = build_optimizer(model, cfg)
    conf = build_scheduler(opt, cfg, steps_per_epoch=3, monitor_mode="max")
    for epoch in range(4):
        for _ in range(3):
            opt.step()
            if conf["interval"] == "step":
                conf["scheduler"].step()
        if conf["interval"] == "epoch":
            conf["scheduler"].step(0.5)  # a flat validation score: a plateau
    lr = opt.param_groups[0]["lr"]
    if schedule == "constant":
        assert lr == pytest.approx(cfg.lr)
    else:
        assert lr < cfg.lr


def test_schedule_values():
    spe = 10
    step = lr_multiplier(TrainConfig(schedule="step", step_epochs=2, gamma=0.5, warmup_epochs=0), spe)
    assert [step(e * spe) for e in (0, 1, 2, 3, 4)] == [1, 1, 0.5, 0.5, 0.25]
    expo = lr_multiplier(TrainConfig(schedule="exponential", gamma=0.8, warmup_epochs=0), spe)
    assert expo(2 * spe) == pytest.approx(0.64)
    inv = lr_multiplier(TrainConfig(schedule="inverse_time", gamma=0.5, warmup_epochs=0), spe)
    assert inv(4 * spe) == pytest.approx(1 / 3)
    cos = lr_multiplier(TrainConfig(schedule="cosine", epochs=10, warmup_epochs=1, min_lr_ratio=0.01), spe)
    assert cos(0) < 0.2 and cos(spe) == pytest.approx(1.0)
    assert cos(10 * spe - 1) == pytest.approx(0.01, abs=1e-3)
    assert cos(int(5.5 * spe)) == pytest.approx(0.505, abs=1e-3)  # half-way through the decay
