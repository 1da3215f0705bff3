"""Training throughput on this CPU: `lesionlens train` by memory allocator, bare PyTorch loops by
architecture and setting, and the machine's measured matrix-multiply peak, in one run.

    .venv/bin/python benchmarks/train_throughput.py [--shared ../shared] [--steps 30] [--repeats 2]
    .venv/bin/python benchmarks/train_throughput.py --skip train,variants     # the architectures only

Every measurement runs in a process of its own (the allocator is chosen when a process starts), and
the rows of a table alternate over the repeats so that machine noise hits them alike.

1. `lesionlens train` at the CPU recipe's settings (configs/cpu_recipe.yaml: EfficientNet-Lite0,
   224 px, batch 32, its augmentation; one epoch of ``--steps`` batches of HAM10000 images), with
   ``LESIONLENS_ALLOCATOR`` = system (what LesionLens did before), glibc (told to keep freed
   memory), jemalloc and tcmalloc (preloaded, where the system has them). Images/s are the card's
   (training steps only); the kept weights' sha256 and the validation balanced accuracy show that
   the allocator changes the speed and nothing else.
2. Bare loops (forward, loss, backward, AdamW step on ready-made random batches; no loading or
   augmentation) for EfficientNet-Lite0, MobileNetV2 and ResNet-18 at 224 px, batch 32, with the
   system allocator, jemalloc and tcmalloc: images/s, training GFLOP/s (3 x the forward pass's FLOPs,
   counted by torch.utils.flop_counter) and their fraction of the measured fp32 matmul peak, and
   minor page faults per image.
3. EfficientNet-Lite0 settings, bare loop, jemalloc: channels-last against contiguous memory,
   batch 16 / 32 / 64, one thread against two, and torch.compile (inductor; its compile time apart).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURES = ("efficientnet_lite0", "mobilenet_v2", "resnet18")


# --- the measurements, each in its own process -------------------------------------------------

def measure_peak(threads: int) -> dict:
    """fp32 matrix-multiply GFLOP/s (2048 x 2048, the best of 5 after a warm-up)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = 0.0
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * 2048**3 / (time.perf_counter() - started) / 1e9)
    return {"gflops": best}


def measure_bare(arch: str, batch: int, steps: int, threads: int, layout: str, compile_: bool) -> dict:
    """Images/s of a plain training loop on ready random batches (after 2 untimed steps)."""
    import torch

    from lesionlens.models.profile import model_cost
    from lesionlens.models.registry import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(arch, 7, pretrained=False).train()
    memory = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=memory)
    run = torch.compile(model) if compile_ else model
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(batch, 3, 224, 224).contiguous(memory_format=memory)
    y = torch.randint(0, 7, (batch,))

    def step() -> None:
        loss = loss_fn(run(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    started = time.perf_counter()
    step()
    step()
    warmup = time.perf_counter() - started
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    started = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - started
    images = steps * batch
    return {"images_per_s": images / seconds, "warmup_s": warmup,
            "faults_per_image": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / images,
            "train_gflop_per_image": 3 * 2 * model_cost(arch, 7, 224).macs / 1e9}


def in_process(kind: str, allocator: str, **kwargs) -> dict:
    """Run one measurement of this script in a new process with ``allocator`` preloaded (or not)."""
    from lesionlens.training import allocator as alloc

    env = dict(os.environ, LESIONLENS_ALLOCATOR=allocator, PYTHONWARNINGS="ignore")
    env = alloc.relaunch_environment(allocator, env) or env
    args = [sys.executable, __file__, "--measure", kind, "--args", json.dumps(kwargs)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} {kwargs} with {allocator}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def train_row(allocator: str, data: Path, images: Path, weights: Path, out: Path) -> dict:
    """`lesionlens train` (the real command, its restart included) at the CPU recipe's settings, one epoch."""
    env = dict(os.environ, LESIONLENS_ALLOCATOR=allocator)
    command = [str(Path(sys.executable).parent / "lesionlens"), "train", "--config",
               str(ROOT / "configs" / "cpu_recipe.yaml"), "--data", str(data), "--images", str(images),
               "--weights", str(weights), "--epochs", "1", "--set", "model.tta=none", "--out", str(out), "-q"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"lesionlens train with {allocator}: {done.stderr[-2000:]}")
    card = json.loads((out / "card.json").read_text())
    return {"images_per_s": card["training"]["train_images_per_s"], "device": card["training"]["device"],
            "balanced_accuracy": card["validation"]["balanced_accuracy"],
            "weights": hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()[:12]}


# --- the tables -----------------------------------------------------------------------------------

def listed(runs: list[dict], key: str, spec: str = ".1f") -> str:
    return ", ".join(format(x[key], spec) for x in runs)


def available(allocators: tuple[str, ...]) -> tuple[str, ...]:
    from lesionlens.training.allocator import LIBRARIES, find_library

    return tuple(a for a in allocators if a not in LIBRARIES or find_library(a) is not None)


def train_table(args, tmp: Path) -> tuple[list[str], dict[str, float]]:
    import pandas as pd

    ham = args.shared / "data" / "ham10000"
    meta = pd.read_csv(ham / "HAM10000_metadata.csv")
    subset = meta.sample(int(args.steps * 32 / 0.8) + 8, random_state=0)
    (tmp / "subset").mkdir()
    subset.to_csv(tmp / "subset" / "HAM10000_metadata.csv", index=False)
    allocators = available(("system", "glibc", "jemalloc", "tcmalloc"))
    rows: dict[str, list[dict]] = {a: [] for a in allocators}
    for r in range(args.repeats):
        for a in allocators if r % 2 == 0 else reversed(allocators):
            rows[a].append(train_row(a, tmp / "subset", ham / "images", args.shared / "weights", tmp / f"{a}-{r}"))
            print(f"  train {a} #{r + 1}: {rows[a][-1]['images_per_s']} images/s", file=sys.stderr, flush=True)
    base = statistics.median(x["images_per_s"] for x in rows["system"])
    lines = [f"\n1. `lesionlens train`, CPU recipe settings (EfficientNet-Lite0, 224 px, batch 32), one epoch of "
             f"{args.steps} steps, {args.repeats} alternating repeats",
             f"| LESIONLENS_ALLOCATOR | card's device | images/s (median) | runs | vs system | val. bal. acc. | "
             f"weights sha256 |", "|---|---|---|---|---|---|---|"]
    for a, runs in rows.items():
        med = statistics.median(x["images_per_s"] for x in runs)
        lines.append(f"| {a} | {runs[0]['device']} | {med:.1f} | {listed(runs, 'images_per_s')}"
                     f" | {med / base:.2f}x | {listed(runs, 'balanced_accuracy', '.4f')} | "
                     f"{', '.join(sorted({x['weights'] for x in runs}))} |")
    return lines, {a: statistics.median(x["images_per_s"] for x in runs) for a, runs in rows.items()}


def bare_table(args, peak: float) -> tuple[list[str], dict[str, float]]:
    allocators = available(("system", "jemalloc", "tcmalloc"))
    cells = [(arch, a) for arch in ARCHITECTURES for a in allocators]
    results: dict[tuple, list[dict]] = {c: [] for c in cells}
    for r in range(args.repeats):
        for arch, a in cells if r % 2 == 0 else reversed(cells):
            results[arch, a].append(in_process("bare", a, arch=arch, batch=32, steps=args.bare_steps, threads=2,
                                               layout="channels_last", compile_=False))
            print(f"  bare {arch} {a} #{r + 1}: {results[arch, a][-1]['images_per_s']:.1f} images/s",
                  file=sys.stderr, flush=True)
    lines = [f"\n2. Bare training loop, 224 px, batch 32, channels-last, 2 threads, {args.bare_steps} steps, "
             f"{args.repeats} alternating repeats; peak = measured fp32 matmul {peak:.0f} GFLOP/s",
             "| architecture | allocator | images/s (median) | runs | training GFLOP/image | GFLOP/s | of peak | "
             "page faults/image |", "|---|---|---|---|---|---|---|---|"]
    for (arch, a), runs in results.items():
        med = statistics.median(x["images_per_s"] for x in runs)
        gflop = runs[0]["train_gflop_per_image"]
        lines.append(f"| {arch} | {a} | {med:.1f} | {listed(runs, 'images_per_s')} | "
                     f"{gflop:.2f} | {med * gflop:.1f} | {med * gflop / peak:.0%} | "
                     f"{statistics.median(x['faults_per_image'] for x in runs):.0f} |")
    return lines, {a: statistics.median(x["images_per_s"] for x in results["efficientnet_lite0", a])
                   for a in allocators}


def variants_table(args) -> list[str]:
    allocator = available(("jemalloc",)) or ("glibc",)
    allocator = allocator[0]
    settings = {
        "channels-last, batch 32, 2 threads (adopted)": dict(batch=32, threads=2, layout="channels_last", compile_=False),
        "contiguous memory": dict(batch=32, threads=2, layout="contiguous", compile_=False),
        "batch 16": dict(batch=16, threads=2, layout="channels_last", compile_=False),
        "batch 64": dict(batch=64, threads=2, layout="channels_last", compile_=False),
        "1 thread": dict(batch=32, threads=1, layout="channels_last", compile_=False),
        "torch.compile (inductor)": dict(batch=32, threads=2, layout="channels_last", compile_=True),
    }
    results: dict[str, list[dict]] = {k: [] for k in settings}
    names = list(settings)
    for r in range(args.repeats):
        for name in names if r % 2 == 0 else reversed(names):
            s = settings[name]
            steps = max(2, args.bare_steps * 32 // s["batch"])
            results[name].append(in_process("bare", allocator, arch="efficientnet_lite0", steps=steps, **s))
            print(f"  variant {name} #{r + 1}: {results[name][-1]['images_per_s']:.1f} images/s",
                  file=sys.stderr, flush=True)
    base = statistics.median(x["images_per_s"] for x in results[names[0]])
    lines = [f"\n3. EfficientNet-Lite0 bare loop at 224 px, {allocator} allocator, {args.repeats} alternating repeats",
             "| setting | images/s (median) | runs | vs adopted | first two steps (s) |", "|---|---|---|---|---|"]
    for name, runs in results.items():
        med = statistics.median(x["images_per_s"] for x in runs)
        lines.append(f"| {name} | {med:.1f} | {listed(runs, 'images_per_s')} | "
                     f"{med / base:.2f}x | {statistics.median(x['warmup_s'] for x in runs):.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--steps", type=int, default=30, help="training batches of each `lesionlens train` row")
    parser.add_argument("--bare-steps", type=int, default=10, help="timed batches of 32 of each bare loop")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip", default="", help="comma-separated: train, bare, variants")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--args", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # one measurement, in this process, on the allocator LESIONLENS_ALLOCATOR names
        from lesionlens.training import allocator

        allocator.prepare()
        kwargs = json.loads(args.args)
        result = measure_peak(**kwargs) if args.measure == "peak" else measure_bare(**kwargs)
        print(json.dumps(result))
        return
    skip = set(filter(None, args.skip.split(",")))
    peak = max(in_process("peak", "system", threads=2)["gflops"] for _ in range(2))
    lines = [f"Training throughput, {os.cpu_count()} CPU cores; fp32 matmul peak {peak:.0f} GFLOP/s (2 threads)"]
    trained, bare = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        if "train" not in skip:
            table, trained = train_table(args, Path(tmp))
            lines += table
    if "bare" not in skip:
        table, bare = bare_table(args, peak)
        lines += table
    if trained and bare:
        lines.append("\n`lesionlens train` (loading, augmentation, Lightning, logging, the epoch's first steps) against "
                     "the bare loop, EfficientNet-Lite0 at 224 px: " + ", ".join(
                         f"{a} {trained[a] / bare[a]:.0%}" for a in bare if a in trained))
    if "variants" not in skip:
        lines += variants_table(args)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
