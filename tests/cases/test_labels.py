"""Settling labels, Cohen's kappa (against scikit-learn), the queue's order and the study tables."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from case_helpers import clean, prediction
from sklearn.metrics import cohen_kappa_score

from lesionlens.cases.labels import Label, agreement_table, cohen_kappa, settle
from lesionlens.cases.queue import labelling_queue, usefulness
from lesionlens.cases.store import CaseMetadata
from lesionlens.cases.study import age_band, study_tables
from lesionlens.evaluation.proportions import wilson_interval

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def lab(i, reader, label, source="single_reader", minutes=0, case="c"):
    return Label(i, case, label, source, reader, T0 + timedelta(minutes=minutes))


@pytest.mark.parametrize("seed", range(5))
def test_kappa_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    a = rng.choice(["mel", "nv", "bcc"], 40)
    b = np.where(rng.random(40) < 0.6, a, rng.choice(["mel", "nv", "bcc"], 40))
    assert cohen_kappa(list(a), list(b)) == pytest.approx(cohen_kappa_score(a, b))


def test_kappa_edge_cases():
    assert np.isnan(cohen_kappa([], []))
    assert np.isnan(cohen_kappa(["mel"] * 3, ["mel"] * 3))  # no variation: undefined, not 1
    assert cohen_kappa(["mel", "nv"], ["nv", "mel"]) == pytest.approx(-1.0)


def test_settle_newest_label_per_reader_and_source_strength():
    s = settle([lab(1, "a", "mel", minutes=0), lab(2, "a", "nv", minutes=5), lab(3, "b", "nv", "histo")])
    assert s.status == "agreed" and s.label == "nv" and s.source == "histo" and s.version == "labels:2,3"
    assert settle([]).status == "unlabelled"
    adj = settle([lab(1, "a", "mel"), lab(2, "b", "nv")], [lab(9, "chief", "nv", "consensus")])
    assert adj.status == "adjudicated" and adj.label == "nv" and adj.version == "adjudication:9"


def test_agreement_table_pairs_readers_over_shared_cases():
    current = [[lab(1, "a", "mel", case="1"), lab(2, "b", "mel", case="1")],
               [lab(3, "a", "nv", case="2"), lab(4, "b", "mel", case="2"), lab(5, "c", "nv", case="2")]]
    table = {(p.reader_a, p.reader_b): p for p in agreement_table(current)}
    assert table[("a", "b")].cases == 2 and table[("a", "b")].agreement == 0.5
    assert table[("a", "c")].cases == 1 and table[("b", "c")].agreement == 0.0


def test_queue_puts_disagreements_then_doubtful_cases_first(store):
    sure = store.add(clean(1), CaseMetadata(), prediction(p=0.98)).id
    unsure = store.add(clean(2), CaseMetadata(), prediction(p=0.36)).id
    disputed = store.add(clean(3), CaseMetadata(), prediction(p=0.98)).id
    store.add_label(disputed, "mel", "single_reader", reader="x")
    store.add_label(disputed, "nv", "single_reader", reader="y")
    order = [i.record.id for i in labelling_queue(store.records(), reader="me")]
    assert order == [disputed, unsure, sure]
    assert [i.record.id for i in labelling_queue(store.records(), reader="x")] == [unsure, sure]
    assert [i.record.id for i in labelling_queue(store.records(), "boss", adjudicate=True)] == [disputed]
    score, reasons = usefulness(store.record(unsure))
    assert 0 < score < 2 and any("unsure" in r for r in reasons)


def test_wilson_interval_known_values():
    # Wilson 95% for 8/10: (0.4902, 0.9433) (Newcombe 1998, table I)
    p, low, high = wilson_interval(8, 10)
    assert p == 0.8 and low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 10)[1] == 0.0 and np.isnan(wilson_interval(0, 0)[0])


def test_study_tables_by_subgroup(store):
    people = [("back", "male", 30, "mel", True), ("back", "female", 64, "mel", False),
              ("face", "male", 85, "nv", False), ("face", "male", 85, "nv", True), ("trunk", None, None, None, False)]
    for i, (site, sex, age, label, positive) in enumerate(people):
        pred = prediction(top="mel" if positive else "nv", p=0.9)
        case = store.add(clean(40 + i), CaseMetadata(site=site, sex=sex, age=age, consent_research=True), pred).id
        if label:
            store.add_label(case, label, "histo", reader="a")
    store.add(clean(50), CaseMetadata(consent_research=False), prediction())
    study = study_tables(store.records(), ["mel", "nv", "bcc"])
    assert study.cases == 5 and study.without_consent == 1 and study.views == ["malignant"]
    everyone = study.group("all", "all")
    assert everyone.labelled == 4 and dict(everyone.diagnoses) == {"mel": 2, "nv": 2}
    assert (everyone.sensitivity["malignant"].successes, everyone.sensitivity["malignant"].n) == (1, 2)
    assert (everyone.specificity["malignant"].successes, everyone.specificity["malignant"].n) == (1, 2)
    assert study.group("age_band", "80+").cases == 2 and study.group("sex", "unknown").cases == 1
    assert study.group("site", "trunk").sensitivity["malignant"].n == 0
    assert age_band(19) == "0-19" and age_band(20) == "20-39" and age_band(None) == "unknown"
    assert any("malignant sensitivity" in line for line in study.lines())
