"""``lesionlens predict``: class probabilities and decisions for image files and folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lesionlens.cli.evaluate import add_tta


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="class probabilities for images",
        description="Predict class probabilities for image files or folders (searched recursively). "
                    "Files that cannot be read are listed with the reason, never dropped.",
    )
    p.add_argument("bundle", type=Path)
    p.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER")
    p.add_argument("--out", type=Path, help="write a CSV here instead of printing a table")
    add_tta(p)
    p.set_defaults(run=_predict, extra="train")


def _predict(args: argparse.Namespace) -> int:
    from lesionlens.predict import describe_rule, predict_paths, write_predictions

    rows = predict_paths(args.bundle, args.inputs, args.model__tta)
    for line in describe_rule(args.bundle, args.model__tta):
        print(f"# {line}", file=sys.stderr)
    write_predictions(rows, args.out)
    if args.out:
        print(f"{len(rows)} predictions written to {args.out}")
    return 1 if any(r.get("error") for r in rows) else 0
