"""The two data-set-wide looks of ``lesionlens explain`` as single results: inside the network
(one image's feature maps, the first layer's filters, top-9 patches per channel) and the embedding
(a t-SNE map and linear probes for nuisance variables)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lesionlens.explain.subject import FEATURES, Subject

if TYPE_CHECKING:
    from lesionlens.explain.embedding import EmbeddingMap
    from lesionlens.explain.features import FeatureMaps
    from lesionlens.explain.filters import Filters
    from lesionlens.explain.inputs import Images
    from lesionlens.explain.patches import TopPatches
    from lesionlens.explain.probes import ProbeReport


@dataclass
class Inside:
    feature_maps: FeatureMaps
    filters: Filters
    patches: TopPatches

    def to_dict(self) -> dict:
        return {"feature_maps": self.feature_maps.to_dict(), "filters": self.filters.to_dict(),
                "top_patches": self.patches.to_dict()}

    def lines(self) -> list[str]:
        return [*self.feature_maps.lines(), *self.filters.lines(), *self.patches.lines()]

    def write_figures(self, out: str | Path) -> dict[str, Path]:
        return {**self.feature_maps.write_figures(out), **self.filters.write_figures(out),
                **self.patches.write_figures(out)}


@dataclass
class Embedding:
    map: EmbeddingMap
    probes: ProbeReport

    def to_dict(self) -> dict:
        return {"map": self.map.to_dict(), "probes": self.probes.to_dict()}

    def lines(self) -> list[str]:
        return [*self.map.lines(), *self.probes.lines()]

    def write_figures(self, out: str | Path) -> dict[str, Path]:
        return {**self.map.write_figures(out), **self.probes.write_figures(out)}


def middle_layer(subject: Subject) -> str:
    """The default layer for top patches: the middle stage, whose units see parts of a lesion (the
    last stage's see most of the image, the first's a few pixels)."""
    stages = [layer.name for layer in subject.layers() if layer.name != FEATURES]
    return stages[len(stages) // 2] if stages else FEATURES


def look_inside(subject: Subject, images: np.ndarray, ids: list[str], layer: str | None = None) -> Inside:
    from lesionlens.explain.features import feature_maps
    from lesionlens.explain.filters import first_filters
    from lesionlens.explain.patches import top_patches

    layer = layer or middle_layer(subject)
    subject.layer(layer)  # an unknown name fails here, naming the known ones
    return Inside(feature_maps(subject.net, images[0], subject.preprocessing), first_filters(subject.net),
                  top_patches(subject.net, images, subject.preprocessing, layer, ids=ids))


def embed_and_probe(subject: Subject, images: Images, targets: np.ndarray, n: int, probes: tuple[str, ...] = (),
                    seed: int = 0) -> Embedding:
    """Penultimate features of the first ``n`` images: their t-SNE map (coloured by class, error and
    the first probed column) and linear probes of the label (the reference), the metadata the data
    has (sex, age band, site) and the ``probes`` columns, folds grouped by lesion / patient."""
    import pandas as pd

    from lesionlens.data.metadata import subgroup_of
    from lesionlens.explain.embedding import embedding_map
    from lesionlens.explain.probes import probe_columns
    from lesionlens.explain.run import _label_indices
    from lesionlens.training.features import embed

    rows = np.arange(min(n, len(images)))
    features = embed(subject.net, images.array, rows, subject.preprocessing)
    y_true = _label_indices(subject, images)[rows]
    known = y_true >= 0
    frame = pd.DataFrame({"label": [images.labels[i] for i in rows]})
    if images.groups is not None:
        frame["group"] = [images.groups[i] or f"image-{i}" for i in rows]
    for name, values in images.metadata.items():
        column = "age_band" if name == "age" else name
        frame[column] = [subgroup_of(name, values[i]) if name in ("age", "sex", "site") else values[i] for i in rows]
    columns = [c for c in frame.columns if c not in ("label", "group")]
    source = next((c for c in probes if c in frame.columns), None)
    emap = embedding_map(features[known], y_true[known], subject.classes, targets[rows][known],
                         source=frame[source][known].tolist() if source else None, source_name=source or "source",
                         ids=[images.ids[i] for i in rows[known]], seed=seed)
    report = probe_columns(features, frame, columns, group_column="group" if "group" in frame else None, seed=seed,
                           where=images.source)
    return Embedding(emap, report)
