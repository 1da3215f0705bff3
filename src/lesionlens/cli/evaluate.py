"""``lesionlens evaluate``, ``report`` and ``calibrate``: how good a bundle is, and where it decides."""

from __future__ import annotations

import argparse
from pathlib import Path

from lesionlens.cli.options import add_setting
from lesionlens.config import Split, choices

TTA_HELP = ("test-time augmentation: average the logits over mirror images (flips: 4 views) or all 8 "
            "flips and 90-degree rotations (d4); costs 4x or 8x the time. Default: the bundle's own "
            "(model.tta when trained, or calibrate --tta), usually none")


def add_data_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    """Which labelled images: --data, --format, --images, --split, --cache-dir."""
    add_setting(p, "data.path", required=required)
    add_setting(p, "data.format", default="auto")
    add_setting(p, "data.images")
    p.add_argument("--split", default="auto", choices=choices(Split),
                   help="which images: auto = the bundle's validation split on its own training data, "
                        "else the test partition if there is one, else all")
    add_setting(p, "data.cache_dir")


def add_leakage(p: argparse.ArgumentParser) -> None:
    add_setting(p, "data.allow_leakage", help="evaluate even images the bundle was trained on, or copies of them "
                                              "(refused by default: the figures would be optimistic)")


def add_tta(p: argparse.ArgumentParser, help: str = TTA_HELP) -> None:
    add_setting(p, "model.tta", help=help)


def add_devices(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", type=int, default=1, metavar="N",
                   help="predict in N processes (one per GPU where there are N, else sharing the CPU's cores); "
                        "classification and regression bundles (default 1)")


def check_devices(args: argparse.Namespace, card) -> None:
    if args.devices < 1:
        raise ValueError(f"--devices {args.devices}: give 1 or more processes")
    if args.devices > 1 and (card.is_volume or card.segmentation is not None):
        raise ValueError(f"--devices {args.devices}: {card.name} is a {'volume' if card.is_volume else card.task} "
                         "bundle; several processes predict with 2D classification and regression bundles only")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="evaluate a bundle on labelled images",
        description="Evaluate a bundle on any labelled data: metrics.json (accuracy, balanced accuracy, "
                    "per-class sensitivity/specificity/PPV/NPV, one-vs-rest and macro AUC with grades, "
                    "malignant and melanoma views at the bundle's operating points, the ISIC challenge "
                    "metric set, 95% bootstrap intervals, calibration) plus figures: ROC, precision-recall, "
                    "confusion matrix, reliability diagram, top losses, most-confused pairs.",
    )
    p.add_argument("bundle", type=Path, help="folder written by `lesionlens train`")
    add_data_arguments(p)
    p.add_argument("--out", type=Path, help="where to write (default BUNDLE/evaluations/<data>-<split>)")
    add_tta(p)
    add_devices(p)
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for the 95%% intervals (default 1000; 0: none)")
    p.add_argument("--report", action="store_true", help="also write report.html (self-contained) and report.json")
    add_setting(p, "data.on_bad_input", default="stop")
    add_leakage(p)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(run=_evaluate, extra="train")

    p = sub.add_parser(
        "report", help="one self-contained HTML report of one or several bundles",
        description="Evaluate one or several bundles on the same labelled images and write report.html "
                    "(every figure embedded: opens anywhere, offline) and report.json. With several bundles "
                    "the report adds a side-by-side table, overlaid ROC curves and paired tests of each "
                    "against the first (bootstrap of the difference, DeLong for AUCs).",
        epilog="example:\n  lesionlens report runs/a runs/b --data ../shared/data/isic2017 --out reports/a-vs-b",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundles", type=Path, nargs="+", metavar="BUNDLE")
    add_data_arguments(p)
    p.add_argument("--out", type=Path, required=True, help="folder for report.html, report.json and each bundle's figures")
    add_tta(p)
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    add_leakage(p)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(run=_report, extra="train")

    p = sub.add_parser(
        "calibrate", help="fit the temperature and the malignant / melanoma operating points",
        description="Fit temperature scaling and choose, for each clinical view (malignant, melanoma), the "
                    "decision threshold on validation data; store both in the bundle's card, where predict, "
                    "evaluate and the server use them. Training already does this with the defaults "
                    "(target sensitivity 0.866, the dermatologists' figure in Haenssle et al. 2018).",
    )
    p.add_argument("bundle", type=Path)
    add_data_arguments(p, required=False)
    target = p.add_mutually_exclusive_group()
    target.add_argument("--target-sensitivity", type=float, help="highest threshold reaching this sensitivity (default 0.866)")
    target.add_argument("--target-specificity", type=float, help="lowest threshold reaching this specificity")
    target.add_argument("--youden", action="store_true", help="the threshold maximising sensitivity + specificity - 1")
    p.add_argument("--no-temperature", action="store_true", help="keep the plain softmax (temperature 1)")
    add_tta(p, help="fit on test-time-augmented predictions and make this TTA the bundle's default for "
                    "evaluate / predict / report (default: the bundle's current one)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(run=_calibrate, extra="train")


def _evaluate(args: argparse.Namespace) -> int:
    from lesionlens.bundle.card import read_card
    from lesionlens.evaluation.bundles import evaluate_bundle
    from lesionlens.evaluation.summary import evaluation_lines, rule_lines

    card = read_card(args.bundle)
    check_devices(args, card)
    if card.is_volume:
        return _evaluate_volumes(args, card)
    if card.regression is not None:
        if args.devices > 1:
            raise ValueError(f"--devices {args.devices}: a regression bundle is evaluated in one process "
                             "(`lesionlens predict --devices N` gives its values in several)")
        return _evaluate_regression(args, card)
    result = evaluate_bundle(card, args.data__path, args.out, args.data__format, args.data__images, args.split,
                             args.data__on_bad_input, args.data__cache_dir, args.model__tta, args.bootstrap,
                             report=args.report, progress=not args.quiet,
                             allow_leakage=bool(args.data__allow_leakage), processes=args.devices)
    print("\n".join(evaluation_lines(result.written) + rule_lines(card)))
    print(f"\nWritten to {result.written.folder}/: metrics.json, predictions.csv and figures"
          + (f"; report: {result.report}" if result.report else ""))
    return 0


def _evaluate_volumes(args: argparse.Namespace, card) -> int:
    from lesionlens.evaluation.summary import evaluation_lines, rule_lines
    from lesionlens.evaluation.volume_evaluate import evaluate_volume_bundle

    result = evaluate_volume_bundle(card, args.data__path, args.out, args.split, args.data__on_bad_input,
                                    args.bootstrap, allow_leakage=bool(args.data__allow_leakage))
    if result.regression is not None:
        print("\n".join(result.regression.lines()))
        print(f"\nWritten to {result.folder}/: metrics.json, predictions.csv, scatter.png, residuals.png, worst.json")
    elif result.masks is not None:
        s = result.masks.summary()
        print(f"{result.masks.description}: Dice {s['dice']:.3f}, Jaccard {s['jaccard']:.3f}, lowest Dice "
              f"{s['dice_min']:.3f}")
        print(f"\nWritten to {result.folder}/: metrics.json, per_volume.csv")
    else:
        print("\n".join(evaluation_lines(result.written) + rule_lines(card)))
        print(f"\nWritten to {result.folder}/: metrics.json, predictions.csv and figures")
    return 0


def _evaluate_regression(args: argparse.Namespace, card) -> int:
    from lesionlens.evaluation.bundles import evaluate_regression_bundle

    ev, files = evaluate_regression_bundle(card, args.data__path, args.out, args.data__format, args.data__images,
                                           args.split, args.data__on_bad_input, args.data__cache_dir, args.model__tta,
                                           args.bootstrap, progress=not args.quiet,
                                           allow_leakage=bool(args.data__allow_leakage))
    print("\n".join(ev.lines()))
    print(f"\nWritten to {files['metrics'].parent}/: " + ", ".join(p.name for p in files.values()))
    return 0


def _report(args: argparse.Namespace) -> int:
    from lesionlens.evaluation.bundles import compare_bundles
    from lesionlens.evaluation.summary import evaluation_lines

    html, js, written = compare_bundles(args.bundles, args.data__path, args.out, args.data__format,
                                        args.data__images, args.split, args.data__cache_dir, args.model__tta,
                                        args.bootstrap, progress=not args.quiet,
                                        allow_leakage=bool(args.data__allow_leakage))
    for w in written:
        print("\n".join(evaluation_lines(w)) + "\n")
    print(f"Report: {html}\n        {js}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from lesionlens.evaluation.calibrate import calibrate_bundle
    from lesionlens.evaluation.operating import DERMATOLOGIST_SENSITIVITY
    from lesionlens.evaluation.summary import calibration_lines

    if args.youden:
        criterion, target = "youden", None
    elif args.target_specificity is not None:
        criterion, target = "specificity", args.target_specificity
    else:
        criterion, target = "sensitivity", args.target_sensitivity or DERMATOLOGIST_SENSITIVITY
    card, written = calibrate_bundle(args.bundle, args.data__path, args.split, criterion, target,
                                     not args.no_temperature, args.data__format, args.data__images,
                                     args.data__cache_dir, args.model__tta, progress=not args.quiet)
    print("\n".join(calibration_lines(card)))
    print(f"Stored in {card.path / 'card.json'}; validation figures in {written.folder}/")
    return 0
