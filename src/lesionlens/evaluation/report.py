"""One self-contained HTML report (plus the same content as JSON) of one or several bundles evaluated
on the same labelled images.

    lesionlens report runs/ham --data ../shared/data/isic2017 --out reports/isic2017
    lesionlens report runs/a runs/b --data DATA --split test --out reports/a-vs-b

Every figure is a PNG embedded as a data URI, so the file opens anywhere without a network or the
bundle beside it. Sections: model, data, headline metrics with 95% bootstrap intervals, operating
points, the ISIC metric set, ROC and precision-recall curves, confusion matrix, calibration, top
losses and most-confused pairs, learning curves; with several bundles also a side-by-side table,
overlaid ROC curves and paired tests of each against the first.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import jinja2

from lesionlens import __version__
from lesionlens.bundle.card import Card
from lesionlens.evaluation.bootstrap import paired_comparison
from lesionlens.evaluation.files import WrittenEvaluation
from lesionlens.evaluation.operating import DERMATOLOGIST_SENSITIVITY, DERMATOLOGIST_SPECIFICITY
from lesionlens.evaluation.plots import plot_roc_comparison
from lesionlens.evaluation.result import Evaluation, json_safe

TEMPLATE = "report.html.j2"


@dataclass
class Entry:
    """One bundle's evaluation, its written figures and what the report says of it."""

    name: str
    card: Card
    ev: Evaluation
    folder: Path  # where write_evaluation put metrics.json and the figures
    metrics: dict = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def of(cls, name: str, card: Card, written: WrittenEvaluation) -> "Entry":
        """The report's entry for a written evaluation, with the bundle's learning curves."""
        figures = dict(written.files)
        curves = card.file("learning_curves")
        if curves is not None:
            figures["learning_curves"] = curves
        return cls(name, card, written.ev, written.folder, written.metrics, figures)


def write_report(entries: list[Entry], out: Path, data_path: str | Path, resamples: int = 1000,
                 seed: int = 0) -> tuple[Path, Path]:
    """``report.html`` and ``report.json`` in ``out``; with several entries, the comparison too."""
    if not entries:
        raise ValueError("a report needs at least one evaluated bundle")
    out.mkdir(parents=True, exist_ok=True)
    comparison = _compare(entries, out, resamples, seed) if len(entries) > 1 else None
    context = {
        "title": _title(entries, data_path),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "version": __version__,
        "data_path": str(data_path),
        "entries": [_entry_context(e) for e in entries],
        "comparison": comparison,
        "reference": {"sensitivity": DERMATOLOGIST_SENSITIVITY, "specificity": DERMATOLOGIST_SPECIFICITY},
    }
    json_path = out / "report.json"
    json_path.write_text(json.dumps(json_safe(_without_images(context)), indent=2, default=str))
    html_path = out / "report.html"
    html_path.write_text(template_environment().get_template(TEMPLATE).render(**context), encoding="utf-8")
    return html_path, json_path


def template_environment(*packages: str) -> jinja2.Environment:
    """The reports' templates: those of ``packages`` (each one's ``templates/`` folder) first, then
    this package's, whose ``house_style.css.j2`` every report includes; with the number filters."""
    loaders = [jinja2.PackageLoader(p, "templates") for p in (*packages, "lesionlens.evaluation")]
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=jinja2.select_autoescape(["html", "j2"]),
                             undefined=jinja2.StrictUndefined)
    env.filters["num"] = _num
    env.filters["pct"] = _pct
    return env


def _title(entries: list[Entry], data_path: str | Path) -> str:
    names = ", ".join(e.name for e in entries)
    return f"{names} on {Path(data_path).name}"


def _entry_context(e: Entry) -> dict:
    card, m = e.card, e.metrics
    views = []
    for view, b in m.get("binary", {}).items():
        point = card.operating_points.get(view)
        views.append({"name": view, **b, "point": asdict(point) if point else None,
                      "ci": {k: m.get("confidence_intervals", {}).get(f"{view}_{k}")
                             for k in ("auc", "sensitivity", "specificity", "ppv", "npv")}})
    support = {c: v["support"] for c, v in m["per_class"].items()}
    t = card.training
    return {
        "name": e.name,
        "anchor": "".join(ch if ch.isalnum() else "-" for ch in e.name),
        "bundle": str(card.path),
        "folder": str(e.folder),
        "model": {
            "architecture": card.architecture, "parameters": card.model.parameters,
            "pretrained": card.model.pretrained_source if card.model.pretrained else "no",
            "image_size": card.preprocessing.image_size, "classes": card.classes,
            "label_view": card.label_view, "trained_on": card.dataset.path,
            "created": card.created, "sha256": card.weights.sha256,
            "epochs": t.epochs_run, "kept_epoch": card.kept_epoch,
            "fit_minutes": round(t.fit_time_s / 60, 1) if t.fit_time_s else None,
        },
        "data": {"description": m["description"], "n_images": m["n_images"], "support": support,
                 "issues": _count_issues(e.folder / "data_issues.csv")},
        "metrics": m,
        "headline": _headline(m),
        "views": views,
        "calibration": m.get("calibration"),
        "card_calibration": asdict(card.calibration) if card.calibration else None,
        "images": {name: data_uri(path) for name, path in e.figures.items()
                   if path.suffix.lower() in (".png", ".jpg", ".jpeg")},
    }


def _headline(m: dict) -> list[dict]:
    ci = m.get("confidence_intervals", {})
    rows = [("Balanced accuracy (mean recall; ISIC 2018 ranking)", m["balanced_accuracy"], ci.get("balanced_accuracy")),
            ("Accuracy", m["accuracy"], ci.get("accuracy")),
            (f"Macro AUC ({m['macro_auc_grade'] or 'n/a'})", m["macro_auc"], ci.get("macro_auc"))]
    for view, b in m.get("binary", {}).items():
        rows.append((f"{view} vs rest: AUC ({b['auc_grade'] or 'n/a'})", b["auc"], ci.get(f"{view}_auc")))
        rows.append((f"{view} vs rest: sensitivity", b["sensitivity"], ci.get(f"{view}_sensitivity")))
        rows.append((f"{view} vs rest: specificity", b["specificity"], ci.get(f"{view}_specificity")))
    return [{"label": label, "value": value, "ci": interval} for label, value, interval in rows]


def _compare(entries: list[Entry], out: Path, resamples: int, seed: int) -> dict:
    """Side-by-side figures, overlaid ROC curves and paired tests of each bundle against the first."""
    first = entries[0]
    check_same_images({e.name: e.ev for e in entries})
    roc = plot_roc_comparison({e.name: e.ev for e in entries}, out / "roc_comparison.png")
    keys = [("balanced_accuracy", "Balanced accuracy"), ("accuracy", "Accuracy"), ("macro_auc", "Macro AUC")]
    for view in first.metrics.get("binary", {}):
        keys += [(f"{view}_auc", f"{view} AUC"), (f"{view}_sensitivity", f"{view} sensitivity"),
                 (f"{view}_specificity", f"{view} specificity")]
    table = []
    for key, label in keys:
        cells = []
        for e in entries:
            ci = e.metrics.get("confidence_intervals", {}).get(key)
            cells.append({"value": ci["estimate"] if ci else None, "ci": ci})
        table.append({"label": label, "cells": cells})
    tests = []
    for e in entries[1:]:
        diffs = paired_comparison(first.ev, e.ev, resamples, seed)
        for key, d in sorted(diffs.items()):
            if key.startswith(("sensitivity[", "auc[")):
                continue
            tests.append({"model_a": first.name, "model_b": e.name, "metric": key, "value_a": d.a, "value_b": d.b,
                          "difference": d.interval.to_dict(), "p_value": d.p_value, "method": d.method,
                          "verdict": _verdict(d.p_value, d.interval.estimate, first.name, e.name)})
    rules = {e.name: {view: b["decision"] for view, b in e.metrics.get("binary", {}).items()} for e in entries}
    return {"names": [e.name for e in entries], "table": table, "tests": tests, "rules": rules,
            "n_images": len(first.ev.y_true), "images": {"roc_comparison": data_uri(roc)}}


def check_same_images(evaluations: dict[str, Evaluation]) -> None:
    """Bundles are compared only on the same images, in the same order, with the same labels."""
    (first, a), *rest = evaluations.items()
    for name, b in rest:
        if b.image_ids != a.image_ids or list(b.y_true) != list(a.y_true):
            raise ValueError(f"{first} and {name} were not evaluated on the same images (each bundle's own "
                             "validation split differs); compare them on a shared partition with --split test or all")


def _verdict(p: float, diff: float, a: str, b: str) -> str:
    if p >= 0.05:
        return "no significant difference (p >= 0.05)"
    return f"{b if diff > 0 else a} is better (p < 0.05)"


def _count_issues(path: Path) -> int:
    if not path.is_file():
        return 0
    return max(0, sum(1 for _ in path.open()) - 1)


def data_uri(path: Path) -> str:
    mime = "image/jpeg" if Path(path).suffix.lower() in (".jpg", ".jpeg") else "image/png"
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _without_images(obj):
    if isinstance(obj, dict):
        return {k: _without_images(v) for k, v in obj.items() if k != "images"}
    if isinstance(obj, list):
        return [_without_images(v) for v in obj]
    return obj


def _num(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"
