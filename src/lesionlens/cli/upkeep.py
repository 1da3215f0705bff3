"""Keeping the model fresh: ``lesionlens gate`` (the library: lesionlens.upkeep)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lesionlens.cli.options import add_setting

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


def add_parsers(sub: argparse._SubParsersAction) -> None:
    add_gate_parser(sub)


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
