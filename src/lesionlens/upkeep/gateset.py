"""The gate set: labelled images frozen once, by content, so every gate decision names exactly
which images it was taken on.

    lesionlens gate freeze ../shared/data/isic2017 --partition val --out gatesets/isic2017-val

A gate set is a folder:

    images/          copies of the images (a gate set does not change when its source does)
    manifest.csv     one row per image: image_id, path (relative), label, group, sha256, sex, age, site
                     (a CSV every LesionLens command reads as labelled data)
    gateset.json     format, digest, classes, counts per class and subgroup, where it came from

The digest is the sha256 of the manifest's content in canonical JSON (every image's hash, label
and metadata), so two gate sets with the same images and labels have the same digest wherever
they lie. Opening a gate set re-hashes every image and refuses one whose images or manifest
changed since it was frozen.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from lesionlens.digest import canonical_json, file_digest, json_digest

if TYPE_CHECKING:  # a type only: reading a gate set needs no pandas
    from lesionlens.data.table import ImageTable

FORMAT = "lesionlens-gateset/1"
MANIFEST = "manifest.csv"
INFO = "gateset.json"
IMAGES = "images"
SHOWN = 10  # problems named in an error message
# Subgroup dimensions of the gate, from the manifest's metadata columns.
DIMENSIONS = ("sex", "age_band", "site")


class GateSetError(ValueError):
    """A gate set that cannot be used as it is; the message names the folder, the file and the problem."""


@dataclass(frozen=True)
class GateImage:
    image_id: str
    path: str  # relative to the gate set's folder
    label: str
    group: str  # lesion or patient id; empty where the data had none
    sha256: str
    sex: str  # lower-case; empty where unknown
    age: str  # whole years; empty where unknown
    site: str


COLUMNS = tuple(f.name for f in fields(GateImage))


@dataclass(frozen=True)
class GateSet:
    path: Path
    digest: str
    classes: list[str]
    images: list[GateImage]
    source: dict  # {"name", "format", "partition"}: where it was frozen from (no absolute path)

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    @property
    def name(self) -> str:
        return self.path.name

    def counts(self) -> dict[str, int]:
        counts = Counter(i.label for i in self.images)
        return {c: counts[c] for c in self.classes}

    def subgroups(self) -> dict[str, list[str]]:
        """Dimension -> each image's subgroup ("unknown" where the data has no value), for the
        dimensions at least one image has a value for."""
        from lesionlens.data.metadata import subgroup_of

        out = {"sex": [subgroup_of("sex", i.sex) for i in self.images],
               "age_band": [subgroup_of("age", i.age) for i in self.images],
               "site": [subgroup_of("site", i.site) for i in self.images]}
        return {d: values for d, values in out.items() if any(v != "unknown" for v in values)}

    def table(self) -> ImageTable:
        """The gate set as the labelled table every reader produces (one row per manifest line)."""
        from lesionlens.data.table import check_table, make_table

        records = [{"image_id": i.image_id, "path": str(self.path / i.path), "label": i.label, "group": i.group or None,
                        "partition": None, "source": str(self.manifest), "row": line}
                   for line, i in enumerate(self.images, start=2)]
        return check_table(make_table(records, self.classes, "gateset", self.manifest))

    def lines(self) -> list[str]:
        """The console summary: size, classes, digest and the subgroups the gate can judge by."""
        counts = ", ".join(f"{c} {n}" for c, n in self.counts().items())
        out = [f"Gate set {self.path}: {len(self.images)} images ({counts})", f"  digest {self.digest}"]
        subgroups = self.subgroups()
        for dimension, values in subgroups.items():
            out.append(f"  {dimension}: " + ", ".join(f"{v} {n}" for v, n in sorted(Counter(values).items())))
        if not subgroups:
            out.append("  no sex, age or body-site metadata: the gate will judge all images together only")
        return out

    def to_dict(self) -> dict:
        """What gate.json says of the gate set."""
        return {"digest": self.digest, "name": self.name, "images": len(self.images), "classes": self.classes,
                "counts": self.counts(), "source": self.source,
                "subgroups": {d: dict(sorted(Counter(v).items())) for d, v in self.subgroups().items()}}


def manifest_digest(classes: list[str], images: list[GateImage]) -> str:
    """The gate set's identity: its classes and every image's row, in image-id order."""
    return json_digest({"format": FORMAT, "classes": list(classes),
                        "images": [asdict(i) for i in sorted(images, key=lambda i: i.image_id)]})


def freeze_gate_set(data: str | Path, out: str | Path, fmt: str = "auto", images: str | Path | None = None,
                    partition: str | None = None, exclude_trained_by: list[str | Path] = (),
                    on_bad_input: str = "stop", cache_dir: str | None = None, progress: bool = True) -> GateSet:
    """Copy the labelled images of ``data`` (optionally one ``partition`` of it, and without the
    images any bundle in ``exclude_trained_by`` trained on) into a new gate set ``out`` with their
    hashes, labels and metadata. Every image is decoded once first, so an unreadable one is
    reported (``on_bad_input`` stop) or left out (skip) now, not at gate time."""
    import pandas as pd

    from lesionlens.bundle.card import read_card
    from lesionlens.data.images import Preprocessing
    from lesionlens.data.load import prepare, read_table
    from lesionlens.data.metadata import read_metadata

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists; a gate set is frozen once: choose a new folder")
    table = read_table(data, fmt, images)
    if partition is not None:
        table = table.subset((table.frame["partition"] == partition).to_numpy())
        if len(table) == 0:
            raise ValueError(f"{data}: no images in the {partition!r} partition")
    # decoded small, only to prove every image readable (and to get the file hashes the bundles' split files use)
    table = prepare(table, Preprocessing(image_size=32), on_bad_input, cache_dir, progress=progress).table
    excluded = {}
    for bundle in exclude_trained_by:
        card = read_card(bundle, verify=False)
        trained = trained_on(table, card, cache_dir, progress)
        excluded[card.name] = int(trained.sum())
        table = table.subset(~trained)
    if len(table) == 0:
        raise ValueError(f"{data}: no readable labelled images to freeze"
                         + (f" (left out as training images: {excluded})" if excluded else ""))
    metadata = read_metadata(table)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / IMAGES).mkdir(parents=True)
    frame, used, rows = table.frame, set(), []
    for pos in range(len(frame)):
        image_id, source = str(frame["image_id"].iat[pos]), Path(frame["path"].iat[pos])
        name = re.sub(r"[^A-Za-z0-9._-]", "_", image_id)
        if name.lower() in used:
            name = f"{name}-{frame['sha256'].iat[pos][:8]}"
        used.add(name.lower())
        relative = f"{IMAGES}/{name}{source.suffix.lower()}"
        shutil.copyfile(source, tmp / relative)
        group = frame["group"].iat[pos]
        rows.append(GateImage(image_id, relative, str(frame["label"].iat[pos]),
                              "" if group is None or pd.isna(group) else str(group), str(frame["sha256"].iat[pos]),
                              metadata["sex"][pos], metadata["age"][pos], metadata["site"][pos]))
    rows.sort(key=lambda i: i.image_id)
    classes = [c for c in table.classes if any(i.label == c for i in rows)]
    with (tmp / MANIFEST).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerows([getattr(i, c) for c in COLUMNS] for i in rows)
    source = {"name": Path(data).name, "format": table.format, "partition": partition,
              "left_out_as_trained_on": excluded}
    gate_set = GateSet(out, manifest_digest(classes, rows), classes, rows, source)
    info = {"format": FORMAT, **{k: v for k, v in gate_set.to_dict().items() if k != "name"}}
    (tmp / INFO).write_bytes(canonical_json(info))
    if out.exists():
        out.rmdir()  # empty, checked above
    os.replace(tmp, out)
    return gate_set


def trained_on(table, card, cache_dir: str | None = None, progress: bool = True):
    """A mask of the rows of ``table`` that ``card``'s bundle trained on: the same file, or an altered
    copy by perceptual hash, decoded at the bundle's own preprocessing. This is the gate's own check
    (``gate.check_bundle``), so a set frozen with ``--exclude-trained-by`` is one the gate accepts."""
    import numpy as np

    from lesionlens.data.load import prepare
    from lesionlens.quality.leakage import check_against_training

    if len(table) == 0:
        return np.zeros(0, dtype=bool)
    data = prepare(table, card.preprocessing, "stop", cache_dir, progress=progress)
    check = check_against_training(data.table, data.images.array, np.arange(len(data.table)), card.training_rows())
    mask = np.zeros(len(table), dtype=bool)
    mask[[f.a for f in check.findings]] = True
    return mask


def open_gate_set(folder: str | Path, verify: bool = True) -> GateSet:
    """Read a gate set; with ``verify`` (always, before a gate) every image is re-hashed and the
    manifest checked against the digest recorded when it was frozen."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise GateSetError(f"{folder}: no such gate set folder (make one with `lesionlens gate freeze DATA --out {folder}`)")
    info_path, manifest = folder / INFO, folder / MANIFEST
    for path in (info_path, manifest):
        if not path.is_file():
            raise GateSetError(f"{folder}: not a gate set: no {path.name} (make one with `lesionlens gate freeze`)")
    try:
        info = json.loads(info_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise GateSetError(f"{info_path}: unreadable: {e}") from e
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        found = info.get("format") if isinstance(info, dict) else None
        raise GateSetError(f"{info_path}: unknown gate set format {found!r}; expected {FORMAT}")
    rows = _read_manifest(manifest)
    classes = info.get("classes")
    if not isinstance(classes, list) or not isinstance(info.get("digest"), str):
        raise GateSetError(f"{info_path}: damaged: no classes or digest")
    gate_set = GateSet(folder, info["digest"], classes, rows, info.get("source") or {})
    if verify:
        verify_gate_set(gate_set)
    return gate_set


def verify_gate_set(gate_set: GateSet) -> None:
    """Refuse a gate set whose manifest or images changed since it was frozen, naming them."""
    digest = manifest_digest(gate_set.classes, gate_set.images)
    if digest != gate_set.digest:
        raise GateSetError(f"{gate_set.manifest}: the manifest was changed after the gate set was frozen (its "
                           f"content hashes to {digest[:12]}, {INFO} records {gate_set.digest[:12]}); freeze a new gate set")
    unknown = sorted({i.label for i in gate_set.images} - set(gate_set.classes))
    if unknown:
        raise GateSetError(f"{gate_set.manifest}: labels {unknown} are not among the gate set's classes")
    problems = []
    for image in gate_set.images:
        path = gate_set.path / image.path
        if Path(image.path).is_absolute() or ".." in Path(image.path).parts:
            problems.append(f"{image.path}: not a path inside the gate set")
        elif not path.is_file():
            problems.append(f"{image.path}: missing")
        elif (found := file_digest(path)) != image.sha256:
            problems.append(f"{image.path}: sha256 {found[:12]}, frozen as {image.sha256[:12]}")
    if problems:
        shown = "\n".join(f"  {p}" for p in problems[:SHOWN])
        more = f"\n  ... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise GateSetError(f"{gate_set.path}: {len(problems)} of {len(gate_set.images)} gate images changed since "
                           f"the gate set was frozen:\n{shown}{more}\nA gate set is evidence: freeze a new one "
                           "rather than editing it.")


def _read_manifest(path: Path) -> list[GateImage]:
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise GateSetError(f"{path}: not a gate set manifest: no column {', '.join(missing)}")
            return [GateImage(**{c: row[c] or "" for c in COLUMNS}) for row in reader]
    except OSError as e:
        raise GateSetError(f"{path}: cannot read the manifest: {e.strerror or e}") from e
