"""Several processes on one machine: `lesionlens train --devices 2` against `--devices 1`, and
`lesionlens evaluate --devices 2` against one process, on real images, in one run.

    .venv/bin/python benchmarks/ddp_throughput.py [--shared ../shared] [--steps 20] [--repeats 2]
    .venv/bin/python benchmarks/ddp_throughput.py --bundle runs/some-bundle   # the evaluation rows only

Training: EfficientNet-Lite0 (ImageNet) at 160 px, global batch 32, the default recipe's other
settings, one epoch of ``--steps`` batches of HAM10000 images (a seeded sample) plus its validation;
the rows alternate. Two processes on a 2-core machine share the same two cores (Lightning gives each
one thread), so they are not expected to be faster: the table says by how much they are slower and
what the gradient averaging, the gathering of validation rows and the second process's start cost.
Validation figures differ a little between the two because batch norm normalises over each
process's share of the batch and augmentation draws per process (tests/training/test_distributed.py
checks equality where neither applies).

Evaluation: the first run's bundle on the 600 ISIC 2017 test images with 8-view (d4) test-time
augmentation, `--devices 1` and `--devices 2` (decoded images cached beforehand), alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
LESIONLENS = str(Path(sys.executable).parent / "lesionlens")


def listed(rows: list[dict], key: str) -> str:
    return ", ".join(format(x[key], ".3f") for x in rows)


def run(command: list[str], env: dict) -> float:
    """Wall seconds of a command that must succeed."""
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--steps", type=int, default=20, help="global batches of 32 in the training epoch")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--bundle", type=Path, help="evaluate this bundle and skip the training rows")
    args = parser.parse_args()
    ham, isic = args.shared / "data" / "ham10000", args.shared / "data" / "isic2017"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMP_NUM_THREADS")}
    train_rows: dict[int, list[dict]] = {1: [], 2: []}
    eval_rows: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        meta = pd.read_csv(ham / "HAM10000_metadata.csv")
        (tmp / "subset").mkdir()
        meta.sample(int(args.steps * 32 / 0.8) + 8, random_state=0).to_csv(tmp / "subset" / "HAM10000_metadata.csv",
                                                                           index=False)
        for r in range(0 if args.bundle else args.repeats):
            for devices in (1, 2) if r % 2 == 0 else (2, 1):
                out = tmp / f"train-{devices}-{r}"
                wall = run([LESIONLENS, "train", "--data", str(tmp / "subset"), "--images", str(ham / "images"),
                            "--weights", str(args.shared / "weights"), "--epochs", "1", "--devices", str(devices),
                            "--out", str(out), "-q"], env)
                card = json.loads((out / "card.json").read_text())
                t, v = card["training"], card["validation"]
                train_rows[devices].append({"wall": wall, "fit": t["fit_time_s"], "ips": t["train_images_per_s"],
                                            "bal": v["balanced_accuracy"], "auc": v["macro_auc"], "device": t["device"]})
                print(f"  train --devices {devices} #{r + 1}: {wall:.0f} s", file=sys.stderr, flush=True)
        bundle = args.bundle or tmp / "train-1-0"
        first = [LESIONLENS, "evaluate", str(bundle), "--data", str(isic), "--split", "test", "--tta", "d4",
                 "--bootstrap", "0", "-q"]
        run(first + ["--out", str(tmp / "eval-warm")], env)  # decodes the 600 images into the cache
        for r in range(args.repeats):
            for devices in (1, 2) if r % 2 == 0 else (2, 1):
                eval_rows[devices].append(run(first + ["--devices", str(devices), "--out",
                                                       str(tmp / f"eval-{devices}-{r}")], env))
                print(f"  evaluate --devices {devices} #{r + 1}: {eval_rows[devices][-1]:.0f} s", file=sys.stderr,
                      flush=True)
        one = json.loads((tmp / "eval-1-0" / "metrics.json").read_text())
        two = json.loads((tmp / "eval-2-0" / "metrics.json").read_text())

    med = {d: {k: statistics.median(x[k] for x in rows) for k in ("wall", "fit", "ips")}
           for d, rows in train_rows.items() if rows}
    lines = [f"Several processes on one machine ({os.cpu_count()} CPU cores), {args.repeats} alternating repeats"]
    if train_rows[1]:
        lines += [f"\nTraining: EfficientNet-Lite0, 160 px, global batch 32, one epoch of {args.steps} batches + "
                  "validation",
                  "| --devices | threads per process, allocator | wall s (median) | fit s | training images/s | "
                  "vs 1 process | val. balanced acc. (each run) | val. macro AUC (each run) |",
                  "|---|---|---|---|---|---|---|---|"]
    for d, rows in train_rows.items() if train_rows[1] else ():
        m = med[d]
        lines.append(f"| {d} | {rows[0]['device']} | {m['wall']:.0f} | {m['fit']:.0f} | {m['ips']:.1f} | "
                     f"{m['ips'] / med[1]['ips']:.2f}x | {listed(rows, 'bal')} | {listed(rows, 'auc')} |")
    lines += [f"\nEvaluation of {bundle.name if args.bundle else 'the first run'}: the 600 ISIC 2017 test images, "
              "d4 TTA (8 views), cached",
              "| --devices | wall s (median) | runs | vs 1 process |", "|---|---|---|---|"]
    base = statistics.median(eval_rows[1])
    for d, walls in eval_rows.items():
        lines.append(f"| {d} | {statistics.median(walls):.1f} | {', '.join(f'{w:.1f}' for w in walls)} | "
                     f"{base / statistics.median(walls):.2f}x |")
    lines.append(f"\nSame figures from 1 and 2 evaluating processes: balanced accuracy {one['balanced_accuracy']:.6f} "
                 f"vs {two['balanced_accuracy']:.6f}, macro AUC {one['macro_auc']:.6f} vs {two['macro_auc']:.6f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
