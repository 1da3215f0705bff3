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
                    report: bool = False, progress: bool = True, allow_leakage: bool = False,
                    processes: int = 1) -> BundleEvaluation:
    """Evaluate the bundle's model on labelled data and write metrics and figures to ``out``
    (default ``BUNDLE/evaluations/<data>-<split>``), with ``report`` also report.html and
    report.json. Only the chosen partition is decoded. Probabilities and decisions follow the
    bundle's temperature and operating points; ``tta`` None is the bundle's own test-time augmentation. Images the bundle trained on are refused unless ``allow_leakage``. ``processes`` > 1: the predictions are made in
    that many processes (one per GPU, or sharing the CPU)."""
    ev, out = predict_split(card, data_path, out, fmt, images, split, on_bad_input, cache_dir, tta, progress,
                            allow_leakage, processes)
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


def evaluate_regression_bundle(card: Card, data_path: str | Path, out: Path | None = None, fmt: str = "auto",
                               images: str | Path | None = None, split: str = "auto", on_bad_input: str = "stop",
                               cache_dir: str | None = None, tta: str | None = None, resamples: int = 2000,
                               progress: bool = True, allow_leakage: bool = False):
    """Evaluate a regression bundle on data that has its target columns: MAE, RMSE, R^2 against the
    bundle's own baseline (its training median), scatter and residual plots, written to ``out``
    (default ``BUNDLE/evaluations/<data>-<split>``). Returns the evaluation and its files."""
    import numpy as np

    from lesionlens.data.load import prepare, read_table
    from lesionlens.data.targets import store_targets, stored_targets
    from lesionlens.evaluation.evaluate import choose_rows, resolve_split
    from lesionlens.evaluation.regression import RegressionEvaluation
    from lesionlens.evaluation.regression_report import write_regression_report
    from lesionlens.inference import load_model, predict_values

    reg = card.regression
    tta = card.resolve_tta(tta)
    if reg.box and tta != "none":
        raise ValueError(f"{card.path}: its targets are a box, which test-time augmentation would flip and turn "
                         "with the image; use --tta none")
    table = read_table(data_path, fmt, images, targets=tuple(reg.targets))
    split = resolve_split(table, card, data_path, split)
    if split in ("train", "val", "test"):
        table = table.subset((table.frame["partition"] == split).to_numpy())
        if len(table) == 0:
            raise ValueError(f"{data_path}: the data has no {split!r} partition; use --split all")
    store_targets(table, tuple(reg.targets))
    suffix = "" if tta == "none" else f"-tta-{tta}"
    out = out or card.path / "evaluations" / f"{Path(data_path).stem}-{split}{suffix}"
    data = prepare(table, card.preprocessing, on_bad_input, cache_dir, report=out / "data_issues.csv",
                   progress=progress)
    rows, what = choose_rows(data, card, split, allow_leakage)
    frame = data.table.frame
    predicted = predict_values(card, load_model(card), data.images.array, frame["cache_row"].to_numpy()[rows], tta,
                               progress)
    ev = RegressionEvaluation(list(reg.targets), stored_targets(data.table, reg.targets)[rows], predicted,
                              np.asarray(reg.baseline), frame["image_id"].astype(str).to_numpy()[rows].tolist(),
                              description=f"{card.architecture} on {Path(data_path).name}, {what}"
                                          + (f", TTA {tta}" if tta != "none" else ""),
                              box=reg.box, n_resamples=resamples)
    return ev, write_regression_report(ev, out)
