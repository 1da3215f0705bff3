"""The data a challenger is trained on: the champion's training data plus new labelled cases, frozen.

    snapshot/data.csv       every image: path, label, group, partition, source, sha256
    snapshot/manifest.json  where each part came from (the champion's digest, the cases export's
                            own snapshot digest), counts by source and partition, and the
                            snapshot's digest (sha256 of data.csv, which holds every image's sha256)

The champion's images keep the partitions they had, so its validation images stay held out from
the challenger too and both can be compared on them. The new cases keep a partition the case
store fixed (``lesionlens cases partition``); otherwise they are split like any training data
(:func:`lesionlens.data.splits.assign_partitions`: stratified by label, whole groups), where a group
is the patient, else the lesion, else the case, so no person's photos cross a partition; photos that
are copies of each other join one group first (:func:`join_copies`). Groups are
prefixed by their source, so ids from two sources never merge by accident. Every image is re-hashed
and must match the hash its source recorded: a snapshot names exactly what it holds.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from lesionlens.bundle.card import Card
from lesionlens.bundle.split import SplitRow, read_split
from lesionlens.data.load import read_table
from lesionlens.data.splits import assign_partitions
from lesionlens.data.table import ImageTable
from lesionlens.digest import file_digest
from lesionlens.quality.duplicates import HASH_THRESHOLD, hash_pairs
from lesionlens.quality.fingerprint import scan_files

SNAPSHOT_FORMAT = "lesionlens-snapshot/1"
COLUMNS = ("path", "label", "group", "partition", "source", "sha256")
GROUPING_THRESHOLD = HASH_THRESHOLD + 8  # bits of 256 (see join_copies)


@dataclass(frozen=True)
class Snapshot:
    folder: Path
    table: Path  # data.csv: what `lesionlens train --data` reads
    digest: str
    counts: dict[str, dict[str, int]]  # source -> partition -> images

    def lines(self) -> list[str]:
        out = [f"snapshot {self.digest[:16]} in {self.folder}"]
        for source, parts in self.counts.items():
            out.append(f"  {source}: " + ", ".join(f"{p} {n:,}" for p, n in sorted(parts.items())))
        return out


def build_snapshot(champion: Card, champion_digest: str, cases: str | Path, out: str | Path,
                   val_fraction: float = 0.2, seed: int = 0) -> Snapshot:
    """Write the snapshot of the champion's training data (its ``split.csv``, test rows left out)
    and the cases of a ``lesionlens cases export`` folder (or its cases.csv) to ``out``."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: not empty; a snapshot goes into a new folder")
    split = champion.file("split")
    if split is None:
        raise ValueError(f"{champion.path}: the champion has no split.csv, so its training data is unknown")
    rows = _champion_rows(champion)
    new, export_digest = _case_rows(champion, Path(cases), val_fraction, seed)
    rows += new
    _check_hashes(rows)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "data.csv"
    with open(table, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    counts: dict[str, Counter] = {}
    for r in rows:
        counts.setdefault(r["source"], Counter())[r["partition"]] += 1
    digest = file_digest(table)
    manifest = {"format": SNAPSHOT_FORMAT, "snapshot_sha256": digest, "table": table.name,
                "champion": {"digest": champion_digest, "split_sha256": file_digest(split)},
                "cases": {"folder": str(Path(cases).resolve()), "export_sha256": export_digest},
                "counts": {s: dict(c) for s, c in counts.items()}, "val_fraction": val_fraction, "seed": seed}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return Snapshot(out, table, digest, {s: dict(c) for s, c in counts.items()})


def _champion_rows(champion: Card) -> list[dict]:
    out = []
    for r in _split_rows(champion):
        if r.partition == "test":
            continue
        out.append({"path": r.path, "label": r.label, "group": f"champion:{r.group or r.image_id}",
                    "partition": r.partition, "source": "champion", "sha256": r.sha256})
    return out


def _split_rows(champion: Card) -> list[SplitRow]:
    return read_split(champion.file("split"))


def _case_rows(champion: Card, cases: Path, val_fraction: float, seed: int) -> tuple[list[dict], str]:
    """The exported cases with their partitions (fixed, or assigned by group here)."""
    csv_path = cases / "cases.csv" if cases.is_dir() else cases
    manifest_path = csv_path.parent / "manifest.json"
    if not csv_path.is_file() or not manifest_path.is_file():
        raise FileNotFoundError(f"{cases}: not a cases export (expected cases.csv and manifest.json from "
                                "`lesionlens cases export`)")
    manifest = json.loads(manifest_path.read_text())
    hashes = {e["image"]: e["sha256"] for e in manifest.get("cases", [])}
    table = read_table(csv_path, "csv", group_column="group")
    if table.issues:
        raise ValueError(f"{csv_path}: {len(table.issues)} problem(s), first: {table.issues[0]}")
    known = {r.label for r in _split_rows(champion)}
    unknown = sorted(set(table.frame["label"]) - known)
    if unknown:
        raise ValueError(f"{csv_path}: labels {unknown} are not among the champion's training labels "
                         f"{sorted(known)}; a challenger is compared with the champion on the same classes")
    if not table.has_partitions():
        table = assign_partitions(join_copies(table), val_fraction, 0.0, seed)
    frame = table.frame
    out = []
    for path, label, group, partition in zip(frame["path"], frame["label"], frame["group"], frame["partition"]):
        relative = Path(path).resolve().relative_to(csv_path.parent.resolve()).as_posix()
        if relative not in hashes:
            raise ValueError(f"{csv_path}: {relative} is not in the export's manifest.json")
        out.append({"path": str(Path(path).resolve()), "label": label, "group": f"cases:{group}",
                    "partition": partition, "source": "cases", "sha256": hashes[relative]})
    return out, manifest.get("snapshot_sha256", "")


def join_copies(table: ImageTable, threshold: int = GROUPING_THRESHOLD) -> ImageTable:
    """The table with photos that are copies of each other (identical or altered: pHash over the 8
    dihedral views) in one group, so the split keeps them on one side. Two photos of one lesion sent
    as two cases are common (a retake, another visit), and training's leakage check refuses a split
    that separates them. The threshold is the leakage check's plus a margin: it hashes the decoded
    training-size images, this the files, and joining two groups too many only costs a little
    freedom in the split."""
    prints = scan_files(table.paths)
    parent = {g: g for g in table.frame["group"]}

    def find(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    groups = list(table.frame["group"])
    for pair in hash_pairs(prints.hashes, threshold, prints.hashable):
        parent[find(groups[pair.a])] = find(groups[pair.b])
    joined = [find(g) for g in groups]
    if joined == groups:
        return table
    frame = table.frame.copy()
    frame["group"] = joined
    return replace(table, frame=frame)


def _check_hashes(rows: list[dict]) -> None:
    """Every image must exist and still be the file its source recorded."""
    problems = []
    for r in rows:
        path = Path(r["path"])
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif r["sha256"] and file_digest(path) != r["sha256"]:
            problems.append(f"{path}: changed since it was recorded (sha256 differs)")
    if problems:
        shown = "\n".join(f"  {p}" for p in problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise ValueError(f"the snapshot's images are not what their sources recorded ({len(problems)}):\n{shown}{more}")
