"""Over a data set: the seeded t-SNE map and its figures, and linear probes that find a planted
variable, miss a random one, respect lesion groups and say what they left out."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lesionlens.explain.embedding import EmbeddingMap, embedding_map, tsne
from lesionlens.explain.probes import linear_probe, probe_columns


def _data(n_groups: int = 60, per_group: int = 2, dims: int = 12, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """Embeddings of ``n_groups`` lesions photographed ``per_group`` times; dimension 0 encodes the
    lesion's ``source`` (3 values), nothing encodes ``noise`` (3 values, also fixed per lesion)."""
    rng = np.random.default_rng(seed)
    source = rng.integers(0, 3, n_groups)
    noise = rng.integers(0, 3, n_groups)
    group = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(0, 1, (len(group), dims))
    x[:, 0] += 4.0 * source[group]
    frame = pd.DataFrame({"group": [f"HAM_{g}" for g in group], "source": np.array(["a", "b", "c"])[source[group]],
                          "noise": np.array(["x", "y", "z"])[noise[group]],
                          "label": np.array(["nv", "mel"])[group % 2]})
    return x, frame


def test_tsne_is_seeded_and_deterministic():
    x, _ = _data(20, dims=60)
    a, settings = tsne(x, seed=3)
    b, _ = tsne(x, seed=3)
    assert a.shape == (40, 2) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert settings == {"dimensions": 60, "pca": None, "seed": 3, "perplexity": 13.0}
    with pytest.raises(ValueError, match="NaN or infinite"):
        tsne(np.where(np.eye(40, 60) > 0, np.nan, x))


def test_embedding_map_figures_and_dict(tmp_path):
    x, frame = _data(30, dims=60)
    y_true = (frame["label"] == "mel").to_numpy().astype(int)
    y_pred = y_true.copy()
    y_pred[:7] = 1 - y_pred[:7]
    result = embedding_map(x, y_true, ["nv", "mel"], y_pred, frame["source"], "dataset",
                           ids=[f"ISIC_{i}" for i in range(60)], seed=0)
    assert result.settings["pca"] == 50 and int((~result.correct).sum()) == 7
    d = json.loads(json.dumps(result.to_dict()))
    assert d["n"] == 60 and d["dataset"][:3] == list(frame["source"][:3]) and d["predicted"][0] != d["label"][0]
    assert any("7 wrong" in line for line in result.lines())
    figures = result.write_figures(tmp_path)
    assert sorted(figures) == ["embedding_class", "embedding_error", "embedding_source"]
    for path in figures.values():
        with Image.open(path) as im:
            im.load()
    only_class = EmbeddingMap(result.points, ["nv", "mel"], y_true).write_figures(tmp_path / "plain")
    assert list(only_class) == ["embedding_class"]
    with pytest.raises(ValueError, match="60 embeddings but y_pred has 59"):
        embedding_map(x, y_true, ["nv", "mel"], y_pred[:59])
    with pytest.raises(ValueError, match=r"class indices must lie in 0..1"):
        embedding_map(x, y_true + 1, ["nv", "mel"])


def test_a_probe_finds_a_planted_variable_and_not_a_random_one(tmp_path):
    x, frame = _data()
    report = probe_columns(x, frame, ["source", "noise"], seed=0, n_resamples=300)
    probes = {p.variable: p for p in report.probes}
    assert list(probes) == ["label", "source", "noise"]  # the class label first, as the reference
    source, noise = probes["source"], probes["noise"]
    assert source.chance == pytest.approx(1 / 3) and source.grouped
    assert source.balanced_accuracy.estimate > 0.85 and source.above_chance  # ~0.9 for a 4-sigma shift
    assert source.balanced_accuracy.low > max(source.permuted)
    assert not noise.above_chance and abs(noise.balanced_accuracy.estimate - 1 / 3) < 0.15
    assert len(source.permuted) == 5 and all(abs(v - 1 / 3) < 0.2 for v in source.permuted)
    lines = report.lines()
    assert any("source (3 values)" in line and "ABOVE chance" in line for line in lines)
    assert any("noise (3 values)" in line and "not above chance" in line for line in lines)
    json.dumps(report.to_dict())
    with Image.open(report.write_figures(tmp_path)["probes"]) as im:
        im.load()


def test_folds_are_grouped_by_lesion():
    """Twins of one lesion share an embedding and a random label: a probe that split them across
    folds would read each label off its twin; grouped folds leave it at chance."""
    rng = np.random.default_rng(1)
    n_groups, dims = 100, 200
    group = np.repeat(np.arange(n_groups), 2)
    x = rng.normal(0, 1, (n_groups, dims))[group] + rng.normal(0, 0.01, (2 * n_groups, dims))
    label = rng.integers(0, 2, n_groups)[group]
    leaky = linear_probe(x, label, None, "label", permutations=0, n_resamples=200)
    grouped = linear_probe(x, label, group, "label", permutations=0, n_resamples=200)
    assert leaky.balanced_accuracy.estimate > 0.75  # ~0.87: most twins give their label away
    assert abs(grouped.balanced_accuracy.estimate - 0.5) < 0.15 and not grouped.above_chance


def test_values_with_too_few_groups_are_left_out_with_a_reason():
    x, frame = _data()
    frame.loc[frame["group"].isin(["HAM_0", "HAM_1", "HAM_2"]), "source"] = "rare"
    frame.loc[5, "noise"] = None
    frame["single"] = "one"
    report = probe_columns(x, frame, ["source", "single"], n_resamples=100, permutations=1, where="metadata.csv")
    source = next(p for p in report.probes if p.variable == "source")
    assert "rare" not in source.values and source.left_out == {"rare": "6 images from 3 groups, fewer than the 5 folds"}
    assert "left out 'rare'" in "\n".join(report.lines())
    assert "a probe needs two" in report.skipped["single"]
    assert linear_probe(x, frame["noise"], frame["group"], permutations=0, n_resamples=50).counts.keys() == {"x", "y", "z"}
    assert sum(linear_probe(x, frame["noise"], frame["group"], permutations=0, n_resamples=50).counts.values()) == 119
    with pytest.raises(ValueError, match="metadata.csv has no column 'dataset'; its columns are group, source"):
        probe_columns(x, frame, ["dataset"], where="metadata.csv")
