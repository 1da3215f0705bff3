"""Training throughput of `lesionlens train` against a bare PyTorch loop, in one run.

    .venv/bin/python benchmarks/train_throughput.py [--data ../shared/data/ham10000] [--size 160]

Same model (ImageNet EfficientNet-Lite0), resolution, batch size, optimizer and cached images for
every row; each row trains for the same number of steps from a cold start of the epoch (worker
start-up and first-step warm-up included, as in a real epoch), and the rows alternate so that
machine noise hits them alike. Rows:

- lesionlens: the real `train()` (Lightning, loaders, augmentation, logging, checkpointing);
  images/s as recorded in the bundle's card (training steps only, validation excluded);
- bare loop + same loader: a hand-written loop over the same DataLoader (augmenting worker);
- bare loop, tensors ready: a hand-written loop over pre-made uint8 batches (no loading, no
  augmentation): the ceiling.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lesionlens.config import load_config
from lesionlens.data.transforms import to_input
from lesionlens.models.registry import create_model
from lesionlens.training.fit import load_training_data, resolve_preprocessing, train
from lesionlens.training.loop import build_loaders
from lesionlens.training.optim import build_optimizer


def bare_loop(cfg, pre, make_batches, steps: int) -> float:
    """Images/s of a plain loop: forward, loss, backward, step; nothing else."""
    torch.manual_seed(cfg.train.seed)
    model = create_model(cfg.model.name, 7, pretrained=True, weights=cfg.model.weights,
                         drop_rate=cfg.model.drop_rate).to(memory_format=torch.channels_last).train()
    opt = build_optimizer(model, cfg.train)
    loss_fn = torch.nn.CrossEntropyLoss()
    seen, started = 0, time.perf_counter()
    for step, (images, targets) in enumerate(make_batches()):
        if step == steps:
            break
        loss = loss_fn(model(to_input(images, pre)), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(targets)
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/ham10000")
    parser.add_argument("--weights", default="../shared/weights")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, help="data-loading workers (default: the configuration's)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # a subset with exactly `steps` training batches (and a small validation split)
        meta = pd.read_csv(Path(args.data) / "HAM10000_metadata.csv")
        n_train = args.steps * args.batch_size
        subset = meta.sample(int(n_train / 0.8) + 2, random_state=0)
        subset.to_csv(tmp / "HAM10000_metadata.csv", index=False)
        cfg = load_config(overrides={
            "data.path": str(tmp), "data.images": str(Path(args.data) / "images"), "model.weights": args.weights,
            "model.image_size": args.size, "train.batch_size": args.batch_size, "train.epochs": 1,
        } | ({"data.num_workers": args.workers} if args.workers is not None else {}))
        pre = resolve_preprocessing(cfg)
        data, _ = load_training_data(cfg, pre, tmp, progress=False)
        targets = data.table.targets()
        train_rows, val_rows = data.rows("train"), data.rows("val")
        steps = len(train_rows) // args.batch_size
        loader, _ = build_loaders(cfg, pre, data, targets, train_rows, val_rows)
        ready = [(torch.from_numpy(np.asarray(data.images.array[data.table.frame["cache_row"].to_numpy()[
            train_rows[i * args.batch_size:(i + 1) * args.batch_size]]])).permute(0, 3, 1, 2).contiguous(),
            torch.from_numpy(targets[train_rows[i * args.batch_size:(i + 1) * args.batch_size]]))
            for i in range(steps)]

        results: dict[str, list[float]] = {"lesionlens train": [], "bare loop + same loader": [],
                                           "bare loop, tensors ready": []}
        for r in range(args.repeats):
            run = tmp / f"run{r}"
            card = train(cfg, run, progress=False).card
            results["lesionlens train"].append(card.training.train_images_per_s)
            results["bare loop + same loader"].append(bare_loop(cfg, pre, lambda: iter(loader), steps))
            results["bare loop, tensors ready"].append(bare_loop(cfg, pre, lambda: iter(ready), steps))

    ceiling = np.median(results["bare loop, tensors ready"])
    same = np.median(results["bare loop + same loader"])
    print(f"\nTraining throughput: {cfg.model.name} at {args.size}px, batch {args.batch_size}, {steps} steps per "
          f"measurement, {args.repeats} repeats, {torch.get_num_threads()} threads, "
          f"{loader.num_workers} loader worker(s)")
    print(f"{'row':<28}{'images/s (median)':>18}{'runs':>22}{'vs tensors ready':>18}{'vs same loader':>16}")
    for name, values in results.items():
        med = float(np.median(values))
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"{name:<28}{med:>18.1f}{runs:>22}{med / ceiling:>17.0%}{med / same:>16.0%}")


if __name__ == "__main__":
    main()
