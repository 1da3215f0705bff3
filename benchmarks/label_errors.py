"""Suspected label errors on HAM10000 with 5% of the labels flipped: 5% of every class (rare classes
included) given another class at random. Out-of-fold probabilities from logistic regression on
ImageNet embeddings (lesionlens.quality.labels); prints how well the label-quality score (the
out-of-fold probability of the given label) separates flipped from clean labels (AUROC), and how
many flips confident learning flags.

    PYTHONPATH=src python benchmarks/label_errors.py --data ../shared/data/ham10000 --weights ../shared/weights \
        --embeddings checks/ham-emb.npy
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from lesionlens.data.load import read_table
from lesionlens.quality.labels import find_label_issues, out_of_fold_probabilities
from lesionlens.quality.result import text
from same_lesion import cached_embeddings  # benchmarks/ is on the path when this script runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/ham10000"))
    ap.add_argument("--weights", type=Path, default=Path("../shared/weights"))
    ap.add_argument("--embeddings", type=Path, help="npy file: read if present, else written")
    ap.add_argument("--rate", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    table = read_table(args.data)
    emb = cached_embeddings(table, args.weights, args.embeddings)
    y = table.targets()
    c = len(table.classes)
    rng = np.random.default_rng(args.seed)
    noisy, flipped = y.copy(), np.zeros(len(y), dtype=bool)
    for k in range(c):
        members = np.flatnonzero(y == k)
        pick = rng.choice(members, max(1, round(args.rate * len(members))), replace=False)
        noisy[pick] = (k + rng.integers(1, c, len(pick))) % c
        flipped[pick] = True
    groups = np.array([text(g) or f"__{i}" for i, g in enumerate(table.frame["group"])])
    started = time.perf_counter()
    probs = out_of_fold_probabilities(emb, noisy, c, groups, seed=args.seed)
    quality = find_label_issues(probs, noisy)
    seconds = time.perf_counter() - started
    print(f"{len(y)} images, {flipped.sum()} labels flipped ({args.rate:.0%} of each class); out-of-fold "
          f"probabilities in {seconds:.0f} s")
    print(f"{'score':22s} {'AUROC':>6s}")
    print(f"{'self-confidence':22s} {roc_auc_score(flipped, -quality.scores):6.3f}")
    print(f"{'normalized margin':22s} {roc_auc_score(flipped, -quality.margins):6.3f}")
    print(f"flagged: {quality.suspected.sum()}; of them flipped: {(quality.suspected & flipped).sum()} "
          f"(precision {(quality.suspected & flipped).sum() / max(1, quality.suspected.sum()):.3f}, recall "
          f"{(quality.suspected & flipped).sum() / flipped.sum():.3f})")
    print(f"{'class':8s} {'images':>6s} {'flipped':>7s} {'AUROC':>6s}")
    for k, name in enumerate(table.classes):
        given = noisy == k
        if flipped[given].any() and (~flipped[given]).any():
            auc = roc_auc_score(flipped[given], -quality.scores[given])
            print(f"{name:8s} {given.sum():6d} {flipped[given].sum():7d} {auc:6.3f}")


if __name__ == "__main__":
    main()
