"""A real `lesionlens serve` process on 127.0.0.1: a short, bounded load test and the hostile
corpus over the network; the process must answer everything and stay up."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from serving.hostile import corpus
from serving.test_hostile import check_answer

CLIENTS = 8
REQUESTS_EACH = 25


def test_short_load_has_no_failures(live_server, exported_bundle):
    url, proc = live_server
    images = [f.read_bytes() for f in sorted((exported_bundle.parent / "images").rglob("*.jpg"))[:CLIENTS]]

    def client(i: int) -> list[tuple[int, float]]:
        out = []
        with httpx.Client(base_url=url, timeout=30) as c:
            for _ in range(REQUESTS_EACH):
                t = time.perf_counter()
                r = c.post("/v1/predict", files={"file": ("x.jpg", images[i], "image/jpeg")})
                out.append((r.status_code, time.perf_counter() - t))
        return out

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = [r for rs in pool.map(client, range(CLIENTS)) for r in rs]
    elapsed = time.perf_counter() - started
    statuses = [s for s, _ in results]
    assert statuses == [200] * CLIENTS * REQUESTS_EACH
    assert elapsed < 120
    assert proc.poll() is None


def test_hostile_corpus_over_the_network(live_server):
    url, proc = live_server
    with httpx.Client(base_url=url, timeout=60) as c:
        for case in corpus():
            r = c.post("/v1/predict", files={"file": (case.filename, case.data, "application/octet-stream")})
            check_answer(case, r.status_code, r.json())
        assert proc.poll() is None
        assert c.get("/healthz").json() == {"status": "ok"}
