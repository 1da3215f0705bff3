"""Does the promotion gate reject what it must and accept what it must? Issue 14's targets:

(a) a challenger 3 points less sensitive at the operating point is rejected in 100% of trials;
(b) a bit-identical re-export (the same weights in a new, re-exported bundle folder) is accepted;
(c) a re-run gives the same report digest;
and, to show how strict the gate is, (d) how often a slightly different challenger of equal
sensitivity passes.

    PYTHONPATH=src python benchmarks/gate_bench.py --champion runs/upkeep/champion-copy \
        --work /tmp/gate-bench [--trials 100]

Gate sets (frozen once into --work): HAM10000 without the champion's training images (its
validation split, 1,197 images) and the ISIC 2017 test set (600 images). The champion's
predictions on each are computed once and cached in --work (keyed by bundle and gate-set digest).

(a) Trials, on the champion's real scores. Each trial draws a gate set of 70% of a pool without
replacement; the challenger is the champion with its operating point for the view raised:
- "exact": raised on that gate set until its sensitivity there is at least 3 points lower
  (the smallest number of detected positives that is >= 3 points is turned negative);
- "population": raised once on the whole pool until the pool sensitivity is >= 3 points lower;
  each drawn gate set then shows whatever drop it happens to show (sampling variation included).
Only the primary criteria are judged here (subgroups can only add reasons to reject), so the
rejection rate is, if anything, understated.
(b, c) The real gate (`run_gate`: gate-set verification, leakage check, inference of both bundles,
judgement, report) on the ISIC 2017 test gate set: champion vs a copy re-exported to ONNX, twice.
(d) Challenger = champion logits + Gaussian noise (sd --noise, each level), its threshold fitted on the whole pool
to the champion's pool sensitivity; drawn gate sets as in (a), judged with subgroups.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from lesionlens.bundle.card import read_card
from lesionlens.decision import DecisionRule, OperatingPoint
from lesionlens.evaluation.result import Evaluation
from lesionlens.upkeep.gate import (
    bundle_digest,
    check_bundle,
    predict_gate_set,
    run_gate,
)
from lesionlens.upkeep.gate_settings import GateSettings
from lesionlens.upkeep.gateset import FORMAT as GATESET_FORMAT
from lesionlens.upkeep.gateset import GateSet, freeze_gate_set, open_gate_set
from lesionlens.upkeep.noninferiority import judge

DROP = 0.03


def gate_set(path: Path, make) -> GateSet:
    if not (path / "gateset.json").is_file():
        shutil.rmtree(path, ignore_errors=True)
        make(path)
    return open_gate_set(path)


def champion_evaluation(champion: Path, gs: GateSet, work: Path) -> Evaluation:
    """The champion on every gate image, from the cache when it has them."""
    card = read_card(champion)
    cache = work / f"predictions-{bundle_digest(champion)[:12]}-{gs.digest[:12]}.npz"
    if cache.is_file():
        saved = np.load(cache)
        return Evaluation(card.classes, saved["y_true"], card.rule.probabilities(saved["logits"]),
                          [str(i) for i in saved["image_ids"]], rule=card.rule, logits=saved["logits"])
    bundle, data = check_bundle("champion", card, gs, progress=False)
    if not bundle.leakage.clean:
        raise SystemExit(f"{gs.path}: the champion trained on {len(bundle.leakage.findings)} of these images")
    ev = predict_gate_set(bundle, data, gs, progress=False)
    np.savez(cache, logits=ev.logits, y_true=ev.y_true, image_ids=np.array(ev.image_ids))
    return ev


def subset(ev: Evaluation, rows: np.ndarray) -> Evaluation:
    return replace(ev, y_true=ev.y_true[rows], probs=ev.probs[rows], logits=ev.logits[rows],
                   image_ids=[ev.image_ids[i] for i in rows], rows=None, images=None)


def with_threshold(ev: Evaluation, view: str, threshold: float) -> Evaluation:
    points = tuple(replace(p, threshold=threshold) if p.view == view else p for p in ev.rule.operating_points)
    if view not in {p.view for p in points}:
        points += (OperatingPoint(view, threshold, "sensitivity"),)
    return ev.with_rule(DecisionRule(ev.rule.classes, ev.rule.temperature, points))


def less_sensitive_threshold(ev: Evaluation, view: str, drop: float = DROP) -> float:
    """The threshold that turns the fewest detected positives negative for a sensitivity >= ``drop`` lower."""
    v = ev.binary(view)
    detected = np.sort(v.score[v.y_true & v.y_pred])
    k = math.ceil(drop * v.y_true.sum() - 1e-9)
    if k >= len(detected):
        return float(detected[-1]) + 1e-6
    return float((detected[k - 1] + detected[k]) / 2) if detected[k] > detected[k - 1] else float(np.nextafter(detected[k - 1], 2))


def sensitivity_threshold(score: np.ndarray, truth: np.ndarray, sensitivity: float) -> float:
    """The highest threshold whose sensitivity on (score, truth) reaches ``sensitivity``."""
    positives = np.sort(score[truth])[::-1]
    k = max(1, math.ceil(sensitivity * len(positives) - 1e-9))
    return float(positives[k - 1])


def trials_a(name: str, ev: Evaluation, view: str, how: str, trials: int, settings: GateSettings, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    n = len(ev.y_true)
    population = with_threshold(ev, view, less_sensitive_threshold(ev, view)) if how == "population" else None
    rejected, drops, lows, verdicts = 0, [], [], []
    for _ in range(trials):
        rows = np.sort(rng.choice(n, size=int(0.7 * n), replace=False))
        a = subset(ev, rows)
        b = subset(population, rows) if population is not None else with_threshold(a, view, less_sensitive_threshold(a, view))
        j = judge(a, b, {}, settings)
        sens = next(c for c in j.primary if c.view == view and c.metric == "sensitivity")
        rejected += not j.passed
        verdicts.append(not j.passed)
        drops.append(sens.champion - sens.challenger)
        lows.append(sens.advantage.low)
    v = ev.binary(view)
    shown = [r for r, d in zip(verdicts, drops) if d >= DROP - 1e-9]
    small = [r for r, d in zip(verdicts, drops) if d < DROP - 1e-9]
    split = (f"; of the {len(shown)} gate sets showing >= 3 pts {sum(shown)} rejected, of the {len(small)} showing "
             f"less {sum(small)}" if small else "")
    return {"what": f"(a) {view} sensitivity -3 pts, {how}", "pool": name, "trials": trials,
            "result": f"rejected {rejected}/{trials} ({100 * rejected / trials:.0f}%)",
            "figures": f"pool {int(v.y_true.sum())} positives; drop on the gate set {100 * min(drops):.1f}-"
                       f"{100 * max(drops):.1f} pts (mean {100 * np.mean(drops):.1f}); lower bound mean "
                       f"{np.mean(lows):+.3f}, highest {max(lows):+.3f}{split}"}


def trials_d(name: str, ev: Evaluation, gs: GateSet, trials: int, noise: float, settings: GateSettings,
             seed: int) -> dict:
    rng = np.random.default_rng(seed)
    n = len(ev.y_true)
    subgroups = gs.subgroups()
    passed, reasons, auc_change, discordant = 0, {}, [], []
    for _ in range(trials):
        logits = ev.logits + rng.normal(0, noise, ev.logits.shape)
        b = replace(ev, logits=logits).with_rule(DecisionRule(ev.rule.classes, ev.rule.temperature))
        points = []
        for p in ev.rule.operating_points:  # the champion's pool sensitivity, fitted the same way
            va, vb = ev.binary(p.view), b.binary(p.view)
            sens = (va.y_true & va.y_pred).sum() / va.y_true.sum()
            points.append(replace(p, threshold=sensitivity_threshold(vb.score, vb.y_true, sens)))
        b = b.with_rule(DecisionRule(ev.rule.classes, ev.rule.temperature, tuple(points)))
        rows = np.sort(rng.choice(n, size=int(0.7 * n), replace=False))
        j = judge(subset(ev, rows), subset(b, rows), {d: list(np.asarray(v)[rows]) for d, v in subgroups.items()},
                  settings)
        passed += j.passed
        va, vb = ev.binary("melanoma"), b.binary("melanoma")
        auc_change.append(vb.auc - va.auc)
        discordant.append(float((va.y_pred != vb.y_pred)[va.y_true].mean()))
        for c in j.criteria:
            if c.failed:
                key = f"{c.view} {c.metric}" + ("" if c.subgroup.primary else " (subgroup)")
                reasons[key] = reasons.get(key, 0) + 1
    # positives a gate set needs for an equally sensitive challenger with this share of discordant
    # melanomas to pass the sensitivity criterion with 80% power: sd of the paired difference
    # sqrt(r / n), and 1.96 sd + 0.84 sd <= delta
    r = float(np.mean(discordant))
    needed = r * ((1.96 + 0.84) / settings.delta) ** 2
    common = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:4])
    return {"what": f"(d) logits + N(0, {noise:g}), same pool sensitivity", "pool": name, "trials": trials,
            "result": f"passed {passed}/{trials} ({100 * passed / trials:.0f}%)",
            "figures": f"melanoma AUC change on the pool {np.mean(auc_change):+.3f}; melanomas decided differently "
                       f"{100 * r:.1f}% (80% power to pass melanoma sensitivity needs ~{needed:,.0f} melanomas); "
                       f"failing criteria: {common or 'none'}"}


def real_gate(champion: Path, gs: GateSet, work: Path, settings: GateSettings) -> list[dict]:
    """(b) and (c): the whole gate, champion vs a re-exported copy, twice."""
    from lesionlens.export.onnx import export_bundle

    copy = work / "reexport"
    if not (copy / "card.json").is_file():
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(champion, copy, ignore=shutil.ignore_patterns("checkpoints", "logs", "evaluations"))
        started = time.perf_counter()
        export_bundle(copy)
        print(f"re-exported {copy} to ONNX in {time.perf_counter() - started:.0f} s")
    same_weights = read_card(copy).weights.sha256 == read_card(champion).weights.sha256
    digests, seconds, results = [], [], []
    for run in ("run-1", "run-2"):
        started = time.perf_counter()
        result = run_gate(champion, copy, gs.path, work / "gate" / run, settings, progress=False)
        seconds.append(time.perf_counter() - started)
        results.append(result)
        digests.append(hashlib.sha256(result.files["json"].read_bytes()).hexdigest())
    first = results[0]
    return [{"what": "(b) bit-identical re-export", "pool": gs.name, "trials": 1,
             "result": f"{first.decision} ({'accepted' if first.decision == 'pass' else 'REJECTED'})",
             "figures": f"bundle digests {first.champion.digest[:12]} vs {first.challenger.digest[:12]}, same weights "
                        f"{same_weights}; {len(first.judgement.criteria)} criteria; {seconds[0]:.0f} s"},
            {"what": "(c) re-run, same report digest", "pool": gs.name, "trials": 2,
             "result": "same digest" if digests[0] == digests[1] else "DIFFERENT digests",
             "figures": f"gate.json sha256 {digests[0][:16]} / {digests[1][:16]}; {seconds[1]:.0f} s"}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--champion", type=Path, required=True, help="an exported bundle (a copy: (b) re-exports a copy of it)")
    ap.add_argument("--ham", type=Path, default=Path("../shared/data/ham10000"))
    ap.add_argument("--isic", type=Path, default=Path("../shared/data/isic2017"))
    ap.add_argument("--work", type=Path, required=True, help="gate sets, cached predictions and reports")
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--noise-trials", type=int, default=30)
    ap.add_argument("--noise", type=float, nargs="+", default=[0.1, 0.3],
                    help="sd of the Gaussian noise added to the champion's logits for (d)")
    ap.add_argument("--resamples", type=int, default=GateSettings().resamples)
    ap.add_argument("--skip-real", action="store_true", help="leave out (b) and (c), which run inference four times")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    settings = GateSettings(resamples=args.resamples)
    started = time.perf_counter()
    pools = {
        "HAM10000 val": gate_set(args.work / "ham-val", lambda p: freeze_gate_set(
            args.ham, p, exclude_trained_by=[args.champion], progress=False)),
        "ISIC 2017 test": gate_set(args.work / "isic2017-test", lambda p: freeze_gate_set(
            args.isic, p, partition="test", progress=False)),
    }
    evs = {name: champion_evaluation(args.champion, gs, args.work) for name, gs in pools.items()}
    print(f"gate sets ({GATESET_FORMAT}) and the champion's predictions: {time.perf_counter() - started:.0f} s")
    rows = []
    for i, (name, ev) in enumerate(evs.items()):
        for view in ("melanoma", "malignant"):
            for how in ("exact", "population"):
                t = time.perf_counter()
                rows.append(trials_a(name, ev, view, how, args.trials, settings, seed=100 * i + len(rows)))
                print(f"  {rows[-1]['what']} on {name}: {rows[-1]['result']} ({time.perf_counter() - t:.0f} s)")
        for noise in args.noise:
            t = time.perf_counter()
            rows.append(trials_d(name, ev, pools[name], args.noise_trials, noise, settings, seed=7 + i))
            print(f"  {rows[-1]['what']} on {name}: {rows[-1]['result']} ({time.perf_counter() - t:.0f} s)")
    if not args.skip_real:
        rows += real_gate(args.champion, pools["ISIC 2017 test"], args.work, settings)
    print(f"\nchampion {args.champion} ({bundle_digest(args.champion)[:12]}); {settings.resamples} resamples; "
          f"delta {settings.delta}; total {time.perf_counter() - started:.0f} s\n")
    print(f"{'target':<46}{'gate set / pool':<17}{'trials':>7}  {'result':<26}figures")
    for r in rows:
        print(f"{r['what']:<46}{r['pool']:<17}{r['trials']:>7}  {r['result']:<26}{r['figures']}")


if __name__ == "__main__":
    main()
