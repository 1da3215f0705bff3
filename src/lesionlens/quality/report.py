"""The data check as a person reads it: report.html with side-by-side galleries of every flagged
pair or image, and findings.csv with one row per finding.

Thumbnails are written beside the report (``thumbs/``, one small JPEG per flagged image), so the
report opens offline and stays small when thousands of images are flagged.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import jinja2
from PIL import Image

from lesionlens import __version__
from lesionlens.data.images import ImageDecodeError, load_rgb
from lesionlens.quality.result import KINDS, CheckResult, text

TEMPLATE = "check.html.j2"
THUMB = 160  # pixels, longer side
SHOWN_PER_KIND = 500  # findings drawn per kind (all are in the CSV)


def write_check_report(result: CheckResult, out: Path, shown_per_kind: int = SHOWN_PER_KIND) -> tuple[Path, Path]:
    """``report.html`` (with ``thumbs/``) and ``findings.csv`` in ``out``."""
    out = Path(out)
    (out / "thumbs").mkdir(parents=True, exist_ok=True)
    csv = result.write_csv(out / "findings.csv")
    frame = result.table.frame
    thumbs: dict[int, str] = {}

    def image(pos: int) -> dict:
        if pos not in thumbs:
            thumbs[pos] = _thumbnail(Path(frame["path"].iat[pos]), out / "thumbs" / f"{pos}.jpg")
        partition = frame["partition"].iat[pos] if "partition" in frame else None
        return {"id": str(frame["image_id"].iat[pos]), "label": str(frame["label"].iat[pos]),
                "partition": text(partition),
                "thumb": thumbs[pos]}

    kinds = []
    for kind, meaning in KINDS.items():
        findings = result.of_kind(kind)
        items = [{"reason": f.reason, "a": image(f.a), "b": image(f.b) if f.b is not None else None}
                 for f in findings[:shown_per_kind]]
        kinds.append({"name": kind, "meaning": meaning, "count": len(findings), "shown": items,
                      "skipped": result.skipped.get(kind)})
    env = jinja2.Environment(loader=jinja2.PackageLoader("lesionlens.quality", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
    html = out / "report.html"
    html.write_text(env.get_template(TEMPLATE).render(
        source=str(result.table.source), format=result.table.format, n_images=len(result.table),
        version=__version__, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        settings=result.settings, kinds=kinds, csv=csv.name, thumb=THUMB), encoding="utf-8")
    return html, csv


def _thumbnail(source: Path, target: Path) -> str:
    """A small JPEG of ``source`` at ``target``; its path relative to the report (empty if unreadable)."""
    try:
        img = load_rgb(source)
    except (ImageDecodeError, OSError):
        return ""
    img.thumbnail((THUMB, THUMB), Image.Resampling.BILINEAR)
    img.save(target, quality=85)
    return f"thumbs/{target.name}"
