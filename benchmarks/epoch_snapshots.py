"""Weight averaging and snapshot ensembles, measured inside one run: every kept epoch's raw weights
and (with train.ema_decay) their moving average, scored on the run's own validation split, then the
mean probabilities of the last K epochs' snapshots. Paired: every row comes from the same training
path, so the differences are not seed noise.

    lesionlens train ... --ema-decay 0.998 --keep-epochs --out runs/x     # or train.keep_epochs in a config
    .venv/bin/python benchmarks/epoch_snapshots.py runs/x --data ../shared/data/ham10000 [--tta d4] [--last 3 5] \
        [--from-epoch 11] [--save runs/x-epochs.npz]

Balanced accuracy and macro AUC of the plain softmax (the argmax decision that the training log's
``val_balanced_accuracy`` also uses; the bundle's fitted rule is fitted on one set of weights only).
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from lesionlens.bundle.card import read_card
from lesionlens.data.labels import align_classes, apply_view
from lesionlens.data.load import prepare, read_table
from lesionlens.evaluation import metrics as M
from lesionlens.evaluation.evaluate import choose_rows
from lesionlens.inference import load_classifier, predict_logits
from lesionlens.training.curves import epoch_table


def scores(y: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    cm = M.confusion_matrix(y, probs.argmax(axis=1), probs.shape[1])
    return M.balanced_accuracy(cm), M.macro_auc(y, probs)


def weights_of(checkpoint: dict) -> dict[str, dict[str, torch.Tensor]]:
    """``raw`` (the optimizer's weights) and, for an averaged run, ``ema``, without the module prefix."""
    strip = lambda state: {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}  # noqa: E731
    if "current_model_state" in checkpoint:
        return {"raw": strip(checkpoint["current_model_state"]), "ema": strip(checkpoint["state_dict"])}
    return {"raw": strip(checkpoint["state_dict"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished run trained with train.keep_epochs")
    parser.add_argument("--data", type=Path, required=True, help="the data it was trained on")
    parser.add_argument("--tta", default="none", help="test-time augmentation of every row (default none)")
    parser.add_argument("--last", type=int, nargs="+", default=[3, 5], help="snapshot ensembles of the last K epochs")
    parser.add_argument("--from-epoch", type=int, default=1, help="score epochs from this one (log numbering, from 1)")
    parser.add_argument("--save", type=Path, help="also write every scored epoch's probabilities, the image ids "
                                                  "and the labels to this .npz, for ensembles across runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")

    card = read_card(args.run)
    checkpoints = sorted((args.run / "checkpoints").glob("epoch-*.ckpt"))
    if not checkpoints:
        raise SystemExit(f"{args.run}: no checkpoints/epoch-NN.ckpt; train with --keep-epochs (train.keep_epochs)")
    table = apply_view(read_table(args.data), card.label_view)
    data = prepare(table, card.preprocessing, progress=False)
    rows, what = choose_rows(data, card, "own-val")
    mapping = align_classes(data.table.classes, card.classes)
    y = data.table.frame.iloc[rows]["label"].map(mapping).to_numpy(dtype=np.int64)
    cache_rows = data.table.frame.iloc[rows]["cache_row"].to_numpy()
    logged = epoch_table(args.run / "logs")
    model = load_classifier(card)

    probs: dict[str, list[np.ndarray]] = {}
    scored: list[int] = []  # the epochs in probs' lists
    print(f"{card.name}: {card.architecture} at {card.preprocessing.image_size}px, {what} ({len(rows)} images), "
          f"TTA {args.tta}\n")
    print(f"{'epoch':>5}{'logged bal. acc.':>18}{'raw bal. acc.':>15}{'raw AUC':>9}{'EMA bal. acc.':>15}"
          f"{'EMA AUC':>9}{'seconds':>9}")
    for path in checkpoints:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        epoch = int(checkpoint["epoch"]) + 1  # the log's numbering
        if epoch < args.from_epoch:
            continue
        started = time.perf_counter()
        scored.append(epoch)
        cells = {}
        for kind, state in weights_of(checkpoint).items():
            model.load_state_dict(state, strict=True)
            logits = predict_logits(model, data.images.array, card.preprocessing, cache_rows, tta=args.tta)
            p = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
            probs.setdefault(kind, []).append(p)
            cells[kind] = scores(y, p)
        logged_score = logged["val_balanced_accuracy"].get(epoch, float("nan"))
        raw, ema = cells["raw"], cells.get("ema", (float("nan"), float("nan")))
        print(f"{epoch:>5}{logged_score:>18.3f}{raw[0]:>15.3f}{raw[1]:>9.3f}{ema[0]:>15.3f}{ema[1]:>9.3f}"
              f"{time.perf_counter() - started:>9.0f}")
    if args.save:
        arrays = {f"{kind}_epoch{epoch}": p for kind, ps in probs.items() for epoch, p in zip(scored, ps)}
        np.savez_compressed(args.save, image_id=data.table.frame.iloc[rows]["image_id"].astype(str).to_numpy(),
                            label=y, classes=np.array(card.classes), **arrays)
    print(f"\n{'snapshot ensemble (mean probabilities)':<44}{'bal. acc.':>10}{'macro AUC':>10}")
    for k in args.last:
        for kind, ps in probs.items():
            if len(ps) >= k:
                b, a = scores(y, np.mean(ps[-k:], axis=0))
                print(f"{f'{kind}, last {k} epochs':<44}{b:>10.3f}{a:>10.3f}")


if __name__ == "__main__":
    main()
