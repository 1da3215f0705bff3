"""The server's settings: typed, with the reason for each default."""

from __future__ import annotations

import os
from dataclasses import dataclass


def usable_cores() -> int:
    """CPU cores this process may run on (the container's share, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ServeSettings:
    # 10 MB holds any dermoscopy JPEG or phone photo; larger uploads are refused before decoding.
    max_upload_bytes: int = 10 * 1024 * 1024
    # Decompression-bomb guard: width x height is checked from the header, before any pixel is
    # decoded. 40 megapixels admits a full-resolution 48 MP-class phone photo at its usual 12 MP
    # output many times over and bounds one decoded image to about 120 MB.
    max_pixels: int = 40_000_000
    max_batch_files: int = 16  # files in one /v1/predict/batch request
    token: str | None = None  # when set, /v1/* needs "Authorization: Bearer <token>"
    # Group concurrent requests into one ONNX Runtime call. Measured on 2 cores with
    # benchmarks/serve_bench.py (README, "Serving"): with 8-32 clients it served 7-21% more requests/s
    # and cut p99 at 32 clients from 629 to 396 ms; alone, a request pays about 2 ms more.
    batching: bool = True
    max_batch_size: int = 16
    max_wait_ms: float = 2.0  # how long the first request of a batch waits for company
    threads: int = 0  # ONNX Runtime intra-op threads; 0 = the usable cores
    decode_workers: int = 0  # threads that decode and preprocess uploads; 0 = the usable cores
    int8: bool = False  # use the bundle's model.int8.onnx (made by `lesionlens export --int8`)
    # The case store (lesionlens.cases): a SQLite path or a database URL. None keeps nothing: a plain
    # prediction service stores no image and no metadata, and /v1/cases and the labelling pages are off.
    db: str | None = None
    case_images: str | None = None  # where case photos go; default <db>.images beside a SQLite file
    # Whether /v1/predict also keeps what it sees (as cases without consent, never exported). Off:
    # storing is a decision about patients' data that the operator makes, not a default.
    store_predictions: bool = False
    # Tokens from the store are looked up at most this often; revoking one takes effect within it.
    token_cache_s: float = 5.0
    # Serve a model registry's champion (lesionlens.bundle.registry) instead of one bundle, and follow
    # its aliases while running: a promotion or rollback swaps the served model without a restart.
    registry: str | None = None
    # How often the registry's promotion log is checked for a moved alias. A check is one os.stat
    # (microseconds), so 0.1 s costs nothing measurable and keeps a rollback's delay (this poll +
    # replaying the log + a pointer swap) far under the 1 s target.
    registry_poll_s: float = 0.1
    # Shadow mode: the registry's challenger also scores every request the champion answered; its
    # answers are stored beside stored cases (with --db) and never returned.
    shadow: bool = False
    # Requests waiting for the challenger at most; beyond it shadow work is dropped (and counted), so
    # under overload shadow mode adds no queueing to the champion's answers, and its memory stays
    # bounded (32 uploads: a few MB of typical photos, 320 MB at the 10 MB upload limit).
    shadow_queue: int = 32
    # The served bundle's reference profile (`lesionlens monitor reference`), for GET /v1/monitor and
    # /monitor (with a case store). None: those routes answer how to give one.
    monitor_reference: str | None = None

    def resolved_threads(self) -> int:
        return self.threads or usable_cores()

    def resolved_decode_workers(self) -> int:
        return self.decode_workers or usable_cores()
