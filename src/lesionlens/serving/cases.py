"""The case store behind the API: submissions, the labelling workflow, erasure, study statistics.

    POST   /v1/cases                        a photo + metadata -> the prediction, a case id, quality problems
    GET    /v1/cases/{id}                   the case with its labels            (label)
    GET    /v1/cases/{id}/image             the stored photo                    (label)
    DELETE /v1/cases/{id}                   erasure: rows and image             (admin)
    POST   /v1/cases/{id}/labels            a reader's label                    (label)
    POST   /v1/cases/{id}/adjudication      the final word on a disagreement    (admin)
    GET    /v1/labelling/queue              most useful cases first             (label; ?adjudicate=true: admin)
    GET    /v1/labelling/agreement          Cohen's kappa per reader pair       (label)
    GET    /v1/study                        cases and performance by subgroup   (label)
    GET    /v1/whoami                       the caller's name and role

Database and file work runs off the event loop. New cases go to one writer thread that stores all
the cases waiting in one transaction (group commit: one fsync for many submissions); SQLite allows
one writer anyway, and queuing in-process means no request ever sees "database is locked".
"""

from __future__ import annotations

import asyncio
import io
import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from fastapi import Depends, FastAPI, File, Form, Path, Query, UploadFile
from fastapi.responses import FileResponse
from PIL import Image

from lesionlens.cases.images import CleanImage, clean_image
from lesionlens.cases.labels import agreement_table
from lesionlens.cases.queue import labelling_queue
from lesionlens.cases.store import CaseMetadata, CaseRecord, CaseStore, NewCase, ShadowAnswer, StoredCase, StoreError
from lesionlens.cases.study import study_tables
from lesionlens.config import LabelSource, choices
from lesionlens.quality.image import assess_encoded
from lesionlens.serving.auth import Authenticator, Principal
from lesionlens.serving.decode import sniff_format
from lesionlens.serving.errors import ApiError
from lesionlens.serving.schemas import (
    AgreementResponse,
    CaseForm,
    CaseOut,
    CaseResponse,
    ErrorResponse,
    LabelIn,
    QueueResponse,
    Whoami,
)

log = logging.getLogger(__name__)

ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 415, 422)}
CASE_ID = Path(pattern=r"^[0-9a-f]{32}$", description="a case id (32 hex digits)")


class GroupWriter:
    """One thread that stores cases: it takes every case waiting and stores them in one transaction
    (group commit), so under load one fsync serves many submissions, and alone a case waits for no
    one. Each caller gets its own case back, or its own error."""

    def __init__(self, store: CaseStore, max_group: int = 64):
        self.store = store
        self.max_group = max_group
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="case-writer", daemon=True)
        self.thread.start()

    async def add(self, case: NewCase) -> StoredCase:
        future = asyncio.get_running_loop().create_future()
        self.queue.put((case, future))
        return await future

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=30)  # finish what was accepted before the process exits

    def _loop(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < self.max_group:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.queue.put(None)  # stop after this group
                    break
                group.append(item)
            try:
                results = self.store.add_many([case for case, _ in group])
            except Exception as e:  # noqa: BLE001 - the commit failed: every case in the group fails
                results = [e] * len(group)
            for (_, future), result in zip(group, results):
                future.get_loop().call_soon_threadsafe(_settle, future, result)


def _settle(future: asyncio.Future, result) -> None:
    if future.done():  # the request was cancelled (client gone); its case is stored all the same
        return
    if isinstance(result, Exception):
        future.set_exception(result)
    else:
        future.set_result(result)


class CaseService:
    """Stores what the prediction service saw; every method that touches the disk runs in a thread."""

    def __init__(self, store: CaseStore, decode_pool: ThreadPoolExecutor):
        self.store = store
        self.decode_pool = decode_pool
        self.cases = GroupWriter(store)
        self.writer = ThreadPoolExecutor(1, "label-writer")  # labels, adjudications, erasures
        self.reader = ThreadPoolExecutor(2, "case-reader")
        self.shadow = None  # the ShadowScorer that also scores every stored case (serve --shadow), set by the app

    def close(self) -> None:
        self.cases.close()
        self.writer.shutdown(wait=True)
        self.reader.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    async def read(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.reader, fn, *args)

    async def known(self, request_id: str | None):
        return None if request_id is None else await self.read(self.store.find_request, request_id)

    async def prepare(self, data: bytes, max_pixels: int) -> Prepared:
        """Clean the photo, check its quality and write its file: work that does not need the
        prediction, so the routes run it while the model runs."""
        return await asyncio.get_running_loop().run_in_executor(self.decode_pool, self._prepare, data, max_pixels)

    def _prepare(self, data: bytes, max_pixels: int) -> Prepared:
        fmt = sniff_format(data)
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:
            if img.width * img.height > max_pixels:  # decode_upload refuses it too; never decode it here
                raise ApiError(413, "too_many_pixels", f"{img.width}x{img.height} is more than {max_pixels:,} pixels")
        image = clean_image(data, fmt)
        problems = assess_encoded(image.data)
        self.store.images.put(image)  # durable before any row points at it
        return Prepared(image, [{"code": p.code, "message": p.message} for p in problems])

    async def keep(self, prepared: Prepared, metadata: CaseMetadata, prediction: dict, origin: str,
                   latency_ms: float, upload: tuple[str, bytes] | None = None) -> tuple[str, bool, dict, list[dict]]:
        """Store the case; in shadow mode a new case's ``upload`` (name, bytes) goes to the challenger."""
        stored = await self.cases.add(NewCase(prepared.image, metadata, prediction, origin, prepared.quality,
                                              latency_ms))
        if stored.created and self.shadow is not None and upload is not None:
            self.shadow.submit(*upload, prediction, stored.id)
        return stored.id, stored.created, stored.response, prepared.quality

    async def keep_shadow(self, digest: str, latency_ms: float, answers: list[tuple[str, dict]]) -> int:
        """Store a challenger's answers to stored cases (never returned to a client)."""
        records = [ShadowAnswer(case_id, digest, a["top_class"], a["probabilities"], a["decision"], round(latency_ms, 2))
                   for case_id, a in answers]
        return await asyncio.get_running_loop().run_in_executor(self.writer, self.store.add_shadow_answers, records)


@dataclass(frozen=True)
class Prepared:
    image: CleanImage
    quality: list[dict]


async def predict_and_prepare(cases: CaseService, predict_one, name: str, data: bytes, max_pixels: int):
    """The prediction and the stored photo's preparation, side by side; the prediction's error
    (the upload's problem, named) wins over the preparation's."""
    preparing = asyncio.ensure_future(cases.prepare(data, max_pixels))
    try:
        prediction = await predict_one(name, data)
    except BaseException:
        preparing.cancel()
        await asyncio.gather(preparing, return_exceptions=True)
        raise
    return prediction, await preparing


def add_case_routes(app: FastAPI, cases: CaseService, auth: Authenticator, read_upload, predict_one,
                    classes: list[str], max_pixels: int) -> None:
    """``read_upload(file)`` -> (name, bytes) with the size limit applied; ``predict_one(name, data)``
    -> the prediction dict (or raises ApiError), as /v1/predict answers it."""
    store = cases.store
    submit, label, admin = auth.require("submit"), auth.require("label"), auth.require("admin")

    @app.post("/v1/cases", response_model=CaseResponse, response_model_by_alias=True, responses=ERRORS,
              tags=["cases"])
    async def submit_case(file: UploadFile = File(description="a JPEG or PNG photo of the lesion"),
                          meta: CaseForm = Form(), who: Principal = Depends(submit)) -> dict:
        known = await cases.known(meta.request_id)
        if known is not None:
            return await _replayed(known)
        started = time.perf_counter()
        name, data = await read_upload(file)
        prediction, prepared = await predict_and_prepare(cases, predict_one, name, data, max_pixels)
        latency_ms = (time.perf_counter() - started) * 1000
        metadata = CaseMetadata(**meta.model_dump())
        case_id, created, response, quality = await cases.keep(prepared, metadata, prediction, "cases", latency_ms,
                                                               (name, data))
        if not created:
            return await _replayed(await cases.known(meta.request_id))
        log.info("case %s stored (%s)", case_id, who.name)  # ids only: no image bytes, no metadata
        return response | {"case_id": case_id, "created": True, "quality": quality}

    async def _replayed(known) -> dict:
        record = await cases.read(store.record, known.id)
        return known.response | {"case_id": known.id, "created": False, "quality": record.quality if record else []}

    @app.get("/v1/cases/{case_id}", response_model=CaseOut, responses=ERRORS, tags=["cases"])
    async def get_case(case_id: str = CASE_ID, who: Principal = Depends(label)) -> dict:
        return case_out(await _record(case_id))

    @app.get("/v1/cases/{case_id}/image", responses=ERRORS | {200: {"content": {"image/jpeg": {}, "image/png": {}}}},
             response_class=FileResponse, tags=["cases"])
    async def case_image(case_id: str = CASE_ID, who: Principal = Depends(label)):
        path = await cases.read(store.image_path, case_id)
        if path is None or not path.is_file():
            raise ApiError(404, "not_found", f"no case {case_id}")
        # no-store: after an erasure no browser should still hold the photo
        return FileResponse(path, media_type="image/png" if path.suffix == ".png" else "image/jpeg",
                            headers={"Cache-Control": "private, no-store"})

    @app.delete("/v1/cases/{case_id}", responses=ERRORS, tags=["cases"])
    async def erase_case(case_id: str = CASE_ID, who: Principal = Depends(admin)) -> dict:
        erased = await asyncio.get_running_loop().run_in_executor(cases.writer, store.erase, case_id, who.name)
        if not erased:
            raise ApiError(404, "not_found", f"no case {case_id}")
        return {"case_id": case_id, "erased": True}

    @app.post("/v1/cases/{case_id}/labels", response_model=CaseOut, responses=ERRORS, tags=["labelling"])
    async def add_label(body: LabelIn, case_id: str = CASE_ID, who: Principal = Depends(label)) -> dict:
        _check_label(body, classes)
        await _write(store.add_label, case_id, body.label, body.source, who.name, body.note)
        return case_out(await _record(case_id))

    @app.post("/v1/cases/{case_id}/adjudication", response_model=CaseOut, responses=ERRORS, tags=["labelling"])
    async def adjudicate(body: LabelIn, case_id: str = CASE_ID, who: Principal = Depends(admin)) -> dict:
        _check_label(body, classes)
        source = "consensus" if body.source == "single_reader" else body.source
        await _write(store.adjudicate, case_id, body.label, source, who.name, body.note)
        return case_out(await _record(case_id))

    @app.get("/v1/labelling/queue", response_model=QueueResponse, responses=ERRORS, tags=["labelling"])
    async def queue(limit: int = Query(20, ge=1, le=200), adjudicate: bool = Query(False),
                    who: Principal = Depends(label)) -> dict:
        if adjudicate and not who.can("admin"):
            raise ApiError(403, "forbidden", "the adjudication queue needs the 'admin' role")
        records = await cases.read(store.records)
        ranked = labelling_queue(records, who.name, len(records), adjudicate)
        items = ranked[:limit]
        return {"reader": who.name, "classes": classes, "total": len(ranked),
                "items": [{"case": case_out(i.record), "usefulness": round(i.usefulness, 4), "reasons": list(i.reasons)}
                          for i in items]}

    @app.get("/v1/labelling/agreement", response_model=AgreementResponse, responses=ERRORS, tags=["labelling"])
    async def agreement(who: Principal = Depends(label)) -> dict:
        records = await cases.read(store.records)
        table = agreement_table(r.settlement.current for r in records)
        return {"pairs": [p.to_dict() for p in table]}

    @app.get("/v1/study", responses=ERRORS, tags=["study"])
    async def study(who: Principal = Depends(label)) -> dict:
        records = await cases.read(store.records)
        return study_tables(records, classes).to_dict()

    @app.get("/v1/whoami", response_model=Whoami, responses=ERRORS, tags=["labelling"])
    async def whoami(who: Principal = Depends(submit)) -> dict:
        return {"name": who.name, "role": who.role}

    async def _record(case_id: str) -> CaseRecord:
        record = await cases.read(store.record, case_id)
        if record is None:
            raise ApiError(404, "not_found", f"no case {case_id}")
        return record

    async def _write(fn, case_id: str, *args) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(cases.writer, fn, case_id, *args)
        except StoreError as e:
            raise ApiError(404 if "no case" in str(e) else 422, "not_found" if "no case" in str(e) else "invalid_label",
                           str(e)) from e


def _check_label(body: LabelIn, classes: list[str]) -> None:
    if body.label not in classes:
        raise ApiError(422, "invalid_label", f"unknown label {body.label!r}; this model's classes are {', '.join(classes)}")
    if body.source not in choices(LabelSource):
        raise ApiError(422, "invalid_label",
                       f"unknown label source {body.source!r}; use one of {', '.join(choices(LabelSource))}")


def case_out(r: CaseRecord) -> dict:
    s = r.settlement
    return {
        "case_id": r.id, "created_at": r.created_at.isoformat(), "origin": r.origin,
        "image_url": f"/v1/cases/{r.id}/image", "width": r.width, "height": r.height,
        "metadata": {k: v for k, v in asdict(r.metadata).items() if k != "request_id"},
        "partition": r.partition, "model_version": r.model_version, "model_digest": r.model_digest,
        "top_class": r.top_class,
        "probabilities": r.probabilities, "decision": r.decision, "quality": r.quality,
        "settlement": {"status": s.status, "label": s.label, "source": s.source,
                       "adjudicator": s.adjudicator, "note": s.note,
                       "current": [label_out(lab) for lab in s.current]},
    }


def label_out(lab) -> dict:
    return {"id": lab.id, "case_id": lab.case_id, "label": lab.label, "source": lab.source, "reader": lab.reader,
            "created_at": lab.created_at.isoformat(), "note": lab.note}
