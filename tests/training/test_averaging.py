"""Weight averaging (train.ema_decay): the rule against a hand computation, and real tiny runs: the
average is what is validated and kept, it leaves the raw training path untouched, and --resume
carries it on."""

from __future__ import annotations

import pytest
import torch
import yaml
from helpers import tiny_run_config
from torch.optim.swa_utils import AveragedModel

from lesionlens.config import ConfigError
from lesionlens.inference import Predictor
from lesionlens.training.averaging import ema_decay_after, warm_ema
from lesionlens.training.fit import train


def _cfg(data, **train):
    cfg = tiny_run_config(data, **train)
    cfg.data.train_on_val = True  # the last epoch kept: the average's last state, whatever validation says
    return cfg


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from helpers import write_class_folder

    root = tmp_path_factory.mktemp("data")
    write_class_folder(root)
    return root


def test_the_average_follows_the_warmed_up_recurrence():
    """Five updates of a one-number model, against the recurrence written out by hand: the first
    update copies, then a <- d a + (1 - d) x with d = min(0.9, (1 + n) / (10 + n)) after n updates."""
    model = torch.nn.Linear(1, 1, bias=False)
    averaged = AveragedModel(model, avg_fn=warm_ema(0.9), use_buffers=True)
    values = [1.0, 3.0, -2.0, 5.0, 0.5]
    expected = None
    for n, x in enumerate(values):
        with torch.no_grad():
            model.weight.fill_(x)
        averaged.update_parameters(model)
        d = min(0.9, (1 + n) / (10 + n))
        expected = x if expected is None else d * expected + (1 - d) * x
        assert averaged.module.weight.item() == pytest.approx(expected, rel=1e-6)
    assert float(ema_decay_after(10_000, 0.9)) == 0.9  # the cap, once warmed up
    assert float(ema_decay_after(0, 0.999)) == pytest.approx(0.1)


@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5])
def test_a_decay_outside_zero_and_one_is_refused(decay):
    with pytest.raises(ConfigError, match="train.ema_decay"):
        warm_ema(decay)


def test_the_average_is_kept_and_the_training_path_is_unchanged(images, tmp_path):
    """Same seed with and without averaging: the raw weights after the last step are identical (the
    average never feeds back), the bundle holds the average, and the average differs from them."""
    plain = tmp_path / "plain"
    train(_cfg(images), plain, progress=False)
    averaged = tmp_path / "ema"
    result = train(_cfg(images, ema_decay=0.9), averaged, progress=False)

    raw = torch.load(plain / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    last = torch.load(averaged / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert set(last["current_model_state"]) == set(raw)
    assert all(torch.equal(last["current_model_state"][k], raw[k]) for k in raw)
    kept = Predictor(averaged).model.state_dict()
    ema = {k.removeprefix("model."): v for k, v in last["state_dict"].items()}
    assert all(torch.equal(kept[k], ema[k]) for k in kept)
    weights = [k for k in kept if k.endswith("weight")]
    assert any(not torch.allclose(ema[k], raw["model." + k]) for k in weights)
    steps = last["global_step"]
    assert int(last["averaging_state"]["n_averaged"]) == steps  # one update per optimizer step
    assert result.card.training.config["train"]["ema_decay"] == 0.9


def test_resume_carries_the_average_on(images, tmp_path):
    out = tmp_path / "run"
    train(_cfg(images, epochs=1, ema_decay=0.9), out, progress=False)
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    cfg["train"]["epochs"] = 2  # as if the run had been interrupted after its first epoch of two
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    train(_cfg(images, epochs=2, ema_decay=0.9), out, resume=True, progress=False)
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 1
    assert int(last["averaging_state"]["n_averaged"]) == last["global_step"]  # not restarted at zero


def test_every_epoch_is_kept_with_its_average(images, tmp_path):
    """train.keep_epochs: one checkpoint per epoch, the last the same as last.ckpt (average and raw)."""
    out = tmp_path / "kept"
    train(_cfg(images, epochs=2, ema_decay=0.9, keep_epochs=True), out, progress=False)
    kept = sorted(p.name for p in (out / "checkpoints").glob("epoch-*.ckpt"))
    assert kept == ["epoch-00.ckpt", "epoch-01.ckpt"]
    first, second, last = (torch.load(out / "checkpoints" / name, map_location="cpu", weights_only=True)
                           for name in ("epoch-00.ckpt", "epoch-01.ckpt", "last.ckpt"))
    assert (first["epoch"], second["epoch"]) == (0, 1)
    for key in ("state_dict", "current_model_state"):
        assert all(torch.equal(second[key][k], last[key][k]) for k in last[key])
    assert any(not torch.equal(first["state_dict"][k], second["state_dict"][k]) for k in first["state_dict"])
    plain = tmp_path / "plain"
    train(_cfg(images, epochs=1), plain, progress=False)
    assert not list((plain / "checkpoints").glob("epoch-*.ckpt"))  # off by default
