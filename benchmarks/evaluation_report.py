"""What the evaluation says of a bundle, how sure it is, what test-time augmentation gains, and how
long a full report takes.

    .venv/bin/python benchmarks/evaluation_report.py runs/ham10000-efficientnet_lite0
    .venv/bin/python benchmarks/evaluation_report.py BUNDLE --data ../shared/data/isic2017 --split test

For each test-time augmentation (none, flips, d4) on the same images: balanced accuracy and the
melanoma / malignant AUCs with 95% bootstrap intervals, sensitivity and specificity at the bundle's
operating points, ECE before and after its temperature, and the seconds spent predicting (images
already decoded in the cache), on the figures (bootstrap + plots) and on the HTML report. The gain
of each TTA over none comes with its paired test (bootstrap for balanced accuracy, DeLong for AUC).
Defaults: the bundle's own validation split and the ISIC 2017 test set when ../shared is present.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from lesionlens.bundle.card import read_card
from lesionlens.evaluation.bootstrap import paired_comparison
from lesionlens.evaluation.evaluate import predict_split
from lesionlens.evaluation.files import write_evaluation
from lesionlens.evaluation.report import Entry, write_report

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _ci(metrics: dict, key: str) -> str:
    c = metrics.get("confidence_intervals", {}).get(key)
    return "n/a" if c is None else f"{c['estimate']:.3f} [{c['low']:.3f}, {c['high']:.3f}]"


def run(bundle: Path, data: str, split: str, ttas: list[str], resamples: int) -> None:
    card = read_card(bundle)
    rows, evs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for tta in ttas:
            started = time.perf_counter()
            ev, _ = predict_split(card, data, Path(tmp) / tta, split=split, tta=tta, progress=False)
            predicted = time.perf_counter()
            entry = Entry.of(tta, card, write_evaluation(ev, Path(tmp) / tta, resamples))
            figured = time.perf_counter()
            write_report([entry], Path(tmp) / tta, data, resamples)
            done = time.perf_counter()
            evs[tta] = ev
            rows.append((tta, entry.metrics, predicted - started, figured - predicted, done - figured))
    first = rows[0][1]
    print(f"\n{first['description']}; {resamples} bootstrap resamples")
    print(f"{'TTA':<6}{'balanced acc. [95% CI]':>26}{'melanoma AUC [95% CI]':>26}{'malignant AUC [95% CI]':>26}"
          f"{'mel sens':>10}{'mel spec':>10}{'ECE T=1':>9}{'ECE T':>8}{'predict s':>11}{'figures s':>11}"
          f"{'report s':>10}{'total s':>9}")
    for tta, m, t_pred, t_fig, t_rep in rows:
        mel = m.get("binary", {}).get("melanoma", {})
        cal = m.get("calibration", {})
        print(f"{tta:<6}{_ci(m, 'balanced_accuracy'):>26}{_ci(m, 'melanoma_auc'):>26}{_ci(m, 'malignant_auc'):>26}"
              f"{mel.get('sensitivity', float('nan')):>10.3f}{mel.get('specificity', float('nan')):>10.3f}"
              f"{cal.get('ece_before', float('nan')):>9.3f}{cal.get('ece_after', float('nan')):>8.3f}"
              f"{t_pred:>11.1f}{t_fig:>11.1f}{t_rep:>10.1f}{t_pred + t_fig + t_rep:>9.1f}")
    base = ttas[0]
    for tta in ttas[1:]:
        diffs = paired_comparison(evs[base], evs[tta], resamples)
        parts = []
        for key in ("balanced_accuracy", "melanoma_auc_delong", "malignant_auc_delong"):
            if key in diffs:
                d = diffs[key]
                parts.append(f"{key} {d.interval.estimate:+.3f} [{d.interval.low:+.3f}, {d.interval.high:+.3f}] "
                             f"p={d.p_value:.3f}")
        print(f"gain of {tta} over {base}: " + "; ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--data", help="labelled data (default: the bundle's own, then ISIC 2017 when present)")
    parser.add_argument("--split", default="auto")
    parser.add_argument("--tta", nargs="+", default=["none", "flips", "d4"])
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    targets = [(args.data, args.split)] if args.data else [(read_card(args.bundle).dataset.path, "auto")]
    if not args.data and (SHARED / "isic2017").is_dir():
        targets.append((str(SHARED / "isic2017"), "test"))
    for data, split in targets:
        run(args.bundle, data, split, args.tta, args.resamples)


if __name__ == "__main__":
    main()
