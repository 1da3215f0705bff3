"""The data-quality check of a whole table: the library side of ``lesionlens check``.

    table -> one full-resolution pass (pixel digests, dihedral pHashes, sizes, quality figures)
          -> exact and near duplicates (hashes) -> [a network: altered copies by feature maps,
             same-lesion pairs, suspected label errors]
          -> leakage across partitions, conflicting labels, image-quality problems -> CheckResult

:func:`check_images` takes an :class:`~lesionlens.data.table.ImageTable` (any reader's, or one a
case store builds from its database) and, optionally, one embedding and one set of copy
descriptors (quality.copies) per row; :func:`check_path` reads a data path and computes both from a
bundle or ImageNet weights first. An altered copy is a pair the hash or the copy descriptors call
one picture; "possibly the same lesion" is a pair of close ordinary embeddings, for review.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from lesionlens.data.table import ImageTable
from lesionlens.quality.copies import COPY_THRESHOLD, copy_pairs
from lesionlens.quality.duplicates import (
    EMBEDDING_THRESHOLD,
    HASH_THRESHOLD,
    Pair,
    embedding_pairs,
    hash_pairs,
)
from lesionlens.quality.fingerprint import scan_files
from lesionlens.quality.image import problems_of
from lesionlens.quality.labels import find_label_issues, out_of_fold_probabilities
from lesionlens.quality.leakage import exact_pairs, split_leaks
from lesionlens.quality.result import CheckResult, Finding, text

log = logging.getLogger(__name__)

NO_MODEL = ("no embeddings: pass --bundle B (a trained bundle) or --weights DIR (ImageNet weights, e.g. "
            "../shared/weights) to compare embeddings")


def check_images(table: ImageTable, embeddings: np.ndarray | None = None, embedding_source: str | None = None,
                 hash_threshold: int = HASH_THRESHOLD, embedding_threshold: float = EMBEDDING_THRESHOLD,
                 label_errors: bool = True, seed: int = 0, workers: int | None = None,
                 progress: bool = False, copy_descriptors: np.ndarray | None = None,
                 copy_threshold: float = COPY_THRESHOLD) -> CheckResult:
    """Every finding on ``table``'s images; ``embeddings`` (one row per table row) enable the
    same-lesion pairs and the suspected label errors; ``copy_descriptors`` (N x 8 x D, from
    quality.copies) find altered copies the hash misses (cropped ones)."""
    result = CheckResult(table, settings={"hash_threshold_bits": hash_threshold, "hash": "pHash 256 bits, 8 dihedral views",
                                          "embedding_threshold": embedding_threshold,
                                          "embeddings": embedding_source or "none",
                                          "copy_threshold": copy_threshold if copy_descriptors is not None else "none"})
    clock = time.perf_counter()
    prints = scan_files(table.paths, workers, progress)
    result.seconds["scan"] = time.perf_counter() - clock
    result.settings["unreadable"] = len(prints.failures)
    valid = prints.valid
    if embeddings is not None and len(embeddings) != len(table):
        raise ValueError(f"{len(embeddings)} embeddings for {len(table)} images")
    if copy_descriptors is not None and len(copy_descriptors) != len(table):
        raise ValueError(f"{len(copy_descriptors)} copy descriptors for {len(table)} images")

    clock = time.perf_counter()
    exact = exact_pairs(prints.digests)
    same_pixels = {(p.a, p.b) for p in exact}
    groups = {i: g[0] for g in _groups(exact) for i in g}
    copies = [p for p in hash_pairs(prints.hashes, hash_threshold, prints.hashable)
              if groups.get(p.a, -1) != groups.get(p.b, -2)]
    result.findings += [Finding("exact_duplicate", p.a, p.b, 0.0, "identical decoded pixels") for p in exact]
    result.findings += [Finding("near_duplicate", p.a, p.b, p.score,
                                f"altered copies: pHash distance {p.score:g} of 256 bits") for p in copies]
    result.seconds["duplicates"] = time.perf_counter() - clock
    hashed = copies
    if copy_descriptors is not None:
        clock = time.perf_counter()
        known = same_pixels | {(p.a, p.b) for p in copies}
        mapped = [p for p in copy_pairs(copy_descriptors, copy_threshold, valid)
                  if (p.a, p.b) not in known and groups.get(p.a, -1) != groups.get(p.b, -2)]
        result.findings += [Finding("near_duplicate", p.a, p.b, p.score,
                                    f"altered copies: feature-map cosine {p.score:.3f} (closest of 8 dihedral views)")
                            for p in mapped]
        copies = copies + mapped
        result.seconds["copies"] = time.perf_counter() - clock

    lesion: list[Pair] = []
    if embeddings is not None:
        clock = time.perf_counter()
        known = same_pixels | {(p.a, p.b) for p in copies}
        lesion = [p for p in embedding_pairs(embeddings, embedding_threshold, valid) if (p.a, p.b) not in known]
        result.findings += [Finding("same_lesion", p.a, p.b, p.score,
                                    f"possibly the same lesion: embedding cosine {p.score:.3f}") for p in lesion]
        result.seconds["embeddings"] = time.perf_counter() - clock
    else:
        result.skipped["same_lesion"] = NO_MODEL

    if table.has_partitions():
        result.findings += split_leaks(table, exact, copies, lesion)
    else:
        result.skipped["leakage"] = "the data has no partitions (train / val / test) to leak between"
    result.findings += _conflicts(table, exact + copies, {(p.a, p.b) for p in hashed})
    for i, m in enumerate(prints.measures):
        for problem in problems_of(m) if m is not None else []:
            result.findings.append(Finding("image_quality", i, None, problem.value, problem.message, problem.code))

    if embeddings is None:
        result.skipped["label_error"] = NO_MODEL.replace("compare embeddings", "fit the out-of-fold classifier")
    elif not label_errors:
        result.skipped["label_error"] = "not asked for (--no-label-errors)"
    else:
        clock = time.perf_counter()
        result.findings += _label_errors(table, embeddings, valid, seed)
        result.seconds["label errors"] = time.perf_counter() - clock
    return result


def _groups(exact: list[Pair]) -> list[list[int]]:
    out: dict[int, list[int]] = {}
    for p in exact:
        out.setdefault(p.a, [p.a]).append(p.b)
    return list(out.values())


def _conflicts(table: ImageTable, pairs: list[Pair], hashed: set[tuple[int, int]]) -> list[Finding]:
    labels = table.frame["label"].astype(str).to_numpy()

    def how(p: Pair) -> str:
        if (p.a, p.b) not in hashed:
            return f" (feature-map cosine {p.score:.3f})" if p.score != 0 else " (identical pixels)"
        return f" (pHash distance {p.score:g})"

    return [Finding("conflicting_labels", p.a, p.b, p.score, f"one picture labelled {labels[p.a]} and {labels[p.b]}" + how(p))
            for p in pairs if labels[p.a] != labels[p.b]]


def _label_errors(table: ImageTable, embeddings: np.ndarray, valid: np.ndarray, seed: int) -> list[Finding]:
    rows = np.flatnonzero(valid)
    targets = table.targets()[rows]
    groups = [text(g) for g in table.frame["group"].to_numpy()[rows]]
    groups = np.array([g or f"__image_{i}" for i, g in enumerate(groups)]) if any(groups) else None
    probs = out_of_fold_probabilities(embeddings[rows], targets, len(table.classes), groups, seed=seed)
    quality = find_label_issues(probs, targets)
    classes = table.classes
    findings = []
    for k in np.flatnonzero(quality.suspected):
        given, likely = classes[quality.targets[k]], classes[quality.likely[k]]
        findings.append(Finding(
            "label_error", int(rows[k]), None, round(float(quality.scores[k]), 4),
            f"labelled {given} (p={quality.scores[k]:.2f} out of fold); looks like {likely} "
            f"(p={quality.probabilities[k, quality.likely[k]]:.2f})", likely))
    return sorted(findings, key=lambda f: f.score)


def check_path(data: str | Path, fmt: str = "auto", images: str | Path | None = None, bundle: str | Path | None = None,
               weights: str | Path | None = None, architecture: str = "efficientnet_lite0",
               cache_dir: str | Path | None = None, label_errors: bool = True, progress: bool = True) -> CheckResult:
    """Read ``data`` (any layout the project reads), leave out the rows it cannot use, embed the
    images with ``bundle``'s model or ImageNet ``weights`` where given, and check it."""
    from lesionlens.data.load import read_table

    table = read_table(data, fmt, images)
    if table.bad_rows:
        log.warning("leaving out %d of %d rows the reader could not use; first: %s", len(table.bad_rows),
                    len(table), table.issues[0])
        table = table.subset(~np.isin(np.arange(len(table)), sorted(table.bad_rows)))
    return check_table(replace(table, issues=[]), bundle, weights, architecture, cache_dir, label_errors, progress)


def check_table(table: ImageTable, bundle: str | Path | None = None, weights: str | Path | None = None,
                architecture: str = "efficientnet_lite0", cache_dir: str | Path | None = None,
                label_errors: bool = True, progress: bool = True, copy_threshold: float = COPY_THRESHOLD) -> CheckResult:
    """Embed ``table``'s images with ``bundle``'s model or ImageNet ``weights`` where given, and
    check it (the case store's table comes here directly)."""
    embeddings, descriptors, source, seconds = None, None, None, {}
    if bundle is not None or weights is not None:
        from lesionlens.quality.embeddings import describe_copies, embed_table

        clock = time.perf_counter()
        embeddings, source = embed_table(table, bundle, weights, architecture, cache_dir, progress)
        seconds["embedding"] = time.perf_counter() - clock
        clock = time.perf_counter()
        descriptors, copy_source = describe_copies(table, bundle, weights, architecture, cache_dir, progress)
        seconds["copy descriptors"] = time.perf_counter() - clock
        source = f"{source}; copies: {copy_source}"
    result = check_images(table, embeddings, source, label_errors=label_errors, progress=progress,
                          copy_descriptors=descriptors, copy_threshold=copy_threshold)
    result.seconds = {**seconds, **result.seconds}
    return result
