"""The reference profile: which images it is made of (never those the bundle trained on), its file
(no pickle, digest checked) and what it refuses."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from lesionlens.bundle.split import read_split
from lesionlens.upkeep.identity import BundleIdentity
from lesionlens.upkeep.outputs import MonitorError
from lesionlens.upkeep.reference import load_reference, profile_of, reference_images
from lesionlens.upkeep.settings import ReferenceSettings


def test_by_default_the_reference_is_the_bundles_validation_partition(exported_bundle):
    images = reference_images(exported_bundle)
    val = [r for r in read_split(exported_bundle) if r.partition == "val"]
    assert [str(p) for p in images.paths] == [r.path for r in val] and len(val) > 0
    assert "validation partition" in images.source and "split.csv" in images.source


def test_given_data_the_images_the_bundle_trained_on_are_left_out(exported_bundle):
    data = exported_bundle.parent / "images"  # what the tiny bundle was trained and validated on
    images = reference_images(exported_bundle, data)
    val = {r.sha256 for r in read_split(exported_bundle) if r.partition == "val"}
    assert len(images.paths) == len(val)
    trained = sum(1 for r in read_split(exported_bundle) if r.partition == "train")
    assert f"({trained} it trained on left out)" in images.source


def test_a_split_file_whose_images_moved_is_named(bundle_copy, tmp_path):
    split = bundle_copy / "split.csv"
    rows = list(csv.DictReader(split.open()))
    for r in rows:
        r["path"] = str(tmp_path / "gone" / r["image_id"])
    with split.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(MonitorError, match=r"split\.csv: \d+ of its \d+ validation images are not where it says"):
        reference_images(bundle_copy)


def test_too_few_reference_images_for_the_windows_is_refused(exported_bundle):
    identity = BundleIdentity.of(exported_bundle)
    probs = np.full((15, 3), 1 / 3)
    with pytest.raises(MonitorError, match="15 reference images cannot calibrate windows of 10"):
        profile_of(identity, ["mel", "nv", "bcc"], "fifteen images", probs, None, np.zeros(15, bool),
                   ReferenceSettings(windows=(10, 20)))


def test_the_profile_file_round_trips_and_names_its_bundle(exported_bundle, tmp_path):
    rng = np.random.default_rng(0)
    identity = BundleIdentity.of(exported_bundle)
    probs = rng.dirichlet(np.ones(3), 60)
    emb = rng.normal(size=(60, 12)).astype(np.float32)
    flagged = rng.random(60) < 0.1
    profile = profile_of(identity, ["mel", "nv", "bcc"], "sixty images", probs, emb, flagged,
                         ReferenceSettings(windows=(10, 20), draws=50, pca_dims=4, permutations=50))
    path = profile.save(tmp_path / "sub" / "ref.npz")
    again = load_reference(path)
    assert again.digest == profile.digest and again.bundle == identity
    assert np.array_equal(again.sample.probabilities, profile.sample.probabilities)
    assert np.array_equal(again.sample.embeddings, profile.sample.embeddings)
    assert np.array_equal(again.sample.flagged, flagged)
    assert again.calibrations == profile.calibrations and sorted(again.calibrations) == [10, 20]
    assert again.projection.components.shape == (4, 12) and 0 < again.projection.explained < 1
    assert np.allclose(again.projection(emb), profile.sample.embeddings)
    assert again.class_mix() == profile.class_mix()
    with np.load(path, allow_pickle=False) as f:  # plain arrays and one JSON string: no pickle needed
        assert set(f.files) == {"meta", "probabilities", "embeddings", "flagged", "pca_mean", "pca_components"}
    # without embeddings (an export without feature maps) the profile says so and still works
    plain = profile_of(identity, ["mel", "nv", "bcc"], "sixty images", probs, None, flagged,
                       ReferenceSettings(windows=(10,), draws=50))
    plain_again = load_reference(plain.save(tmp_path / "plain.npz"))
    assert plain_again.projection is None and list(plain_again.calibrations[10].thresholds) == [
        "outputs", "class_mix", "quality"]
    assert any("embeddings: none" in line for line in plain_again.summary_lines())


def test_another_format_is_refused(tmp_path, exported_bundle):
    path = tmp_path / "other.npz"
    np.savez(path, meta=np.array('{"format": "something-else/1"}'), probabilities=np.zeros((2, 2)))
    with pytest.raises(MonitorError, match="other.npz: not a reference profile of this LesionLens"):
        load_reference(path)


def test_a_bundle_that_trained_on_its_validation_images_has_no_default_reference(bundle_copy, exported_bundle):
    card = bundle_copy / "card.json"
    raw = json.loads(card.read_text())
    raw["validation"]["seen_in_training"] = True  # what a train_on_val run writes
    card.write_text(json.dumps(raw))
    with pytest.raises(MonitorError, match="trained on its validation images too .train_on_val.; give images"):
        reference_images(bundle_copy)
    with pytest.raises(MonitorError, match="the bundle trained on all of its 36 images"):
        reference_images(bundle_copy, exported_bundle.parent / "images")
