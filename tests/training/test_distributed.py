"""Training in several processes (DDP on CPU, gloo), through the real command: two processes give the
validation figures of one with the same global batch and seed, and two "machines" on 127.0.0.1
started by torchrun write one bundle."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import write_class_folder

from lesionlens.config import ConfigError, load_config
from lesionlens.training.curves import epoch_table
from lesionlens.training.distributed import World, check_distributed, world_of
from lesionlens.training.shards import GlobalBatchShard, StridedShard, unshard

# Augmentation and dropout draw per process, and batch norm normalises per process (PyTorch's
# SyncBatchNorm runs on GPUs only): LeNet-5 (no batch norm) with both off takes the same steps in one
# process and in two. Class weights are off too: a weighted mean loss is normalised by each process's
# own share of the weights, so the averaged gradients of weighted losses differ a little.
SETTINGS = {
    "data": {"num_workers": 0},
    "model": {"name": "lenet5", "pretrained": False, "image_size": 32, "drop_rate": 0.0},
    "train": {"epochs": 3, "batch_size": 8, "warmup_epochs": 0.0, "lr": 0.01, "class_weights": "none"},
    "augment": {"hflip": 0.0, "vflip": 0.0, "rotation": 0.0, "translate": 0.0, "zoom": [1.0, 1.0],
                "brightness": 0.0, "contrast": 0.0, "saturation": 0.0},
}
TIMEOUT = 300


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    data = write_class_folder(root / "data")
    config = root / "ddp.yaml"
    config.write_text(yaml.safe_dump(SETTINGS))
    env = {**os.environ, "LESIONLENS_CACHE": str(root / "cache")}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK", "SLURM_NTASKS", "SLURM_PROCID"):
        env.pop(key, None)
    return root, data, config, env


def _train(setup, out: Path, *extra: str, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    root, data, config, env = setup
    command = (launcher or [sys.executable, "-m", "lesionlens.cli"]) + [
        "train", "--config", str(config), "--data", str(data), "--out", str(out), "--quiet", *extra]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def _ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def one_and_two(setup):
    root = setup[0]
    one = _ok(_train(setup, root / "one"))
    two = _ok(_train(setup, root / "two", "--devices", "2"))
    return (root / "one", one), (root / "two", two)


def test_two_processes_match_one(one_and_two):
    (one, _), (two, done) = one_and_two
    a, b = epoch_table(one / "logs"), epoch_table(two / "logs")
    assert len(a) == len(b) == 3
    for column in ("val_loss", "val_balanced_accuracy", "val_macro_auc", "val_accuracy", "train_loss"):
        np.testing.assert_allclose(b[column].to_numpy(), a[column].to_numpy(), rtol=0, atol=1e-5, err_msg=column)
    card_a, card_b = (json.loads((p / "card.json").read_text()) for p in (one, two))
    for key in ("balanced_accuracy", "macro_auc", "accuracy"):
        assert card_b["validation"][key] == pytest.approx(card_a["validation"][key], abs=1e-5), key
    assert card_b["training"]["best_epoch"] == card_a["training"]["best_epoch"]
    assert card_b["training"]["config"]["train"]["devices"] == 2
    # one summary, from process 0
    assert done.stdout.count("Bundle written to") == 1


def test_two_processes_write_one_bundle(one_and_two):
    _, (two, _) = one_and_two
    assert (two / "model.safetensors").is_file() and (two / "split.csv").is_file()
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert not list(two.glob("*.tmp*"))


def test_two_processes_resume(setup, one_and_two):
    """A 2-process run stopped after one epoch (its card removed, as if interrupted) resumes in 2
    processes to the second."""
    root = setup[0]
    out = root / "interrupted"
    _ok(_train(setup, out, "--devices", "2", "--epochs", "1"))
    (out / "card.json").unlink()
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    cfg["train"]["epochs"] = 2
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    _ok(_train(setup, out, "--resume"))
    assert json.loads((out / "card.json").read_text())["training"]["epochs_run"] == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_localhost_write_one_bundle(setup):
    """torchrun on two "machines" (127.0.0.1, one process each): rank 0 writes the bundle."""
    root, data, config, env = setup
    out, port = root / "nodes", _free_port()
    torchrun = [str(Path(sys.executable).parent / "torchrun"), "--nnodes", "2", "--nproc-per-node", "1",
                "--master-addr", "127.0.0.1", "--master-port", str(port)]
    procs = []
    for node in (0, 1):
        command = torchrun + ["--node-rank", str(node), "-m", "lesionlens.cli", "train", "--config", str(config),
                              "--data", str(data), "--out", str(out), "--quiet", "--devices", "1", "--num-nodes", "2"]
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=TIMEOUT) for p in procs]
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert "Bundle written to" in outputs[0][0] and "Bundle written to" not in outputs[1][0]
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["config"]["train"]["num_nodes"] == 2 and card["training"]["epochs_run"] == 3


def test_shards_are_disjoint_and_make_the_global_batch():
    order = list(np.random.default_rng(0).permutation(37))
    shards = [list(GlobalBatchShard(order, r, 2, 8, drop_last=True)) for r in range(2)]
    assert len(shards[0]) == len(GlobalBatchShard(order, 0, 2, 8, True)) == 16
    assert not set(shards[0]) & set(shards[1])
    for k in range(4):  # batch k of one process = the two processes' batch k, in order
        assert shards[0][4 * k:4 * k + 4] + shards[1][4 * k:4 * k + 4] == order[8 * k:8 * k + 8]
    small = [list(GlobalBatchShard(list(range(5)), r, 2, 8, drop_last=False)) for r in range(2)]
    assert sorted(small[0] + small[1]) == list(range(5)) and all(small)
    with pytest.raises(ValueError, match="shared out equally"):
        GlobalBatchShard(order, 0, 3, 8, True)


def test_validation_rows_are_dealt_once_and_put_back():
    n, world = 11, 3
    parts = [np.array(list(StridedShard(n, r, world))) * 10 for r in range(world)]
    assert sum(len(p) for p in parts) == n
    np.testing.assert_array_equal(unshard(parts, n), np.arange(n) * 10)


def test_world_from_launchers_and_checks(monkeypatch):
    cfg = load_config(overrides={"train.devices": 2, "train.num_nodes": 2, "train.batch_size": 8})
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    assert world_of(cfg) == World(0, 4)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("NODE_RANK", "1")
    assert world_of(cfg) == World(3, 4)  # Lightning's own processes: node 1, local 1
    monkeypatch.setenv("RANK", "2")
    assert world_of(cfg) == World(2, 4)  # torchrun
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ConfigError, match="torchrun started 3 processes"):
        world_of(cfg)
    with pytest.raises(ConfigError, match="must divide equally"):
        check_distributed(load_config(overrides={"train.batch_size": 6}), World(0, 4))
    with pytest.raises(ConfigError, match="strategy deep"):
        check_distributed(load_config(overrides={"train.strategy": "deep"}), World(0, 2))
    with pytest.raises(ConfigError, match="strategy features"):
        check_distributed(load_config(overrides={"train.strategy": "features"}), World(0, 2))
    with pytest.raises(ConfigError, match="GPUs only"):
        check_distributed(load_config(overrides={"train.sync_batchnorm": True, "train.accelerator": "cpu"}),
                          World(0, 2))
    with pytest.raises(ConfigError, match="1 validation image"):
        check_distributed(load_config(), World(0, 2), 10, 1)


def test_shards_draw_the_one_process_orders_epoch_after_epoch():
    """The shard takes what one process's loader takes from a RandomSampler (Lightning stops after
    len(loader) batches), so the next epoch's order, drawn from the same generator, is the same too."""
    import itertools

    import torch
    from torch.utils.data import DataLoader, RandomSampler

    data = list(range(28))
    one = DataLoader(data, batch_size=8, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    shards = [GlobalBatchShard(RandomSampler(data, generator=generator), 0, 2, 8, drop_last=True)]
    two = DataLoader(data, batch_size=4, sampler=shards[0], generator=generator)
    for _ in range(3):
        ones = [b.tolist() for b in itertools.islice(one, len(one))]
        halves = [b.tolist() for b in itertools.islice(two, len(two))]
        assert [b[:4] for b in ones] == halves
