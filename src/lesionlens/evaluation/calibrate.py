"""Fit a bundle's decision rule on its validation data and store it in the card.

The rule (:class:`~lesionlens.decision.DecisionRule`) is a temperature and, for each clinical view
the classes define, an operating point chosen by :mod:`lesionlens.evaluation.operating`. Training
fits it at its end; ``lesionlens calibrate BUNDLE`` fits it again, for older bundles or other
criteria.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from lesionlens.bundle.card import Card, read_card, update_card
from lesionlens.bundle.schema import CalibrationInfo, OperatingPointInfo
from lesionlens.decision import DecisionRule
from lesionlens.evaluation.calibration import calibration_report, fit_temperature
from lesionlens.evaluation.evaluate import predict_split
from lesionlens.evaluation.files import WrittenEvaluation, write_evaluation
from lesionlens.evaluation.operating import DERMATOLOGIST_SENSITIVITY, choose_operating_point, rates_at
from lesionlens.evaluation.result import Evaluation


@dataclass(frozen=True)
class FittedRule:
    """A decision rule and the card sections that record how it was fitted."""

    rule: DecisionRule
    calibration: CalibrationInfo
    operating_points: dict[str, OperatingPointInfo]


def fit_rule(ev: Evaluation, criterion: str = "sensitivity", target: float | None = DERMATOLOGIST_SENSITIVITY,
             calibrate: bool = True, held_out: bool = True) -> tuple[Evaluation, FittedRule]:
    """Temperature and operating points fitted on ``ev`` (validation predictions with logits);
    returns ``ev`` under the new rule, and the rule. The thresholds apply to the temperature-scaled
    scores, so both are fitted together. Without ``held_out`` (the model trained on these images)
    the points are marked unvalidated and their figures here are not kept: they would be optimistic."""
    if ev.logits is None:
        raise ValueError("fitting a decision rule needs the evaluation's logits")
    temperature = fit_temperature(ev.logits, ev.y_true) if calibrate else 1.0
    report = calibration_report(ev.logits, ev.y_true, temperature)
    scaled = ev.with_rule(DecisionRule(tuple(ev.classes), temperature))
    chosen, points = [], {}
    for name, view in scaled.binary_views().items():
        point = replace(choose_operating_point(name, view.y_true, view.score, criterion, target), validated=held_out)
        sens, spec = rates_at(view.y_true, view.score, point.threshold) if held_out else (None, None)
        chosen.append(point)
        points[name] = OperatingPointInfo(point.threshold, point.criterion, point.target, sens, spec,
                                          int(view.y_true.sum()), int((~view.y_true).sum()), held_out)
    rule = DecisionRule(tuple(ev.classes), temperature, tuple(chosen))
    calibration = CalibrationInfo(method="temperature scaling" if calibrate else "none", fitted_on=ev.description,
                                  **report.to_dict())
    return ev.with_rule(rule), FittedRule(rule, calibration, points)


def store_rule(card: Card, fitted: FittedRule, tta: str) -> Card:
    """Write the rule, and the test-time augmentation it was fitted with, into the bundle's card."""
    return update_card(card.path, {"calibration": fitted.calibration, "operating_points": fitted.operating_points,
                                   "inference": {"tta": tta}}, by="lesionlens calibrate")


def calibrate_bundle(bundle: str | Path, data_path: str | Path | None = None, split: str = "auto",
                     criterion: str = "sensitivity", target: float | None = DERMATOLOGIST_SENSITIVITY,
                     calibrate: bool = True, fmt: str = "auto", images: str | Path | None = None,
                     cache_dir: str | None = None, tta: str | None = None,
                     progress: bool = True) -> tuple[Card, WrittenEvaluation]:
    """Predict the bundle's validation split (or ``split`` of ``data_path``) with ``tta`` (None: the
    bundle's own), fit the rule, store it with that TTA as the bundle's default, and write the
    validation evaluation under the new rule to ``BUNDLE/evaluation``."""
    card = read_card(bundle)
    data_path = data_path or card.dataset.path
    tta = card.resolve_tta(tta)
    # calibration fits on the data asked for; leaks there are warned about, not refused, and make
    # the operating points unvalidated
    ev, _ = predict_split(card, data_path, None, fmt, images, split, "stop", cache_dir, tta, progress=progress,
                          allow_leakage=True)
    trained = {r.image_id for r in card.training_rows()}
    ev, fitted = fit_rule(ev, criterion, target, calibrate, held_out=not trained.intersection(ev.image_ids))
    card = store_rule(card, fitted, tta)
    return card, write_evaluation(ev, card.path / "evaluation")
