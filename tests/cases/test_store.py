"""The case store on SQLite and PostgreSQL: migrations, idempotent submissions, labels, erasure,
tokens and the integrity check."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from case_helpers import DIGEST, clean, prediction

from lesionlens.cases import schema
from lesionlens.cases.db import StoreError, current_revision, head_revision
from lesionlens.cases.store import CaseMetadata, ShadowAnswer


def test_migrations_build_exactly_the_declared_schema(store):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    assert current_revision(store.engine) == head_revision()
    with store.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), schema.metadata)
    assert diff == []


def test_a_database_made_before_model_digests_migrates_and_keeps_its_cases(store_url, tmp_path):
    """A store at revision 0001 with a case in it: opening it migrates to the newest revision; the
    old case reads back with no model digest, new cases name theirs."""
    from alembic import command
    from sqlalchemy import insert

    from lesionlens.cases.db import _config, database_url, open_engine
    from lesionlens.cases.store import CaseStore

    engine = open_engine(database_url(store_url))
    with engine.begin() as c:
        command.upgrade(_config(c), "0001")
        image = clean(40)
        c.execute(insert(schema.cases).values(
            id="0" * 32, created_at=datetime.now(timezone.utc), origin="cases", image_sha256=image.sha256, image_format="JPEG",
            width=image.width, height=image.height, consent_research=False, model_name="old", model_version="v0",
            top_class="mel", probabilities={"mel": 1.0}, decision={}, latency_ms=1.0, quality=[], response={}))
    assert current_revision(engine) == "0001"
    engine.dispose()
    store = CaseStore.open(store_url, tmp_path / "img")
    try:
        store.images.put(image)
        assert current_revision(store.engine) == head_revision()
        assert store.record("0" * 32).model_digest is None
        new = store.add(clean(41), CaseMetadata(), prediction())
        assert store.record(new.id).model_digest == DIGEST
    finally:
        store.close()


def test_shadow_answers_are_kept_per_case_and_erased_with_it(store):
    case = store.add(clean(42), CaseMetadata(), prediction()).id
    other = store.add(clean(43), CaseMetadata(), prediction()).id
    challenger = "c" * 64
    answer = ShadowAnswer(case, challenger, "nv", {"mel": 0.2, "nv": 0.7, "bcc": 0.1}, {"malignant": {"score": 0.3}}, 4.5)
    assert store.add_shadow_answers([answer, ShadowAnswer(other, challenger, "mel", {"mel": 1.0}, {}, 3.0)]) == 2
    assert store.add_shadow_answers([answer]) == 0  # one answer per case and model
    assert store.add_shadow_answers([ShadowAnswer("9" * 32, challenger, "mel", {}, {}, 1.0)]) == 0  # no such case
    (got,) = store.shadow_answers([case])
    assert (got.model_digest, got.top_class, got.probabilities, got.latency_ms) == (challenger, "nv", answer.probabilities, 4.5)
    assert got.created_at.tzinfo is not None
    assert store.record(case).top_class == "mel"  # the champion's answer is the case's answer
    assert store.erase(case, by="admin")
    assert [a.case_id for a in store.shadow_answers()] == [other]
    assert store.check().ok


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
    assert rec.model_digest == DIGEST
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
