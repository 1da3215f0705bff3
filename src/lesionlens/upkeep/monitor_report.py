"""The monitor's report files: ``monitor.json`` (the result as data) and ``monitor.html`` (one
self-contained page in the evaluation report's house style, its plots drawn over time from the
embedded JSON by the same script the server's /monitor page uses)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from lesionlens import __version__
from lesionlens.upkeep.monitor_result import MonitorResult, write_json

TEMPLATE = "monitor.html.j2"
PLOTS = "monitor_plots.js"


def plots_script() -> str:
    """The plotting script (``drawMonitor(box, report)``), for the report file and the server's page."""
    return resources.files("lesionlens.upkeep").joinpath(f"templates/{PLOTS}").read_text()


def script_json(obj) -> str:
    """JSON that is safe inside a <script> element (no "</" to close it early)."""
    return json.dumps(obj, allow_nan=False).replace("</", "<\\/").replace("<!--", "<\\!--")


def write_report(result: MonitorResult, out: Path) -> tuple[Path, Path]:
    """``monitor.json`` and ``monitor.html`` in ``out``."""
    import jinja2  # the `train` extra; the server needs neither this nor the HTML

    out.mkdir(parents=True, exist_ok=True)
    json_path = write_json(result, out / "monitor.json")
    report = result.to_dict()
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([jinja2.PackageLoader("lesionlens.upkeep", "templates"),
                                    jinja2.PackageLoader("lesionlens.evaluation", "templates")]),
        autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
    env.filters["p"] = lambda p: f"{p:.2g}" if p < 0.01 else f"{p:.3f}"
    env.filters["rate"] = _rate
    html = env.get_template(TEMPLATE).render(r=report, version=__version__, lines=result.lines(),
                                             data=script_json(report), plots=plots_script())
    html_path = out / "monitor.html"
    html_path.write_text(html, encoding="utf-8")
    return html_path, json_path


def _rate(r: dict) -> str:
    return "-" if not r["n"] else f"{r['estimate']:.2f} [{r['low']:.2f}, {r['high']:.2f}] of {r['n']}"
