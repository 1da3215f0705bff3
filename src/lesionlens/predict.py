"""``lesionlens predict``: files and folders in, one row of probabilities per file out."""

from __future__ import annotations

import contextlib
import csv
import sys
from pathlib import Path

from lesionlens.bundle.card import read_card
from lesionlens.data.files import collect_images
from lesionlens.inference import Predictor


def predict_paths(bundle: Path, inputs: list[Path], tta: str | None = None, processes: int = 1) -> list[dict]:
    """Rows of ``path, predicted, confidence, p_<class>..., p_malignant, malignant, p_melanoma,
    melanoma, error``; ``malignant`` and ``melanoma`` are the decisions ("positive"/"negative") at the
    bundle's operating points, or by the argmax class where it has none (see ``describe_rule``).
    ``processes`` > 1 predicts in that many processes (:mod:`lesionlens.inference_pool`)."""
    predictor = Predictor(bundle, tta, processes)
    rows, done, probs = _predict_files(predictor, inputs)
    decisions = predictor.rule.decide(probs) if len(probs) else {}
    for k, row in enumerate(done):
        p = probs[k]
        best = int(p.argmax())
        row.update(predicted=predictor.classes[best], confidence=float(p[best]))
        row.update({f"p_{c}": float(v) for c, v in zip(predictor.classes, p)})
        for view, d in decisions.items():
            if f"p_{view}" not in row:  # a binary bundle's own class is already a column
                row[f"p_{view}"] = float(d["score"][k])
            row[view] = "positive" if d["positive"][k] else "negative"
    return rows


def regress_paths(bundle: Path, inputs: list[Path], tta: str | None = None, processes: int = 1) -> list[dict]:
    """A regression bundle's rows: ``path``, one column per target (in its units), ``error``."""
    predictor = Predictor(bundle, tta, processes)
    rows, done, values = _predict_files(predictor, inputs)
    for row, v in zip(done, values):
        row.update({t: float(x) for t, x in zip(predictor.regression.targets, v)})
    return rows


def _predict_files(predictor: Predictor, inputs: list[Path]) -> tuple[list[dict], list[dict], object]:
    """One row per file found (``path``, ``error`` where it could not be used), the rows that were
    predicted, and their predictions in the same order."""
    items = collect_images(inputs)
    todo = [i for i, (_, err) in enumerate(items) if err is None]
    outputs, failures = predictor.predict_files([items[i][0] for i in todo])
    rows: list[dict] = [{"path": str(p), "error": err} for p, err in items]
    for j, why in failures.items():
        rows[todo[j]]["error"] = why
    return rows, [rows[i] for j, i in enumerate(todo) if j not in failures], outputs


def describe_rule(bundle: Path, tta: str | None = None) -> list[str]:
    """How the bundle's predictions are made: the test-time augmentation (``tta`` or the bundle's
    own), then its decision rule in words."""
    card = read_card(bundle, verify=False)
    used = card.resolve_tta(tta)
    lines = [f"test-time augmentation {used}" + (" (the bundle's default)" if tta is None else "")
             + (f"; the rule below was fitted with {card.tta}" if used != card.tta else "")]
    return lines + card.rule.describe()


def write_predictions(rows: list[dict], out: Path | None) -> None:
    """CSV to ``out``, or an aligned table on standard output."""
    columns = ["path", "predicted", "confidence"]
    if out is not None:
        write_rows(rows, columns, out)
        return
    columns = _columns(rows, columns)
    width = max([len(r["path"]) for r in rows] + [4])
    print(f"{'path':<{width}}  {'predicted':<14}{'conf.':>7}  " + "  ".join(c for c in columns[3:-1]))
    for r in rows:
        if r.get("error"):
            print(f"{r['path']:<{width}}  ERROR: {r['error']}")
            continue
        probs = "  ".join(_cell(r.get(c, float("nan")), len(c)) for c in columns[3:-1])
        print(f"{r['path']:<{width}}  {r['predicted']:<14}{r['confidence']:>7.3f}  {probs}")
    sys.stdout.flush()


def write_rows(rows: list[dict], first: list[str], out: Path | None) -> None:
    """Rows as CSV to ``out`` (standard output when None): the ``first`` columns, then every other
    key in the order met, ``error`` last; floats with 6 decimals."""
    columns = _columns(rows, first)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
    with (out.open("w", newline="") if out is not None else contextlib.nullcontext(sys.stdout)) as f:
        w = csv.DictWriter(f, columns)
        w.writeheader()
        for r in rows:
            w.writerow({c: (f"{v:.6f}" if isinstance(v, float) else v) for c, v in r.items()})
    sys.stdout.flush()


def _columns(rows: list[dict], first: list[str]) -> list[str]:
    columns = list(first)
    for r in rows:
        columns += [c for c in r if c not in columns and c != "error"]
    return columns + ["error"]


def _cell(value, width: int) -> str:
    return f"{value:>{width}.3f}" if isinstance(value, float) else f"{value:>{width}}"
