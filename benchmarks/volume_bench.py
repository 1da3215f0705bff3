"""3D models on synthetic NIfTI volumes (issue 17's functional targets), printed as a table.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/volume_bench.py --out runs/volume-bench [--per-class 20]

A functional check, not a benchmark of 3D medical imaging: no real volume data can be had here.
Volumes of seed 0 are trained on (the run's own seeded 80/20 split), volumes of seed 1 are held
out. Three runs at the tests' grid and optimiser (24^3 voxels of 2 mm, z-score, batch 4, lr 3e-3)
with the default 3D augmentation (the tests use flips and quarter turns only):
- tiny_cnn3d, 10 epochs: the class (solid / shell / multiple) -> held-out accuracy (target >= 0.95);
- tiny_unet3d, 20 epochs, Dice + cross-entropy: the object's mask -> held-out mean Dice (>= 0.90);
- tiny_cnn3d, 12 epochs, --task regression: the object's volume in mm^3 -> held-out MAE against the
  training median (paired bootstrap) and R^2.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from lesionlens.config import load_config
from lesionlens.data.synthetic_volumes import write_synthetic_volumes
from lesionlens.data.volumes import VolumePreprocessing
from lesionlens.evaluation.volume_evaluate import evaluate_volume_bundle
from lesionlens.training.volume_fit import train_volumes

PRE = VolumePreprocessing((24, 24, 24), (2.0, 2.0, 2.0), "zscore")
RUNS = {  # name -> (model, epochs, settings)
    "class": ("tiny_cnn3d", 10, {}),
    "mask": ("tiny_unet3d", 20, {"segment.loss": "ce_dice"}),
    "volume_mm3": ("tiny_cnn3d", 12, {"train.task": "regression", "data.target": "volume_mm3"}),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-class", type=int, default=20, help="training volumes per class (held out: half)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    train_csv = write_synthetic_volumes(args.out / "train", per_class=args.per_class, seed=0)
    held_out = write_synthetic_volumes(args.out / "held_out", per_class=max(1, args.per_class // 2), seed=1)
    print("\n| target | model | epochs | training s | held-out volumes | held-out figure |")
    print("|---|---|---|---|---|---|")
    for name, (model, epochs, settings) in RUNS.items():
        cfg = load_config(None, {"data.path": str(train_csv), "model.name": model, "model.pretrained": False,
                                 "train.strategy": "scratch", "train.epochs": epochs, "train.batch_size": 4,
                                 "train.lr": 3e-3, "model.drop_rate": 0.0, "train.seed": 0, **settings})
        started = time.perf_counter()
        bundle = args.out / name
        if not (bundle / "card.json").is_file():
            train_volumes(cfg, bundle, PRE, progress=False)
        seconds = time.perf_counter() - started
        held = evaluate_volume_bundle(bundle, held_out, args.out / f"{name}-held-out")
        if held.regression is not None:
            f = held.regression.summary["volume_mm3"]
            figure = (f"MAE {_ci(f['mae'])} mm^3 vs median {_ci(f['baseline_mae'])}, difference "
                      f"{_ci(f['mae_vs_baseline'])}, R^2 {_ci(f['r2'])}")
            n = len(held.regression.ids)
        elif held.masks is not None:
            s = held.masks.summary()
            figure, n = f"Dice {s['dice']:.3f} (lowest {s['dice_min']:.3f}), Jaccard {s['jaccard']:.3f}", s["n_volumes"]
        else:
            m = held.written.metrics
            figure, n = f"accuracy {m['accuracy']:.3f}, balanced accuracy {m['balanced_accuracy']:.3f}", m["n_images"]
        print(f"| {name} | {model} | {epochs} | {seconds:.0f} | {n} | {figure} |")
    return 0


def _ci(d: dict) -> str:
    return f"{d['estimate']:.4g} [{d['low']:.4g}, {d['high']:.4g}]"


if __name__ == "__main__":
    raise SystemExit(main())
