"""The case store's tables, in SQLAlchemy Core: what the queries read and write.

The database is created and changed only by the Alembic migrations in ``cases/migrations``; a test
checks that migrating an empty database to the newest revision gives exactly these tables.
Labels and adjudications are append-only (each row is a version; a reader's newest row counts), so
the history of every label stays auditable. Erasure deletes a case's rows and image and leaves one
line in ``erasures`` (the random case id, when and by whom: nothing about the patient).
Every case names the model that answered it by its content digest (``model_digest``, the
registry's :func:`~lesionlens.bundle.registry.bundle_digest`); a challenger run in shadow mode
leaves its answer to the same case in ``shadow_answers``, which is never shown to the client.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

ID_LENGTH = 32  # uuid4().hex: random, so a case id says nothing about the patient or the order of cases
TEXT_LIMIT = 128  # pseudonymous ids, device names, request ids
DIGEST_LENGTH = 64  # a sha256 in hex

cases = Table(
    "cases", metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("request_id", String(TEXT_LIMIT), unique=True, nullable=True,
           comment="the client's id for the submission: a retry with the same id returns the stored case"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("origin", String(16), nullable=False, comment="'cases' (POST /v1/cases) or 'predict' (a stored prediction)"),
    Column("image_sha256", String(64), nullable=False, index=True,
           comment="the stored image file (EXIF removed, orientation applied) is named by this hash"),
    Column("image_format", String(8), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("age", Integer, nullable=True),
    Column("sex", String(16), nullable=True),
    Column("site", String(32), nullable=True),
    Column("patient_id", String(TEXT_LIMIT), nullable=True, index=True),
    Column("lesion_id", String(TEXT_LIMIT), nullable=True, index=True),
    Column("consent_research", Boolean, nullable=False, default=False),
    Column("consent_version", String(32), nullable=True),
    Column("device", String(TEXT_LIMIT), nullable=True),
    Column("app_version", String(64), nullable=True),
    Column("partition", String(8), nullable=True, comment="train / val / test when fixed for exports"),
    Column("model_name", String(TEXT_LIMIT), nullable=False),
    Column("model_version", String(TEXT_LIMIT), nullable=False, comment="the bundle's time and weights sha256"),
    Column("model_digest", String(DIGEST_LENGTH), nullable=True, index=True,
           comment="the answering bundle's content digest; null for cases stored before it was kept"),
    Column("top_class", String(64), nullable=False),
    Column("probabilities", JSON, nullable=False, comment="calibrated, class -> probability"),
    Column("decision", JSON, nullable=False, comment="per view: score, positive, rule"),
    Column("latency_ms", Float, nullable=False),
    Column("quality", JSON, nullable=False, comment="image-quality problems found at submission"),
    Column("response", JSON, nullable=False, comment="the prediction as answered, for retries"),
)

labels = Table(
    "labels", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", String(ID_LENGTH), ForeignKey("cases.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("label", String(64), nullable=False),
    Column("source", String(16), nullable=False, comment="histo, confocal, follow_up, consensus, single_reader"),
    Column("reader", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("note", Text, nullable=True),
)

adjudications = Table(
    "adjudications", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", String(ID_LENGTH), ForeignKey("cases.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("label", String(64), nullable=False),
    Column("source", String(16), nullable=False),
    Column("adjudicator", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("note", Text, nullable=True),
)

tokens = Table(
    "tokens", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(8), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True, comment="only the hash is kept"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

shadow_answers = Table(
    "shadow_answers", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", String(ID_LENGTH), ForeignKey("cases.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("model_digest", String(DIGEST_LENGTH), nullable=False, index=True, comment="the challenger that answered"),
    Column("top_class", String(64), nullable=False),
    Column("probabilities", JSON, nullable=False, comment="calibrated, class -> probability"),
    Column("decision", JSON, nullable=False, comment="per view: score, positive, rule"),
    Column("latency_ms", Float, nullable=False, comment="the challenger's decode and model time"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("case_id", "model_digest", name="uq_shadow_answers_case_model"),
)

erasures = Table(
    "erasures", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", String(ID_LENGTH), nullable=False),
    Column("erased_at", DateTime(timezone=True), nullable=False),
    Column("by", String(64), nullable=False),
)

Index("ix_cases_created_at", cases.c.created_at)
