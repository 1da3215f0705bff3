"""What the monitor found: per window the tests, the verdict, the class mix, the quality-flag rate and
the performance; overall the performance and the staleness clock. Queried as objects, written as
JSON (``monitor.json``, ``GET /v1/monitor``) and formatted for the console here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from lesionlens.upkeep.drift import DESCRIPTIONS, DriftResult
from lesionlens.upkeep.identity import BundleIdentity
from lesionlens.upkeep.performance import Performance
from lesionlens.upkeep.reference import ReferenceProfile
from lesionlens.upkeep.staleness import Staleness

FORMAT = "lesionlens-monitor/1"
RULE = ("a window has drifted when any test's p-value is below its threshold; the thresholds were set on "
        "in-distribution windows of the reference (each test the same quantile of its p-values, the largest "
        "that keeps the share of those windows with any alarm at the target, and none above its Bonferroni share "
        "of the target)")


@dataclass
class WindowResult:
    index: int
    start: datetime  # the first case's time
    end: datetime  # the last case's
    cases: int
    tests: dict[str, DriftResult]
    thresholds: dict[str, float]
    class_mix: dict[str, int]
    quality_rate: float
    performance: Performance
    staleness_days: float  # at the window's last case

    @property
    def fired(self) -> list[str]:
        return [name for name, t in self.tests.items() if t.p_value < self.thresholds[name]]

    @property
    def drift(self) -> bool:
        return bool(self.fired)

    def to_dict(self) -> dict:
        return {"index": self.index, "start": self.start.isoformat(), "end": self.end.isoformat(),
                "cases": self.cases, "drift": self.drift, "fired": self.fired,
                "tests": {name: {"statistic": t.statistic, "p_value": t.p_value, "threshold": self.thresholds[name],
                                 "drift": name in self.fired, "detail": t.detail} for name, t in self.tests.items()},
                "class_mix": self.class_mix, "quality_rate": self.quality_rate,
                "performance": self.performance.to_dict(), "staleness_days": round(self.staleness_days, 3)}


@dataclass
class MonitorResult:
    bundle: BundleIdentity
    reference: ReferenceProfile = field(repr=False)
    window: int
    store: dict  # description, cases, answered by this model, by other models
    windows: list[WindowResult]
    pending: int  # cases after the last complete window
    overall: Performance
    staleness: Staleness
    stored_difference: float  # largest |stored probability - recomputed| (0 when they are the answers)
    as_of: datetime

    @property
    def latest(self) -> WindowResult | None:
        return self.windows[-1] if self.windows else None

    def to_dict(self) -> dict:
        c = self.reference.calibration(self.window)
        latest = self.latest
        return {
            "format": FORMAT, "as_of": self.as_of.isoformat(timespec="seconds"),
            "bundle": self.bundle.to_dict(),
            "reference": {"digest": self.reference.digest, "source": self.reference.source,
                          "images": len(self.reference), "created": self.reference.created,
                          "class_mix": self.reference.class_mix(),
                          "quality_rate": float(self.reference.sample.flagged.mean())},
            "classes": self.reference.classes, "views": list(self.overall.sensitivity),
            "window": self.window, "rule": RULE, "tests": {t: DESCRIPTIONS[t] for t in c.thresholds},
            "calibration": c.to_dict(), "store": self.store, "pending": self.pending,
            "stored_difference": self.stored_difference,
            "latest": None if latest is None else {"index": latest.index, "drift": latest.drift, "fired": latest.fired},
            "windows_with_drift": sum(w.drift for w in self.windows),
            "windows": [w.to_dict() for w in self.windows],
            "performance": self.overall.to_dict(), "staleness": self.staleness.to_dict(),
        }

    def lines(self) -> list[str]:
        c = self.reference.calibration(self.window)
        s = self.store
        out = [f"monitor of {self.bundle} on {s['description']}",
               f"  {s['answered']} of {s['cases']} cases answered by this model"
               + (f" (others: {', '.join(f'{v} {n}' for v, n in s['other_models'].items())})" if s["other_models"] else ""),
               f"  reference {self.reference.digest[:12]}: {len(self.reference)} images ({self.reference.source})",
               f"  windows of {self.window}: {len(self.windows)} complete, {self.pending} cases pending; thresholds "
               + ", ".join(f"{t} p < {v:.3g}" for t, v in c.thresholds.items())
               + f" (in-distribution false alarms {c.false_alarms['any']:.1%}, target {c.target:.0%})"]
        if self.windows:
            names = list(c.thresholds)
            out.append(f"  {'window':>6} {'cases from':<20} " + " ".join(f"{n:>11}" for n in names)
                       + f"  {'verdict':<8}" + "".join(f" {v[:9] + ' sens':>20}" for v in self.overall.sensitivity))
            for w in self.windows:
                cells = " ".join(f"{_p(w.tests[n].p_value) + ('*' if n in w.fired else ' '):>11}" for n in names)
                rates = "".join(f" {str(w.performance.sensitivity[v]):>20}" for v in self.overall.sensitivity)
                out.append(f"  {w.index:>6} {w.start.strftime('%Y-%m-%d %H:%M'):<20} {cells}  "
                           f"{'DRIFT' if w.drift else 'ok':<8}{rates}")
            out.append("  (p-values; * = below the threshold)")
            latest = self.latest
            out.append(f"  latest window: {'DRIFT (' + ', '.join(latest.fired) + ')' if latest.drift else 'no drift'}; "
                       f"{sum(w.drift for w in self.windows)} of {len(self.windows)} windows drifted")
        p = self.overall
        out.append(f"  labelled cases: {p.labelled}" + "".join(
            f"; {v}: sensitivity {p.sensitivity[v]}, specificity {p.specificity[v]}" for v in p.sensitivity))
        out += ["  " + line for line in self.staleness.lines()]
        if self.stored_difference > 1e-4:
            out.append(f"  WARNING: the stored answers differ from this model's outputs by up to "
                       f"{self.stored_difference:.3g}: were the cases answered by another export of it?")
        return out


def _p(p: float) -> str:
    return f"{p:.2g}" if p < 0.01 else f"{p:.3f}"


def write_json(result: MonitorResult, path: Path) -> Path:
    path.write_text(json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n")
    return path
