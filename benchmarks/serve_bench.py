"""Serving speed on real images, in one run: eager PyTorch vs ONNX Runtime at batch 1, the raw
in-process capacity (decode + preprocess + ONNX Runtime in one loop), and `lesionlens serve` over
loopback at 1, 8 and 32 concurrent clients, with request batching on and off. Prints tables.

    flock /tmp/lesionlens-heavy.lock .venv/bin/python benchmarks/serve_bench.py \\
        --bundle runs/ham10000-efficientnet_lite0 --images ../shared/data/ham10000/images

The bundle must be exported (`lesionlens export BUNDLE`). The load generator is a small asyncio
HTTP/1.1 client with keep-alive connections and prebuilt requests, so that its own cost on the
shared CPU stays small; it only ever connects to 127.0.0.1 and stops at --seconds per setting or
--max-requests, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesionlens.serving.process import server_process

HOST = "127.0.0.1"  # the only address the load generator will talk to


def load_files(folder: Path, n: int) -> list[tuple[str, bytes]]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
    if not files:
        sys.exit(f"no JPEG or PNG images under {folder}")
    return [(p.name, p.read_bytes()) for p in files]


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000, q))


# --- 1. batch-1 latency: eager PyTorch vs ONNX Runtime ------------------------------------------

def latency_table(bundle: Path, files: list[tuple[str, bytes]], runs: int, threads: int) -> list[tuple]:
    import torch

    from lesionlens.bundle.card import read_card
    from lesionlens.data.images import normalize, preprocess_image
    from lesionlens.inference import load_model
    from lesionlens.serving.runtime import BundleModel

    card = read_card(bundle)
    pre = card.preprocessing
    x = normalize(np.stack([preprocess_image(data, pre) for _, data in files[:64]]), pre)
    torch.set_num_threads(threads)
    model = load_model(card).to(memory_format=torch.channels_last).eval()
    candidates = {"PyTorch eager (fp32)": None, "ONNX Runtime (fp32)": BundleModel(bundle, threads=threads)}
    if card.onnx is not None and card.onnx.int8 is not None:
        candidates["ONNX Runtime (int8)"] = BundleModel(bundle, int8=True, threads=threads)

    def run(name: str, row: np.ndarray) -> None:
        if candidates[name] is None:
            with torch.inference_mode():
                model(torch.from_numpy(row).contiguous(memory_format=torch.channels_last))
        else:
            candidates[name].run(row, features=False)

    times: dict[str, list[float]] = {name: [] for name in candidates}
    for i in range(runs + 20):  # interleaved, so drifts in machine load hit every runtime alike
        row = x[i % len(x):i % len(x) + 1]
        for name in candidates:
            t = time.perf_counter()
            run(name, row)
            if i >= 20:
                times[name].append(time.perf_counter() - t)
    base = float(np.median(times["PyTorch eager (fp32)"]))
    return [(name, percentile_ms(t, 50), percentile_ms(t, 99), float(np.median(t)) / base) for name, t in times.items()]


# --- 2. raw in-process capacity ----------------------------------------------------------------

def raw_capacity(bundle: Path, files: list[tuple[str, bytes]], seconds: float, threads: int) -> tuple[float, int]:
    """Images/s of decode + preprocess + ONNX Runtime (batch 1) in one loop, with the server's code."""
    from lesionlens.data.images import normalize
    from lesionlens.serving.decode import decode_upload
    from lesionlens.serving.runtime import BundleModel
    from lesionlens.serving.settings import ServeSettings

    model = BundleModel(bundle, threads=threads)
    pre, limit = model.preprocessing, ServeSettings().max_pixels
    for _, data in files[:10]:
        model.run(normalize(decode_upload(data, pre, limit)[None], pre), features=False)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        name, data = files[done % len(files)]
        model.run(normalize(decode_upload(data, pre, limit, name)[None], pre), features=False)
        done += 1
    return done / (time.perf_counter() - started), done


# --- 3. the server over loopback ---------------------------------------------------------------

def request_bytes(port: int, name: str, data: bytes, path: str = "/v1/predict") -> bytes:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: multipart/form-data; "
            f"boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response: (status, body, whether the server closes the connection)."""
    status = int((await reader.readline()).split()[1])
    length, close = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        key, _, value = line.decode("latin-1").partition(":")
        if key.lower() == "content-length":
            length = int(value)
        elif key.lower() == "connection" and "close" in value.lower():
            close = True
    return status, await reader.readexactly(length), close


@dataclass
class LoadResult:
    clients: int
    seconds: float
    latencies: list[float]
    failures: int

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds


async def client(port: int, requests: list[bytes], offset: int, another: Callable[[], bool],
                 answered: Callable[[int, bytes, float], None]) -> None:
    """One keep-alive connection that sends ``requests`` in turn (from ``offset``), one at a time,
    while ``another()`` says so; ``answered(status, body, sent)`` gets each answer (status 0: the
    connection failed, and is opened again)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    i = offset
    try:
        while another():
            t = time.perf_counter()
            try:
                writer.write(requests[i % len(requests)])
                await writer.drain()
                status, body, close = await read_response(reader)
            except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
                status, body, close = 0, b"", True
            answered(status, body, t)
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
            i += 1
    finally:
        writer.close()


async def _load(port: int, requests: list[bytes], clients: int, seconds: float, max_requests: int) -> LoadResult:
    latencies: list[float] = []
    failures, budget = [0], [max_requests]
    started = time.perf_counter()

    def another() -> bool:
        if time.perf_counter() >= started + seconds or budget[0] <= 0:
            return False
        budget[0] -= 1
        return True

    def answered(status: int, _body: bytes, sent: float) -> None:
        if status == 200:
            latencies.append(time.perf_counter() - sent)
        else:
            failures[0] += 1

    await asyncio.gather(*(client(port, requests, k * 7, another, answered) for k in range(clients)))
    return LoadResult(clients, time.perf_counter() - started, latencies, failures[0])


def serve_and_load(bundle: Path, files: list[tuple[str, bytes]], batching: bool, client_counts: list[int],
                   seconds: float, max_requests: int, extra: list[str]) -> list[LoadResult]:
    flag = "--batching" if batching else "--no-batching"
    with server_process(bundle, flag, *extra, host=HOST) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        requests = [request_bytes(port, name, data) for name, data in files]
        asyncio.run(_load(port, requests, 4, 2.0, max_requests))  # warm-up, not counted
        return [asyncio.run(_load(port, requests, n, seconds, max_requests)) for n in client_counts]


def main() -> None:
    from lesionlens.serving.settings import usable_cores

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--images", type=Path, required=True, help="folder of real JPEG/PNG images")
    ap.add_argument("--n-images", type=int, default=256)
    ap.add_argument("--latency-runs", type=int, default=300)
    ap.add_argument("--raw-seconds", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=30.0, help="per server setting and client count")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--max-requests", type=int, default=50_000, help="per setting: a bound on the load")
    ap.add_argument("--server-args", nargs=argparse.REMAINDER, default=[], help="passed to `lesionlens serve`")
    args = ap.parse_args()
    threads = usable_cores()
    files = load_files(args.images, args.n_images)
    print(f"{len(files)} images from {args.images}; bundle {args.bundle}; {threads} usable cores\n")

    print("Batch-1 latency (preprocessed input, interleaved runs)")
    print("| runtime | median ms | p99 ms | median vs PyTorch |\n|---|---|---|---|")
    for name, p50, p99, ratio in latency_table(args.bundle, files, args.latency_runs, threads):
        print(f"| {name} | {p50:.2f} | {p99:.2f} | {ratio:.2f}x |")

    raw, n = raw_capacity(args.bundle, files, args.raw_seconds, threads)
    print(f"\nRaw in-process capacity (decode + preprocess + ONNX Runtime, batch 1, one loop): "
          f"{raw:.1f} images/s ({n} images in {args.raw_seconds:.0f} s)\n")

    print(f"Server over loopback ({args.seconds:.0f} s per row)")
    print("| batching | clients | requests/s | vs raw | p50 ms | p99 ms | failed |\n|---|---|---|---|---|---|---|")
    for batching in (True, False):
        for r in serve_and_load(args.bundle, files, batching, args.clients, args.seconds, args.max_requests,
                                args.server_args):
            p50 = percentile_ms(r.latencies, 50) if r.latencies else float("nan")
            p99 = percentile_ms(r.latencies, 99) if r.latencies else float("nan")
            print(f"| {'on' if batching else 'off'} | {r.clients} | {r.rps:.1f} | {r.rps / raw:.0%} | "
                  f"{p50:.1f} | {p99:.1f} | {r.failures} |", flush=True)


if __name__ == "__main__":
    main()
