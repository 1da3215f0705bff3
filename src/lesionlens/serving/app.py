"""The FastAPI application: ``create_app(bundle, settings)``; the model is loaded once, at start-up
(or, with ``settings.registry``, a registry's champion, swapped when an alias moves).

    POST /v1/predict          one image (multipart field "file"); ?explain=true adds a CAM overlay
    POST /v1/predict/batch    up to max_batch_files images (multipart fields "files")
    POST /v1/explain          one image -> the CAM overlay as image/png
    POST /v1/segment          one image -> the lesion's mask (PNG), outline and measurements
                              (models with a mask head; form field mm_per_pixel for sizes in mm)
    GET  /v1/model            the bundle's card and how it is served (digest, registry, shadow counts)
    GET  /healthz, /readyz    liveness, readiness (and the served digest)
    GET  /                    the web page;  /docs  the OpenAPI docs
With a case store (``settings.db``): /v1/cases, the labelling workflow and the study statistics
(:mod:`lesionlens.serving.cases`), and the pages /label and /study.
"""

from __future__ import annotations

import base64
import logging
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from lesionlens import __version__
from lesionlens.serving.auth import Authenticator
from lesionlens.serving.errors import ApiError
from lesionlens.serving.limits import BodyLimit
from lesionlens.serving.runtime import BundleModel
from lesionlens.serving.schemas import BatchResponse, ErrorResponse, Health, Prediction, Ready, Segmentation
from lesionlens.serving.segment import require_head
from lesionlens.serving.served import Served
from lesionlens.serving.service import PredictionService
from lesionlens.serving.settings import ServeSettings

log = logging.getLogger(__name__)

ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 413, 415, 422)}
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file(s)


def create_app(bundle: str | Path | None = None, settings: ServeSettings | None = None) -> FastAPI:
    """Serve ``bundle``, or (``bundle`` None) the champion of the registry ``settings.registry``."""
    settings = settings or ServeSettings()
    served, registry = _models(bundle, settings)
    if settings.db is not None and not served.model.classifies:
        raise ValueError(f"{served.model.card.path}: a case store keeps classified cases, and this {served.model.task} "
                         "model has no classification head; serve it without --db")
    service = PredictionService(served, settings)
    cases = _case_service(settings, service)
    shadow = _shadow(settings, registry, service, cases)
    authenticator = Authenticator(settings.token, cases.store if cases else None, settings.token_cache_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        if registry:
            await registry.start(service)
        if shadow:
            shadow.start()
        model = service.model
        log.info("serving %s (%s, digest %s) with %s, %d threads, batching %s", model.card.path, model.card.architecture,
                 service.current.short, model.runtime, model.threads, "on" if settings.batching else "off")
        if cases:
            log.info("keeping cases in %s%s", cases.store.describe(),
                     "; /v1/predict stores too" if settings.store_predictions else "")
        yield
        if shadow:
            await shadow.stop()
        await service.stop()
        await (registry.stop() if registry else served.stop())
        if cases:
            cases.close()

    # FastAPIOffline: FastAPI whose /docs and /redoc pages load Swagger UI and ReDoc from files in
    # the package instead of a CDN, so the API docs work on a server (or for a browser) offline
    app = FastAPIOffline(title="LesionLens", version=__version__, lifespan=lifespan,
                         description="Skin-lesion image classification and lesion segmentation. A research tool: its outputs "
                                     "are not a diagnosis.")
    app.state.service = service
    app.add_middleware(BodyLimit, limit_for=lambda path: _body_limit(path, settings))
    _add_error_handlers(app)
    auth = [Depends(authenticator.require("submit"))]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return _static("index.html")

    @app.get("/healthz", response_model=Health)
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", response_model=Ready, responses={503: {"model": Health}})
    def readyz():
        if not service.ready:
            return JSONResponse({"status": "starting or stopping"}, status_code=503)
        return {"status": "ready", "model_digest": service.current.digest,
                "registry_seq": registry.state.seq if registry else None}

    @app.get("/v1/model", dependencies=auth, responses=ERRORS)
    def model_card() -> dict:
        model = service.model
        return {"card": model.card.data, "serving": service.model_info() | {
            "task": model.task, "heads": model.heads, "explain": model.explains, "decision_basis": service.decision_basis(),
            "max_upload_bytes": settings.max_upload_bytes, "max_pixels": settings.max_pixels,
            "max_batch_files": settings.max_batch_files, "batching": settings.batching,
            "max_batch_size": settings.max_batch_size, "max_wait_ms": settings.max_wait_ms,
            "threads": model.threads, "token_required": not authenticator.is_open(),
            "case_store": cases is not None, "stores_predictions": cases is not None and settings.store_predictions,
            "registry": registry.describe() if registry else None, "shadow": shadow.describe() if shadow else None}}

    @app.post("/v1/predict", response_model=Prediction, response_model_by_alias=True,
              dependencies=auth, responses=ERRORS)
    async def predict(file: UploadFile = File(description="a JPEG or PNG image"),
                      explain: bool = Query(False, description="add a class-activation-map overlay (PNG)")) -> dict:
        _check_explain(explain, service.model)
        name, data = await _read(file, settings)
        if cases is not None and settings.store_predictions:
            return await _predict_and_store(name, data, explain)
        result = await _predict_one(name, data, explain)
        if shadow:
            shadow.submit(name, data, result)
        return result

    async def _predict_one(name: str, data: bytes, explain: bool = False) -> dict:
        (result,) = await service.predict([(name, data)], explain)
        if isinstance(result, ApiError):
            raise result
        return result

    async def _predict_and_store(name: str, data: bytes, explain: bool) -> dict:
        result, prepared = await predict_and_prepare(cases, lambda n, d: _predict_one(n, d, explain), name, data,
                                                      settings.max_pixels)
        stored = {k: v for k, v in result.items() if k != "heatmap"}
        result["case_id"], _, _, _ = await cases.keep(prepared, CaseMetadata(), stored, "predict",
                                                      result["timing"]["total_ms"], (name, data))
        return result

    @app.post("/v1/predict/batch", response_model=BatchResponse, response_model_by_alias=True,
              dependencies=auth, responses=ERRORS)
    async def predict_batch(files: list[UploadFile] = File(description="JPEG or PNG images"),
                            explain: bool = Query(False)) -> dict:
        if len(files) > settings.max_batch_files:
            raise ApiError(413, "too_many_files", f"{len(files)} files; the limit is {settings.max_batch_files} per request")
        _check_explain(explain, service.model)
        uploads: list[tuple[str, bytes | ApiError]] = []
        for f in files:
            try:
                uploads.append(await _read(f, settings))
            except ApiError as e:
                uploads.append((f.filename or "file", e))
        todo = [i for i, (_, data) in enumerate(uploads) if not isinstance(data, ApiError)]
        done = dict(zip(todo, await service.predict([uploads[i] for i in todo], explain))) if todo else {}
        results = []
        for i, (name, data) in enumerate(uploads):
            outcome = done.get(i, data)
            results.append({"filename": name, "error": outcome.to_dict()["error"]} if isinstance(outcome, ApiError)
                           else {"filename": name, "prediction": outcome})
            if shadow and not isinstance(outcome, ApiError):
                shadow.submit(name, data, outcome)
        return {"results": results}

    @app.post("/v1/explain", dependencies=auth, responses=ERRORS | {200: {"content": {"image/png": {}}}},
              response_class=Response)
    async def explain_png(file: UploadFile = File(description="a JPEG or PNG image")) -> Response:
        _check_explain(True, service.model)
        (result,) = await service.predict([await _read(file, settings)], explain=True)
        if isinstance(result, ApiError):
            raise result
        return Response(base64.b64decode(result["heatmap"]["png_base64"]), media_type="image/png",
                        headers={"X-Top-Class": result["top_class"]})

    @app.post("/v1/segment", response_model=Segmentation, dependencies=auth, responses=ERRORS)
    async def segment(file: UploadFile = File(description="a JPEG or PNG image"),
                      mm_per_pixel: float | None = Form(None, gt=0, allow_inf_nan=False,
                                                        description="the image's scale, for sizes in mm")) -> dict:
        require_head(service.model, "segmentation")
        name, data = await _read(file, settings)
        return await service.segment(name, data, mm_per_pixel)

    if cases is not None:
        # imported only with a case store: a plain prediction server loads no database code
        from lesionlens.cases.store import CaseMetadata
        from lesionlens.serving.cases import add_case_routes, predict_and_prepare

        add_case_routes(app, cases, authenticator, lambda f: _read(f, settings), _predict_one,
                        list(service.model.classes), settings.max_pixels)
        from lesionlens.serving.monitor import add_monitor_routes  # GET /v1/monitor, /monitor

        add_monitor_routes(app, cases.store, authenticator, lambda: service.model, settings.monitor_reference)

        @app.get("/label", response_class=HTMLResponse, include_in_schema=False)
        def label_page() -> str:
            return _static("label.html")

        @app.get("/study", response_class=HTMLResponse, include_in_schema=False)
        def study_page() -> str:
            return _static("study.html")

    return app


def _static(name: str) -> str:
    return resources.files("lesionlens.serving").joinpath(f"static/{name}").read_text()


def _models(bundle: str | Path | None, settings: ServeSettings):
    """(the model to serve first, the registry's models or None)."""
    if (bundle is None) == (settings.registry is None):
        raise ValueError("serve either one bundle or a registry's champion (--registry DIR), not both or neither")
    if settings.shadow and settings.registry is None:
        raise ValueError("shadow mode scores with the registry's challenger: give --registry DIR")
    if settings.registry is None:
        return Served.load(bundle, settings), None
    from lesionlens.serving.registry_models import RegistryModels

    registry = RegistryModels(settings.registry, settings)
    return registry.champion, registry


def _shadow(settings: ServeSettings, registry, service: PredictionService, cases):
    if not settings.shadow:
        return None
    from lesionlens.serving.shadow import ShadowScorer

    shadow = ShadowScorer(registry.challenger, settings, service.decode_pool, cases.keep_shadow if cases else None)
    if cases is not None:
        cases.shadow = shadow
    return shadow


def _case_service(settings: ServeSettings, service: PredictionService):
    if settings.db is None:
        if settings.store_predictions:
            raise ValueError("storing predictions needs a case store: give --db")
        return None
    from lesionlens.cases.store import CaseStore
    from lesionlens.serving.cases import CaseService

    return CaseService(CaseStore.open(settings.db, settings.case_images), service.decode_pool)


def _body_limit(path: str, settings: ServeSettings) -> tuple[int, str]:
    files = settings.max_batch_files if path.rstrip("/").endswith("/batch") else 1
    why = f"{settings.max_upload_bytes:,} bytes per file" + (f", {files} files" if files > 1 else "")
    return files * settings.max_upload_bytes + MULTIPART_OVERHEAD, why + " and the form around them"


async def _read(file: UploadFile, settings: ServeSettings) -> tuple[str, bytes]:
    name = file.filename or "file"
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise ApiError(413, "upload_too_large", f"{name}: more than the limit of {settings.max_upload_bytes:,} bytes")
    return name, data


def _check_explain(explain: bool, model: BundleModel) -> None:
    require_head(model, "classification")
    if explain and not model.explains:
        raise ApiError(400, "explain_unavailable",
                       f"this model ({model.card.architecture}) has no class-activation maps: its head is not "
                       "global average pooling + a linear layer, or it was exported without feature maps")


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return JSONResponse(e.to_dict(), status_code=e.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        about_files = any(str(p) in ("file", "files") for err in e.errors() for p in err["loc"]) or not e.errors()
        hint = " (send images as multipart/form-data: field 'file', or 'files' for the batch endpoint)" if about_files else ""
        return JSONResponse(ApiError(422, "invalid_request", problems + hint).to_dict(), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "bad_request")
        return JSONResponse(ApiError(e.status_code, code, str(e.detail)).to_dict(), status_code=e.status_code,
                            headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def crash(request: Request, e: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse(ApiError(500, "internal_error", f"unexpected {type(e).__name__}; see the server log").to_dict(),
                            status_code=500)
