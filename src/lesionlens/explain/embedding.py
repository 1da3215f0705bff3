"""A map of a data set as the network sees it: t-SNE of the penultimate features.

The embeddings are the input of the model's last layer, computed by
:func:`lesionlens.training.features.embed` (the features / head seam, as the data-quality check and
the ``features`` strategy use it): compute them once and hand them to this map and to
:mod:`lesionlens.explain.probes`. The map is scikit-learn's t-SNE (Barnes-Hut, PCA initialisation,
which makes it deterministic; the seed goes to the PCA and to t-SNE; embeddings wider than 50 are
first reduced to 50 principal components, the usual preparation that also makes it faster). Its
plots are coloured by class, by error (correct / wrong) and by a source column when one is given: a
cluster of one source that cuts across the classes is a shortcut the network can take. Distances
between clusters on a t-SNE map mean little; the probes give the numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lesionlens.explain.display import save_figure  # noqa: E402

PCA_DIMENSIONS = 50
PERPLEXITY = 30.0  # scikit-learn's default; lowered for small sets, where it must stay below N / 3


@dataclass
class EmbeddingMap:
    """2-D positions of the images, with what each point is coloured by."""

    points: np.ndarray  # N x 2
    classes: list[str]
    y_true: np.ndarray  # N class indices
    y_pred: np.ndarray | None = None  # N class indices, the bundle's decisions
    source: np.ndarray | None = None  # N values of a source column
    source_name: str = "source"
    ids: list[str] | None = None
    settings: dict | None = None

    @property
    def correct(self) -> np.ndarray | None:
        return None if self.y_pred is None else self.y_true == self.y_pred

    def to_dict(self) -> dict:
        out = {"method": "t-SNE", "settings": self.settings or {}, "n": len(self.points),
               "x": np.round(self.points[:, 0], 4).tolist(), "y": np.round(self.points[:, 1], 4).tolist(),
               "label": [self.classes[k] for k in self.y_true]}
        if self.ids is not None:
            out["image_id"] = list(self.ids)
        if self.y_pred is not None:
            out["predicted"] = [self.classes[k] for k in self.y_pred]
        if self.source is not None:
            out[self.source_name] = [str(v) for v in self.source]
        return out

    def lines(self) -> list[str]:
        s = self.settings or {}
        pca = f", PCA to {s['pca']}" if s.get("pca") else ""
        head = (f"Embedding map: t-SNE of {len(self.points):,} embeddings ({s.get('dimensions', '?')}-D{pca}), "
                f"perplexity {s.get('perplexity', '?')}, seed {s.get('seed', '?')}")
        out = [head]
        if self.y_pred is not None:
            out.append(f"  coloured by class, by error ({int((~self.correct).sum()):,} wrong)"
                       + (f" and by {self.source_name}" if self.source is not None else ""))
        return out

    def write_figures(self, out_dir: str | Path) -> dict[str, Path]:
        out_dir = Path(out_dir)
        views = {"embedding_class": ("class", np.array(self.classes)[self.y_true])}
        if self.y_pred is not None:
            views["embedding_error"] = ("prediction", np.where(self.correct, "correct", "wrong"))
        if self.source is not None:
            views["embedding_source"] = (self.source_name, np.asarray(self.source).astype(str))
        return {name: self._scatter(out_dir / f"{name}.png", title, values) for name, (title, values) in views.items()}

    def _scatter(self, path: Path, title: str, values: np.ndarray) -> Path:
        fig, ax = plt.subplots(figsize=(7, 6))
        kinds = list(dict.fromkeys(sorted(values)))
        palette = {"correct": "#95a5a6", "wrong": "#c0392b"}
        colours = plt.get_cmap("tab10" if len(kinds) <= 10 else "tab20")
        for i, kind in enumerate(kinds):
            on = values == kind
            ax.scatter(self.points[on, 0], self.points[on, 1], s=9, alpha=0.75, linewidths=0,
                       color=palette.get(kind, colours(i % colours.N)), label=f"{kind} ({int(on.sum()):,})")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=8, markerscale=2, loc="best", frameon=False)
        ax.set_title(f"t-SNE of the embeddings, coloured by {title}", fontsize=10)
        return save_figure(fig, path)


def tsne(embeddings: np.ndarray, seed: int = 0, perplexity: float = PERPLEXITY) -> tuple[np.ndarray, dict]:
    """N x 2 t-SNE positions of ``embeddings`` (N x D) and the settings used; the same input and seed
    give the same map."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) < 5:
        raise ValueError(f"an embedding map needs at least 5 embeddings as an N x D array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{int((~np.isfinite(x)).any(axis=1).sum())} embeddings hold NaN or infinite values")
    settings = {"dimensions": int(x.shape[1]), "pca": None, "seed": seed,
                "perplexity": float(min(perplexity, (len(x) - 1) / 3))}
    if x.shape[1] > PCA_DIMENSIONS and len(x) > PCA_DIMENSIONS:
        x = PCA(PCA_DIMENSIONS, random_state=seed).fit_transform(x)
        settings["pca"] = PCA_DIMENSIONS
    # one thread: on 2 busy cores t-SNE of 1,197 points took 44 s with OpenMP's threads and 6 s without
    with threadpool_limits(1):
        points = TSNE(2, perplexity=settings["perplexity"], init="pca", random_state=seed).fit_transform(x)
    return points, settings


def embedding_map(embeddings: np.ndarray, y_true: np.ndarray, classes: Sequence[str], y_pred: np.ndarray | None = None,
                  source: Sequence | None = None, source_name: str = "source", ids: Sequence[str] | None = None,
                  seed: int = 0, perplexity: float = PERPLEXITY) -> EmbeddingMap:
    """The t-SNE map of ``embeddings`` with the colourings: true class indices ``y_true`` into
    ``classes``, the bundle's decisions ``y_pred`` and a ``source`` column where given."""
    n = len(embeddings)
    given = {"y_true": y_true, "y_pred": y_pred, "source": source, "ids": ids}
    wrong = [f"{name} has {len(v)}" for name, v in given.items() if v is not None and len(v) != n]
    if wrong:
        raise ValueError(f"{n} embeddings but {', '.join(wrong)} values")
    y_true = np.asarray(y_true, dtype=np.int64)
    if y_true.min() < 0 or y_true.max() >= len(classes):
        raise ValueError(f"class indices must lie in 0..{len(classes) - 1}, got {y_true.min()}..{y_true.max()}")
    points, settings = tsne(embeddings, seed, perplexity)
    return EmbeddingMap(points, list(classes), y_true, None if y_pred is None else np.asarray(y_pred, dtype=np.int64),
                        None if source is None else np.asarray(source, dtype=object), source_name,
                        None if ids is None else list(ids), settings)
