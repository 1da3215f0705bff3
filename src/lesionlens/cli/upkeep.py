"""``lesionlens monitor``: drift, performance and staleness of a deployed model, from its case store.

    lesionlens monitor reference runs/ham --out runs/ham-reference.npz       its validation images
    lesionlens monitor --db cases.sqlite --bundle runs/ham --reference runs/ham-reference.npz --window 200 --out reports/monitor
    lesionlens monitor --db cases.sqlite --registry models/ --reference REF --out reports/monitor   the champion
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lesionlens.upkeep.settings import ReferenceSettings

EXAMPLES = __doc__.split("\n\n", 1)[1]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    add_monitor_parser(sub)


def add_monitor_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "monitor", help="drift, performance and staleness of a deployed model, per window of stored cases",
        description="Test each window of N cases a model answered (time order, from the case store) against its "
                    "reference profile: calibrated outputs (Kolmogorov-Smirnov per class, Holm), embeddings (MMD, "
                    "permutation test), predicted-class mix (chi-square), quality-flag rate (Fisher); thresholds "
                    "calibrated on in-distribution windows. With settled labels, sensitivity and specificity at the "
                    "operating point (Wilson intervals); and the staleness clock. Writes monitor.json and monitor.html.",
        epilog="examples:\n" + EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", help="the case store: a SQLite path or a database URL (as for serve)")
    p.add_argument("--case-images", help="folder of case photos (default: <db>.images beside a SQLite file)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--bundle", type=Path, help="the model whose cases to monitor (an exported bundle)")
    which.add_argument("--registry", type=Path, help="a model registry: monitor its champion")
    p.add_argument("--reference", type=Path, help="the bundle's reference profile (`lesionlens monitor reference`)")
    p.add_argument("--window", type=int, help="cases per window (default: the largest the reference has thresholds for)")
    p.add_argument("--out", type=Path, help="folder for monitor.json, monitor.html (and the outputs kept for the next run)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ONNX Runtime threads (default: all cores)")
    p.set_defaults(run=_monitor, extra="train")

    commands = p.add_subparsers(title="commands", metavar="COMMAND", dest="monitor_command")
    d = ReferenceSettings()
    r = commands.add_parser(
        "reference", help="make a bundle's reference profile (outputs on data it did not train on, thresholds)",
        description="The bundle's calibrated outputs, embeddings, predicted-class mix and quality-flag rate on "
                    "images it did not train on (default: its validation partition, from split.csv), and each drift "
                    "test's threshold per window size, set from the false-alarm rate measured on in-distribution "
                    "windows drawn from those images. Written as an .npz (no pickle) with its digest.")
    r.add_argument("bundle", type=Path, help="an exported bundle")
    r.add_argument("--data", type=Path, help="images to use instead (any layout --data reads); those the bundle "
                                             "trained on are left out")
    r.add_argument("--out", type=Path, required=True, help="the profile file to write (.npz)")
    r.add_argument("--windows", type=int, nargs="+", default=list(d.windows),
                   help="window sizes to calibrate thresholds for (default %(default)s)")
    r.add_argument("--target", type=float, default=d.target,
                   help="false-alarm rate per window to calibrate for (default %(default)s)")
    r.add_argument("--draws", type=int, default=d.draws,
                   help="in-distribution windows measured per size (default %(default)s)")
    r.add_argument("--pca-dims", type=int, default=d.pca_dims, help="principal components of the embeddings (default %(default)s)")
    r.add_argument("--permutations", type=int, default=d.permutations,
                   help="permutations of the embeddings' MMD test (default %(default)s)")
    r.add_argument("--seed", type=int, default=d.seed)
    r.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ONNX Runtime threads (default: all cores)")
    r.set_defaults(run=_reference, extra="train")


def _monitor(args: argparse.Namespace) -> int:
    from lesionlens.upkeep.monitor import champion_bundle, monitor_files
    from lesionlens.upkeep.monitor_report import write_report

    missing = [flag for flag, value in (("--db", args.db), ("--reference", args.reference), ("--out", args.out),
                                        ("--bundle or --registry", args.bundle or args.registry)) if not value]
    if missing:
        raise ValueError(f"`lesionlens monitor` needs {', '.join(missing)} (or `lesionlens monitor reference` to make "
                         "a reference)")
    bundle = args.bundle or champion_bundle(args.registry)
    args.out.mkdir(parents=True, exist_ok=True)
    result = monitor_files(args.db, bundle, args.reference, args.window, args.case_images,
                           cache=args.out / "outputs.npz", threads=args.threads)
    print("\n".join(result.lines()))
    for path in write_report(result, args.out):
        print(f"  wrote {path}")
    return 0


def _reference(args: argparse.Namespace) -> int:
    from lesionlens.upkeep.reference import build_reference, reference_images

    settings = ReferenceSettings(tuple(args.windows), args.target, args.draws, args.pca_dims, args.permutations, args.seed)
    profile = build_reference(args.bundle, reference_images(args.bundle, args.data), settings, args.threads)
    path = profile.save(args.out)
    print("\n".join(profile.summary_lines()))
    print(f"  wrote {path}")
    return 0
