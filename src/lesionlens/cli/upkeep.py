"""``lesionlens gate``, ``monitor`` and ``retrain``: keeping a deployed model fresh (the library:
lesionlens.upkeep).

    lesionlens monitor reference runs/ham --out runs/ham-reference.npz       its validation images
    lesionlens monitor --db cases.sqlite --bundle runs/ham --reference runs/ham-reference.npz --window 200 --out reports/monitor
    lesionlens monitor --db cases.sqlite --registry models/ --reference REF --out reports/monitor   the champion
    lesionlens gate freeze ../shared/data/isic2017 --partition val --out gatesets/isic2017-val
    lesionlens gate champion challenger --registry models/ --gate-set gatesets/isic2017-val --out gates/next
    lesionlens retrain --registry models/ --cases exports/2026-12 --gate-set gatesets/clinic-b --out runs/retrain
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lesionlens.cli.options import add_setting
from lesionlens.upkeep.settings import ReferenceSettings

GATE_EPILOG = """\
examples:
  lesionlens gate freeze ../shared/data/isic2017 --partition val --out gatesets/isic2017-val
  lesionlens gate freeze ../shared/data/ham10000 --exclude-trained-by runs/champion --out gatesets/ham-val
  lesionlens gate runs/champion runs/challenger --gate-set gatesets/isic2017-val --out gates/challenger
  lesionlens gate champion challenger --registry models/ --gate-set gatesets/isic2017-val --out gates/next
  lesionlens registry promote models/ challenger --gate gates/next/gate.json --reason "..."

Exit status: 0 the challenger passed, 1 it failed the gate (gate.json says why), 2 the gate could
not be run (a bad bundle or gate set, gate images a bundle trained on, ...).
"""
MONITOR_EXAMPLES = """\
    lesionlens monitor reference runs/ham --out runs/ham-reference.npz       its validation images
    lesionlens monitor --db cases.sqlite --bundle runs/ham --reference runs/ham-reference.npz --window 200 --out reports/monitor
    lesionlens monitor --db cases.sqlite --registry models/ --reference REF --out reports/monitor   the champion
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    add_gate_parser(sub)
    add_monitor_parser(sub)
    add_retrain_parser(sub)


def add_gate_parser(sub: argparse._SubParsersAction) -> None:
    from lesionlens.upkeep.gate_settings import GateSettings

    d = GateSettings()
    p = sub.add_parser(
        "gate", help="may a challenger replace the champion? (and `gate freeze`: make a gate set)",
        usage="lesionlens gate CHAMPION CHALLENGER --gate-set DIR --out DIR [options]\n"
              "       lesionlens gate freeze DATA --out DIR [--partition P] [--exclude-trained-by BUNDLE] [--format F]",
        description="Evaluate both bundles on a frozen gate set, each with its own temperature and operating "
                    "points, and test the challenger's non-inferiority (sensitivity and specificity at the "
                    "operating point, AUC, ECE and Brier score, overall and per sex, age band and body site); "
                    "write gate.json (the decision and its evidence, byte-for-byte reproducible) and gate.html. "
                    "`gate freeze DATA` copies labelled images into a new gate set with their hashes and metadata.",
        epilog=GATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="CHAMPION CHALLENGER | freeze DATA", type=Path)
    p.add_argument("--out", type=Path, required=True, help="folder for gate.json and gate.html (with freeze: the new gate set)")
    p.add_argument("--gate-set", type=Path, help="the gate set folder (`lesionlens gate freeze` writes one)")
    p.add_argument("--registry", type=Path, help="CHAMPION and CHALLENGER are bundles of this registry: aliases "
                                                 "(champion, challenger, previous) or digests")
    p.add_argument("--delta", type=float, default=d.delta,
                   help=f"margin for sensitivity, specificity and AUC (default {d.delta})")
    p.add_argument("--ece-margin", type=float, default=d.ece_margin,
                   help=f"how much higher the challenger's ECE (of a view's score) may be (default {d.ece_margin})")
    p.add_argument("--brier-margin", type=float, default=d.brier_margin,
                   help=f"how much higher its Brier score may be (default {d.brier_margin})")
    p.add_argument("--resamples", type=int, default=d.resamples, metavar="N", help=f"bootstrap resamples (default {d.resamples})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"bootstrap seed (default {d.seed})")
    p.add_argument("--min-positives", type=int, default=d.min_positives,
                   help=f"fewest positives (and negatives) for judging a view in a subgroup (default {d.min_positives})")
    p.add_argument("--partition", choices=("train", "val", "test"), help="freeze: only this partition of DATA")
    p.add_argument("--exclude-trained-by", type=Path, action="append", default=[], metavar="BUNDLE",
                   help="freeze: leave out the images this bundle trained on (repeatable); e.g. the champion, "
                        "to keep its validation images of the data it was trained on")
    add_setting(p, "data.format", default="auto")
    add_setting(p, "data.images")
    add_setting(p, "data.cache_dir")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(run=_gate, extra="train")


def _gate(args: argparse.Namespace) -> int:
    if args.paths[0] == Path("freeze"):
        return _freeze(args)
    from lesionlens.upkeep.gate import run_gate
    from lesionlens.upkeep.gate_settings import GateSettings

    if len(args.paths) != 2 or args.gate_set is None:
        raise ValueError("usage: lesionlens gate CHAMPION CHALLENGER --gate-set DIR --out DIR")
    if args.partition or args.exclude_trained_by:
        raise ValueError("--partition and --exclude-trained-by belong to `lesionlens gate freeze`")
    bundles = args.paths
    if args.registry is not None:
        from lesionlens.bundle.registry import Registry

        registry = Registry.open(args.registry)
        bundles = [registry.bundle_path(registry.resolve(str(spec))) for spec in args.paths]
    settings = GateSettings(delta=args.delta, ece_margin=args.ece_margin, brier_margin=args.brier_margin,
                            resamples=args.resamples, seed=args.seed, min_positives=args.min_positives,
                            min_negatives=args.min_positives)
    result = run_gate(bundles[0], bundles[1], args.gate_set, args.out, settings, args.data__cache_dir,
                      progress=not args.quiet)
    print(result.summary())
    print(f"\nReport: {result.files['json']}\n        {result.files['html']}")
    return 0 if result.decision == "pass" else 1


def _freeze(args: argparse.Namespace) -> int:
    from lesionlens.upkeep.gateset import freeze_gate_set

    if len(args.paths) != 2:
        raise ValueError("usage: lesionlens gate freeze DATA --out DIR")
    gate_set = freeze_gate_set(args.paths[1], args.out, args.data__format, args.data__images, args.partition,
                               args.exclude_trained_by, cache_dir=args.data__cache_dir, progress=not args.quiet)
    print("\n".join(gate_set.lines()))
    return 0


def add_monitor_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "monitor", help="drift, performance and staleness of a deployed model, per window of stored cases",
        description="Test each window of N cases a model answered (time order, from the case store) against its "
                    "reference profile: calibrated outputs (Kolmogorov-Smirnov per class, Holm), embeddings (MMD, "
                    "permutation test), predicted-class mix (chi-square), quality-flag rate (Fisher); thresholds "
                    "calibrated on in-distribution windows. With settled labels, sensitivity and specificity at the "
                    "operating point (Wilson intervals); and the staleness clock. Writes monitor.json and monitor.html.",
        epilog="examples:\n" + MONITOR_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
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


def add_retrain_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retrain", help="train a challenger on the champion's data + new labelled cases, with its recipe",
        description="Snapshot the registry champion's training data and a `lesionlens cases export` (grouped "
                    "by patient, every image hashed), train a challenger with the champion's recipe (or --config), "
                    "fit its operating points on the held-out validation partition, export it and register it "
                    "as the challenger. With --gate-set, also run the gate against the champion.",
        epilog="examples:\n"
               "  lesionlens cases export --db cases.sqlite --out exports/2026-12\n"
               "  lesionlens retrain --registry models/ --cases exports/2026-12 --gate-set gatesets/clinic-b "
               "--out runs/retrain-2026-12\n"
               "  lesionlens registry promote models/ challenger --gate runs/retrain-2026-12/gate/gate.json "
               "--reason \"...\"",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--registry", type=Path, required=True, help="the model registry (its champion is retrained)")
    p.add_argument("--cases", type=Path, required=True, help="a `lesionlens cases export` folder")
    p.add_argument("--out", type=Path, required=True, help="a new folder: snapshot/, challenger/, gate/")
    p.add_argument("--config", type=Path, help="a training configuration instead of the champion's config.yaml")
    p.add_argument("--seed", type=int, help="the training seed (default: the recipe's)")
    p.add_argument("--gate-set", type=Path, help="a frozen gate set (`lesionlens gate freeze`): gate the challenger")
    p.set_defaults(run=_retrain, extra="train")


def _retrain(args) -> int:
    from lesionlens.upkeep.retrain import retrain

    result = retrain(args.registry, args.cases, args.out, config=args.config, seed=args.seed,
                     gate_set=args.gate_set)
    print("\n".join(result.lines()))
    return 0 if result.gate is None or result.gate.decision == "pass" else 1
