"""The promotion gate: may the challenger replace the champion?

    lesionlens gate runs/champion runs/challenger --gate-set gatesets/isic2017-val --out gates/2026-11

Both bundles are evaluated on a frozen gate set (:mod:`lesionlens.upkeep.gateset`), each with its
own card's decision rule (temperature, operating points), after refusing any gate image either
bundle trained on (same file, or an altered copy by perceptual hash: the check ``evaluate`` runs).
The challenger then has to be non-inferior to the champion on every primary criterion and shown
worse in no subgroup (:mod:`lesionlens.upkeep.noninferiority`). The result is an object to query
(:class:`GateResult`); ``gate.json`` (canonical JSON: the same inputs give the same bytes, so its
sha256 names the decision) and ``gate.html`` are written from it (:mod:`lesionlens.upkeep.gate_report`).

An operating point fitted on images the model also trained on (``data.train_on_val``, or a
calibration on training images: the card's ``validated`` false) has no held-out figure: the
report marks such a bundle's thresholds as unvalidated and does not quote its card's sensitivity;
the gate's own figures are measured on the gate set either way. ``lesionlens registry promote``
accepts a passed ``gate.json`` naming the current champion and the challenger by digest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lesionlens import __version__
from lesionlens.bundle.card import Card, read_card
from lesionlens.bundle.gate_reports import GATE_FORMAT
from lesionlens.bundle.registry import bundle_digest
from lesionlens.quality.leakage import SHOWN, LeakageCheck, LeakageError
from lesionlens.upkeep.gate_settings import GateSettings
from lesionlens.upkeep.gateset import GateSet, open_gate_set
from lesionlens.upkeep.noninferiority import Judgement, judge

if TYPE_CHECKING:  # types only: the modules that decode and predict load when the gate runs
    from lesionlens.data.load import PreparedData
    from lesionlens.evaluation.result import Evaluation

FORMAT = GATE_FORMAT  # "lesionlens-gate/1": what `lesionlens registry promote` accepts
ROLES = ("champion", "challenger")
DIGITS = 6  # every float in gate.json is rounded to this many decimals: the same inputs, the same bytes


def unvalidated_views(card: Card) -> list[str]:
    """The views whose operating point was fitted on images the model also trained on
    (``data.train_on_val``, or calibrated on training images): not a held-out figure. A card
    written before points recorded ``validated`` counts as unvalidated when its run trained on
    its validation split."""
    raw = card.data.get("operating_points", {})
    legacy = card.validation.seen_in_training
    return [view for view, p in card.operating_points.items()
            if not p.validated or (legacy and "validated" not in raw.get(view, {}))]


def unvalidated_note(card: Card) -> str | None:
    """Why the card's operating points are not quoted, or None when they are all validated."""
    views = unvalidated_views(card)
    if not views:
        return None
    return (f"its {' and '.join(views)} operating point{'s were' if len(views) > 1 else ' was'} fitted on images it "
            "also trained on, so unvalidated: the card's sensitivity is not quoted; the gate measures it on the gate set")


@dataclass(frozen=True)
class GateBundle:
    """What the gate says of one bundle."""

    role: str  # champion or challenger
    card: Card
    digest: str
    leakage: LeakageCheck
    in_validation: int  # gate images in the bundle's validation split (not trained on; its rule was fitted on them)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def threshold_note(self) -> str | None:
        return unvalidated_note(self.card)

    def to_dict(self) -> dict:
        card, note, unvalidated = self.card, self.threshold_note, unvalidated_views(self.card)
        points = {}
        for view in card.rule.views:
            p = card.operating_points.get(view)
            if p is None:
                points[view] = {"decision": "argmax"}
                continue
            quoted = view not in unvalidated and p.validation_sensitivity is not None
            points[view] = {"threshold": p.threshold, "criterion": p.criterion, "target": p.target,
                            "validated": view not in unvalidated,
                            "card_sensitivity": p.validation_sensitivity if quoted else None,
                            "card_specificity": p.validation_specificity if quoted else None}
        return {"digest": self.digest, "name": self.name, "architecture": card.architecture,
                "weights_sha256": card.weights.sha256, "classes": card.classes, "label_view": card.label_view,
                "temperature": card.rule.temperature, "tta": card.tta, "operating_points": points,
                "threshold_validated": note is None, "threshold_note": note,
                "gate_images_in_validation_split": self.in_validation,
                "leakage": {"checked": self.leakage.images, "leaks": len(self.leakage.findings)}}


class GateLeakageError(LeakageError):
    """Gate images that a bundle trained on; the message names the bundles and the images."""


@dataclass
class GateResult:
    champion: GateBundle
    challenger: GateBundle
    gate_set: GateSet
    judgement: Judgement
    files: dict[str, Path] = field(default_factory=dict)  # gate.json, gate.html, figures

    @property
    def settings(self) -> GateSettings:
        return self.judgement.settings

    @property
    def decision(self) -> str:
        return "pass" if self.judgement.passed else "fail"

    @property
    def reasons(self) -> list[str]:
        if not self.judgement.passed:
            return self.judgement.reasons()
        j = self.judgement
        inconclusive = sum(c.verdict == "inconclusive" for c in j.subgroups)
        return [(f"every primary criterion is non-inferior within its margin ({len(j.primary)} criteria on "
                f"{len(j.views)} view(s)); no subgroup shows the challenger worse beyond the margin "
                f"({len(j.subgroups)} subgroup criteria judged, {inconclusive} inconclusive; "
                f"{sum(not t.subgroup.primary for t in j.too_few)} subgroup(s) too few to judge)")]

    def bundles(self) -> list[GateBundle]:
        return [self.champion, self.challenger]

    def to_dict(self) -> dict:
        """gate.json: no times, no absolute paths; floats rounded to ``DIGITS`` decimals."""
        j = self.judgement
        return rounded({
            "format": FORMAT,
            "lesionlens": __version__,
            "champion": self.champion.to_dict(),
            "challenger": self.challenger.to_dict(),
            "gate_set": self.gate_set.to_dict(),
            "settings": self.settings.to_dict(),
            "decision": self.decision,
            "reasons": self.reasons,
            "views": j.views,
            "criteria": [c.to_dict() for c in j.primary],
            "subgroups": {"judged": [c.to_dict() for c in j.subgroups],
                          "too_few": [t.to_dict() for t in j.too_few if not t.subgroup.primary],
                          "rule": "a subgroup fails the gate only when the whole interval of the challenger's "
                                  "advantage lies below -margin; fewer than the minimum positives or negatives: "
                                  "too few to judge"},
            "too_few": [t.to_dict() for t in j.too_few if t.subgroup.primary],
            "missing_views": j.missing,
        })

    def lines(self) -> list[str]:
        """The console summary."""
        s, j, gs = self.settings, self.judgement, self.gate_set
        out = [(f"Gate: challenger {self.challenger.name} ({self.challenger.digest[:12]}) vs champion "
               f"{self.champion.name} ({self.champion.digest[:12]})"),
               (f"  on gate set {gs.name} ({len(gs.images)} images, digest {gs.digest[:12]}); margins: sensitivity, "
               f"specificity, AUC {s.delta:g}, ECE {s.ece_margin:g}, Brier {s.brier_margin:g}; two-sided "
               f"{s.level:.0%} intervals, {s.resamples} resamples, seed {s.seed}"),
               f"  {'criterion':<24}{'champion':>9}{'challenger':>11}  {'advantage [interval]':<28}{'margin':>7}  verdict"]
        for c in j.primary:
            a = c.advantage
            out.append(f"  {c.view + ' ' + c.metric:<24}{c.champion:>9.3f}{c.challenger:>11.3f}  "
                       f"{f'{a.estimate:+.3f} [{a.low:+.3f}, {a.high:+.3f}]':<28}{-c.margin:>7.3f}  {c.verdict}")
        verdicts = [c.verdict for c in j.subgroups]
        too_few = [t for t in j.too_few if not t.subgroup.primary]
        if not gs.subgroups():
            out.append("  subgroups: none (the gate set records no sex, age or body site)")
        else:
            out.append(f"  subgroups: {len(verdicts)} criteria judged ({verdicts.count('non-inferior')} non-inferior, "
                       f"{verdicts.count('inconclusive')} inconclusive, {verdicts.count('worse')} worse); "
                       f"{len(too_few)} view-subgroup pair(s) too few to judge")
        for b in self.bundles():
            if b.threshold_note:
                out.append(f"  note: {b.role} {b.name}: {b.threshold_note}")
            if b.in_validation:
                out.append(f"  note: {b.in_validation} gate image(s) are in the {b.role}'s validation split (not "
                           "trained on, but its temperature and operating points were fitted on them)")
        out.append(f"Decision: {self.decision.upper()}")
        out += [f"  - {r}" for r in self.reasons]
        return out

    def summary(self) -> str:
        return "\n".join(self.lines())


def rounded(obj, digits: int = DIGITS):
    """``obj`` with every float rounded (NaN -> None): tiny floating-point noise does not change the bytes."""
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return None if math.isnan(value) else round(value, digits) + 0.0  # + 0.0: no "-0.0"
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def run_gate(champion: str | Path, challenger: str | Path, gate_set: str | Path, out: str | Path | None = None,
             settings: GateSettings | None = None, cache_dir: str | None = None,
             progress: bool = True) -> GateResult:
    """Evaluate both bundles on the gate set, judge the challenger, and (with ``out``) write
    gate.json and gate.html there. Refuses a gate set that changed since it was frozen and gate
    images either bundle trained on (both are checked before either is evaluated)."""
    gs = open_gate_set(gate_set)
    checked = [check_bundle(role, read_card(path), gs, cache_dir, progress)
               for role, path in zip(ROLES, (champion, challenger))]
    refuse_leakage(gs, [bundle for bundle, _ in checked])
    evs = [predict_gate_set(bundle, data, gs, progress) for bundle, data in checked]
    return decide(checked[0][0], checked[1][0], gs, evs[0], evs[1], settings, out)


def check_bundle(role: str, card: Card, gs: GateSet, cache_dir: str | None = None,
                 progress: bool = True) -> tuple[GateBundle, PreparedData]:
    """The gate set decoded for ``card``'s preprocessing, and what the gate says of the bundle: its
    digest, the leakage check of the gate images against its training images, and how many gate
    images are in its validation split."""
    from lesionlens.bundle.split import read_split
    from lesionlens.data.labels import align_classes, apply_view
    from lesionlens.data.load import prepare
    from lesionlens.quality.leakage import check_against_training

    table = apply_view(gs.table(), card.label_view)
    align_classes(table.classes, card.classes)
    data = prepare(table, card.preprocessing, "stop", cache_dir, progress=progress)
    changed = [i.path for i, sha in zip(gs.images, data.table.frame["sha256"]) if sha != i.sha256]
    if changed:
        raise ValueError(f"{gs.path}: {len(changed)} gate image(s) changed while the gate ran: {changed[:SHOWN]}")
    leakage = check_against_training(data.table, data.images.array, np.arange(len(data.table)), card.training_rows())
    split = card.file("split")
    validation = {r.sha256 for r in (read_split(split) if split else [])
                  if r.partition == "val" and r.partition not in card.trained_partitions}
    in_validation = int(data.table.frame["sha256"].isin(validation).sum())
    return GateBundle(role, card, bundle_digest(card.path), leakage, in_validation), data


def predict_gate_set(bundle: GateBundle, data: PreparedData, gs: GateSet, progress: bool = True) -> Evaluation:
    """The bundle's evaluation on every gate image, with its own decision rule and test-time augmentation."""
    from lesionlens.evaluation.evaluate import evaluate_model
    from lesionlens.inference import load_classifier

    card = bundle.card
    description = f"{card.architecture} ({bundle.role} {card.name}) on gate set {gs.name} ({len(data.table)} images)"
    return evaluate_model(load_classifier(card), card.classes, card.preprocessing, data, np.arange(len(data.table)),
                          description, card.rule, card.tta, progress)


def decide(champion: GateBundle, challenger: GateBundle, gs: GateSet, champion_ev: Evaluation,
           challenger_ev: Evaluation, settings: GateSettings | None = None,
           out: str | Path | None = None) -> GateResult:
    """Judge the challenger on both evaluations of the gate set; with ``out``, write the report."""
    result = GateResult(champion, challenger, gs,
                        judge(champion_ev, challenger_ev, gs.subgroups(), settings or GateSettings()))
    if out is not None:
        from lesionlens.upkeep.gate_report import write_gate_report

        result.files = write_gate_report(result, Path(out))
    return result


def refuse_leakage(gs: GateSet, bundles: list[GateBundle]) -> None:
    """No gate decision on images a bundle trained on: one error naming every bundle and image."""
    leaky = [b for b in bundles if not b.leakage.clean]
    if not leaky:
        return
    parts = []
    for b in leaky:
        lines = "\n".join(f"    {line}" for line in b.leakage.lines[:SHOWN])
        more = f"\n    ... and {len(b.leakage.lines) - SHOWN} more" if len(b.leakage.lines) > SHOWN else ""
        parts.append(f"  the {b.role} {b.card.path} trained on {len(b.leakage.findings)} of the gate images "
                     f"(or on copies of them):\n{lines}{more}")
    raise GateLeakageError(f"gate set {gs.path} overlaps training data, so the gate would flatter the bundle that "
                           "trained on it:\n" + "\n".join(parts) +
                           "\nFreeze a gate set of images neither bundle trained on.")
