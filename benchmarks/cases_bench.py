"""What keeping cases costs a real server, on SQLite and on PostgreSQL, in one run. Prints tables.

1. Latency: the same images sent one at a time, alternately, to two servers of the same bundle, one
   plain and one storing every prediction (`--store-predictions`); the p50 / p95 difference is what
   storing adds (image cleaning, the file's fsync, the row's commit). Alternating means a busy
   moment of the shared machine hits both.
2. Sustained submissions: POST /v1/cases with metadata and a fresh request id, at a fixed rate
   (default 50/s) for --seconds (default 60) from 32 concurrent clients; failures, "database is
   locked" in any answer or in the server's log, and whether the rate was kept.

    export LESIONLENS_TEST_POSTGRES=$(scripts/postgres.sh)    # optional: adds the PostgreSQL rows
    flock /tmp/lesionlens-heavy.lock .venv/bin/python benchmarks/cases_bench.py \\
        --bundle runs/bench-lite0 --images ../shared/data/ham10000/images

The bundle must be exported (`lesionlens export BUNDLE`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

from lesionlens.serving.process import server_process
from serve_bench import read_response  # benchmarks/ is on the path when this script runs

SITES = ("back", "face", "lower extremity", "trunk", "upper extremity")


def load_files(folder: Path, n: int) -> list[bytes]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
    return [p.read_bytes() for p in files]


def fresh_postgres(server: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"lesionlens_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(server).set(database=name).render_as_string(hide_password=False)


def store_flags(backend: str, work: Path) -> list[str]:
    if backend == "sqlite":
        return ["--db", str(work / f"cases-{uuid.uuid4().hex[:6]}.sqlite")]
    return ["--db", fresh_postgres(os.environ["LESIONLENS_TEST_POSTGRES"]),
            "--case-images", str(work / f"images-{uuid.uuid4().hex[:6]}")]


def latency_rows(bundle: Path, files: list[bytes], backend: str, work: Path, n: int) -> tuple:
    plain, stored = [], []
    with server_process(bundle, "--no-batching") as (a, _), \
            server_process(bundle, "--no-batching", "--store-predictions", *store_flags(backend, work)) as (b, _):
        with httpx.Client(timeout=30) as client:
            for i in range(n + 20):
                for url, times in ((a, plain), (b, stored)) if i % 2 else ((b, stored), (a, plain)):
                    t = time.perf_counter()
                    r = client.post(f"{url}/v1/predict", files={"file": ("x.jpg", files[i % len(files)], "image/jpeg")})
                    r.raise_for_status()
                    if i >= 20:  # warm-up not counted
                        times.append((time.perf_counter() - t) * 1000)
            assert r.json()["case_id"] is not None or url == a
    p = lambda xs, q: float(np.percentile(xs, q))  # noqa: E731
    return (backend, n, p(plain, 50), p(stored, 50), p(plain, 95), p(stored, 95), p(stored, 95) - p(plain, 95))


def case_request(port: int, data: bytes, i: int) -> bytes:
    """One POST /v1/cases as raw HTTP/1.1 bytes: the photo, metadata and a fresh request id."""
    boundary = uuid.uuid4().hex
    fields = {"request_id": f"bench-{uuid.uuid4().hex}", "age": str(20 + i % 70), "sex": ("male", "female")[i % 2],
              "site": SITES[i % len(SITES)], "consent_research": "true", "device": "bench"}
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode()
                    for k, v in fields.items())
    body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jpg\"\r\n"
             "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST /v1/cases HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; "
            f"boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head + body


async def _sustained(port: int, files: list[bytes], rate: float, seconds: float, clients: int) -> dict:
    """Open-loop load: request i is due at start + i / rate; 32 keep-alive connections take the next
    due request. A raw HTTP/1.1 client with prebuilt requests, so the load generator's own cost on
    the shared cores stays small (httpx's is not)."""
    total = int(rate * seconds)
    requests = [case_request(port, files[i % len(files)], i) for i in range(total)]
    next_index = [0]
    started = time.perf_counter() + 0.5
    results = {"ok": 0, "failed": 0, "locked": 0, "late_ms": [], "latency_ms": []}

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while next_index[0] < total:
                i = next_index[0]
                next_index[0] += 1
                wait = started + i / rate - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                results["late_ms"].append(max(0.0, -wait) * 1000)
                t = time.perf_counter()
                try:
                    writer.write(requests[i])
                    await writer.drain()
                    status, body, close = await read_response(reader)
                    results["locked"] += b"locked" in body.lower()
                except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
                    status, close = 0, True
                results["ok" if status == 200 else "failed"] += 1
                results["latency_ms"].append((time.perf_counter() - t) * 1000)
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(clients)))
    results["seconds"] = time.perf_counter() - started
    return results


def sustained_row(bundle: Path, files: list[bytes], backend: str, work: Path, rate: float, seconds: float,
                  clients: int) -> tuple:
    log = work / f"server-{backend}.log"
    with server_process(bundle, *store_flags(backend, work), log_path=log) as (url, _):
        r = asyncio.run(_sustained(int(url.rsplit(":", 1)[1]), files, rate, seconds, clients))
    locked_in_log = log.read_text(errors="replace").lower().count("database is locked")
    achieved = r["ok"] / r["seconds"]
    return (backend, clients, rate, seconds, r["ok"], r["failed"], r["locked"] + locked_in_log, achieved,
            float(np.percentile(r["latency_ms"], 50)), float(np.percentile(r["latency_ms"], 95)),
            float(np.percentile(r["late_ms"], 95)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--latency-requests", type=int, default=300)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--clients", type=int, default=32)
    args = ap.parse_args()
    files = load_files(args.images, 256)
    backends = ["sqlite"] + (["postgresql"] if os.environ.get("LESIONLENS_TEST_POSTGRES") else [])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"{len(files)} images from {args.images}; bundle {args.bundle}; backends {', '.join(backends)}\n")
        print("| store | requests each | p50 plain ms | p50 storing ms | p95 plain ms | p95 storing ms | p95 added ms |")
        print("|---|---|---|---|---|---|---|")
        for backend in backends:
            row = latency_rows(args.bundle, files, backend, work, args.latency_requests)
            print("| {} | {} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:+.1f} |".format(*row), flush=True)
        print("\n| store | clients | target /s | seconds | stored | failed | 'database is locked' | achieved /s "
              "| p50 ms | p95 ms | p95 late start ms |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for backend in backends:
            row = sustained_row(args.bundle, files, backend, work, args.rate, args.seconds, args.clients)
            print("| {} | {} | {:g} | {:g} | {} | {} | {} | {:.1f} | {:.1f} | {:.1f} | {:.1f} |".format(*row), flush=True)


if __name__ == "__main__":
    main()
