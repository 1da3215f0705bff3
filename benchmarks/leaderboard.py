"""Issue 4's leaderboard on HAM10000: every row trained and scored on the same split.

    .venv/bin/python benchmarks/leaderboard.py --recipe runs/cpu-recipe/ham10000

Rows, all through ``lesionlens.explore`` (one bundle per run under --out, read back if already there):
- LeNet-5 (32 px) and the simple CNN (64 px) trained from scratch;
- MobileNetV2 and EfficientNet-Lite0 from ImageNet at --size px with each transfer-learning strategy:
  baseline (new last layer), shallow (a new --top-model, default flatten + MLP), deep (the same top
  model, then unfreezing block by block with discriminative rates), features (frozen embeddings +
  logistic regression);
- the CPU recipe (configs/cpu_recipe.yaml), read from its finished bundle, without and with its d4 TTA.
The split is the recipe bundle's ``split.csv`` (seeded, lesion-grouped, stratified 80/20), so the
recipe's row is comparable; without --recipe, the first run's split is used by all the others.
Settings shared by the grid are the built-in defaults (AdamW, cosine, sqrt weights + logit adjustment).
Prints one table and writes ``leaderboard.csv`` / ``leaderboard.html`` in --out.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

from lesionlens.bundle.card import read_card
from lesionlens.config import config_from_dict, load_config
from lesionlens.evaluation.evaluate import predict_split
from lesionlens.training.explore import explore, leaderboard_order, scores, write_leaderboard
from lesionlens.models.profile import model_cost

ROOT = Path(__file__).resolve().parents[1]


def recipe_rows(bundle: Path, data: Path, tta: str) -> list[dict]:
    card = read_card(bundle)
    size = card.preprocessing.image_size
    cost = model_cost(card.architecture, len(card.classes), size)
    base = {"model": card.architecture, "strategy": "recipe", "head": card.model.head,
            "image_size": size, "status": "trained", "bundle": str(bundle),
            "gmacs": round(cost.macs / 1e9, 3), **scores(card)}
    rows = [base | {"reason": "configs/cpu_recipe.yaml"}]
    if tta == "none":
        return rows
    with tempfile.TemporaryDirectory() as tmp:
        ev, _ = predict_split(card, data, Path(tmp), split="own-val", tta=tta, progress=False)
    s = ev.summary()
    rows.append(base | {"strategy": f"recipe+{tta}", "balanced_accuracy": round(s["balanced_accuracy"], 4),
                        "macro_auc": round(s["macro_auc"], 4),
                        "melanoma_auc": round(s["binary"]["melanoma"]["auc"], 4),
                        "reason": f"configs/cpu_recipe.yaml, test-time augmentation {tta}"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--recipe", type=Path, help="the finished HAM10000 bundle of configs/cpu_recipe.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "leaderboard")
    parser.add_argument("--size", type=int, default=128, help="input size of the pretrained runs")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the pretrained gradient-trained runs")
    parser.add_argument("--top-model", default="mlp", help="the new top model of shallow and deep (default mlp: "
                        "flatten + Dense(256) + softmax)")
    parser.add_argument("--scratch-epochs", type=int, default=8, help="epochs of LeNet-5 and the simple CNN")
    parser.add_argument("--budget-minutes", type=float, default=45, help="for the whole grid")
    parser.add_argument("--tta", default="d4", help="a second recipe row with this test-time augmentation "
                        "(none: no second row; benchmarks/cpu_recipe.py reports it too)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    logging.getLogger("lesionlens").setLevel(logging.INFO)

    ham = args.shared / "data" / "ham10000"
    data = str(args.recipe / "split.csv") if args.recipe else str(ham)
    base = load_config(None, {"model.weights": str(args.shared / "weights")})
    scratch = config_from_dict(base.to_dict())
    scratch.train.epochs = args.scratch_epochs
    pretrained = config_from_dict(base.to_dict())
    pretrained.train.epochs = args.epochs

    deadline = time.monotonic() + args.budget_minutes * 60
    def left() -> float:
        return max(0.0, (deadline - time.monotonic()) / 60)

    rows = explore(scratch, data, args.out, ["lenet5"], ["scratch"], [32], left())
    data = str(args.recipe / "split.csv") if args.recipe else str(args.out / "lenet5-scratch-32" / "split.csv")
    rows += explore(scratch, data, args.out, ["simple_cnn"], ["scratch"], [64], left())
    pretrained_models = ["mobilenet_v2", "efficientnet_lite0"]
    rows += explore(pretrained, data, args.out, pretrained_models, ["baseline", "features"], [args.size], left())
    # a new top model for shallow and deep: with the own (linear) head shallow would be baseline again
    rows += explore(pretrained, data, args.out, pretrained_models, ["shallow", "deep"], [args.size], left(),
                    heads=[args.top_model])
    if args.recipe:
        rows += recipe_rows(args.recipe, ham, args.tta)
    rows.sort(key=leaderboard_order)
    write_leaderboard(rows, args.out, data, args.budget_minutes)

    print(f"\nHAM10000, same split for every row ({data}); validation figures\n")
    print(f"{'model':<20}{'strategy':<11}{'head':<7}{'size':>5}{'bal.acc':>9}{'macroAUC':>10}{'melAUC':>8}{'params':>12}"
          f"{'GMACs':>7}{'train min':>10}{'img/s':>8}  status")
    for r in rows:
        def f(key: str, spec: str, r=r) -> str:
            return "" if r.get(key) in (None, "") else format(r[key], spec)
        print(f"{r['model']:<20}{r['strategy']:<11}{r['head']:<7}{r['image_size']:>5}{f('balanced_accuracy', '.3f'):>9}"
              f"{f('macro_auc', '.3f'):>10}{f('melanoma_auc', '.3f'):>8}{f('parameters', ',d'):>12}"
              f"{f('gmacs', '.2f'):>7}{f('train_minutes', '.1f'):>10}{f('images_per_s', '.1f'):>8}  {r['status']}"
              + (f": {r['reason']}" if r.get("reason") and r["status"] != "trained" else ""))
    print(f"\nLeaderboard: {args.out / 'leaderboard.csv'}, {args.out / 'leaderboard.html'}")


if __name__ == "__main__":
    main()
