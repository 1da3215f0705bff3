"""``lesionlens explain``: what a bundle's network looks at, how faithful that picture is, what is
inside it, and which shortcuts it takes (the library: lesionlens.explain).

    lesionlens explain runs/ham photo1.jpg photo2.jpg --out reports/explain-photos
    lesionlens explain runs/ham --data ../shared/data/isic2017 --partition val --out reports/explain-isic
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lesionlens.cli.options import add_setting

EPILOG = """\
examples:
  lesionlens explain runs/ham photo.jpg --method gradcam --method integrated_gradients --out reports/photo
  lesionlens explain runs/ham --data ../shared/data/isic2017 --partition val --out reports/explain-isic
  lesionlens explain runs/ham --data ../shared/data/ham10000 --probe dx_type --limit 500 --out reports/explain-ham
  lesionlens explain runs/ham --data my.csv --masks my-masks/ --layer blocks.4 --analyses maps,focus --out reports/x

Analyses: maps (a gallery of every method's map), faithfulness (deletion / insertion against a random
and a centred map), sanity (cascading randomisation), focus (with lesion masks), shortcuts (ink, ruler
and colour patch on benign images), inside (feature maps, filters, top-9 patches), embedding (t-SNE and
linear probes). Those that need labels or masks say so in the report when they have none.
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from lesionlens.explain.settings import ANALYSES, METHODS, ExplainSettings

    d = ExplainSettings()
    p = sub.add_parser(
        "explain", help="what the network looks at, how faithful that is, and which shortcuts it takes",
        usage="lesionlens explain BUNDLE (IMAGES... | --data DATA) --out DIR [options]",
        description="Write an HTML report (self-contained), explain.json and PNGs: attribution maps per image "
                    "(Grad-CAM family, integrated gradients, occlusion), their faithfulness (deletion and "
                    "insertion against random and centred maps, paired bootstrap intervals), the model-"
                    "randomisation sanity check, lesion focus with masks, counterfactual shortcut tests, "
                    "feature maps, filters, top-activating patches, an embedding map and linear probes.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path, help="a trained bundle")
    p.add_argument("images", nargs="*", type=Path, help="image files (or use --data)")
    p.add_argument("--data", type=Path, help="a labelled data set in any layout `train` reads")
    p.add_argument("--partition", choices=("train", "val", "test"), help="only this partition of --data")
    p.add_argument("--masks", type=Path, help="a folder of lesion masks matched to the images by file stem "
                                              "(ISIC 2017 Part 1 masks beside the images are found by themselves)")
    p.add_argument("--out", type=Path, required=True, help="folder for explain.html, explain.json and the PNGs")
    p.add_argument("--method", action="append", choices=METHODS, metavar="METHOD",
                   help=f"an attribution method, repeatable: {', '.join(METHODS)} "
                        f"(default {', '.join(d.methods)})")
    p.add_argument("--faithfulness-method", action="append", choices=METHODS, metavar="METHOD",
                   help="a method whose deletion / insertion curves are measured, repeatable (default: the chosen "
                        "Grad-CAM-family methods; pixel methods cost seconds an image, so name them to include them)")
    p.add_argument("--layer", help="the layer of the CAMs (default: the output of forward_features); "
                                   "an unknown name lists the layers")
    p.add_argument("--analyses", default=",".join(d.analyses),
                   help=f"comma-separated, from {', '.join(ANALYSES)} (default all)")
    p.add_argument("--limit", type=int, default=d.limit, metavar="N",
                   help=f"images for faithfulness, focus, shortcuts, patches and the embedding (default {d.limit})")
    p.add_argument("--gallery", type=int, default=d.gallery, metavar="N", help=f"images in the gallery (default {d.gallery})")
    p.add_argument("--steps", type=int, default=d.steps, help=f"deletion / insertion steps (default {d.steps})")
    p.add_argument("--sanity-images", type=int, default=d.sanity_images, metavar="N",
                   help=f"images for the sanity check (default {d.sanity_images})")
    p.add_argument("--inside-layer", help="the layer for feature maps and top patches (default: a middle stage)")
    p.add_argument("--probe", action="append", default=[], metavar="COLUMN",
                   help="a metadata column of --data to probe for in the embeddings (repeatable; e.g. dx_type)")
    p.add_argument("--resamples", type=int, default=d.resamples, help=f"bootstrap resamples (default {d.resamples})")
    p.add_argument("--seed", type=int, default=d.seed)
    add_setting(p, "data.format", default="auto")
    add_setting(p, "data.images")
    add_setting(p, "data.cache_dir")
    add_setting(p, "data.on_bad_input", default="stop")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(run=_explain, extra="train")


def _explain(args: argparse.Namespace) -> int:
    from lesionlens.bundle.card import read_card
    from lesionlens.explain.inputs import from_data, from_files
    from lesionlens.explain.report import write_report
    from lesionlens.explain.run import explain
    from lesionlens.explain.settings import ExplainSettings

    if bool(args.images) == bool(args.data):
        raise ValueError("give image files or --data DATA (one of them)")
    settings = ExplainSettings(methods=tuple(args.method) if args.method else ExplainSettings().methods,
                               layer=args.layer, analyses=tuple(a.strip() for a in args.analyses.split(",") if a.strip()),
                               gallery=args.gallery, limit=args.limit, steps=args.steps,
                               sanity_images=args.sanity_images, inside_layer=args.inside_layer,
                               faithfulness_methods=tuple(args.faithfulness_method) if args.faithfulness_method else None,
                               probes=tuple(args.probe), resamples=args.resamples, seed=args.seed)
    pre = read_card(args.bundle).preprocessing
    if args.data:
        images = from_data(args.data, pre, args.data__format, args.data__images, args.partition, args.masks,
                           settings.probes, args.data__on_bad_input, args.data__cache_dir, progress=not args.quiet)
    else:
        if args.partition or args.probe:
            raise ValueError("--partition and --probe need --data")
        images = from_files(args.images, pre, args.masks)
    result = explain(args.bundle, images, settings)
    files = write_report(result, images, args.out)
    print("\n".join(result.lines()))
    print(f"\nReport: {files['html']}\n        {files['json']}")
    return 0
