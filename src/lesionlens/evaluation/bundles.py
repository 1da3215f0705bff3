"""Evaluate bundles on labelled data and write what a person reads: the library side of
``lesionlens evaluate`` (one bundle: metrics, figures, optionally the report) and ``lesionlens
report`` (one or several bundles on the same images, compared)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lesionlens.bundle.card import Card, read_card
from lesionlens.evaluation.evaluate import predict_split
from lesionlens.evaluation.files import WrittenEvaluation, write_evaluation
from lesionlens.evaluation.report import Entry, check_same_images, write_report


@dataclass
class BundleEvaluation:
    """What ``lesionlens evaluate`` produced: the written evaluation, and the report where asked."""

    card: Card
    written: WrittenEvaluation
    report: Path | None = None  # report.html


def evaluate_bundle(card: Card, data_path: str | Path, out: Path | None = None, fmt: str = "auto",
                    images: str | Path | None = None, split: str = "auto", on_bad_input: str = "stop",
                    cache_dir: str | None = None, tta: str | None = None, resamples: int = 1000,
                    report: bool = False, progress: bool = True, allow_leakage: bool = False) -> BundleEvaluation:
    """Evaluate the bundle's model on labelled data and write metrics and figures to ``out``
    (default ``BUNDLE/evaluations/<data>-<split>``), with ``report`` also report.html and
    report.json. Only the chosen partition is decoded. Probabilities and decisions follow the
    bundle's temperature and operating points; ``tta`` None is the bundle's own test-time augmentation. Images the bundle trained on are refused unless ``allow_leakage``."""
    ev, out = predict_split(card, data_path, out, fmt, images, split, on_bad_input, cache_dir, tta, progress,
                            allow_leakage)
    written = write_evaluation(ev, out, resamples)
    html = write_report([Entry.of(card.name, card, written)], out, data_path, resamples)[0] if report else None
    return BundleEvaluation(card, written, html)


def compare_bundles(bundles: list[Path], data_path: str | Path, out: Path, fmt: str = "auto",
                    images: str | Path | None = None, split: str = "auto", cache_dir: str | None = None,
                    tta: str | None = None, resamples: int = 1000,
                    progress: bool = True, allow_leakage: bool = False) -> tuple[Path, Path, list[WrittenEvaluation]]:
    """Evaluate each bundle on the same images (each in ``out/<name>``) and write one report of them
    all to ``out``; returns report.html, report.json and the evaluations."""
    predicted = []
    for name, bundle in zip(unique_names(bundles), bundles):
        card = read_card(bundle)
        ev, folder = predict_split(card, data_path, out / name, fmt, images, split, "stop", cache_dir, tta, progress,
                                   allow_leakage)
        predicted.append((name, card, ev, folder))
    check_same_images({name: ev for name, _, ev, _ in predicted})
    written = [write_evaluation(ev, folder, resamples) for _, _, ev, folder in predicted]
    entries = [Entry.of(name, card, w) for (name, card, _, _), w in zip(predicted, written)]
    html, js = write_report(entries, out, data_path, resamples)
    return html, js, written


def unique_names(bundles: list[Path]) -> list[str]:
    """Each bundle's folder name, made unique with its parent's where two are the same."""
    names = [Path(b).resolve().name for b in bundles]
    return [f"{Path(b).resolve().parent.name}-{n}" if names.count(n) > 1 else n for b, n in zip(bundles, names)]
