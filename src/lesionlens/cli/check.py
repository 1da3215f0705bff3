"""``lesionlens check``: duplicates, leakage, conflicting labels, image quality and suspected label
errors of a data set (the library: lesionlens.quality)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lesionlens.cli.options import add_setting

EPILOG = """\
examples:
  lesionlens check ../shared/data/ham10000 --out checks/ham
  lesionlens check ../shared/data/ham10000 --weights ../shared/weights --out checks/ham-embeddings
  lesionlens check my_images/ --bundle runs/mine --out checks/mine
  lesionlens check --db cases.sqlite --weights ../shared/weights --out checks/cases   # the case store

Without --bundle or --weights: exact and near duplicates (perceptual hashes), leakage by group and
by copy, conflicting labels and image quality. With either: also altered copies the hash misses
(cropped ones: the network's feature maps over 8 quarter turns and mirrors), possible same-lesion
pairs (embedding cosine) and suspected label errors (confident learning on out-of-fold probabilities).
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check", help="check a data set: duplicates, leakage, label conflicts, image quality, label errors",
        description="Check labelled images for exact and near duplicates, the same lesion or picture across "
                    "partitions, conflicting labels, image-quality problems and suspected label errors; write "
                    "report.html (galleries of every flagged pair or image) and findings.csv.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", nargs="?", help="folder, CSV or official layout of labelled images")
    p.add_argument("--db", help="check the case store instead (its cases with a settled label): a SQLite path "
                                "or database URL, as for `serve --db`")
    p.add_argument("--case-images", help="with --db: the folder of case photos (default <db>.images)")
    add_setting(p, "data.format", default="auto")
    add_setting(p, "data.images")
    p.add_argument("--bundle", type=Path, help="compare the embeddings of this bundle's model")
    add_setting(p, "model.weights", help="ImageNet weights folder (e.g. ../shared/weights) for embeddings "
                                         "when there is no bundle")
    p.add_argument("--architecture", default="efficientnet_lite0",
                   help="the ImageNet network with --weights (default efficientnet_lite0)")
    p.add_argument("--no-label-errors", action="store_true", help="skip the suspected label errors")
    p.add_argument("--out", type=Path, help="folder for report.html and findings.csv (default checks/<data>)")
    add_setting(p, "data.cache_dir")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(run=_check, extra="train")


def _check(args: argparse.Namespace) -> int:
    from lesionlens.quality.check import check_path
    from lesionlens.quality.report import write_check_report
    from lesionlens.quality.result import summary_lines

    if (args.data is None) == (args.db is None):
        raise ValueError("give either DATA or --db (the case store)")
    if args.db:
        from lesionlens.cases.store import CaseStore
        from lesionlens.cases.table import store_table
        from lesionlens.quality.check import check_table

        table, unsettled = store_table(CaseStore.open(args.db, args.case_images))
        print(f"{len(table)} cases with a settled label ({unsettled} without one are not checked)")
        if not len(table):
            return 0
        result = check_table(table, args.bundle, args.model__weights, args.architecture, args.data__cache_dir,
                             not args.no_label_errors, progress=not args.quiet)
        out = args.out or Path("checks") / "cases"
    else:
        result = check_path(args.data, args.data__format, args.data__images, args.bundle, args.model__weights,
                            args.architecture, args.data__cache_dir, not args.no_label_errors, progress=not args.quiet)
        out = args.out or Path("checks") / Path(args.data).stem
    html, csv = write_check_report(result, out)
    print("\n".join(summary_lines(result)))
    print(f"\nReport: {html}\nFindings: {csv}")
    return 0
