"""``lesionlens train``, ``explore``, ``models``, ``config`` and ``demo-data``: making models."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lesionlens.cli.options import (
    add_config_flags,
    add_set_and_config,
    add_setting,
    config_overrides,
)

log = logging.getLogger("lesionlens")

EPILOG_TRAIN = """\
examples:
  lesionlens train --data ../shared/data/ham10000 --out runs/ham --weights ../shared/weights
  lesionlens train --data my_images/ --out runs/mine --model simple_cnn --no-pretrained --epochs 20
  lesionlens train --data labels.csv --images photos/ --out runs/csv --labels malignant
  lesionlens train --config my.yaml --data DATA --out runs/x --set train.lr=3e-4
  lesionlens train --data DATA --out runs/deep --strategy deep --head avg --epochs 8 --unfreeze-every 2
  lesionlens train --data DATA --out runs/svm --strategy features --features-classifier svm
  lesionlens train --out runs/ham --resume          # continue an interrupted run
  lesionlens train --task segmentation --data ../shared/data/isic2017 --weights ../shared/weights --out runs/seg
  lesionlens train --task multitask --data ../shared/data/isic2017 --weights ../shared/weights --out runs/multi
  lesionlens train --data volumes.csv --model simple_cnn3d --no-pretrained --strategy scratch --out runs/3d
  lesionlens train --data volumes.csv --model unet3d --no-pretrained --strategy scratch --out runs/3d-seg \
      --set volume.size=[32,32,32] --set volume.spacing=[1.5,1.5,1.5]

The defaults are the documented default recipe (`lesionlens config` prints every setting with its
reason); before the first epoch the run says what it will do and how long it expects to take.

--data accepts: a folder of class folders (DATA/<class>/*.jpg, optionally DATA/train|val|test/<class>/);
a CSV with an image column and a label column or one-hot class columns (and optionally a partition
column with tr/dev/te or train/val/test, and a lesion_id or patient_id column to group the split);
the HAM10000 layout (HAM10000_metadata.csv + images); the ISIC 2018 Task 3 and ISIC 2017 Part 3
ground-truth CSVs or their folders.
--task segmentation / multitask also need a lesion mask per image: the ISIC 2017 Part 1 masks beside
their images, DATA/images/ with DATA/masks/ (matched by file stem), a CSV with a mask column, or any
layout above with --masks FOLDER.
Volumes: a CSV whose path column names NIfTI files (.nii / .nii.gz), with a label column (3D
classifiers: tiny_cnn3d, simple_cnn3d, resnet3d) or a mask column of NIfTI masks (unet3d,
tiny_unet3d); `lesionlens demo-data DIR --volumes` writes a synthetic one.
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a classifier (or a lesion segmenter) and write a model bundle",
        description="Train an image classifier, a lesion segmenter (--task segmentation) or both from one encoder "
                    "(--task multitask), and write a bundle (weights, card, plots, evaluation).\n"
                    "Settings come from the defaults, then --config, then the flags given here.",
        epilog=EPILOG_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the bundle (created)")
    add_set_and_config(p, "settings")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_config_flags(p)
    p.set_defaults(run=_train, extra="train")

    p = sub.add_parser(
        "explore", help="train a grid of models x strategies x input sizes (x top models) and rank them",
        description="Train every combination of --models, --strategies, --sizes (and --head) on one data set, on the "
                    "same split, within --budget-minutes; write one bundle per run and leaderboard.csv / "
                    "leaderboard.html (balanced accuracy, macro and melanoma AUC, parameters, MACs, time, "
                    "images/s). Runs that cannot fit the budget or cannot run are skipped with the reason.",
        epilog="example:\n  lesionlens explore --data ../shared/data/ham10000 --weights ../shared/weights "
               "--out runs/explore \\\n      --models efficientnet_lite0,mobilenet_v2 --strategies shallow,deep,features "
               "--sizes 128,160 --epochs 3 --budget-minutes 60",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, help="folder, CSV or official layout of labelled images")
    p.add_argument("--out", type=Path, required=True, help="folder for the bundles and the leaderboard")
    p.add_argument("--models", required=True, help="comma-separated architectures (`lesionlens models`)")
    p.add_argument("--strategies", default="shallow,deep,features", help="comma-separated (default shallow,deep,features)")
    p.add_argument("--sizes", default="128", help="comma-separated input sizes in pixels (default 128)")
    p.add_argument("--budget-minutes", type=float, required=True, help="total time for the whole grid")
    add_set_and_config(p, "shared settings")
    add_setting(p, "train.epochs", help="epochs of each gradient-trained run")
    add_setting(p, "model.weights")
    p.add_argument("--head", help="top model of the runs, or a comma-separated grid of them, e.g. linear,mlp "
                   "(default: the config's)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(run=_explore, extra="train", config_keys=["train.epochs", "model.weights"])

    p = sub.add_parser("models", help="list the architectures",
                       description="List the registered models: parameters and multiply-accumulates per image "
                                   "(MACs) at the default input size, and where pretrained weights come from.")
    p.add_argument("--classes", type=int, default=1000, help="output classes for the counts (default 1000, ImageNet's)")
    p.set_defaults(run=_models, extra="train")

    p = sub.add_parser("config", help="print the settings as a commented YAML file",
                       description="Print every training setting with its value and what it does, as YAML that "
                                   "`lesionlens train --config` reads: the built-in defaults (the documented default "
                                   "recipe), or those of --config with --set applied.",
                       epilog="example:\n  lesionlens config > my.yaml && lesionlens train --config my.yaml --data DATA "
                              "--out runs/x", formatter_class=argparse.RawDescriptionHelpFormatter)
    add_set_and_config(p, "settings to start from")
    p.set_defaults(run=_config, extra="train")

    p = sub.add_parser("demo-data", help="write a small synthetic data set",
                       description="Write a synthetic 3-class image folder for trying the tool without real data; "
                                   "with --volumes, synthetic NIfTI volumes with masks and a volumes.csv (a "
                                   "functional check of the 3D pipeline, not a benchmark).")
    p.add_argument("out", type=Path)
    p.add_argument("--per-class", type=int, default=80)
    p.add_argument("--volumes", action="store_true", help="3D: solid / shell / multiple objects in NIfTI volumes")
    p.set_defaults(run=_demo, extra="train")


def _train(args: argparse.Namespace) -> int:
    from lesionlens.config import load_config
    from lesionlens.training.fit import train
    from lesionlens.training.summary import training_summary

    overrides = config_overrides(args)
    if args.resume and (overrides or args.config):
        log.warning("--resume uses the settings saved in %s/config.yaml; other flags are ignored", args.out)
    cfg = load_config(args.config, overrides)
    quiet_lightning(args)
    result = train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    if result is not None:  # None: another process than 0 of a multi-process run, which writes nothing
        print(training_summary(result))
    return 0


def _explore(args: argparse.Namespace) -> int:
    from lesionlens.config import load_config
    from lesionlens.training.explore import explore, leaderboard_lines, names

    base = load_config(args.config, config_overrides(args))
    quiet_lightning(args)
    rows = explore(base, args.data, args.out, names(args.models), names(args.strategies),
                   [int(z) for z in names(args.sizes)], args.budget_minutes, progress=not args.quiet,
                   heads=names(args.head) if args.head else None)
    print("\n".join(leaderboard_lines(rows)))
    print(f"\nLeaderboard: {args.out / 'leaderboard.csv'} and {args.out / 'leaderboard.html'}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from lesionlens.models.profile import models_table

    print("\n".join(models_table(args.classes)))
    return 0


def _config(args: argparse.Namespace) -> int:
    from lesionlens.config import load_config

    print(load_config(args.config, config_overrides(args, keys=[])).to_yaml(), end="")
    return 0


def _demo(args: argparse.Namespace) -> int:
    if args.volumes:
        from lesionlens.data.synthetic_volumes import write_synthetic_volumes

        print(write_synthetic_volumes(args.out, args.per_class))
        return 0
    from lesionlens.data.demo import make_demo_dataset

    print(make_demo_dataset(args.out, args.per_class))
    return 0


def quiet_lightning(args: argparse.Namespace) -> None:
    """Lightning's start-up notices and advice are for Lightning users; ours see one line per epoch.
    Called after Lightning is imported, because importing it resets its loggers."""
    import warnings

    if args.verbose:
        return
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*Experiment logs directory.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"lightning\..*")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r"Checkpoint directory.*exists and is not empty.*")
    warnings.filterwarnings("ignore", message=r"Found .* in eval mode at the start of training.*")  # frozen batch norm
