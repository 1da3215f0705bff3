"""Segment, then classify (issue 16's target): the classifier with and without the lesion crop.

    .venv/bin/python benchmarks/crop_bench.py --segmenter runs/seg-bench/recipe --out runs/crop-bench \
        [--isic-plain BUNDLE] [--ham-plain runs/recipe] [--skip ham] [--set KEY=VALUE ...]

Each pair is the same training run twice, once with ``--lesion-crop SEGMENTER`` (every image cut to
the box around the lesion the segmentation bundle finds, grown by the crop margin): same
configuration, seed and epochs. Both are scored on the 600 official ISIC 2017 test images, paired:
1. In domain: trained on the 2,000 ISIC 2017 training images (the best epoch by the macro AUC of
   the 150 validation images), with --isic-config (the segmentation recipe's settings, as a
   classifier) and --set overrides. --isic-plain reuses a finished plain run (say the single-task
   arm of benchmarks/multitask_bench.py); the crop arm then takes its saved configuration.
2. Across data sets: trained on HAM10000 (its grouped split), scored on ISIC 2017. --ham-plain reuses
   a finished plain run (the CPU recipe's bundle); the crop arm takes its saved configuration and
   the epochs it finished (a run stopped by its time limit is matched, not outspent).
Figures: melanoma AUC (melanoma against the rest) and seborrheic-keratosis AUC (SK against the rest;
the HAM10000 model scores SK by its bkl probability), DeLong's paired test; balanced accuracy by a
paired stratified bootstrap. The segmenter never saw a test image (ISIC 2017 Part 1 has no test masks).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from lesionlens.bundle.card import read_card
from lesionlens.config import load_config, parse_assignment
from lesionlens.evaluation.bootstrap import delong_test, paired_comparison
from lesionlens.evaluation.evaluate import predict_split
from lesionlens.training.fit import trained

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TARGETS = {"melanoma": "mel", "seborrheic keratosis": "bkl"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segmenter", type=Path, required=True, help="a segmentation (or multitask) bundle")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--isic-config", type=Path, default=ROOT / "configs" / "segment_isic.yaml")
    ap.add_argument("--ham-config", type=Path, default=ROOT / "configs" / "cpu_recipe.yaml")
    ap.add_argument("--isic-plain", type=Path, help="a finished plain ISIC 2017 classifier to reuse")
    ap.add_argument("--ham-plain", type=Path, help="a finished plain HAM10000 classifier to reuse")
    ap.add_argument("--margin", type=float, default=0.15, help="the crop's margin (share of the box's side)")
    ap.add_argument("--skip", default="", help="comma-separated: isic, ham")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting of every run")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = dict(parse_assignment(s) for s in args.set)
    isic, ham, weights = args.shared / "data" / "isic2017", args.shared / "data" / "ham10000", args.shared / "weights"
    skip = set(filter(None, args.skip.split(",")))
    crop = {"model.lesion_crop": str(args.segmenter.resolve()), "model.crop_margin": args.margin}
    results = {}
    if "isic" not in skip:
        plain = args.isic_plain or trained(args.out / "isic-plain", load_config(args.isic_config, {
            "data.path": str(isic), "model.weights": str(weights), **overrides, "train.task": "classification",
            "train.monitor": "val_macro_auc", "train.sampler": "shuffle"}))
        results["in domain: ISIC 2017 train -> test"] = pair(plain, args.out / "isic-crop", crop, isic)
    if "ham" not in skip:
        plain = args.ham_plain or trained(args.out / "ham-plain", load_config(args.ham_config, {
            "data.path": str(ham), "model.weights": str(weights), **overrides}))
        results["across data sets: HAM10000 -> ISIC 2017 test"] = pair(plain, args.out / "ham-crop", crop, isic)
    (args.out / "crop.json").write_text(json.dumps({k: v["json"] for k, v in results.items()}, indent=2))
    for name, r in results.items():
        print(f"\n== {name} ({r['json']['n_test']} images): plain vs lesion crop (margin {args.margin}) ==")
        print("\n".join(r["lines"]))
    return 0


def pair(plain: Path, crop_out: Path, crop: dict, test_data: Path) -> dict:
    """Train the crop arm with the plain run's own configuration (and its finished epochs), score both."""
    plain_card = read_card(plain)
    cfg = load_config(plain / "config.yaml", {**crop, "train.epochs": plain_card.training.epochs_run,
                                              "train.max_minutes": None})
    cropped = trained(crop_out, cfg)
    evs = {arm: scored(bundle, test_data) for arm, bundle in (("plain", plain), ("crop", cropped))}
    return compare(evs, {"plain": plain_card, "crop": read_card(cropped)})


def scored(bundle: Path, data: Path):
    with tempfile.TemporaryDirectory() as tmp:
        # The official partitions share 6 copies between training and test (README, "Checking a data
        # set"): the challenge protocol scores the 600 test images as they are, and so do both arms.
        ev, _ = predict_split(read_card(bundle), data, Path(tmp), split="test", progress=False,
                              allow_leakage=True)
    return ev


def compare(evs: dict, cards: dict) -> dict:
    a, b = evs["plain"], evs["crop"]
    if a.image_ids != b.image_ids:
        raise SystemExit("plain and crop runs were scored on different images: no paired comparison")
    lines, out = [], {"n_test": len(a.y_true), "arms": {}}
    for arm, card in cards.items():
        t = card.training
        lines.append(f"  {arm:<6}{card.architecture} at {card.preprocessing.image_size} px, {t.epochs_run} epochs "
                     f"(best {t.best_epoch}), {t.fit_time_s / 60:.1f} min training, TTA {card.tta}")
        out["arms"][arm] = {"epochs": t.epochs_run, "fit_minutes": t.fit_time_s / 60}
    lines.append(f"  {'figure':<26}{'plain':<9}{'crop':<9}{'crop - plain [95% CI]':<26}p")
    for name, code in TARGETS.items():
        y, sa = a.class_vs_rest(code)
        _, sb = b.class_vs_rest(code)
        auc_a, auc_b, _, p, se = delong_test(y, sa, sb)
        d = auc_b - auc_a
        lines.append(f"  {name + ' AUC':<26}{auc_a:<9.3f}{auc_b:<9.3f}{d:+.3f} [{d - 1.96 * se:+.3f}, "
                     f"{d + 1.96 * se:+.3f}]{'':<5}{p:.3f} (DeLong, {int(y.sum())} positives)")
        out[name] = {"plain": auc_a, "crop": auc_b, "difference": d, "low": d - 1.96 * se, "high": d + 1.96 * se,
                     "p_value": p}
    diffs = paired_comparison(a, b, n_resamples=2000)
    ba = diffs.get("balanced_accuracy")
    if ba is not None:
        lines.append(f"  {'balanced accuracy':<26}{ba.a:<9.3f}{ba.b:<9.3f}{ba.interval.estimate:+.3f} "
                     f"[{ba.interval.low:+.3f}, {ba.interval.high:+.3f}]{'':<5}{ba.p_value:.3f} (paired bootstrap)")
        out["balanced_accuracy"] = ba.to_dict()
    return {"lines": lines, "json": out}


if __name__ == "__main__":
    raise SystemExit(main())
