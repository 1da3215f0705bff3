"""What a data-quality check found: one :class:`Finding` per flagged image or pair, gathered in a
queryable :class:`CheckResult` (by kind, as a table) and summarised for the console."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lesionlens.data.table import ImageTable

# The kinds of finding, in report order, with what each means.
KINDS = {
    "exact_duplicate": "identical decoded pixels",
    "near_duplicate": "altered copies: perceptual hashes within the threshold, or (with a network) feature maps "
                      "of the 8 dihedral views this close (cropped copies); any quarter turn or mirror image",
    "same_lesion": "possibly the same lesion photographed twice: close embeddings, for review",
    "leakage": "one lesion or one picture on both sides of the split",
    "conflicting_labels": "one picture (identical or an altered copy) with different labels",
    "image_quality": "blurry, too dark or light, low information, too small or an odd shape",
    "label_error": "suspected label error: the out-of-fold classifier is confident of another class",
}
CSV_COLUMNS = ("kind", "code", "image_id_a", "image_id_b", "path_a", "path_b", "partition_a", "partition_b",
               "label_a", "label_b", "score", "reason")


@dataclass(frozen=True)
class Finding:
    """One flagged image (``b`` None) or pair; ``a`` and ``b`` are positions in the checked table."""

    kind: str  # a key of KINDS
    a: int
    b: int | None
    score: float | None  # hash distance in bits, cosine similarity, label quality or the quality figure
    reason: str  # one line for a person
    code: str = ""  # the finer kind: image-quality code, or the evidence of a leak ("group", "copy", ...)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}; one of {list(KINDS)}")


@dataclass
class CheckResult:
    """Every finding of a check on ``table``, and which checks were skipped and why."""

    table: ImageTable
    findings: list[Finding] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # kind -> why it was not checked
    seconds: dict[str, float] = field(default_factory=dict)  # step -> wall time
    settings: dict[str, object] = field(default_factory=dict)  # thresholds and models used

    def of_kind(self, kind: str) -> list[Finding]:
        if kind not in KINDS:
            raise ValueError(f"unknown finding kind {kind!r}; one of {list(KINDS)}")
        return [f for f in self.findings if f.kind == kind]

    def counts(self) -> dict[str, int]:
        return {k: len(self.of_kind(k)) for k in KINDS}

    def image_ids(self, kind: str) -> set[str]:
        """The ids of every image some finding of ``kind`` names."""
        ids = self.table.frame["image_id"].astype(str).to_numpy()
        return {ids[p] for f in self.of_kind(kind) for p in (f.a, f.b) if p is not None}

    def to_frame(self) -> pd.DataFrame:
        """One row per finding, with both images' id, path, partition and label (CSV_COLUMNS)."""
        frame = self.table.frame
        cols = {c: frame[c].to_numpy() if c in frame else [None] * len(frame)
                for c in ("image_id", "path", "partition", "label")}

        def at(column: str, pos: int | None):
            if pos is None:
                return ""
            return text(cols[column][pos])

        rows = [{"kind": f.kind, "code": f.code,
                 "image_id_a": at("image_id", f.a), "image_id_b": at("image_id", f.b),
                 "path_a": at("path", f.a), "path_b": at("path", f.b),
                 "partition_a": at("partition", f.a), "partition_b": at("partition", f.b),
                 "label_a": at("label", f.a), "label_b": at("label", f.b),
                 "score": f.score, "reason": f.reason} for f in self.findings]
        return pd.DataFrame(rows, columns=list(CSV_COLUMNS))

    def write_csv(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.to_frame().to_csv(path, index=False)
        return path


def text(value) -> str:
    """A table cell as text: empty for None and NaN (pandas' missing values)."""
    return "" if value is None or pd.isna(value) else str(value)


def summary_lines(result: CheckResult) -> list[str]:
    """The console summary of a check: counts per kind, what was skipped and why, the time taken."""
    n = len(result.table)
    lines = [f"Checked {n:,} images of {result.table.source} ({result.table.format})"]
    counts = result.counts()
    for kind, meaning in KINDS.items():
        if kind in result.skipped:
            lines.append(f"  {kind:19s} skipped: {result.skipped[kind]}")
        else:
            lines.append(f"  {kind:19s} {counts[kind]:6,d}  {meaning}")
    quality = result.of_kind("image_quality")
    if quality:
        by_code: dict[str, int] = {}
        for f in quality:
            by_code[f.code] = by_code.get(f.code, 0) + 1
        lines.append("  image problems: " + ", ".join(f"{c} {k}" for c, k in sorted(by_code.items())))
    leaks = result.of_kind("leakage")
    if leaks:
        by_code = {}
        for f in leaks:
            by_code[f.code] = by_code.get(f.code, 0) + 1
        lines.append("  leakage by evidence: " + ", ".join(f"{c} {k}" for c, k in sorted(by_code.items())))
    if result.seconds:
        total = sum(result.seconds.values())
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
        lines.append(f"  time: {total:.1f} s ({steps})")
    return lines
