"""One lesion or one picture on both sides of a split: found by group id and by copies.

:func:`split_leaks` names the leaks of a table with partitions, from its groups and from pairs of
copies already found. :func:`check_split` is the fast gate ``train`` runs on every split (pixel
digests and perceptual hashes of the decoded-image cache it has read anyway; no model);
:func:`check_against_training` is ``evaluate``'s: are the evaluated images in the bundle's training
partition, or altered copies of its images? :func:`enforce` refuses either, unless allowed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from lesionlens.data.table import ImageTable
from lesionlens.quality.duplicates import (
    HASH_THRESHOLD,
    Pair,
    cross_hash_pairs,
    exact_groups,
    hash_pairs,
)
from lesionlens.quality.fingerprint import DIHEDRAL, HASH_WORDS, fingerprint_arrays
from lesionlens.quality.result import Finding, text

log = logging.getLogger(__name__)

SHOWN = 10  # leaks named in an error message (all of them are in the returned findings)


class LeakageError(ValueError):
    """A split (or an evaluation) with leakage, refused; the message names the images."""


@dataclass
class LeakageCheck:
    """What the gate found, and how long it took."""

    findings: list[Finding] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # one line per finding, for a person
    seconds: float = 0.0
    images: int = 0

    @property
    def clean(self) -> bool:
        return not self.findings

    def by_evidence(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.code] = out.get(f.code, 0) + 1
        return out

    def record(self, allowed: bool) -> dict:
        """The card's record of the check: what was found and whether it was overridden."""
        return {"checked": True, "images": self.images, "leaks": len(self.findings), "by_evidence": self.by_evidence(),
                "allowed": allowed, "seconds": round(self.seconds, 2), "examples": self.lines[:SHOWN]}


def _value(frame, column: str, pos: int) -> str:
    return text(frame[column].iat[pos]) if column in frame else ""


def group_leaks(table: ImageTable) -> list[Finding]:
    """Groups (lesion / patient ids) with images in more than one partition: one finding per image
    outside the first partition the group appears in, paired with the group's first image there."""
    frame = table.frame
    findings = []
    first: dict[str, tuple[str, int]] = {}
    for pos in range(len(frame)):
        group, partition = _value(frame, "group", pos), _value(frame, "partition", pos)
        if not group or not partition:
            continue
        if group not in first:
            first[group] = (partition, pos)
        elif first[group][0] != partition:
            anchor_partition, anchor = first[group]
            findings.append(Finding("leakage", anchor, pos, None,
                                    f"group {group} is in {anchor_partition} and {partition}", "group"))
    return findings


def pair_leaks(table: ImageTable, pairs: list[Pair], code: str, what: str) -> list[Finding]:
    """The pairs whose two images are in different partitions."""
    frame = table.frame
    findings = []
    for p in pairs:
        pa, pb = _value(frame, "partition", p.a), _value(frame, "partition", p.b)
        if pa and pb and pa != pb:
            findings.append(Finding("leakage", p.a, p.b, p.score, f"{what} in {pa} and {pb}", code))
    return findings


def exact_pairs(digests: list[str | None]) -> list[Pair]:
    """Each member of a group of identical images paired with the group's first."""
    return [Pair(g[0], other, 0.0) for g in exact_groups(digests) for other in g[1:]]


def split_leaks(table: ImageTable, exact: list[Pair], copies: list[Pair],
                same_lesion: list[Pair] | None = None) -> list[Finding]:
    """Every leak of a table with partitions: by group, by identical pixels, by altered copy and,
    when embeddings were compared, by likely same lesion (for review)."""
    findings = group_leaks(table)
    findings += pair_leaks(table, exact, "exact_copy", "identical pixels")
    findings += pair_leaks(table, copies, "near_copy", "altered copies (pHash distance or feature-map cosine)")
    findings += pair_leaks(table, same_lesion or [], "same_lesion", "likely the same lesion (embedding cosine)")
    return findings


def describe(table: ImageTable, f: Finding) -> str:
    ids = table.frame["image_id"].astype(str).to_numpy()
    b = f" and {ids[f.b]}" if f.b is not None else ""
    score = f" ({f.score:g})" if f.score is not None and f.code != "exact_copy" else ""
    return f"{ids[f.a]}{b}: {f.reason}{score}"


def check_split(table: ImageTable, images: np.ndarray, threshold: int = HASH_THRESHOLD) -> LeakageCheck:
    """The gate of ``train``: groups across partitions, and identical or altered copies across
    partitions, from the decoded images ``images[table.frame.cache_row]`` (no model)."""
    started = time.perf_counter()
    prints = fingerprint_arrays(images, table.frame["cache_row"].to_numpy())
    table.frame["phash"] = [_hex(h[0]) for h in prints.hashes]  # kept in split.csv for evaluate's check
    copies = [p for p in hash_pairs(prints.hashes, threshold, prints.hashable)
              if prints.digests[p.a] != prints.digests[p.b]]
    findings = split_leaks(table, exact_pairs(prints.digests), copies)
    check = LeakageCheck(findings, [describe(table, f) for f in findings], time.perf_counter() - started, len(table))
    log.info("leakage check of %d images: %d leak(s) in %.1f s", len(table), len(findings), check.seconds)
    return check


def check_against_training(table: ImageTable, images: np.ndarray, rows: np.ndarray, training: list,
                           threshold: int = HASH_THRESHOLD) -> LeakageCheck:
    """The gate of ``evaluate``: evaluated images (``rows`` of ``table``) that are in the bundle's
    training partition (same file sha256) or are altered copies of its images (pHash, where the
    bundle's split.csv records them). ``training`` is the split rows of the images the bundle trained
    on (``Card.training_rows``: the train partition, and val too for a ``train_on_val`` run)."""
    started = time.perf_counter()
    train = list(training)
    by_sha = {r.sha256: r for r in train if r.sha256}
    frame = table.frame
    findings, lines = [], []
    for pos in rows:
        row = by_sha.get(_value(frame, "sha256", int(pos)))
        if row is not None:
            findings.append(Finding("leakage", int(pos), None, None,
                                    f"the same file as training image {row.image_id}", "exact_copy"))
    hashed = [r for r in train if getattr(r, "phash", "")]
    if hashed:
        prints = fingerprint_arrays(images, frame["cache_row"].to_numpy()[rows])
        reference = np.stack([np.repeat(_words(r.phash)[None], len(DIHEDRAL), axis=0) for r in hashed])
        exact = {f.a for f in findings}
        hashable = prints.hashable
        for p in cross_hash_pairs(prints.hashes, reference, threshold):
            pos = int(rows[p.a])
            if pos not in exact and hashable[p.a]:
                findings.append(Finding("leakage", pos, None, p.score,
                                        f"an altered copy of training image {hashed[p.b].image_id} "
                                        "(pHash distance)", "near_copy"))
    ids = frame["image_id"].astype(str).to_numpy()
    lines = [f"{ids[f.a]}: {f.reason}" + (f" ({f.score:g})" if f.score is not None else "") for f in findings]
    return LeakageCheck(findings, lines, time.perf_counter() - started, len(rows))


def enforce(check: LeakageCheck, allow: bool, what: str) -> None:
    """Refuse ``what`` when the check found leaks, naming them, unless ``allow``; then warn."""
    if check.clean:
        return
    shown = "\n".join(f"  {line}" for line in check.lines[:SHOWN])
    more = f"\n  ... and {len(check.lines) - SHOWN} more" if len(check.lines) > SHOWN else ""
    counts = ", ".join(f"{k} {v}" for k, v in sorted(check.by_evidence().items()))
    if not allow:
        raise LeakageError(f"{what}: {len(check.findings)} leak(s) between partitions ({counts}):\n{shown}{more}\n"
                           "Fix the split (or the data), or pass --allow-leakage to go on anyway (recorded).")
    log.warning("%s: %d leak(s) between partitions (%s), allowed by --allow-leakage:\n%s%s",
                what, len(check.findings), counts, shown, more)


def _hex(words: np.ndarray) -> str:
    return "".join(f"{int(w):016x}" for w in words)


def _words(text: str) -> np.ndarray:
    return np.array([int(text[i:i + 16], 16) for i in range(0, 16 * HASH_WORDS, 16)], dtype=np.uint64)
