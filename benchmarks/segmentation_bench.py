"""Lesion segmentation on ISIC 2017 Part 1 (issue 16's targets), printed as tables.

    .venv/bin/python benchmarks/segmentation_bench.py --out runs/seg-bench \
        [--config configs/segment_isic.yaml] [--losses ce_dice,bce,weighted_bce,dice] [--epochs N]

Every run trains on the 2,000 official training images and is scored on the 150 official
validation images (the ISIC layout's own partitions), with the configuration given (the
segmentation recipe by default) and --set overrides.

1. The recipe: mean per-image Jaccard (the ISIC 2017 ranking figure) with its 95% bootstrap
   interval, thresholded Jaccard, Dice, pooled Jaccard, HD95, the failure share (Jaccard < 0.65),
   training minutes, and the minutes (and epoch) at which validation Jaccard first reached 0.70.
   Masks are scored at the masks' own 256 px: the probabilities are resized to it (bilinear)
   before thresholding and the clean-up, so the figure does not depend on the input size.
2. The loss comparison (--losses): one run per loss at the same epochs, seed and budget (the
   recipe's run is its own loss's arm); each loss's mean Jaccard and its paired difference from the
   first with a paired bootstrap interval. With --set (say a smaller image size and fewer epochs)
   and another --out, the comparison runs at a smaller budget than the recipe's.
A finished run is read back from its bundle; an interrupted one resumes.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from lesionlens.bundle.card import read_card
from lesionlens.bundle.split import read_split
from lesionlens.config import load_config, parse_assignment
from lesionlens.data.images import preprocess_image
from lesionlens.data.masks import find_mask, read_mask
from lesionlens.evaluation.mask_ops import postprocess_mask
from lesionlens.evaluation.segmentation import (
    compare_segmentations,
    evaluate_segmentation,
)
from lesionlens.inference import load_model, predict_mask_probabilities
from lesionlens.training.curves import epoch_table
from lesionlens.training.fit import trained as train_once

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIRST_GOOD = 0.70


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=SHARED / "data" / "isic2017")
    ap.add_argument("--weights", type=Path, default=SHARED / "weights")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "segment_isic.yaml")
    ap.add_argument("--losses", default="", help="comma-separated losses to compare at equal budget (first = reference)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting of every run")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = dict(parse_assignment(s) for s in args.set)
    main_run = trained(args, "recipe", overrides)
    scored = {"recipe": score(main_run)}
    print_recipe(main_run, scored["recipe"])
    losses = [x for x in args.losses.split(",") if x]
    if losses:
        recipe_loss = read_card(main_run).segmentation.loss  # its run is that loss's arm
        runs = {loss: main_run if loss == recipe_loss else trained(args, f"loss-{loss}", {**overrides, "segment.loss": loss})
                for loss in losses}
        print_losses({loss: scored["recipe"] if run == main_run else score(run) for loss, run in runs.items()}, runs)
    return 0


def trained(args, name: str, overrides: dict) -> Path:
    cfg = load_config(args.config, {"data.path": str(args.data), "model.weights": str(args.weights), **overrides})
    return train_once(args.out / name, cfg)


def score(bundle: Path):
    """The bundle's masks for its validation images against the true masks, at the masks' own size."""
    card = read_card(bundle)
    rows = [r for r in read_split(card.file("split")) if r.partition == "val"]
    images = np.stack([preprocess_image(Path(r.path), card.preprocessing) for r in rows])
    probabilities = predict_mask_probabilities(load_model(card), images, card.preprocessing, tta=card.tta)
    truth, predicted = [], []
    for row, p in zip(rows, probabilities):
        mask = read_mask(find_mask(Path(row.path), []))
        h, w = mask.shape
        resized = np.asarray(Image.fromarray(p.astype(np.float32), "F").resize((w, h), Image.Resampling.BILINEAR))
        seg = card.segmentation
        predicted.append(postprocess_mask(resized, seg.threshold, keep_largest=seg.keep_largest,
                                          fill_holes=seg.keep_largest))
        truth.append(mask)
    return evaluate_segmentation(np.stack(truth), np.stack(predicted), [r.image_id for r in rows], n_resamples=2000,
                                 description=f"{bundle.name}: ISIC 2017 validation at the masks' size")


def first_good(bundle: Path) -> str:
    history = epoch_table(bundle / "logs")
    good = history[history["val_jaccard"] >= FIRST_GOOD] if "val_jaccard" in history else history.iloc[:0]
    if good.empty:
        return f"never reached {FIRST_GOOD}"
    epoch = good.index[0]
    return f"epoch {epoch}, {good['elapsed_minutes'].iloc[0]:.1f} min" if "elapsed_minutes" in good else f"epoch {epoch}"


def print_recipe(bundle: Path, ev) -> None:
    card = read_card(bundle)
    t, seg = card.training, card.segmentation
    print(f"\n== ISIC 2017 Part 1: train 2,000 -> validation {len(ev.image_ids)} ==")
    print(f"U-Net on {card.architecture} at {card.preprocessing.image_size} px, {seg.upsample} decoder from "
          f"{seg.decoder_width}, loss {seg.loss}, TTA {card.tta}; {card.model.parameters / 1e6:.2f}M parameters")
    print(f"trained {t.epochs_run} epochs in {t.fit_time_s / 60:.1f} min on {t.device}; best epoch {t.best_epoch}; "
          f"validation Jaccard first >= {FIRST_GOOD}: {first_good(bundle)}")
    print("\n".join(ev.lines()))


def print_losses(scores: dict, runs: dict) -> None:
    names = list(scores)
    reference = names[0]
    print(f"\n== loss comparison at equal budget (paired bootstrap against {reference}) ==")
    print(f"  {'loss':<14}{'mean Jaccard':<26}{'failures':<10}{'minutes':<9}difference from " + reference)
    for name in names:
        ev, card = scores[name], read_card(runs[name])
        summary = ev.summary
        d = None if name == reference else compare_segmentations(scores[reference], ev)
        diff = "" if d is None else f"{d.interval} (p = {d.p_value:.3f})"
        print(f"  {name:<14}{summary['mean_jaccard']!s:<26}{ev.counts['failures']:<10}"
              f"{card.training.fit_time_s / 60:<9.1f}{diff}")


if __name__ == "__main__":
    raise SystemExit(main())
