"""From the case store to a training set: ``lesionlens cases export --out DIR``.

DIR/cases.csv is the project's own CSV layout, which ``lesionlens train --data DIR/cases.csv`` and
``evaluate --data`` read as they are: ``image`` (images/<case id>.jpg|png), ``label``, ``group`` (the
patient, else the lesion, else the case: what keeps one person's photos on one side of a split),
``partition`` where every exported case has one fixed, and the metadata (``label_source``, age,
sex, site, lesion, patient, case id) beside them.

Only cases whose patient consented to research use, whose label is settled (the readers agree,
or an adjudicator decided) and that have at least ``min_readers`` readers are exported; the rest
are counted by reason. DIR/manifest.json lists each case id with the label rows that settled it
(its label version) and the sha256 of every file, and one sha256 of the whole snapshot, so a model
card can name exactly what it was trained on.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from lesionlens.cases.db import redacted
from lesionlens.cases.store import CaseRecord, CaseStore

EXPORT_FORMAT = "lesionlens-cases-export/1"
COLUMNS = ("image", "label", "group", "partition", "label_source", "case_id", "age", "sex", "site", "lesion",
           "patient", "consent_version")


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    table: Path
    manifest: Path
    cases: int
    left_out: dict[str, int]
    snapshot_sha256: str
    partitions: bool  # whether the table has a partition column

    def lines(self) -> list[str]:
        out = [f"exported {self.cases} cases to {self.table}",
               f"  manifest {self.manifest} (snapshot sha256 {self.snapshot_sha256[:16]}...)"]
        for why, n in sorted(self.left_out.items()):
            out.append(f"  left out {n}: {why}")
        if not self.partitions:
            out.append("  no partition column: train will make a grouped split")
        out.append(f"  train on it: lesionlens train --data {self.table} --out runs/cases")
        return out


def exclusion(record: CaseRecord, min_readers: int = 1) -> str | None:
    """Why a case is not exported, or None when it is."""
    if not record.metadata.consent_research:
        return "no research consent"
    s = record.settlement
    if s.status == "unlabelled":
        return "unlabelled"
    if s.status == "disagreement":
        return "readers disagree and no adjudication yet"
    if s.status == "agreed" and len(s.current) < min_readers:
        return f"fewer than {min_readers} readers"
    return None


def export_cases(store: CaseStore, out: str | Path, min_readers: int = 1) -> ExportResult:
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: not empty; export into a new folder (an export is a snapshot)")
    (out / "images").mkdir(parents=True)
    left_out: Counter = Counter()
    chosen = []
    for record in store.records():
        why = exclusion(record, min_readers)
        if why:
            left_out[why] += 1
        else:
            chosen.append(record)
    with_partition = bool(chosen) and all(r.partition for r in chosen)
    rows, entries, digest = [], [], hashlib.sha256()
    for r in chosen:
        source = store.images.path(r.image)
        image = f"images/{r.id}{source.suffix}"
        shutil.copyfile(source, out / image)
        sha = r.image.split(".")[0]
        m = r.metadata
        rows.append({
            "image": image, "label": r.settlement.label, "group": m.patient_id or m.lesion_id or r.id,
            "partition": r.partition if with_partition else "", "label_source": r.settlement.source, "case_id": r.id,
            "age": "" if m.age is None else m.age, "sex": m.sex or "", "site": m.site or "",
            "lesion": m.lesion_id or "", "patient": m.patient_id or "", "consent_version": m.consent_version or "",
        })
        entries.append({"case_id": r.id, "image": image, "sha256": sha, "label": r.settlement.label,
                        "label_source": r.settlement.source, "label_version": r.settlement.version})
    columns = [c for c in COLUMNS if c != "partition" or with_partition]
    table = out / "cases.csv"
    with open(table, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    digest.update(table.read_bytes())
    for e in entries:
        digest.update(f"\n{e['image']} {e['sha256']}".encode())
    snapshot = digest.hexdigest()
    manifest = out / "manifest.json"
    manifest.write_text(json.dumps({
        "format": EXPORT_FORMAT, "created_at": datetime.now(timezone.utc).isoformat(),
        "database": redacted(store.url), "rule": {"research_consent": True, "settled": True, "min_readers": min_readers},
        "snapshot_sha256": snapshot, "table": table.name, "left_out": dict(left_out), "cases": entries,
    }, indent=2) + "\n")
    return ExportResult(out, table, manifest, len(rows), dict(left_out), snapshot, with_partition)
