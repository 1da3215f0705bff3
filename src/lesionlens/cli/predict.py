"""``lesionlens predict``: class probabilities and decisions for image files and folders; with a
segmentation or multi-task bundle, each image's lesion mask (PNG) and its measurements; with a
regression bundle, each image's predicted numbers; with a volume bundle, NIfTI volumes' class
probabilities, or their masks (NIfTI) and object volumes in mm^3."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lesionlens.cli.evaluate import add_devices, add_tta, check_devices


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="class probabilities for images (lesion masks and measurements with a segmentation bundle)",
        description="Predict class probabilities for image files or folders (searched recursively). With a "
                    "segmentation or multitask bundle, write each image's lesion mask as a PNG at the image's own "
                    "size (into --masks) and a CSV row of its measurements: area, diameter, perimeter, asymmetry "
                    "about both principal axes, compactness and solidity of the border, dermoscopic colours (and, "
                    "for a multitask bundle, the class probabilities). With a bundle trained on NIfTI volumes, "
                    "give .nii / .nii.gz files or folders of them: class probabilities, or (segmentation) one NIfTI "
                    "mask per volume on the bundle's grid and the object's volume in mm^3. "
                    "Files that cannot be read are listed with the reason, never dropped.",
        epilog="examples:\n  lesionlens predict runs/ham lesions/ --out predictions.csv\n"
               "  lesionlens predict runs/isic-seg lesions/ --masks out/masks --out out/measurements.csv "
               "--mm-per-pixel 0.03",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", type=Path)
    p.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER")
    p.add_argument("--out", type=Path, help="write a CSV here instead of printing a table")
    p.add_argument("--masks", type=Path, metavar="DIR",
                   help="segmentation bundles: write the mask PNGs here (default: masks/ beside --out)")
    p.add_argument("--mm-per-pixel", type=float, help="segmentation bundles: the images' scale, for sizes in mm")
    add_tta(p)
    add_devices(p)
    p.set_defaults(run=_predict, extra="train")


def _predict(args: argparse.Namespace) -> int:
    from lesionlens.bundle.card import read_card

    card = read_card(args.bundle, verify=False)
    check_devices(args, card)
    if card.is_volume:
        return _volumes(args, card.task == "segmentation", card.regression.targets if card.regression else None)
    if card.segmentation is not None:
        return _segment(args)
    if card.regression is not None:
        return _regress(args, card.regression.targets)
    from lesionlens.predict import describe_rule, predict_paths, write_predictions

    rows = predict_paths(args.bundle, args.inputs, args.model__tta, args.devices)
    for line in describe_rule(args.bundle, args.model__tta):
        print(f"# {line}", file=sys.stderr)
    write_predictions(rows, args.out)
    if args.out:
        print(f"{len(rows)} predictions written to {args.out}")
    return 1 if any(r.get("error") for r in rows) else 0


def _regress(args: argparse.Namespace, targets: list[str]) -> int:
    from lesionlens.predict import regress_paths, write_rows

    rows = regress_paths(args.bundle, args.inputs, args.model__tta, args.devices)
    write_rows(rows, ["path", *targets], args.out)
    if args.out:
        print(f"{len(rows)} predictions of {', '.join(targets)} written to {args.out}", file=sys.stderr)
    return 1 if any(r.get("error") for r in rows) else 0


def _segment(args: argparse.Namespace) -> int:
    from lesionlens.predict import write_rows
    from lesionlens.predict_masks import describe_masks, segment_paths

    masks = args.masks or (args.out.parent / "masks" if args.out else None)
    if masks is None:
        print("error: a segmentation bundle writes one mask PNG per image: give --masks DIR (and --out CSV for the "
              "measurements)", file=sys.stderr)
        return 2
    rows = segment_paths(args.bundle, args.inputs, masks, args.mm_per_pixel, args.model__tta)
    for line in describe_masks(args.bundle, args.model__tta):
        print(f"# {line}", file=sys.stderr)
    write_rows(rows, ["path", "lesion", "mask"], args.out)
    found = sum(r.get("lesion") == "yes" for r in rows)
    print(f"{len(rows)} images: {found} with a lesion; masks in {masks}" + (f", measurements in {args.out}" if args.out
                                                                          else ""), file=sys.stderr)
    return 1 if any(r.get("error") for r in rows) else 0


def _volumes(args: argparse.Namespace, segments: bool, targets: list[str] | None) -> int:
    from lesionlens.predict import write_rows
    from lesionlens.predict_volumes import predict_volume_paths

    masks = args.masks or (args.out.parent / "masks" if args.out else None)
    if segments and masks is None:
        print("error: a volume segmentation bundle writes one NIfTI mask per volume: give --masks DIR (and --out CSV "
              "for the volumes in mm^3)", file=sys.stderr)
        return 2
    rows = predict_volume_paths(args.bundle, args.inputs, masks if segments else None)
    first = ["path", "volume_mm3", "mask"] if segments else ["path", *targets] if targets else \
        ["path", "predicted", "confidence"]
    write_rows(rows, first, args.out)
    if args.out:
        print(f"{len(rows)} volumes predicted into {args.out}", file=sys.stderr)
    return 1 if any(r.get("error") for r in rows) else 0
