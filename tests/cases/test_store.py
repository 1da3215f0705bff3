"""The case store on SQLite and PostgreSQL: migrations, idempotent submissions, labels, erasure,
tokens and the integrity check."""

from __future__ import annotations

import pytest
from case_helpers import clean, prediction

from lesionlens.cases import schema
from lesionlens.cases.db import StoreError, current_revision, head_revision
from lesionlens.cases.store import CaseMetadata


def test_migrations_build_exactly_the_declared_schema(store):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    assert current_revision(store.engine) == head_revision()
    with store.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), schema.metadata)
    assert diff == []


def test_a_retried_request_id_is_stored_once(store):
    meta = CaseMetadata(request_id="phone-42", age=55, sex="female", site="back", consent_research=True)
    first = store.add(clean(1), meta, prediction())
    again = store.add(clean(1), meta, prediction(top="nv"))
    assert first.created and not again.created
    assert again.id == first.id and again.response["top_class"] == "mel"
    assert store.count() == 1
    other = store.add(clean(2), CaseMetadata(request_id="phone-43"), prediction())
    assert other.id != first.id and store.count() == 2


def test_record_round_trip(store):
    meta = CaseMetadata(age=61, sex="male", site="upper extremity", patient_id="p1", lesion_id="l1",
                        consent_research=True, consent_version="2026-01", device="dermlite", app_version="1.2")
    stored = store.add(clean(3), meta, prediction(), quality=[{"code": "blurry"}], latency_ms=12.5)
    rec = store.record(stored.id)
    assert rec.metadata == meta and rec.top_class == "mel" and rec.quality == [{"code": "blurry"}]
    assert rec.created_at.tzinfo is not None
    assert store.image_path(stored.id).read_bytes() == clean(3).data
    assert rec.settlement.status == "unlabelled"


def test_labels_settle_by_agreement_or_adjudication(store):
    case = store.add(clean(4), CaseMetadata(), prediction()).id
    store.add_label(case, "mel", "single_reader", reader="a")
    assert store.record(case).settlement.label == "mel"
    store.add_label(case, "nv", "single_reader", reader="b")
    s = store.record(case).settlement
    assert s.status == "disagreement" and s.label is None
    store.add_label(case, "mel", "histo", reader="b")  # b changes their mind: the newest label counts
    s = store.record(case).settlement
    assert s.status == "agreed" and s.label == "mel" and s.source == "histo"
    store.add_label(case, "bcc", "single_reader", reader="c")
    store.adjudicate(case, "mel", "consensus", adjudicator="chief")
    s = store.record(case).settlement
    assert s.status == "adjudicated" and s.label == "mel" and s.version.startswith("adjudication:")
    with pytest.raises(StoreError, match="source"):
        store.add_label(case, "mel", "guess", reader="a")
    with pytest.raises(StoreError, match="no case"):
        store.add_label("0" * 32, "mel", "histo", reader="a")


def test_erasure_removes_rows_and_image_and_leaves_an_audit_line(store):
    keep = store.add(clean(5), CaseMetadata(), prediction()).id
    twin = store.add(clean(5), CaseMetadata(), prediction()).id  # the same photo sent twice
    gone = store.add(clean(6), CaseMetadata(), prediction()).id
    store.add_label(gone, "mel", "histo", reader="a")
    path = store.image_path(gone)
    assert store.erase(gone, by="admin") and not store.erase(gone, by="admin")
    assert not path.exists() and store.record(gone) is None
    assert store.erase(twin, by="admin") and store.image_path(keep).exists()  # still used by `keep`
    with store.engine.connect() as c:
        assert c.execute(schema.erasures.select()).all()[0].case_id == gone
        assert c.execute(schema.labels.select()).all() == []
    assert store.check().ok


def test_tokens_store_only_hashes_and_can_be_revoked(store):
    secret = store.add_token("alice", "label")
    assert store.token_owner(secret) == ("alice", "label")
    assert store.token_owner(secret + "x") is None
    with store.engine.connect() as c:
        assert secret not in str(c.execute(schema.tokens.select()).all())
    with pytest.raises(StoreError, match="exists"):
        store.add_token("alice", "admin")
    with pytest.raises(StoreError, match="role"):
        store.add_token("bob", "root")
    assert store.revoke_token("alice") and store.token_owner(secret) is None


def test_check_finds_missing_damaged_and_orphan_images(store):
    a = store.add(clean(7), CaseMetadata(), prediction()).id
    b = store.add(clean(8), CaseMetadata(), prediction()).id
    assert store.check().ok
    store.image_path(a).unlink()
    store.image_path(b).write_bytes(b"not the image")
    orphan = store.images.put(clean(9))
    found = store.check()
    assert found.missing_images == [a] and found.damaged_images == [b] and not found.ok
    assert found.orphan_images == [orphan.name]
    assert store.collect_orphans(older_than_s=3600) == []  # too recent: may be a submission in flight
    assert store.collect_orphans(older_than_s=0) == [orphan.name] and not orphan.exists()


def test_sqlite_runs_in_wal_mode_with_synchronous_commits(tmp_path):
    from lesionlens.cases.store import CaseStore

    s = CaseStore.open(tmp_path / "c.sqlite")
    with s.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    assert s.images.root == (tmp_path / "c.sqlite.images").resolve()


def test_bad_database_urls_are_named():
    from lesionlens.cases.store import CaseStore

    with pytest.raises(StoreError, match="does not exist"):
        CaseStore.open("/no/such/folder/cases.sqlite")
    with pytest.raises(StoreError, match="SQLite .* and PostgreSQL"):
        CaseStore.open("mysql://localhost/x", "/tmp/x")
    with pytest.raises(StoreError, match="case-images"):
        CaseStore.open("postgresql+psycopg://localhost/x")


def test_add_many_commits_together_and_fails_one_case_alone(store):
    from lesionlens.cases.store import NewCase

    broken = prediction() | {"top_class": None}  # NOT NULL: the database refuses this row
    results = store.add_many([
        NewCase(clean(60), CaseMetadata(request_id="a"), prediction()),
        NewCase(clean(61), CaseMetadata(request_id="b"), broken),
        NewCase(clean(62), CaseMetadata(request_id="a"), prediction(top="nv")),  # a retry within the batch
        NewCase(clean(63), CaseMetadata(), prediction()),
    ])
    assert results[0].created and isinstance(results[1], Exception)
    assert results[2].id == results[0].id and not results[2].created
    assert results[3].created and store.count() == 2
    assert store.find_request("b") is None and store.find_request("a").id == results[0].id
