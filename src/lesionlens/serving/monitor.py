"""The monitor in the server: the served model's windows of stored cases against its reference.

    GET /v1/monitor?window=N     the monitor report as JSON (as monitor.json)    (label)
    GET /monitor                 the page: plots over time, drawn in the browser from /v1/monitor

Torch-free: the outputs come from the served model's ONNX session, the tests from NumPy and SciPy.
The reference profile is the one the server was started with (``serve --monitor-reference``); when
the served model is not the bundle it was made for (a promotion moved the champion), the answer says
so instead of comparing the wrong things. What was computed (each stored photo's outputs, each
window's tests) is kept for as long as the same model is served, so a request computes only new
cases; the first request on a large store computes them all (about 25 ms per case per thread).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

from fastapi import Depends, FastAPI, Query
from fastapi.responses import HTMLResponse

from lesionlens.serving.auth import Authenticator, Principal
from lesionlens.serving.errors import ApiError
from lesionlens.serving.runtime import BundleModel
from lesionlens.serving.schemas import ErrorResponse
from lesionlens.upkeep.identity import BundleIdentity
from lesionlens.upkeep.monitor import Monitor
from lesionlens.upkeep.monitor_report import plots_script
from lesionlens.upkeep.outputs import MonitorError
from lesionlens.upkeep.reference import load_reference

log = logging.getLogger(__name__)

ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 409, 422)}
PLOTS_MARK = "/* monitor_plots.js */"


class ServedMonitor:
    """The :class:`Monitor` of whichever model is served now, made again when that model changes."""

    def __init__(self, reference: str | Path | None, current_model: Callable[[], BundleModel]):
        self.reference = Path(reference) if reference else None
        self.current_model = current_model
        self._monitor: Monitor | None = None
        self.pool = ThreadPoolExecutor(1, "monitor")  # one run at a time, off the event loop

    def monitor(self) -> Monitor:
        if self.reference is None:
            raise MonitorError("this server has no reference profile to monitor against: start it with "
                               "`lesionlens serve ... --monitor-reference REF` (made by `lesionlens monitor reference`)")
        model = self.current_model()
        if self._monitor is None or self._monitor.model is not model:
            self._monitor = Monitor(model, BundleIdentity.of(model.card.path), load_reference(self.reference))
        return self._monitor

    def report(self, store, window: int | None) -> dict:
        return self.monitor().run(store, window).to_dict()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def add_monitor_routes(app: FastAPI, store, auth: Authenticator, current_model: Callable[[], BundleModel],
                       reference: str | Path | None) -> ServedMonitor:
    """``store``: the case store; ``current_model()``: the model answering now; ``reference``: its
    reference profile (None: the routes say how to give one)."""
    served = ServedMonitor(reference, current_model)
    label = auth.require("label")

    @app.get("/v1/monitor", responses=ERRORS, tags=["monitor"])
    async def monitor(window: int | None = Query(None, ge=1, description="cases per window (default: the largest "
                                                                          "the reference has thresholds for)"),
                      who: Principal = Depends(label)) -> dict:
        try:
            return await asyncio.get_running_loop().run_in_executor(served.pool, served.report, store, window)
        except MonitorError as e:
            raise ApiError(409, "cannot_monitor", str(e)) from e

    @app.get("/monitor", response_class=HTMLResponse, include_in_schema=False)
    def monitor_page() -> str:
        page = resources.files("lesionlens.serving").joinpath("static/monitor.html").read_text()
        return page.replace(PLOTS_MARK, plots_script())

    return served
