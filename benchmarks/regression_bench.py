"""Image regression on real data (issue 17's targets), printed as tables.

    .venv/bin/python benchmarks/regression_bench.py --out runs/regression-bench [--skip age|box] \
        [--set KEY=VALUE ...]

1. Age from HAM10000 images: `lesionlens train --task regression --target age` on the 5,984
   HAM10000 images (the 36 without an age are left out by --on-bad-input skip and listed in the
   bundle's data_issues.csv), the default seeded lesion-grouped 80/20 split. The validation MAE with
   its 95% bootstrap interval against the predict-the-training-median baseline, and the paired
   difference (model - baseline) with its interval and p-value.
2. The lesion's bounding box from the ISIC 2017 Part 1 masks: each mask's box (x0, y0, x1, y1 as
   fractions of the image side) is written to a CSV (runs/.../boxes.csv) with the official
   partitions; the network is trained on the 2,000 training images and scored on the 150 official
   validation images: mean box IoU (target >= 0.75) with its interval, the shares with IoU >= 0.5
   and >= 0.75, and the MAE per corner against the baseline's.
A finished run is read back from its bundle; an interrupted one resumes.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from lesionlens.bundle.card import read_card
from lesionlens.config import load_config, parse_assignment
from lesionlens.training.fit import trained as train_once

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ISIC = "ISIC-2017_{part}_Data", "ISIC-2017_{part}_Part1_GroundTruth"

COMMON = {"train.task": "regression", "data.on_bad_input": "skip", "model.image_size": 160, "train.epochs": 6,
          "train.lr": 1e-3}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--skip", default="", help="comma-separated steps to leave out: age, box")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting of every run")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    skip = set(filter(None, args.skip.split(",")))
    overrides = {**COMMON, "model.weights": str(args.shared / "weights"), **dict(parse_assignment(s) for s in args.set)}
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    if "age" not in skip:
        cfg = load_config(overrides={**overrides, "data.path": str(args.shared / "data" / "ham10000"),
                                     "data.target": "age"})
        rows += table_rows("HAM10000 age (years)", train_once(args.out / "age", cfg))
    if "box" not in skip:
        boxes = write_boxes(args.shared / "data" / "isic2017", args.out / "boxes.csv")
        # the official partitions hold copies of a few images on both sides (as for the segmentation
        # bench): kept, and recorded on the card
        cfg = load_config(overrides={**overrides, "data.path": str(boxes), "data.target": "x0,y0,x1,y1",
                                     "regression.box": True, "data.allow_leakage": True})
        rows += table_rows("ISIC 2017 lesion box (fraction of side)", train_once(args.out / "box", cfg))
    print_table(rows)
    return 0


def write_boxes(isic: Path, path: Path) -> Path:
    """One row per ISIC 2017 training and validation image: its path, partition and the box around
    its lesion mask as fractions of the image's width and height."""
    if path.is_file():
        return path
    lines = ["image,partition,x0,y0,x1,y1"]
    for part, partition in (("Training", "train"), ("Validation", "val")):
        images, masks = (isic / p.format(part=part) for p in ISIC)
        for image in sorted(images.glob("ISIC_*.jpg")):
            mask = np.asarray(Image.open(masks / f"{image.stem}_segmentation.png").convert("L")) > 127
            if not mask.any():
                raise ValueError(f"{masks / image.stem}_segmentation.png: an empty mask has no box")
            ys, xs = np.nonzero(mask)
            h, w = mask.shape
            box = (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)
            lines.append(f"{image},{partition}," + ",".join(f"{v:.5f}" for v in box))
    path.write_text("\n".join(lines) + "\n")
    logging.info("wrote %d boxes to %s", len(lines) - 1, path)
    return path


def table_rows(what: str, bundle: Path) -> list[tuple]:
    card = read_card(bundle)
    reg, t = card.regression, card.training
    rows = []
    for name in reg.targets + (["all"] if len(reg.targets) > 1 else []):
        f = reg.validation[name]
        rows.append((what, name, card.validation.n_images, f["mae"], f["baseline_mae"], f["mae_vs_baseline"],
                     f["p_value"], f.get("r2"), t.fit_time_s / 60, t.best_epoch, t.epochs_run))
    if reg.box:
        b = reg.validation["box"]
        rows.append((what, "box IoU", card.validation.n_images, b["mean_iou"], b["share_iou_0.5"],
                     b["share_iou_0.75"], None, None, t.fit_time_s / 60, t.best_epoch, t.epochs_run))
    return rows


def _ci(d: dict | None) -> str:
    return "" if d is None else f"{d['estimate']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"


def print_table(rows: list[tuple]) -> None:
    print("\n| task | target | images | MAE (box: mean IoU) | baseline MAE (box: IoU>=0.5) "
          "| model - baseline (box: IoU>=0.75) | p | R^2 | training min | best / epochs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for what, name, n, a, b, c, p, r2, minutes, best, epochs in rows:
        print(f"| {what} | {name} | {n} | {_ci(a)} | {_ci(b)} | {_ci(c)} | {'' if p is None else f'{p:.3g}'} "
              f"| {_ci(r2)} | {minutes:.1f} | {best} / {epochs} |")


if __name__ == "__main__":
    raise SystemExit(main())
