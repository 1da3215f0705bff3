"""Explore a grid of architectures x strategies x input sizes on one data set, within a time budget.

    lesionlens explore --data DATA --out runs/explore --models efficientnet_lite0,mobilenet_v2 \\
        --strategies shallow,deep,features --sizes 128,160 --epochs 3 --budget-minutes 60

Every run trains on the same split (the first run's ``split.csv``, fed back as the data of the
others) and writes its own bundle under ``OUT/<model>-<strategy>-<size>/`` (``...-<size>-<head>/``
for a top model other than the linear one: ``--head mlp`` or a grid of them). Before each run its
cost is estimated from a timed forward/backward pass of the model at its input size; a run that
would overrun what is left of the budget, or that cannot run at all (no pretrained weights for a
strategy that needs them), is skipped with the reason. The leaderboard (``leaderboard.csv`` and
``leaderboard.html``) has one row per grid cell, best balanced accuracy first.
"""

from __future__ import annotations

import csv
import html
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from lesionlens.bundle.card import Card, read_card
from lesionlens.config import RunConfig, config_from_dict
from lesionlens.data.labels import apply_view
from lesionlens.data.load import read_table
from lesionlens.models.heads import HEADS
from lesionlens.models.profile import model_cost
from lesionlens.models.registry import get_spec
from lesionlens.models.weights import WeightsNotFound
from lesionlens.training.estimate import estimate
from lesionlens.training.fit import train
from lesionlens.training.strategies import check_strategy

log = logging.getLogger(__name__)

COLUMNS = ["model", "strategy", "head", "image_size", "status", "balanced_accuracy", "macro_auc", "melanoma_auc",
           "parameters", "gmacs", "train_minutes", "images_per_s", "estimated_minutes", "bundle", "reason"]


@dataclass
class Cell:
    model: str
    strategy: str
    image_size: int
    head: str = "linear"
    row: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        suffix = "" if self.head == "linear" else f"-{self.head}"
        return f"{self.model}-{self.strategy}-{self.image_size}{suffix}"


def cell_config(base: RunConfig, cell: Cell, data: str) -> RunConfig:
    cfg = config_from_dict(base.to_dict())
    cfg.data.path = data
    cfg.model.name, cfg.model.image_size, cfg.train.strategy = cell.model, cell.image_size, cell.strategy
    cfg.model.head = cell.head
    cfg.model.pretrained = cell.strategy != "scratch"
    cfg.model.frozen_stages = 0
    return cfg


def data_size(base: RunConfig, data: str) -> tuple[int, int]:
    """How many images a run will train on (its data less the validation share), and the classes."""
    table = apply_view(read_table(data, base.data.format, base.data.images, base.data.group_column), base.data.labels)
    return max(1, round(len(table) * (1 - base.data.val_fraction - base.data.test_fraction))), len(table.classes)


def explore(base: RunConfig, data: str, out: Path, models: list[str], strategies: list[str], sizes: list[int],
            budget_minutes: float, progress: bool = False, heads: list[str] | None = None) -> list[dict]:
    """Run the grid (``heads``: top models, default ``base.model.head`` alone); returns the
    leaderboard rows (also written to ``out``). A cell whose bundle is already in ``out`` is read
    back, not trained again."""
    unknown = [h for h in heads or [] if h not in HEADS]
    if unknown:
        raise ValueError(f"unknown top model {', '.join(unknown)} in --head; choose from {', '.join(HEADS)}")
    n_images, n_classes = data_size(base, data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + budget_minutes * 60
    split: Path | None = None
    unloadable: dict[str, str] = {}  # model -> why its pretrained weights could not be loaded
    cells = [Cell(m, s, z, h) for m in models for s in strategies for z in sizes for h in heads or [base.model.head]]
    for cell in cells:
        cfg = cell_config(base, cell, str(split) if split else data)
        row = {"model": cell.model, "strategy": cell.strategy, "head": cfg.model.head, "image_size": cell.image_size}
        cell.row = row
        try:
            spec = get_spec(cell.model)
            spec.check_input_size(cell.image_size)
            if cfg.model.pretrained and spec.weights is None:
                raise ValueError(f"{cell.model} has no pretrained weights (strategy scratch trains it from random ones)")
            check_strategy(cfg)
            if cfg.model.pretrained and cell.model in unloadable:
                raise ValueError(unloadable[cell.model])
            cost = model_cost(cell.model, n_classes, cell.image_size, head=cfg.model.head)
            row.update(parameters=cost.parameters, gmacs=round(cost.macs / 1e9, 3))
            minutes = estimate(cfg, n_images, cell.image_size).minutes
        except ValueError as e:
            row.update(status="skipped", reason=str(e))
            continue
        left = (deadline - time.monotonic()) / 60
        row["estimated_minutes"] = round(minutes, 2)
        if minutes > left:
            row.update(status="skipped", reason=f"needs about {minutes:.1f} min; {max(left, 0):.1f} min of the budget left")
            continue
        bundle = out / cell.name
        if (bundle / "card.json").is_file():
            row.update(status="trained", bundle=str(bundle), reason="from an earlier explore", **scores(read_card(bundle)))
            split = split or bundle / "split.csv"
            continue
        log.info("explore: %s (about %.1f min, %.1f left)", cell.name, minutes, left)
        # a run that takes longer than estimated stops at the deadline, keeping its best epoch
        cfg.train.max_minutes = min(cfg.train.max_minutes or left, left)
        try:
            result = train(cfg, bundle, progress=progress)
        except (ValueError, WeightsNotFound) as e:
            reason = " ".join(line.strip() for line in str(e).splitlines())
            if isinstance(e, WeightsNotFound):
                unloadable[cell.model] = reason
            row.update(status="failed", reason=reason)
            continue
        split = split or bundle / "split.csv"
        row.update(status="trained", bundle=str(bundle), **scores(result.card))
    rows = sorted((c.row for c in cells), key=leaderboard_order)
    write_leaderboard(rows, out, data, budget_minutes)
    return rows


def names(text: str) -> list[str]:
    """A comma-separated list from the command line."""
    return [x.strip() for x in text.split(",") if x.strip()]


def leaderboard_lines(rows: list[dict]) -> list[str]:
    """The leaderboard as a plain-text table."""
    lines = [f"{'model':<20}{'strategy':<10}{'head':<7}{'size':>5}{'bal.acc':>9}{'AUC':>7}  status"]
    for r in rows:
        acc = "" if r.get("balanced_accuracy") is None else f"{r['balanced_accuracy']:.3f}"
        auc = "" if r.get("macro_auc") is None else f"{r['macro_auc']:.3f}"
        lines.append(f"{r['model']:<20}{r['strategy']:<10}{r['head']:<7}{r['image_size']:>5}{acc:>9}{auc:>7}  "
                     f"{r['status']}" + (f": {r['reason']}" if r.get("reason") else ""))
    return lines


def scores(card: Card) -> dict:
    """A trained run's leaderboard figures, from its card."""
    v, t = card.validation, card.training
    return {"balanced_accuracy": _round(v.balanced_accuracy), "macro_auc": _round(v.macro_auc),
            "melanoma_auc": _round(v.melanoma_auc), "train_minutes": round(t.fit_time_s / 60, 2),
            "images_per_s": t.train_images_per_s, "parameters": card.model.parameters}


def _cell(column: str, value) -> str:
    if value is None or value == "":
        return "<td></td>"
    if column == "balanced_accuracy":
        return (f"<td class='num'><span class='bar' style='width:{max(0.0, float(value)) * 120:.0f}px'></span>"
                f"{float(value):.3f}</td>")
    if column in ("macro_auc", "melanoma_auc"):
        return f"<td class='num'>{float(value):.3f}</td>"
    if column == "parameters":
        return f"<td class='num'>{int(value):,}</td>"
    if column in ("gmacs", "train_minutes", "images_per_s"):
        return f"<td class='num'>{float(value):.2f}</td>"
    return f"<td>{html.escape(str(value))}</td>"


def _round(x) -> float | None:
    return None if x is None else round(float(x), 4)


def leaderboard_order(row: dict) -> tuple:
    """Sort key: trained runs first, best balanced accuracy first."""
    trained = row.get("status") == "trained"
    return (not trained, -(row.get("balanced_accuracy") or 0.0), row["model"], row["strategy"], row["image_size"],
            row.get("head", ""))


def write_leaderboard(rows: list[dict], out: Path, data: str, budget_minutes: float) -> tuple[Path, Path]:
    csv_path, html_path = out / "leaderboard.csv", out / "leaderboard.html"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in COLUMNS})
    shown = [c for c in COLUMNS if c not in ("estimated_minutes", "bundle")]
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in shown)
    body = "".join(f"<tr class='{html.escape(str(row.get('status', '')))}'>"
                   + "".join(_cell(c, row.get(c)) for c in shown) + "</tr>" for row in rows)
    html_path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>LesionLens explore</title><style>"
        "body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse}"
        "td,th{border-bottom:1px solid #ddd;padding:4px 8px;font-size:13px;text-align:left}"
        "td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}"
        ".bar{display:inline-block;height:9px;background:#3a7bd5;margin-right:6px;vertical-align:middle}"
        "tr.skipped,tr.failed{color:#888}tr.failed td:first-child{color:#b00}</style></head><body>"
        f"<h1>Explore: {html.escape(data)}</h1><p>Validation figures of each run on the same split; "
        f"budget {budget_minutes:g} minutes. Best balanced accuracy first (the bar: 0 to 1); skipped and "
        f"failed runs say why. Bundles and the full table: leaderboard.csv beside this page.</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>")
    return csv_path, html_path
