"""What a gate report must say for the registry to move the champion on it. Torch-free.

``lesionlens gate`` (:mod:`lesionlens.upkeep.gate`) writes the report; the registry reads it when a
champion is promoted on it, and again for every gate-based entry when the log is verified.
"""

from __future__ import annotations

import json
from pathlib import Path

from lesionlens.digest import file_digest

GATE_FORMAT = "lesionlens-gate/1"


class GateReportError(ValueError):
    """A file given as a gate report is unreadable or is not one."""


def read_gate_report(path: Path) -> tuple[str, dict]:
    """The report's sha256 (what the log records) and its content."""
    try:
        report = json.loads(path.read_bytes())
    except (OSError, json.JSONDecodeError) as e:
        raise GateReportError(f"{path}: cannot read the gate report: {e}") from e
    if not isinstance(report, dict) or report.get("format") != GATE_FORMAT:
        raise GateReportError(f"{path}: not a gate report (format {GATE_FORMAT}, written by `lesionlens gate`)")
    return file_digest(path), report


def gate_problem(report: dict, champion: str | None, challenger: str) -> str | None:
    """Why a gate report does not allow moving the champion from ``champion`` to ``challenger``
    (None when it does)."""
    got_champion = (report.get("champion") or {}).get("digest")
    got_challenger = (report.get("challenger") or {}).get("digest")
    if got_challenger != challenger:
        return f"the gate report is about challenger {_short(got_challenger)}, not {challenger[:12]}"
    if got_champion != champion:
        return (f"the gate report compared with champion {_short(got_champion)}, but the champion is "
                f"{_short(champion)}; gate the challenger against the current champion")
    if not (report.get("gate_set") or {}).get("digest"):
        return "the gate report names no gate set"
    if report.get("decision") != "pass":
        reasons = "; ".join(report.get("reasons") or []) or "no reasons given"
        return f"the gate did not pass ({report.get('decision')}): {reasons}"
    return None


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "none"
