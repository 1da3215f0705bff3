"""Windows over a real case store (cases answered by the tiny bundle through the API): drift found
where the photos change, performance once labels arrive, the staleness clock, and bad input."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

import numpy as np
import pytest
from monitor_helpers import WINDOW
from sqlalchemy import update

from lesionlens.bundle.card import update_card
from lesionlens.cases import schema
from lesionlens.cases.store import CaseStore
from lesionlens.serving.runtime import BundleModel
from lesionlens.upkeep.identity import BundleIdentity
from lesionlens.upkeep.monitor import Monitor, OutputCache, answered_by, monitor_files
from lesionlens.upkeep.outputs import MonitorError
from lesionlens.upkeep.reference import load_reference


def run(m, **kwargs):
    return monitor_files(m.db, m.bundle, m.reference, WINDOW, m.images, **kwargs)


def copy_answered_by(m, tmp_path, version: str, case_ids: list[str] | None = None) -> CaseStore:
    """A copy of the store in which ``case_ids`` (default: all) were answered by model ``version``."""
    db = tmp_path / "cases.sqlite"
    shutil.copy(m.db, db)
    store = CaseStore.open(db, m.images)
    query = update(schema.cases) if case_ids is None else update(schema.cases).where(schema.cases.c.id.in_(case_ids))
    with store.engine.begin() as c:
        c.execute(query.values(model_version=version, model_digest=None))  # as stored before revision 0002
    return store


def test_windows_in_time_order_find_the_shift_and_not_the_in_distribution_cases(monitored):
    result = run(monitored)
    assert result.store["answered"] == 4 * WINDOW and result.pending == 0
    assert [w.cases for w in result.windows] == [WINDOW] * 4
    starts = [w.start for w in result.windows]
    assert starts == sorted(starts)
    assert [w.drift for w in result.windows] == [False, False, True, True]
    assert {"outputs", "embeddings"} <= set(result.windows[-1].fired)
    # the outputs recomputed from the stored photos are the answers the server stored
    assert result.stored_difference < 1e-5
    report = result.to_dict()
    assert report["format"] == "lesionlens-monitor/1" and report["latest"]["drift"] is True
    assert report["windows_with_drift"] == 2
    json.dumps(report, allow_nan=False)  # plain JSON, as the server returns it
    text = "\n".join(result.lines())
    assert "DRIFT" in text and "staleness" in text


def test_performance_per_window_and_overall_once_labels_arrive(monitored, tmp_path):
    db = tmp_path / "cases.sqlite"
    shutil.copy(monitored.db, db)
    store = CaseStore.open(db, monitored.images)
    records = {r.id: r for r in store.records()}
    labelled = monitored.case_ids[:WINDOW]  # the first window: its true colours
    truth = {}
    for i, case_id in enumerate(labelled):
        label = ("mel", "nv", "bcc")[i % 3]
        truth[case_id] = label
        store.add_label(case_id, label, "histo", reader="dr_a")
    store.add_label(monitored.case_ids[WINDOW], "nv", "histo", reader="dr_a")
    store.add_label(monitored.case_ids[WINDOW], "mel", "histo", reader="dr_b")  # disagreement: not settled
    store.close()
    result = monitor_files(db, monitored.bundle, monitored.reference, WINDOW, monitored.images)
    first, second = result.windows[0].performance, result.windows[1].performance
    assert first.labelled == WINDOW and second.labelled == 0 and result.overall.labelled == WINDOW
    model = BundleModel(monitored.bundle)
    probs = np.array([[records[c].probabilities[k] for k in model.classes] for c in labelled])
    decided = model.rule.decide(probs)["melanoma"]["positive"]
    is_mel = np.array([truth[c] == "mel" for c in labelled])
    sens = first.sensitivity["melanoma"]
    assert sens.n == is_mel.sum() and sens.successes == int((decided & is_mel).sum())
    spec = first.specificity["melanoma"]
    assert spec.n == (~is_mel).sum() and spec.successes == int((~decided & ~is_mel).sum())
    assert sens.low <= sens.estimate <= sens.high  # Wilson
    assert second.sensitivity["melanoma"].n == 0 and second.sensitivity["melanoma"].to_dict()["estimate"] is None
    assert result.staleness.labelled_newer == WINDOW


def test_staleness_counts_days_since_the_card_and_cases_newer_than_it(monitored):
    result = run(monitored)
    clock = result.staleness
    card_created = BundleModel(monitored.bundle).card.created
    assert clock.cutoff.isoformat() == card_created
    assert clock.newer == clock.cases == 4 * WINDOW and clock.share_newer == 1.0
    assert 0 <= clock.days < 1
    later = clock.cutoff + timedelta(days=30)
    assert clock.days_at(later) == pytest.approx(30.0)


def test_the_outputs_are_kept_between_runs(monitored, tmp_path):
    cache = tmp_path / "outputs.npz"
    first = run(monitored, cache=cache)
    assert cache.is_file()
    profile = load_reference(monitored.reference)
    kept = OutputCache.for_(BundleIdentity.of(monitored.bundle), profile).load(cache)
    assert len(kept.rows) == 4 * WINDOW
    second = run(monitored, cache=cache)
    assert [w.tests["outputs"].p_value for w in first.windows] == [w.tests["outputs"].p_value for w in second.windows]
    assert OutputCache("another bundle").load(cache).rows == {}  # never trusted for another bundle or reference


def test_cases_stored_before_the_digest_was_kept_count_by_their_card_version(monitored, tmp_path):
    version = load_reference(monitored.reference).bundle.version
    store = copy_answered_by(monitored, tmp_path, version, monitored.case_ids[:5])
    assert store.record(monitored.case_ids[0]).model_digest is None
    assert len(answered_by(store.records(), BundleIdentity.of(monitored.bundle))) == 4 * WINDOW
    store.close()


def test_only_the_cases_this_model_answered_are_monitored(monitored, tmp_path):
    store = copy_answered_by(monitored, tmp_path, "an older model", monitored.case_ids[:5])
    db = tmp_path / "cases.sqlite"
    identity = BundleIdentity.of(monitored.bundle)
    assert len(answered_by(store.records(), identity)) == 4 * WINDOW - 5
    store.close()
    result = monitor_files(db, monitored.bundle, monitored.reference, WINDOW, monitored.images)
    assert result.store["other_models"] == {"version an older model": 5}
    assert len(result.windows) == 3 and result.pending == 5


# -- bad input ----------------------------------------------------------------------------------


def test_a_missing_reference_is_refused_naming_the_file(monitored, tmp_path):
    with pytest.raises(MonitorError, match=r"nope\.npz: no reference profile there; make one"):
        monitor_files(monitored.db, monitored.bundle, tmp_path / "nope.npz", WINDOW, monitored.images)


def test_a_reference_made_for_another_bundle_is_refused(monitored, bundle_copy):
    update_card(bundle_copy, {"inference": {"tta": "none"}}, by="test")  # same weights, another bundle digest
    with pytest.raises(MonitorError, match="was made for bundle .* not for bundle"):
        monitor_files(monitored.db, bundle_copy, monitored.reference, WINDOW, monitored.images)


def test_a_damaged_reference_is_refused(monitored, tmp_path):
    damaged = tmp_path / "reference.npz"
    with np.load(monitored.reference, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["probabilities"] = arrays["probabilities"][::-1].copy()
    np.savez(damaged, **arrays)
    with pytest.raises(MonitorError, match="does not match its digest"):
        load_reference(damaged)
    damaged.write_bytes(b"not a zip file")
    with pytest.raises(MonitorError, match="not a readable reference profile"):
        load_reference(damaged)


def test_a_window_the_reference_has_no_thresholds_for_is_refused(monitored):
    with pytest.raises(MonitorError, match=r"no thresholds for windows of 7 cases \(it has: 10\)"):
        monitor_files(monitored.db, monitored.bundle, monitored.reference, 7, monitored.images)


def test_an_empty_store_and_a_store_without_this_models_cases_are_refused(monitored, tmp_path):
    monitor = Monitor(BundleModel(monitored.bundle), BundleIdentity.of(monitored.bundle),
                      load_reference(monitored.reference))
    empty = CaseStore.open(tmp_path / "empty.sqlite")
    with pytest.raises(MonitorError, match="empty.sqlite.*no cases yet"):
        monitor.run(empty, WINDOW)
    empty.close()
    store = copy_answered_by(monitored, tmp_path, "v0")
    with pytest.raises(MonitorError, match=r"none of its 40 cases were answered by .*: version v0 \(40\)"):
        monitor.run(store, WINDOW)
    store.close()


def test_a_missing_photo_is_named(monitored, tmp_path):
    db = tmp_path / "cases.sqlite"
    shutil.copy(monitored.db, db)
    images = tmp_path / "images"
    shutil.copytree(monitored.images, images)
    store = CaseStore.open(db, images)
    record = store.record(monitored.case_ids[3])
    store.images.path(record.image).unlink()
    store.close()
    with pytest.raises(MonitorError, match=f"photo of 1 case.*{monitored.case_ids[3]}.*cases check"):
        monitor_files(db, monitored.bundle, monitored.reference, WINDOW, images)
