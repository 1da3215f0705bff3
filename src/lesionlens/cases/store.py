"""The case store: cases with their images, predictions, metadata and labels, in one database.

    store = CaseStore.open("cases.sqlite")            # or "postgresql+psycopg://host/db", images=DIR
    stored = store.add(image, metadata, prediction)     # idempotent per request_id
    store.add_label(stored.id, "mel", "histo", reader="dr_a")
    store.add_shadow_answers([ShadowAnswer(stored.id, challenger_digest, ...)])   # shadow mode's answers

An image file is written (durably) before the row that points at it is committed, and a case is
acknowledged only after that commit: a crash loses no acknowledged case and leaves no row without
its image, only, at worst, an orphan file that :meth:`CaseStore.check` reports and
:meth:`CaseStore.collect_orphans` deletes.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from lesionlens.cases import schema
from lesionlens.cases.db import StoreError, as_utc, database_url, migrate, now, open_engine, redacted
from lesionlens.cases.images import CleanImage, ImageFiles, image_name
from lesionlens.cases.integrity import Integrity
from lesionlens.cases.labels import Label, Settlement, settle
from lesionlens.cases.tokens import Tokens
from lesionlens.config import LabelSource, choices

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseMetadata:
    """What a client may send with a photo; every field is optional (checked by the API schema)."""

    request_id: str | None = None
    age: int | None = None
    sex: str | None = None
    site: str | None = None
    patient_id: str | None = None
    lesion_id: str | None = None
    consent_research: bool = False
    consent_version: str | None = None
    device: str | None = None
    app_version: str | None = None


@dataclass(frozen=True)
class StoredCase:
    id: str
    created: bool  # False when the request_id was seen before and the stored case is returned
    response: dict  # the prediction as first answered


@dataclass(frozen=True)
class NewCase:
    """A case to store: the cleaned photo, what the client sent and what the server answered."""

    image: CleanImage
    metadata: CaseMetadata
    prediction: dict
    origin: str = "cases"
    quality: list = field(default_factory=list)
    latency_ms: float = 0.0


@dataclass
class CaseRecord:
    """One case with its settled label: what exports, the study view, the queue and checks read."""

    id: str
    created_at: datetime
    origin: str
    image: str  # the stored file's name (sha256 + suffix)
    width: int
    height: int
    metadata: CaseMetadata
    partition: str | None
    model_version: str
    model_digest: str | None  # the answering bundle's content digest; None for cases stored before 0002
    top_class: str
    probabilities: dict[str, float]
    decision: dict
    quality: list
    settlement: Settlement = field(repr=False)


@dataclass(frozen=True)
class ShadowAnswer:
    """A challenger's answer to a stored case in shadow mode: kept for comparison, never returned."""

    case_id: str
    model_digest: str
    top_class: str
    probabilities: dict[str, float]
    decision: dict
    latency_ms: float
    created_at: datetime | None = None  # set by the store


class CaseStore(Tokens, Integrity):
    def __init__(self, url: str, images: str | Path):
        self.url = url
        self.engine = open_engine(url)
        migrate(self.engine)
        self.images = ImageFiles(images)

    @classmethod
    def open(cls, db: str | Path, images: str | Path | None = None) -> "CaseStore":
        """``db`` is a SQLite path or a database URL; images default to ``<db>.images`` beside a
        SQLite file and must be given for a server database."""
        url = database_url(db)
        if images is None:
            parsed = make_url(url)
            if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
                raise StoreError(f"{redacted(url)}: say where the case images go (--case-images DIR)")
            images = Path(parsed.database + ".images")
        return cls(url, images)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def describe(self) -> str:
        return f"{redacted(self.url)} (images in {self.images.root})"

    def close(self) -> None:
        self.engine.dispose()

    # -- cases ------------------------------------------------------------------------------------

    def add(self, image: CleanImage, metadata: CaseMetadata, prediction: dict, origin: str = "cases",
            quality: list | None = None, latency_ms: float = 0.0) -> StoredCase:
        """Keep one case; with a ``request_id`` seen before, return that case and store nothing."""
        (result,) = self.add_many([NewCase(image, metadata, prediction, origin, quality or [], latency_ms)])
        if isinstance(result, Exception):
            raise result
        return result

    def add_many(self, new: list[NewCase]) -> list[StoredCase | Exception]:
        """Keep several cases in one transaction: one commit, so one fsync, for all of them (what a
        busy server's writer does). Each case is inserted under a savepoint, so one failure fails
        only that case; a ``request_id`` seen before, in the database or earlier in ``new``, returns
        the case stored for it."""
        for case in new:
            self.images.put(case.image)  # durable before the row that points at it (a no-op when there)
        results: list[StoredCase | Exception] = []
        with self.engine.begin() as c:
            for case in new:
                try:
                    results.append(self._insert(c, case))
                except Exception as e:  # noqa: BLE001 - reported to that case's caller, not the others'
                    results.append(e)
        return results

    def _insert(self, c, case: NewCase) -> StoredCase:
        request_id = case.metadata.request_id
        if request_id is not None:
            known = _find_request(c, request_id)
            if known is not None:
                return known
        case_id = uuid.uuid4().hex
        p = case.prediction
        row = asdict(case.metadata) | {
            "id": case_id, "created_at": now(), "origin": case.origin, "image_sha256": case.image.sha256,
            "image_format": case.image.format, "width": case.image.width, "height": case.image.height,
            "model_name": p["model"]["name"], "model_version": p["model"]["version"],
            "model_digest": p["model"].get("digest"), "top_class": p["top_class"],
            "probabilities": p["probabilities"], "decision": p["decision"], "latency_ms": case.latency_ms,
            "quality": case.quality, "response": p,
        }
        try:
            with c.begin_nested():
                c.execute(insert(schema.cases).values(**row))
        except IntegrityError:
            known = _find_request(c, request_id) if request_id is not None else None
            if known is None:  # another process stored this request id first, and it is not visible yet
                raise
            return known
        return StoredCase(case_id, True, p)

    def find_request(self, request_id: str) -> StoredCase | None:
        with self.engine.connect() as c:
            return _find_request(c, request_id)

    def count(self) -> int:
        with self.engine.connect() as c:
            return c.execute(select(func.count()).select_from(schema.cases)).scalar_one()

    def image_path(self, case_id: str) -> Path | None:
        with self.engine.connect() as c:
            row = c.execute(select(schema.cases.c.image_sha256, schema.cases.c.image_format)
                            .where(schema.cases.c.id == case_id)).first()
        return None if row is None else self.images.path(image_name(row.image_sha256, row.image_format))

    def records(self, case_ids: list[str] | None = None) -> list[CaseRecord]:
        """Cases (all, or those named) with their labels settled, oldest first."""
        query = select(schema.cases).order_by(schema.cases.c.created_at, schema.cases.c.id)
        label_query = select(schema.labels)
        adjudication_query = select(schema.adjudications)
        if case_ids is not None:
            query = query.where(schema.cases.c.id.in_(case_ids))
            label_query = label_query.where(schema.labels.c.case_id.in_(case_ids))
            adjudication_query = adjudication_query.where(schema.adjudications.c.case_id.in_(case_ids))
        with self.engine.connect() as c:
            rows = c.execute(query).all()
            labels = _by_case(Label(r.id, r.case_id, r.label, r.source, r.reader, as_utc(r.created_at), r.note)
                              for r in c.execute(label_query))
            adjudications = _by_case(Label(r.id, r.case_id, r.label, r.source, r.adjudicator, as_utc(r.created_at), r.note)
                                     for r in c.execute(adjudication_query))
        fields = CaseMetadata.__dataclass_fields__
        return [CaseRecord(
            id=r.id, created_at=as_utc(r.created_at), origin=r.origin, image=image_name(r.image_sha256, r.image_format),
            width=r.width, height=r.height, metadata=CaseMetadata(**{k: getattr(r, k) for k in fields}),
            partition=r.partition, model_version=r.model_version, model_digest=r.model_digest, top_class=r.top_class,
            probabilities=r.probabilities, decision=r.decision, quality=r.quality,
            settlement=settle(labels.get(r.id, ()), adjudications.get(r.id, ())),
        ) for r in rows]

    def record(self, case_id: str) -> CaseRecord | None:
        found = self.records([case_id])
        return found[0] if found else None

    # -- shadow answers ---------------------------------------------------------------------------

    def add_shadow_answers(self, answers: list[ShadowAnswer]) -> int:
        """Keep challengers' answers in one transaction; an answer whose case is gone (erased
        meanwhile) or that is there already (same case and model) is skipped. Returns how many
        were stored."""
        stored = 0
        with self.engine.begin() as c:
            for a in answers:
                try:
                    with c.begin_nested():
                        c.execute(insert(schema.shadow_answers).values(
                            case_id=a.case_id, model_digest=a.model_digest, top_class=a.top_class,
                            probabilities=a.probabilities, decision=a.decision, latency_ms=a.latency_ms,
                            created_at=now()))
                    stored += 1
                except IntegrityError:
                    log.info("shadow answer for case %s by %s not stored: the case is gone or has one",
                             a.case_id, a.model_digest[:12])
        return stored

    def shadow_answers(self, case_ids: list[str] | None = None) -> list[ShadowAnswer]:
        """Shadow answers (all, or those to the cases named), oldest first."""
        t = schema.shadow_answers
        query = select(t).order_by(t.c.created_at, t.c.id)
        if case_ids is not None:
            query = query.where(t.c.case_id.in_(case_ids))
        with self.engine.connect() as c:
            return [ShadowAnswer(r.case_id, r.model_digest, r.top_class, r.probabilities, r.decision, r.latency_ms,
                                 as_utc(r.created_at)) for r in c.execute(query)]

    def set_partition(self, case_ids: list[str], partition: str | None) -> int:
        if partition not in ("train", "val", "test", None):
            raise StoreError(f"unknown partition {partition!r}; use train, val or test")
        with self.engine.begin() as c:
            return c.execute(update(schema.cases).where(schema.cases.c.id.in_(case_ids))
                             .values(partition=partition)).rowcount

    def erase(self, case_id: str, by: str) -> bool:
        """Remove a case, its labels, its shadow answers and (unless another case has the same
        photo) its image; keep only the fact that case ``case_id`` was erased, when, and by whom."""
        with self.engine.begin() as c:
            row = c.execute(select(schema.cases.c.image_sha256, schema.cases.c.image_format)
                            .where(schema.cases.c.id == case_id)).first()
            if row is None:
                return False
            c.execute(delete(schema.labels).where(schema.labels.c.case_id == case_id))
            c.execute(delete(schema.adjudications).where(schema.adjudications.c.case_id == case_id))
            c.execute(delete(schema.shadow_answers).where(schema.shadow_answers.c.case_id == case_id))
            c.execute(delete(schema.cases).where(schema.cases.c.id == case_id))
            c.execute(insert(schema.erasures).values(case_id=case_id, erased_at=now(), by=by))
            shared = c.execute(select(func.count()).select_from(schema.cases)
                               .where(schema.cases.c.image_sha256 == row.image_sha256)).scalar_one()
        if not shared:
            self.images.remove(image_name(row.image_sha256, row.image_format))
        log.info("case %s erased by %s", case_id, by)
        return True

    # -- labels -----------------------------------------------------------------------------------

    def add_label(self, case_id: str, label: str, source: str, reader: str, note: str | None = None) -> int:
        return self._append(schema.labels, case_id, label, source, note, reader=reader)

    def adjudicate(self, case_id: str, label: str, source: str, adjudicator: str, note: str | None = None) -> int:
        return self._append(schema.adjudications, case_id, label, source, note, adjudicator=adjudicator)

    def _append(self, table, case_id: str, label: str, source: str, note: str | None, **who: str) -> int:
        if source not in choices(LabelSource):
            raise StoreError(f"unknown label source {source!r}; use one of {', '.join(choices(LabelSource))}")
        try:
            with self.engine.begin() as c:
                result = c.execute(insert(table).values(case_id=case_id, label=label, source=source, note=note,
                                                        created_at=now(), **who))
                return result.inserted_primary_key[0]
        except IntegrityError as e:
            raise StoreError(f"no case {case_id}") from e


def _find_request(c, request_id: str) -> StoredCase | None:
    row = c.execute(select(schema.cases.c.id, schema.cases.c.response)
                    .where(schema.cases.c.request_id == request_id)).first()
    return None if row is None else StoredCase(row.id, False, row.response)


def _by_case(labels) -> dict[str, list[Label]]:
    out: dict[str, list[Label]] = {}
    for lab in labels:
        out.setdefault(lab.case_id, []).append(lab)
    return out
