"""Fit a bundle's decision rule on its validation data and store it in the card.

The rule is a temperature (calibrated probabilities) and, for each clinical view the classes
define (malignant, melanoma), an operating point: the threshold on the view's calibrated score
that meets a target sensitivity (default 0.866), a target specificity, or Youden's J. Training does
this at its end; ``lesionlens calibrate BUNDLE`` does it again, for older bundles or other
criteria. ``predict``, ``evaluate`` and the server then decide through this rule.
"""

from __future__ import annotations

from pathlib import Path

from lesionlens.bundle import Card, read_card, write_card
from lesionlens.evaluation.calibration import calibration_report, fit_temperature
from lesionlens.evaluation.operating import DERMATOLOGIST_SENSITIVITY, choose_operating_point, rates_at
from lesionlens.evaluation.result import Evaluation


def fit_rule(ev: Evaluation, criterion: str = "sensitivity", target: float | None = DERMATOLOGIST_SENSITIVITY,
             calibrate: bool = True) -> tuple[Evaluation, dict]:
    """Temperature and operating points fitted on ``ev`` (validation predictions with logits).

    Returns ``ev`` under the new rule and the card entries ``calibration`` and ``operating_points``.
    The thresholds apply to the temperature-scaled scores, so both are fitted together."""
    if ev.logits is None:
        raise ValueError("fitting a decision rule needs the evaluation's logits")
    temperature = fit_temperature(ev.logits, ev.y_true) if calibrate else 1.0
    report = calibration_report(ev.logits, ev.y_true, temperature)
    scaled = ev.with_rule(temperature, {})
    points = {}
    for name, view in scaled.binary_views().items():
        point = choose_operating_point(name, view.y_true, view.score, criterion, target)
        sens, spec = rates_at(view.y_true, view.score, point.threshold)
        points[name] = {**point.to_dict(), "validation_sensitivity": sens, "validation_specificity": spec,
                        "validation_positives": int(view.y_true.sum()), "validation_negatives": int((~view.y_true).sum())}
    entries = {
        "calibration": {"method": "temperature scaling" if calibrate else "none", "fitted_on": ev.description,
                        **report.to_dict()},
        "operating_points": points,
    }
    return ev.with_rule(temperature, {v: p["threshold"] for v, p in points.items()}), entries


def store_rule(card: Card, entries: dict, tta: str | None = None) -> Card:
    """Write the rule (and the test-time augmentation it was fitted with) into the bundle's card;
    everything else in the card is kept."""
    data = {k: v for k, v in card.data.items() if k not in ("calibration", "operating_points")}
    if tta is not None:
        data["inference"] = {**data.get("inference", {}), "tta": tta}
    write_card(card.path, {**data, **entries})
    return read_card(card.path)


def calibrate_bundle(bundle: str | Path, data_path: str | Path | None = None, split: str = "auto",
                     criterion: str = "sensitivity", target: float | None = DERMATOLOGIST_SENSITIVITY,
                     calibrate: bool = True, fmt: str = "auto", images: str | Path | None = None,
                     cache_dir: str | None = None, tta: str | None = None,
                     progress: bool = True) -> tuple[Card, Evaluation, Path]:
    """Predict the bundle's validation split (or ``split`` of ``data_path``) with ``tta`` (None: the
    bundle's own), fit the rule, store it with that TTA as the bundle's default, and write the
    validation evaluation under the new rule to ``BUNDLE/evaluation``."""
    from lesionlens.evaluation.evaluate import predict_split, write_evaluation

    card = read_card(bundle)
    data_path = data_path or card.data["data"]["path"]
    tta = card.resolve_tta(tta)
    ev, _ = predict_split(card, data_path, None, fmt, images, split, "stop", cache_dir, tta, progress=progress)
    ev, entries = fit_rule(ev, criterion, target, calibrate)
    card = store_rule(card, entries, tta)
    out = card.path / "evaluation"
    write_evaluation(ev, out)
    return card, ev, out
