"""Exports for training: only consented, settled cases; a CSV that `train --data` reads as it is;
a manifest naming every case, label version and hash; erased cases gone from later exports."""

from __future__ import annotations

import csv
import json

import pytest
from case_helpers import clean, prediction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lesionlens.cases.export import export_cases
from lesionlens.cases.store import CaseMetadata, CaseStore


def rows(table):
    with open(table) as f:
        return list(csv.DictReader(f))


def test_export_keeps_only_consented_settled_cases(store, tmp_path):
    ok = store.add(clean(1), CaseMetadata(consent_research=True, patient_id="p1", lesion_id="l1", age=40,
                                          site="back", consent_version="v2"), prediction()).id
    store.add_label(ok, "mel", "histo", reader="a")
    no_consent = store.add(clean(2), CaseMetadata(consent_research=False), prediction()).id
    store.add_label(no_consent, "mel", "histo", reader="a")
    store.add(clean(3), CaseMetadata(consent_research=True), prediction())  # unlabelled
    disputed = store.add(clean(4), CaseMetadata(consent_research=True), prediction()).id
    store.add_label(disputed, "mel", "single_reader", reader="a")
    store.add_label(disputed, "nv", "single_reader", reader="b")
    result = export_cases(store, tmp_path / "export")
    assert result.cases == 1
    assert result.left_out == {"no research consent": 1, "unlabelled": 1, "readers disagree and no adjudication yet": 1}
    (row,) = rows(result.table)
    assert row["case_id"] == ok and row["label"] == "mel" and row["label_source"] == "histo"
    assert row["group"] == "p1" and row["lesion"] == "l1" and row["age"] == "40" and "partition" not in row
    assert (result.folder / row["image"]).read_bytes() == store.image_path(ok).read_bytes()
    manifest = json.loads(result.manifest.read_text())
    assert [c["case_id"] for c in manifest["cases"]] == [ok]
    assert manifest["cases"][0]["label_version"].startswith("labels:")
    assert manifest["snapshot_sha256"] == result.snapshot_sha256
    assert "lesionlens-test" not in manifest["database"]  # the test server's password is redacted
    store.adjudicate(disputed, "nv", "consensus", adjudicator="chief")
    again = export_cases(store, tmp_path / "export2")
    assert again.cases == 2 and again.snapshot_sha256 != result.snapshot_sha256
    with pytest.raises(FileExistsError, match="not empty"):
        export_cases(store, tmp_path / "export")


def test_erased_cases_leave_later_exports(store, tmp_path):
    ids = []
    for i in range(3):
        ids.append(store.add(clean(10 + i), CaseMetadata(consent_research=True), prediction()).id)
        store.add_label(ids[-1], "nv", "follow_up", reader="a")
    store.erase(ids[1], by="dpo")
    result = export_cases(store, tmp_path / "export")
    exported = {r["case_id"] for r in rows(result.table)}
    assert exported == {ids[0], ids[2]}
    assert ids[1] not in result.manifest.read_text()


def test_fixed_partitions_are_exported_when_every_case_has_one(store, tmp_path):
    ids = []
    for i in range(4):
        ids.append(store.add(clean(20 + i), CaseMetadata(consent_research=True), prediction()).id)
        store.add_label(ids[-1], "mel" if i % 2 else "nv", "histo", reader="a")
    store.set_partition(ids[:3], "train")
    assert "partition" not in rows(export_cases(store, tmp_path / "a").table)[0]
    store.set_partition(ids[3:], "test")
    assert [r["partition"] for r in rows(export_cases(store, tmp_path / "b").table)] == ["train"] * 3 + ["test"]


def test_train_reads_an_export_as_it_is(tmp_path):
    from lesionlens.data.load import read_table

    store = CaseStore.open(tmp_path / "c.sqlite")
    for i in range(6):
        case = store.add(clean(30 + i), CaseMetadata(consent_research=True, patient_id=f"p{i // 2}"), prediction()).id
        store.add_label(case, ("mel", "nv", "bcc")[i % 3], "histo", reader="a")
    result = export_cases(store, tmp_path / "export")
    table = read_table(result.table)
    assert not table.issues and len(table) == 6
    assert set(table.classes) == {"mel", "nv", "bcc"}
    assert list(table.frame["group"]) == ["p0", "p0", "p1", "p1", "p2", "p2"]


cases_strategy = st.lists(st.tuples(st.booleans(), st.sampled_from([None, "mel", "nv"]), st.booleans()),
                          min_size=1, max_size=8)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cases=cases_strategy)
def test_property_no_case_without_research_consent_is_ever_exported(tmp_path_factory, cases):
    root = tmp_path_factory.mktemp("prop")
    store = CaseStore.open(root / "c.sqlite")
    unconsented = set()
    for i, (consent, label, second_reader_disagrees) in enumerate(cases):
        case = store.add(clean(i), CaseMetadata(consent_research=consent), prediction()).id
        if not consent:
            unconsented.add(case)
        if label:
            store.add_label(case, label, "histo", reader="a")
            if second_reader_disagrees:
                store.add_label(case, "nv" if label == "mel" else "mel", "single_reader", reader="b")
                store.adjudicate(case, label, "consensus", adjudicator="c")
    result = export_cases(store, root / "export")
    text = result.table.read_text() + result.manifest.read_text()
    assert not any(case in text for case in unconsented)
    assert {r["case_id"] for r in rows(result.table)}.isdisjoint(unconsented)
    assert result.cases == sum(1 for consent, label, _ in cases if consent and label)
    store.close()
