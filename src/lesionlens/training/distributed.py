"""Training in several processes: who this process is, what the Lightning Trainer needs, the checks
a multi-process run makes before it reads any data, and the gathering of validation results.

    lesionlens train ... --devices 2                      # one machine: Lightning starts the second process
    torchrun --nnodes 2 --nproc-per-node 4 --node-rank K --master-addr HOST --master-port PORT \\
        $(which lesionlens) train ... --devices 4 --num-nodes 2   # one launcher per machine
    srun --ntasks-per-node 4 lesionlens train ... --devices 4 --num-nodes 2   # SLURM

Every process reads the same data and configuration; the decoded-image cache is built once under a
file lock and shared. Training is data parallel (PyTorch DDP, gloo on CPUs, NCCL on GPUs): each
process takes its slice of every global batch (:mod:`lesionlens.training.shards`), and gradients are
averaged. Validation rows are dealt out, scored once and gathered, so the kept epoch, early
stopping, calibration and operating points come from the whole validation set. Only process 0
writes: configuration, split, logs, plots, checkpoints and the bundle.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch

from lesionlens.config import ConfigError, RunConfig
from lesionlens.training import allocator
from lesionlens.training.shards import unshard

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    rank: int  # this process, 0 .. size - 1
    size: int  # processes in all

    @property
    def is_zero(self) -> bool:
        """Process 0 writes the run's files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_of(cfg: RunConfig) -> World:
    """This process's place in the run that ``cfg`` asks for (``train.devices`` x ``train.num_nodes``),
    read from the environment its launcher set: torchrun's ``RANK``, the ``LOCAL_RANK`` / ``NODE_RANK``
    of the processes Lightning starts itself, or SLURM's ``SLURM_PROCID``."""
    t = cfg.train
    if t.devices < 1 or t.num_nodes < 1:
        raise ConfigError(f"train.devices and train.num_nodes must be at least 1, got {t.devices} and {t.num_nodes}")
    size = t.devices * t.num_nodes
    env = os.environ
    started = None
    if "RANK" in env and "WORLD_SIZE" in env:  # torchrun (and other torch.distributed launchers)
        rank, started, by = int(env["RANK"]), int(env["WORLD_SIZE"]), "torchrun"
    elif "LOCAL_RANK" in env and "WORLD_SIZE" in env:  # a process Lightning's launcher started
        rank = int(env.get("NODE_RANK", 0)) * t.devices + int(env["LOCAL_RANK"])
        started, by = int(env["WORLD_SIZE"]), "lightning"
    elif int(env.get("SLURM_NTASKS", 1)) > 1 and "SLURM_PROCID" in env:
        rank, started, by = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), "SLURM"
    else:
        rank = 0
    if started is not None and started != size:
        raise ConfigError(f"{by} started {started} processes, but --devices {t.devices} x --num-nodes {t.num_nodes} "
                          f"asks for {size}: give the same numbers to both")
    return World(rank, size)


def check_distributed(cfg: RunConfig, world: World, n_train: int | None = None, n_val: int | None = None) -> None:
    """Refuse what a multi-process run cannot do right, before it starts (without data counts: the
    settings alone; with them: enough images for every process)."""
    if not world.distributed:
        return
    t = cfg.train
    if t.strategy == "features":
        raise ConfigError("--strategy features fits a scikit-learn classifier on embeddings in one process: "
                          "use --devices 1 --num-nodes 1")
    if t.strategy == "deep":
        raise ConfigError("--strategy deep unfreezes blocks during training, which DDP's gradient reduction fixed "
                          "at the start cannot follow: train it with --devices 1, or use --strategy full")
    if t.batch_size % world.size:
        raise ConfigError(f"train.batch_size {t.batch_size} is the global batch: it must divide equally among the "
                          f"{world.size} processes")
    for what, n in (("training", n_train), ("validation", n_val)):
        if n is not None and n < world.size:
            raise ConfigError(f"{n} {what} image(s) cannot be shared among {world.size} processes")
    if t.accelerator == "cpu" or not torch.cuda.is_available():
        if t.sync_batchnorm:
            raise ConfigError("train.sync_batchnorm: PyTorch's SyncBatchNorm runs on GPUs only; on CPUs each process "
                              "normalises over its own share of the batch (leave it off)")
        cores = os.cpu_count() or 1
        if n_train is not None:  # said once, with the settings' check
            return
        if t.devices > cores:
            log.warning("%d processes on %d CPU cores: they will wait for each other", t.devices, cores)
        elif world.is_zero:
            log.info("%d processes on this machine's %d CPU cores share them: expect no speed-up on one machine; "
                     "DDP pays off across machines or GPUs", t.devices, cores)


def trainer_settings(cfg: RunConfig) -> dict:
    """The Lightning Trainer's device arguments. Samplers are the run's own (shards), not Lightning's."""
    t = cfg.train
    on_gpu = t.accelerator != "cpu" and torch.cuda.is_available()
    settings = {"accelerator": t.accelerator, "devices": t.devices, "num_nodes": t.num_nodes,
                "precision": "16-mixed" if on_gpu else "32-true", "use_distributed_sampler": False}
    if t.devices * t.num_nodes > 1:
        from lightning.pytorch.strategies import DDPStrategy

        settings["strategy"] = DDPStrategy(process_group_backend="nccl" if on_gpu else "gloo")
        settings["sync_batchnorm"] = t.sync_batchnorm
    return settings


def gather_rows(arrays: list[np.ndarray], n: int) -> list[np.ndarray]:
    """Every process's strided share of the validation rows (``arrays``, one per quantity), gathered
    and put back in row order; in a single process, ``arrays`` as they are."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return arrays
    parts: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, arrays)
    return [unshard([p[k] for p in parts], n) for k in range(len(arrays))]


def reduce_sum(values: list[float]) -> list[float]:
    """``values`` summed over the processes (as they are in a single process)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return values
    on_gpu = torch.distributed.get_backend() == "nccl"  # NCCL reduces GPU tensors only
    t = torch.tensor(values, dtype=torch.float64, device="cuda" if on_gpu else "cpu")
    torch.distributed.all_reduce(t)
    return t.cpu().tolist()


def device_description() -> str:
    """What the card says a run trained on: the GPU's name, or the CPU's thread count and the memory
    allocator (:mod:`lesionlens.training.allocator`), both of which set a CPU run's speed."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"cpu ({torch.get_num_threads()} threads, {allocator.describe()} allocator)"
