"""Accuracy of the default recipe on HAM10000 (stratified 80/20 split) and on ISIC 2017 (external).

    .venv/bin/python benchmarks/core_recipe.py                      # trains the built-in defaults
    .venv/bin/python benchmarks/core_recipe.py --bundle runs/ham10000-efficientnet_lite0

Trains (unless --bundle names a finished run) and prints one table: validation balanced accuracy,
macro AUC, melanoma AUC, malignant-vs-benign AUC, training images/s and wall time; then the same
bundle on the 600 ISIC 2017 test images (other clinics and cameras), melanoma vs rest. The
validation figures are those of the epoch chosen on that same split (the bundle's checkpoint), so
the last epoch's figures from the training log are printed beside them.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

from lesionlens.bundle.card import read_card
from lesionlens.config import load_config
from lesionlens.evaluation.bundles import evaluate_bundle
from lesionlens.training.curves import epoch_table
from lesionlens.training.fit import train


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--config", type=Path, help="a YAML recipe (default: the built-in defaults, the main job's)")
    parser.add_argument("--bundle", type=Path, help="a finished run to report instead of training one")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-core"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")

    if args.bundle is None:
        cfg = load_config(args.config, {"data.path": str(args.shared / "data" / "ham10000"),
                                        "model.weights": str(args.shared / "weights")})
        train(cfg, args.out, progress=True)
        args.bundle = args.out
    card = read_card(args.bundle)
    v = card.validation
    last = epoch_table(args.bundle / "logs").iloc[-1]

    started = time.perf_counter()
    ext = evaluate_bundle(card, args.shared / "data" / "isic2017", split="test", progress=False).written.ev.summary()
    ext_seconds = time.perf_counter() - started

    t = card.training
    print(f"\nDefault recipe: {card.architecture} at {card.preprocessing.image_size}px, "
          f"{t.epochs_run} epochs, best epoch {t.best_epoch} ({t.device})")
    print(f"{'data':<44}{'n':>6}{'bal.acc':>9}{'macroAUC':>10}{'melAUC':>9}{'malAUC':>9}{'img/s':>8}{'wall':>9}")
    print(f"{'HAM10000 validation (80/20, chosen epoch)':<44}{v.n_images:>6}{_f(v.balanced_accuracy):>9}"
          f"{_f(v.macro_auc):>10}{_f(v.binary['melanoma']['auc']):>9}{_f(v.binary['malignant']['auc']):>9}"
          f"{t.train_images_per_s:>8.1f}{t.total_time_s / 60:>8.1f}m")
    print(f"{'HAM10000 validation (last epoch, from log)':<44}{v.n_images:>6}"
          f"{_f(last.get('val_balanced_accuracy')):>9}{_f(last.get('val_macro_auc')):>10}")
    mel = ext["binary"].get("melanoma", {})
    sk = ext["per_class"].get("bkl", {})
    print(f"{'ISIC 2017 test (external, 3 classes)':<44}{ext['n_images']:>6}{_f(ext['balanced_accuracy']):>9}"
          f"{_f(ext['macro_auc']):>10}{_f(mel.get('auc')):>9}{'':>9}{'':>8}{ext_seconds:>8.0f}s")
    print(f"  ISIC 2017 melanoma vs rest: AUC {_f(mel.get('auc'))} ({mel.get('auc_grade')}), "
          f"sensitivity {_f(mel.get('sensitivity'))}, specificity {_f(mel.get('specificity'))}")
    print(f"  ISIC 2017 seborrheic keratosis vs rest (model's bkl probability): AUC {_f(sk.get('auc'))}")


if __name__ == "__main__":
    main()
