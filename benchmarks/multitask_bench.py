"""Multi-task against single-task learning on ISIC 2017 (issue 16's target), printed as tables.

    .venv/bin/python benchmarks/multitask_bench.py --out runs/multitask-bench [--seeds 0,1,2] \
        [--config configs/segment_isic.yaml] [--set KEY=VALUE ...]

For every seed, two runs with the same encoder, input size, epochs, batch, optimizer, schedule,
augmentation, class weighting and seed, on the 2,000 official ISIC 2017 training images, each
keeping its best epoch by the macro AUC of the 150 official validation images:
- single-task: the classifier alone (``--task classification``);
- multi-task: the same encoder with a U-Net mask head as well (``--task multitask``), which also
  learns from the Part 1 lesion masks.
Both are scored on the 600 official test images (Part 3 labels; the test set has no masks) with
the bundle's test-time augmentation: melanoma AUC and seborrheic-keratosis AUC (each class against
the other two, the ISIC 2017 Part 3 ranking figures). Paired tests:
- per seed, DeLong's test on the same 600 images;
- across seeds, the mean difference with a t interval (seeds - 1 degrees of freedom);
- the seed ensembles (each arm's probabilities averaged over its seeds), by DeLong's test.
A finished run is read back from its bundle; an interrupted one resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
from scipy import stats

from lesionlens.bundle.card import read_card
from lesionlens.config import load_config, parse_assignment
from lesionlens.evaluation.bootstrap import delong_test
from lesionlens.evaluation.evaluate import predict_split
from lesionlens.evaluation.result import class_vs_rest
from lesionlens.training.fit import trained

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ARMS = ("single", "multi")
TASKS = {"single": "classification", "multi": "multitask"}
# the ISIC 2017 Part 3 figures: each class against the other two (HAM10000 dx codes, by canonical())
TARGETS = {"melanoma": "mel", "seborrheic keratosis": "bkl"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=SHARED / "data" / "isic2017")
    ap.add_argument("--weights", type=Path, default=SHARED / "weights")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "segment_isic.yaml")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting of every run")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = dict(parse_assignment(s) for s in args.set)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if len(seeds) < 2:
        raise SystemExit("--seeds: at least two seeds (the across-seed interval needs them)")
    scores: dict[str, dict[int, dict]] = {arm: {} for arm in ARMS}
    for seed in seeds:
        for arm in ARMS:
            cfg = load_config(args.config, {
                "data.path": str(args.data), "model.weights": str(args.weights), **overrides,
                "train.task": TASKS[arm], "train.monitor": "val_macro_auc", "train.sampler": "shuffle",
                "train.seed": seed})
            bundle = trained(args.out / f"{arm}-seed{seed}", cfg)
            scores[arm][seed] = test_scores(bundle, args.data)
    truth = scores["single"][seeds[0]]["y_true"]
    if any(not np.array_equal(s["y_true"], truth) or s["ids"] != scores["single"][seeds[0]]["ids"]
           for arm in ARMS for s in scores[arm].values()):
        raise SystemExit("the runs were scored on different test images: no paired comparison")
    result = compare(scores, seeds, truth)
    (args.out / "multitask.json").write_text(json.dumps(result, indent=2))
    print_tables(scores, seeds, result)
    return 0


def test_scores(bundle: Path, data: Path) -> dict:
    """The bundle's probabilities on the official test images (cached beside the bundle)."""
    cache = bundle / "isic2017-test-probabilities.npz"
    if cache.is_file():
        saved = np.load(cache)
        return {"probs": saved["probs"], "y_true": saved["y_true"], "ids": saved["ids"].tolist(),
                "classes": saved["classes"].tolist(), "card": read_card(bundle)}
    card = read_card(bundle)
    with tempfile.TemporaryDirectory() as tmp:
        # The official partitions share 6 copies between training and test (README, "Checking a data
        # set"): the challenge protocol scores the 600 test images as they are, and so do both arms.
        ev, _ = predict_split(card, data, Path(tmp), split="test", progress=False, allow_leakage=True)
    np.savez(cache, probs=ev.probs, y_true=ev.y_true, ids=np.array(ev.image_ids), classes=np.array(ev.classes))
    return {"probs": ev.probs, "y_true": ev.y_true, "ids": list(ev.image_ids), "classes": list(ev.classes),
            "card": card}


def one_vs_rest(score: dict, code: str) -> tuple[np.ndarray, np.ndarray]:
    return class_vs_rest(score["classes"], score["y_true"], score["probs"], code)


def compare(scores: dict, seeds: list[int], truth: np.ndarray) -> dict:
    result: dict = {"seeds": seeds, "n_test": len(truth), "targets": {}}
    for name, code in TARGETS.items():
        per_seed = []
        for seed in seeds:
            y, a = one_vs_rest(scores["single"][seed], code)
            _, b = one_vs_rest(scores["multi"][seed], code)
            auc_a, auc_b, _, p, se = delong_test(y, a, b)
            per_seed.append({"seed": seed, "single": auc_a, "multi": auc_b, "difference": auc_b - auc_a,
                             "low": auc_b - auc_a - 1.96 * se, "high": auc_b - auc_a + 1.96 * se, "p_value": p})
        d = np.array([r["difference"] for r in per_seed])
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        t_p = float(stats.ttest_1samp(d, 0.0).pvalue) if d.std(ddof=1) > 0 else (1.0 if d.mean() == 0 else 0.0)
        y, _ = one_vs_rest(scores["single"][seeds[0]], code)
        ens = {arm: np.mean([one_vs_rest(scores[arm][s], code)[1] for s in seeds], axis=0) for arm in ARMS}
        auc_a, auc_b, _, p, se = delong_test(y, ens["single"], ens["multi"])
        result["targets"][name] = {
            "positives": int(y.sum()), "per_seed": per_seed,
            "across_seeds": {"mean_single": float(np.mean([r["single"] for r in per_seed])),
                             "mean_multi": float(np.mean([r["multi"] for r in per_seed])),
                             "mean_difference": float(d.mean()), "low": float(d.mean() - half),
                             "high": float(d.mean() + half), "t_test_p": t_p,
                             "multi_better_in": int((d > 0).sum())},
            "ensembles": {"single": auc_a, "multi": auc_b, "difference": auc_b - auc_a,
                          "low": auc_b - auc_a - 1.96 * se, "high": auc_b - auc_a + 1.96 * se, "p_value": p}}
    return result


def print_tables(scores: dict, seeds: list[int], result: dict) -> None:
    card = scores["multi"][seeds[0]]["card"]
    t = card.training
    print(f"\n== multi-task vs single-task: ISIC 2017 test ({result['n_test']} images), {len(seeds)} seeds ==")
    print(f"{card.architecture} at {card.preprocessing.image_size} px, {t.config['train']['epochs']} epochs, batch "
          f"{t.config['train']['batch_size']}, TTA {card.tta}; multi-task adds the U-Net mask head "
          f"({card.segmentation.loss}, class loss weight {t.config['segment']['class_weight']})")
    print("  training minutes: " + ", ".join(
        f"{arm} seed {s} {scores[arm][s]['card'].training.fit_time_s / 60:.1f}" for s in seeds for arm in ARMS))
    for name, r in result["targets"].items():
        print(f"\n{name} AUC ({r['positives']} positives; difference = multi - single, DeLong per seed):")
        print(f"  {'seed':<6}{'single':<9}{'multi':<9}{'difference [95% CI]':<28}p")
        for row in r["per_seed"]:
            print(f"  {row['seed']:<6}{row['single']:<9.3f}{row['multi']:<9.3f}"
                  f"{row['difference']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}]{'':<5}{row['p_value']:.3f}")
        a = r["across_seeds"]
        print(f"  mean  {a['mean_single']:<9.3f}{a['mean_multi']:<9.3f}{a['mean_difference']:+.3f} "
              f"[{a['low']:+.3f}, {a['high']:+.3f}] (t, {len(seeds) - 1} df)  {a['t_test_p']:.3f}; "
              f"multi-task better in {a['multi_better_in']}/{len(seeds)} seeds")
        e = r["ensembles"]
        print(f"  seed ensembles: single {e['single']:.3f}, multi {e['multi']:.3f}, difference "
              f"{e['difference']:+.3f} [{e['low']:+.3f}, {e['high']:+.3f}], DeLong p = {e['p_value']:.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
