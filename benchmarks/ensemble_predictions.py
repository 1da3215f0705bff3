"""Ensembles of finished runs, scored from their saved predictions: the mean of the members'
probabilities per image, against each member, paired (the same images and the same bootstrap
resamples), so a gain is told apart from the split's noise.

    .venv/bin/python benchmarks/ensemble_predictions.py runs/a/evaluation/predictions.csv \
        runs/b/evaluation/predictions.csv [--name seed0 seed1] [--resamples 1000]

Each file is a ``predictions.csv`` as ``lesionlens train`` (the run's own validation split, in
``evaluation/``) or ``lesionlens evaluate --out`` writes it: ``image_id``, ``true`` and a ``p_<class>``
column per class. The members must cover the same images with the same classes. The decision is
the plain argmax of the probabilities (each bundle's fitted rule belongs to its own weights).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlens.evaluation.bootstrap import confidence_intervals, paired_comparison
from lesionlens.evaluation.result import Evaluation

FIGURES = ("balanced_accuracy", "macro_auc", "auc[mel]")


def read_predictions(path: Path) -> tuple[list[str], pd.DataFrame]:
    """The classes (from the ``p_`` columns) and the rows indexed by image id, sorted."""
    frame = pd.read_csv(path)
    classes = [c.removeprefix("p_") for c in frame.columns if c.startswith("p_")]
    missing = {"image_id", "true"} - set(frame.columns)
    if missing or not classes:
        raise SystemExit(f"{path}: not a predictions file (needs image_id, true and p_<class> columns; "
                         f"missing {sorted(missing) or 'the p_ columns'})")
    if frame["image_id"].duplicated().any():
        raise SystemExit(f"{path}: image ids repeat, e.g. {frame['image_id'][frame['image_id'].duplicated()].iloc[0]}")
    return classes, frame.set_index("image_id").sort_index()


def evaluation_of(classes: list[str], frame: pd.DataFrame, probs: np.ndarray, name: str) -> Evaluation:
    y = frame["true"].map({c: k for k, c in enumerate(classes)}).to_numpy(dtype=np.int64)
    return Evaluation(classes, y, probs, image_ids=list(frame.index), description=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", type=Path, nargs="+", help="two or more predictions.csv files")
    parser.add_argument("--name", nargs="+", help="a short name per file (default: the run folder's name)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    args = parser.parse_args()
    if len(args.predictions) < 2:
        raise SystemExit("an ensemble needs two or more predictions files")
    names = args.name or [p.parent.parent.name if p.parent.name == "evaluation" else p.stem for p in args.predictions]
    if len(names) != len(args.predictions):
        raise SystemExit(f"--name gives {len(names)} names for {len(args.predictions)} files")

    members = [read_predictions(p) for p in args.predictions]
    classes, first = members[0]
    for path, (cls, frame) in zip(args.predictions[1:], members[1:]):
        if cls != classes:
            raise SystemExit(f"{path}: classes {cls} differ from {args.predictions[0]}'s {classes}")
        if not frame.index.equals(first.index) or not frame["true"].equals(first["true"]):
            raise SystemExit(f"{path}: not the same images (or labels) as {args.predictions[0]}")
    columns = [f"p_{c}" for c in classes]
    evaluations = [evaluation_of(classes, first, frame[columns].to_numpy(float), name)
                   for name, (_, frame) in zip(names, members)]
    mean = np.mean([ev.probs for ev in evaluations], axis=0)
    ensemble = evaluation_of(classes, first, mean, "ensemble of " + " + ".join(names))

    print(f"{len(first)} images, classes {classes}; 95% stratified-bootstrap intervals, {args.resamples} resamples\n")
    print(f"{'model':<40}" + "".join(f"{f:>26}" for f in FIGURES))
    for ev in [*evaluations, ensemble]:
        intervals = confidence_intervals(ev, args.resamples)
        print(f"{ev.description:<40}" + "".join(f"{str(intervals[f]) if f in intervals else 'n/a':>26}"
                                               for f in FIGURES))
    print(f"\n{'ensemble minus member (paired)':<40}" + "".join(f"{f:>26}" for f in FIGURES))
    for ev in evaluations:
        diff = paired_comparison(ev, ensemble, args.resamples)
        cells = [f"{diff[f].interval.estimate:+.3f} [{diff[f].interval.low:+.3f}, {diff[f].interval.high:+.3f}]"
                 if f in diff else "n/a" for f in FIGURES]
        print(f"{'- ' + ev.description:<40}" + "".join(f"{c:>26}" for c in cells))


if __name__ == "__main__":
    main()
