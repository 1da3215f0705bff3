"""Served segmentation latency: `lesionlens serve` on a segmentation (or multi-task) bundle, POST
/v1/segment over loopback with uploads of --size px, one request at a time (the wait of one user)
and with a few concurrent clients; and, in process, where the time goes (decoding the upload,
ONNX Runtime, the mask at the image's size with its outline and measurements). Prints tables; the
issue's target is a p95 of at most 100 ms at 256 px on 2 cores, with every request answered.

    flock /tmp/lesionlens-heavy.lock .venv/bin/python benchmarks/serve_segment.py \\
        --bundle runs/isic2017-seg --images ../shared/data/isic2017/ISIC-2017_Validation_Data

The bundle must be exported (`lesionlens export BUNDLE`). Every image is resized to --size x --size
(squash, bicubic) and sent as a JPEG (quality 95) unless it already has that size; the server runs
with its defaults (batching on, as many threads as usable cores) plus --server-args. The load
generator is serve_bench.py's (keep-alive connections, prebuilt requests, 127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_bench import HOST, _load, load_files, percentile_ms, request_bytes  # noqa: E402

from lesionlens.serving.process import server_process  # noqa: E402


def at_size(files: list[tuple[str, bytes]], size: int) -> list[tuple[str, bytes]]:
    """Each image as a ``size`` x ``size`` JPEG (kept as it is when it already is one)."""
    out = []
    for name, data in files:
        with Image.open(io.BytesIO(data)) as img:
            if img.size == (size, size) and img.format == "JPEG":
                out.append((name, data))
                continue
            buffer = io.BytesIO()
            img.convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=95)
        out.append((Path(name).stem + ".jpg", buffer.getvalue()))
    return out


def stages(bundle: Path, files: list[tuple[str, bytes]], runs: int, threads: int) -> dict[str, tuple[list, list]]:
    """Per stage of /v1/segment, run in process with the server's code: the wall seconds and the
    CPU seconds (all of this process's threads) of each image. On a machine shared with other jobs
    the CPU time still says what the work costs: with one thread, it is the wall time on an idle core."""
    from lesionlens.data.images import normalize
    from lesionlens.serving.decode import decode_upload_full
    from lesionlens.serving.runtime import BundleModel
    from lesionlens.serving.segment import lesion_answer
    from lesionlens.serving.settings import ServeSettings

    model = BundleModel(bundle, threads=threads)
    if not model.segments:
        sys.exit(f"{bundle}: a {model.task} bundle has no mask head (or was exported before masks were): "
                 "nothing to segment")
    pre, limit = model.preprocessing, ServeSettings().max_pixels
    names = ("decode (view + full image)", "ONNX Runtime", "mask, outline, measurements", "all three")
    times: dict[str, tuple[list, list]] = {name: ([], []) for name in names}
    for i in range(runs + 10):
        name, data = files[i % len(files)]
        marks = [(time.perf_counter(), time.process_time())]
        view, image = decode_upload_full(data, pre, limit, name)
        marks.append((time.perf_counter(), time.process_time()))
        masks = model.run(normalize(view[None], pre)).masks
        marks.append((time.perf_counter(), time.process_time()))
        lesion_answer(masks, image, model, None)
        marks.append((time.perf_counter(), time.process_time()))
        if i >= 10:  # after a warm-up
            spans = [(a, b) for a, b in zip(marks, marks[1:])] + [(marks[0], marks[-1])]
            for key, (start, end) in zip(names, spans):
                times[key][0].append(end[0] - start[0])
                times[key][1].append(end[1] - start[1])
    return times


def serve_and_segment(bundle: Path, files: list[tuple[str, bytes]], clients: list[int], requests: int,
                      seconds: float, extra: list[str]) -> list:
    with server_process(bundle, *extra, host=HOST) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        prebuilt = [request_bytes(port, name, data, "/v1/segment") for name, data in files]
        asyncio.run(_load(port, prebuilt, 2, 2.0, 50))  # warm-up, not counted
        return [asyncio.run(_load(port, prebuilt, n, seconds, requests)) for n in clients]


def main() -> None:
    from lesionlens.bundle.card import read_card
    from lesionlens.serving.settings import usable_cores

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True, help="an exported segmentation or multitask bundle")
    ap.add_argument("--images", type=Path, required=True, help="folder of real JPEG/PNG images")
    ap.add_argument("--size", type=int, default=256, help="upload size in px (default 256)")
    ap.add_argument("--n-images", type=int, default=100)
    ap.add_argument("--stage-runs", type=int, default=100, help="in-process runs per stage")
    ap.add_argument("--requests", type=int, default=300, help="requests per client count (a bound on the load)")
    ap.add_argument("--seconds", type=float, default=60.0, help="at most this long per client count")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads, in process and in the server "
                                                           "(default: the usable cores)")
    ap.add_argument("--server-args", nargs=argparse.REMAINDER, default=[], help="passed to `lesionlens serve`")
    args = ap.parse_args()
    threads = args.threads or usable_cores()
    card = read_card(args.bundle)
    files = at_size(load_files(args.images, args.n_images), args.size)
    print(f"{len(files)} images from {args.images} at {args.size} x {args.size} px; bundle {args.bundle} "
          f"({card.task}, {card.architecture}, {card.preprocessing.image_size} px input); {usable_cores()} usable cores\n")

    print(f"In process, one image at a time, {threads} ONNX Runtime thread(s) ({args.stage_runs} runs after 10 warm-up)")
    print("| stage | median ms | p95 ms | median CPU ms |\n|---|---|---|---|")
    for stage, (wall, cpu) in stages(args.bundle, files, args.stage_runs, threads).items():
        print(f"| {stage} | {percentile_ms(wall, 50):.1f} | {percentile_ms(wall, 95):.1f} | "
              f"{percentile_ms(cpu, 50):.1f} |", flush=True)

    print(f"\nPOST /v1/segment over loopback (`lesionlens serve` {' '.join(args.server_args) or 'defaults'}"
          f"{f', --threads {args.threads}' if args.threads else ''}; "
          f"up to {args.requests} requests or {args.seconds:.0f} s per row)")
    print("| clients | requests | requests/s | p50 ms | p95 ms | p99 ms | max ms | failed |\n|---|---|---|---|---|---|---|---|")
    server_args = [*(["--threads", str(args.threads)] if args.threads else []), *args.server_args]
    for r in serve_and_segment(args.bundle, files, args.clients, args.requests, args.seconds, server_args):
        q = {k: percentile_ms(r.latencies, k) if r.latencies else float("nan") for k in (50, 95, 99, 100)}
        print(f"| {r.clients} | {len(r.latencies) + r.failures} | {r.rps:.1f} | {q[50]:.1f} | {q[95]:.1f} | "
              f"{q[99]:.1f} | {q[100]:.1f} | {r.failures} |", flush=True)


if __name__ == "__main__":
    main()
