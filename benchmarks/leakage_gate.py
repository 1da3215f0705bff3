"""What the leakage check costs every `lesionlens train`: the split of the default recipe on
HAM10000 (decoded at 160 px, from the cache when it holds them), then the check alone, timed. With
--evaluate, also evaluate's check of external data (the main job's ISIC 2017 test set) against
that split's training partition.

    PYTHONPATH=src python benchmarks/leakage_gate.py --data ../shared/data/ham10000 \
        --evaluate ../shared/data/isic2017
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lesionlens.bundle.split import SplitRow
from lesionlens.config import load_config
from lesionlens.data.load import prepare, read_table
from lesionlens.data.splits import assign_partitions
from lesionlens.quality.leakage import check_against_training, check_split
from lesionlens.training.fit import resolve_preprocessing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/ham10000"))
    ap.add_argument("--evaluate", type=Path, help="external labelled data whose test partition is checked")
    args = ap.parse_args()
    cfg = load_config(overrides={"data.path": str(args.data)})
    pre = resolve_preprocessing(cfg)
    started = time.perf_counter()
    data = prepare(read_table(args.data), pre, progress=False)
    table = assign_partitions(data.table, cfg.data.val_fraction, seed=cfg.train.seed)
    read = time.perf_counter() - started
    check = check_split(table, data.images.array)
    print(f"{len(table)} images at {pre.image_size} px (read + decode/cache + split {read:.1f} s)")
    print(f"leakage check: {check.seconds:.1f} s, {len(check.findings)} leak(s) {check.by_evidence()}")
    for line in check.lines[:10]:
        print(f"  {line}")
    if args.evaluate:
        f = table.frame
        rows = [SplitRow(str(i), p, str(lab), "", str(h), "", ph)
                for i, p, lab, h, ph in zip(f["image_id"], f["partition"], f["label"], f["sha256"], f["phash"])]
        external = read_table(args.evaluate)
        external = external.subset((external.frame["partition"] == "test").to_numpy())
        ext = prepare(external, pre, progress=False)
        check = check_against_training(ext.table, ext.images.array, ext.rows(),
                                       [r for r in rows if r.partition == "train"])
        print(f"evaluate's check of {len(ext.table)} test images of {args.evaluate} against the "
              f"{sum(r.partition == 'train' for r in rows)} training images: {check.seconds:.1f} s, "
              f"{len(check.findings)} leak(s) {check.by_evidence()}")
        for line in check.lines[:10]:
            print(f"  {line}")


if __name__ == "__main__":
    main()
