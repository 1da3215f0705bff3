"""The ``lesionlens`` command: thin subcommands that parse arguments and call the library.

    lesionlens train --data PATH --out DIR [--config FILE.yaml] [flags]
    lesionlens evaluate BUNDLE --data PATH [--out DIR] [--tta flips] [--report]
    lesionlens report BUNDLE [BUNDLE...] --data PATH --out DIR
    lesionlens calibrate BUNDLE [--target-sensitivity 0.866 | --target-specificity X | --youden]
    lesionlens predict BUNDLE IMAGE_OR_FOLDER... [--out FILE.csv] [--tta flips]
    lesionlens models
    lesionlens explore --data PATH --out DIR --models A,B --strategies S,T --sizes 128,160 --budget-minutes 60
    lesionlens demo-data DIR
    lesionlens export BUNDLE [--int8]
    lesionlens serve BUNDLE [--host H] [--port P]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

from lesionlens import __version__

log = logging.getLogger("lesionlens")

# flag dest -> configuration key; a flag left out keeps the YAML's (or the default's) value
TRAIN_FLAGS = {
    "data": "data.path", "format": "data.format", "images": "data.images", "labels": "data.labels",
    "val_fraction": "data.val_fraction", "train_on_val": "data.train_on_val", "group_column": "data.group_column",
    "on_bad_input": "data.on_bad_input", "cache_dir": "data.cache_dir", "workers": "data.num_workers",
    "model": "model.name", "pretrained": "model.pretrained", "weights": "model.weights",
    "image_size": "model.image_size", "drop_rate": "model.drop_rate", "frozen_stages": "model.frozen_stages",
    "head": "model.head",
    "strategy": "train.strategy", "unfreeze_every": "train.unfreeze_every", "lr_decay": "train.lr_decay",
    "features_classifier": "train.features_classifier", "epochs": "train.epochs", "batch_size": "train.batch_size", "optimizer": "train.optimizer",
    "lr": "train.lr", "weight_decay": "train.weight_decay", "l1": "train.l1", "schedule": "train.schedule",
    "warmup_epochs": "train.warmup_epochs", "label_smoothing": "train.label_smoothing",
    "class_weights": "train.class_weights", "logit_adjustment": "train.logit_adjustment",
    "sampler": "train.sampler", "monitor": "train.monitor",
    "patience": "train.patience", "seed": "train.seed", "max_minutes": "train.max_minutes",
}

EPILOG_TRAIN = """\
examples:
  lesionlens train --data ../shared/data/ham10000 --out runs/ham --weights ../shared/weights
  lesionlens train --data my_images/ --out runs/mine --model simple_cnn --no-pretrained --epochs 20
  lesionlens train --data labels.csv --images photos/ --out runs/csv --labels malignant
  lesionlens train --config configs/default.yaml --data DATA --out runs/x --set train.lr=3e-4
  lesionlens train --data DATA --out runs/deep --strategy deep --head avg --epochs 8 --unfreeze-every 2
  lesionlens train --data DATA --out runs/svm --strategy features --features-classifier svm
  lesionlens train --out runs/ham --resume          # continue an interrupted run

--data accepts: a folder of class folders (DATA/<class>/*.jpg, optionally DATA/train|val|test/<class>/);
a CSV with an image column and a label column or one-hot class columns (and optionally a partition
column with tr/dev/te or train/val/test, and a lesion_id or patient_id column to group the split);
the HAM10000 layout (HAM10000_metadata.csv + images); the ISIC 2018 Task 3 and ISIC 2017 Part 3
ground-truth CSVs or their folders.
"""


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a classifier and write a model bundle",
        description="Train an image classifier and write a bundle (weights, card, plots, evaluation).\n"
                    "Settings come from the defaults, then --config, then the flags given here.",
        epilog=EPILOG_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the bundle (created)")
    p.add_argument("--config", type=Path, help="YAML file of settings (see configs/default.yaml)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any setting by name, e.g. --set augment.rotation=90 (repeatable)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    d = p.add_argument_group("data")
    d.add_argument("--data", help="folder, CSV or official layout of labelled images")
    d.add_argument("--format", choices=["auto", "folder", "csv", "ham10000", "isic2018", "isic2017"],
                   help="force the data format (default: detected)")
    d.add_argument("--images", help="folder of the CSV's images, when not beside it")
    d.add_argument("--labels", choices=["all", "malignant", "melanoma"],
                   help="learn all classes (default), malignant vs benign, or melanoma vs rest")
    d.add_argument("--val-fraction", type=float, help="share held out for validation (default 0.2)")
    d.add_argument("--train-on-val", action="store_true", default=None,
                   help="also train on the validation images (ISIC challenge protocol: fit on train + val, "
                        "score test); keeps the last epoch, and the validation figures are then not held out")
    d.add_argument("--group-column", help="CSV column whose images must stay together in one split")
    d.add_argument("--on-bad-input", choices=["stop", "skip"],
                   help="stop at unreadable or mislabelled input (default), or skip it and report")
    d.add_argument("--cache-dir", help="where decoded images are cached (default ~/.cache/lesionlens)")
    d.add_argument("--workers", type=int, help="data-loading worker processes (default: 0 on a CPU, up to 8 with a GPU)")
    m = p.add_argument_group("model")
    m.add_argument("--model", help="architecture; `lesionlens models` lists them (default efficientnet_lite0)")
    m.add_argument("--pretrained", action=argparse.BooleanOptionalAction,
                   help="start from ImageNet weights (default) or from random weights")
    m.add_argument("--weights", help="local weights file or folder, e.g. ../shared/weights")
    m.add_argument("--image-size", type=int, help="input side in pixels (default: the weights' own)")
    m.add_argument("--drop-rate", type=float, help="dropout before the classifier")
    m.add_argument("--head", choices=["linear", "avg", "max", "mlp"],
                   help="top model: the architecture's own head with a new last layer (linear, default), global "
                        "average or max pooling + a dense layer (avg, max), or flatten + a 256-unit hidden layer (mlp)")
    m.add_argument("--frozen-stages", type=int,
                   help="strategy full: freeze the stem and this many early stages (default 0)")
    s = p.add_argument_group("transfer learning")
    s.add_argument("--strategy", choices=["full", "scratch", "baseline", "shallow", "deep", "features"],
                   help="full: fine-tune everything (default); scratch: random weights (with --no-pretrained); "
                        "baseline: frozen backbone, new last layer; shallow: frozen backbone, new top model (--head); "
                        "deep: shallow, then unfreeze one block per --unfreeze-every epochs from the output, "
                        "each block --lr-decay times slower than the one above; features: frozen-backbone "
                        "embeddings + --features-classifier")
    s.add_argument("--unfreeze-every", type=int, help="deep: epochs between unfreezing blocks (default 1)")
    s.add_argument("--lr-decay", type=float, help="deep: learning-rate factor per block below the top (default 0.5)")
    s.add_argument("--features-classifier", choices=["logistic", "svm", "random_forest"],
                   help="features: the scikit-learn classifier on the embeddings (default logistic)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--optimizer", choices=["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta",
                                           "adam", "nadam", "amsgrad", "adamw"])
    t.add_argument("--lr", type=float, help="base learning rate")
    t.add_argument("--weight-decay", type=float, help="L2 penalty (decoupled for adamw)")
    t.add_argument("--l1", type=float, help="L1 penalty; with --weight-decay it is the elastic net")
    t.add_argument("--schedule", choices=["constant", "step", "exponential", "inverse_time", "cosine", "plateau"])
    t.add_argument("--warmup-epochs", type=float)
    t.add_argument("--label-smoothing", type=float)
    t.add_argument("--class-weights", choices=["none", "balanced", "sqrt"], help="loss weights per class")
    t.add_argument("--logit-adjustment", type=float,
                   help="train logits for a class-balanced decision (tau; 1.0 = full, 0 = off)")
    t.add_argument("--sampler", choices=["shuffle", "balanced"], help="balanced: every class drawn equally")
    t.add_argument("--monitor", choices=["val_balanced_accuracy", "val_macro_auc", "val_accuracy", "val_loss"],
                   help="validation metric that picks the best epoch")
    t.add_argument("--patience", type=int, help="stop after this many epochs without improvement")
    t.add_argument("--seed", type=int)
    t.add_argument("--max-minutes", type=float, help="stop training after this long (the best epoch is kept)")
    p.set_defaults(run=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from lesionlens.config import load_config, parse_assignment
    from lesionlens.training.fit import train

    overrides = dict(parse_assignment(s) for s in args.set)
    overrides.update({key: getattr(args, dest) for dest, key in TRAIN_FLAGS.items()
                      if getattr(args, dest) is not None})
    if args.resume and (overrides or args.config):
        log.warning("--resume uses the settings saved in %s/config.yaml; other flags are ignored", args.out)
    cfg = load_config(args.config, overrides)
    _quiet_lightning(args)
    result = train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    _print_training_summary(result)
    return 0


def _print_training_summary(result) -> None:
    v, card, out = result.validation, result.card, result.bundle
    t = card["training"]
    lines = [
        "",
        f"Bundle written to {out}/",
        f"  {card['model']['architecture']} at {card['preprocessing']['image_size']}px, classes {card['classes']}",
        _run_line(card),
        "",
        *_metric_lines(v),
        *_rule_lines(card),
        "",
        "Files:",
        f"  {out / 'card.json'}  (model card)",
        f"  {out / 'evaluation'}/  (metrics.json with 95% intervals; ROC, precision-recall, confusion matrix,",
        "      reliability diagram, top losses, most-confused pairs)",
        *([f"  {out / 'learning_curves.png'}"] if "learning_curves" in card["files"] else []),
        "Next:",
        f"  lesionlens evaluate {out} --data OTHER_DATA --report",
        f"  lesionlens predict {out} IMAGE_OR_FOLDER",
    ]
    print("\n".join(lines))


def _run_line(card: dict) -> str:
    t = card["training"]
    if t["strategy"] == "features":
        return (f"  strategy features: {card['model']['features_classifier']['kind']} fitted on frozen "
                f"embeddings in {t['fit_time_s']:.0f} s ({t['train_images_per_s']} images/s)")
    kept = (f"last epoch kept ({t['best_epoch']}); the validation images were trained on too, so the figures "
            f"below are not held out" if card["validation"].get("seen_in_training")
            else f"best epoch {t['best_epoch']} by {t['monitor']}")
    return (f"  strategy {t['strategy']}: trained {t['epochs_run']} epochs in {t['fit_time_s'] / 60:.1f} min "
            f"({t['train_images_per_s']} images/s); {kept}")


def _rule_lines(card: dict) -> list[str]:
    """The decision rule fitted on validation data, in a line or two."""
    lines = []
    if "calibration" in card:
        c = card["calibration"]
        lines.append(f"  temperature {c['temperature']:.3f} (validation ECE {c['ece_before']:.3f} -> {c['ece_after']:.3f})")
    for view, p in card.get("operating_points", {}).items():
        lines.append(f"  {view} decision: p_{view} >= {p['threshold']:.4f} for {p['criterion']} "
                     f"{p['target'] if p['target'] is not None else ''}: validation sensitivity "
                     f"{p['validation_sensitivity']:.3f}, specificity {p['validation_specificity']:.3f}")
    return lines


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _metric_lines(v: dict) -> list[str]:
    ci = v.get("confidence_intervals", {})
    intervals = [f"{label} [{ci[k]['low']:.3f}, {ci[k]['high']:.3f}]" for k, label in
                 (("balanced_accuracy", "balanced accuracy"), ("macro_auc", "macro AUC"),
                  ("melanoma_auc", "melanoma AUC")) if ci.get(k)]
    lines = [
        f"{v.get('description') or 'Evaluation'}:",
        f"  balanced accuracy {_fmt(v['balanced_accuracy'])}   accuracy {_fmt(v['accuracy'])}   "
        f"macro AUC {_fmt(v['macro_auc'])} ({v['macro_auc_grade']})",
        f"  {'class':<22}{'n':>6}{'sens':>8}{'spec':>8}{'PPV':>8}{'NPV':>8}{'AUC':>8}  grade",
    ]
    for name, c in v["per_class"].items():
        if c["support"] == 0 and c["auc"] is None:
            continue
        lines.append(f"  {name:<22}{c['support']:>6}{_fmt(c['sensitivity']):>8}{_fmt(c['specificity']):>8}"
                     f"{_fmt(c['ppv']):>8}{_fmt(c['npv']):>8}{_fmt(c['auc']):>8}  {c['auc_grade'] or ''}")
    for name, b in v.get("binary", {}).items():
        lines.append(f"  {name + ' vs rest':<22}{b['positives']:>6}{_fmt(b['sensitivity']):>8}"
                     f"{_fmt(b['specificity']):>8}{_fmt(b['ppv']):>8}{_fmt(b['npv']):>8}{_fmt(b['auc']):>8}"
                     f"  {b['auc_grade'] or ''}")
    if intervals:
        lines.append("  95% intervals: " + ", ".join(intervals))
    return lines


TTA_HELP = ("test-time augmentation: average the logits over mirror images (flips: 4 views) or all 8 "
            "flips and 90-degree rotations (d4); costs 4x or 8x the time. Default: the bundle's own "
            "(model.tta when trained, or calibrate --tta), usually none")


def _data_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--data", required=required, help="folder, CSV or official layout of labelled images")
    p.add_argument("--format", default="auto", choices=["auto", "folder", "csv", "ham10000", "isic2018", "isic2017"])
    p.add_argument("--images", help="folder of the CSV's images, when not beside it")
    p.add_argument("--split", default="auto", choices=["auto", "train", "val", "test", "all"],
                   help="which images: auto = the bundle's validation split on its own training data, "
                        "else the test partition if there is one, else all")
    p.add_argument("--cache-dir")


def _evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="evaluate a bundle on labelled images",
        description="Evaluate a bundle on any labelled data: metrics.json (accuracy, balanced accuracy, "
                    "per-class sensitivity/specificity/PPV/NPV, one-vs-rest and macro AUC with grades, "
                    "malignant and melanoma views at the bundle's operating points, the ISIC challenge "
                    "metric set, 95%% bootstrap intervals, calibration) plus figures: ROC, precision-recall, "
                    "confusion matrix, reliability diagram, top losses, most-confused pairs.",
    )
    p.add_argument("bundle", type=Path, help="folder written by `lesionlens train`")
    _data_arguments(p)
    p.add_argument("--out", type=Path, help="where to write (default BUNDLE/evaluations/<data>-<split>)")
    p.add_argument("--tta", choices=["none", "flips", "d4"], help=TTA_HELP)
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for the 95%% intervals (default 1000; 0: none)")
    p.add_argument("--report", action="store_true", help="also write report.html (self-contained) and report.json")
    p.add_argument("--on-bad-input", default="stop", choices=["stop", "skip"])
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(run=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from lesionlens.bundle import read_card
    from lesionlens.evaluation.evaluate import predict_split, write_evaluation

    card = read_card(args.bundle)
    ev, out = predict_split(card, args.data, args.out, args.format, args.images, args.split,
                            args.on_bad_input, args.cache_dir, args.tta, progress=not args.quiet)
    if args.report:
        from lesionlens.evaluation.report import evaluate_entry, write_report

        entry = evaluate_entry(card.path.name, card, ev, out, args.bootstrap)
        html, _ = write_report([entry], out, args.data, args.bootstrap)
        summary = entry.metrics
    else:
        write_evaluation(ev, out, args.bootstrap)
        summary = json.loads((out / "metrics.json").read_text())
    print("\n".join(_metric_lines(summary) + _rule_lines(card.data)))
    print(f"\nWritten to {out}/: metrics.json, predictions.csv and figures"
          + (f"; report: {out / 'report.html'}" if args.report else ""))
    return 0


def _report_parser(sub: argparse._SubParsersAction) -> None:
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
    _data_arguments(p)
    p.add_argument("--out", type=Path, required=True, help="folder for report.html, report.json and each bundle's figures")
    p.add_argument("--tta", choices=["none", "flips", "d4"], help=TTA_HELP)
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(run=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from lesionlens.bundle import read_card
    from lesionlens.evaluation.evaluate import predict_split
    from lesionlens.evaluation.report import check_same_images, evaluate_entry, write_report

    names = _unique_names(args.bundles)
    predicted = {}
    for name, bundle in zip(names, args.bundles):
        card = read_card(bundle)
        predicted[name] = (card, *predict_split(card, args.data, args.out / name, args.format, args.images,
                                                args.split, "stop", args.cache_dir, args.tta, progress=not args.quiet))
    check_same_images({name: ev for name, (_, ev, _) in predicted.items()})
    entries = []
    for name, (card, ev, folder) in predicted.items():
        entries.append(evaluate_entry(name, card, ev, folder, args.bootstrap))
        print("\n".join(_metric_lines(entries[-1].metrics)) + "\n")
    html, js = write_report(entries, args.out, args.data, args.bootstrap)
    print(f"Report: {html}\n        {js}")
    return 0


def _unique_names(bundles: list[Path]) -> list[str]:
    """Each bundle's folder name, made unique with its parent's where two are the same."""
    names = [b.resolve().name for b in bundles]
    return [f"{b.resolve().parent.name}-{n}" if names.count(n) > 1 else n for b, n in zip(bundles, names)]


def _calibrate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate", help="fit the temperature and the malignant / melanoma operating points",
        description="Fit temperature scaling and choose, for each clinical view (malignant, melanoma), the "
                    "decision threshold on validation data; store both in the bundle's card, where predict, "
                    "evaluate and the server use them. Training already does this with the defaults "
                    "(target sensitivity 0.866, the dermatologists' figure in Haenssle et al. 2018).",
    )
    p.add_argument("bundle", type=Path)
    _data_arguments(p, required=False)
    target = p.add_mutually_exclusive_group()
    target.add_argument("--target-sensitivity", type=float, help="highest threshold reaching this sensitivity (default 0.866)")
    target.add_argument("--target-specificity", type=float, help="lowest threshold reaching this specificity")
    target.add_argument("--youden", action="store_true", help="the threshold maximising sensitivity + specificity - 1")
    p.add_argument("--no-temperature", action="store_true", help="keep the plain softmax (temperature 1)")
    p.add_argument("--tta", choices=["none", "flips", "d4"],
                   help="fit on test-time-augmented predictions and make this TTA the bundle's default for "
                        "evaluate / predict / report (default: the bundle's current one)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(run=_cmd_calibrate)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from lesionlens.evaluation.calibrate import calibrate_bundle
    from lesionlens.evaluation.operating import DERMATOLOGIST_SENSITIVITY

    if args.youden:
        criterion, target = "youden", None
    elif args.target_specificity is not None:
        criterion, target = "specificity", args.target_specificity
    else:
        criterion, target = "sensitivity", args.target_sensitivity or DERMATOLOGIST_SENSITIVITY
    card, ev, out = calibrate_bundle(args.bundle, args.data, args.split, criterion, target, not args.no_temperature,
                                     args.format, args.images, args.cache_dir, args.tta, progress=not args.quiet)
    c = card.data["calibration"]
    print(f"Fitted on {c['fitted_on']} (test-time augmentation {card.tta}, now the bundle's default):")
    print(f"  temperature {c['temperature']:.3f}: ECE {c['ece_before']:.3f} -> {c['ece_after']:.3f}, "
          f"NLL {c['nll_before']:.3f} -> {c['nll_after']:.3f}, Brier {c['brier_before']:.3f} -> {c['brier_after']:.3f}")
    for view, p in card.data["operating_points"].items():
        print(f"  {view}: positive when p_{view} >= {p['threshold']:.4f} ({p['criterion']}"
              f"{'' if p['target'] is None else ' ' + format(p['target'], '.3f')}): validation sensitivity "
              f"{p['validation_sensitivity']:.3f}, specificity {p['validation_specificity']:.3f}")
    print(f"Stored in {card.path / 'card.json'}; validation figures in {out}/")
    return 0


def _predict_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="class probabilities for images",
        description="Predict class probabilities for image files or folders (searched recursively). "
                    "Files that cannot be read are listed with the reason, never dropped.",
    )
    p.add_argument("bundle", type=Path)
    p.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER")
    p.add_argument("--out", type=Path, help="write a CSV here instead of printing a table")
    p.add_argument("--tta", choices=["none", "flips", "d4"], help=TTA_HELP)
    p.set_defaults(run=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    from lesionlens.predict import describe_rule, predict_paths, write_predictions

    rows = predict_paths(args.bundle, args.inputs, args.tta)
    for line in describe_rule(args.bundle, args.tta):
        print(f"# {line}", file=sys.stderr)
    write_predictions(rows, args.out)
    if args.out:
        print(f"{len(rows)} predictions written to {args.out}")
    failed = sum(1 for r in rows if r.get("error"))
    return 1 if failed else 0


def _models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the architectures",
                       description="List the registered models: parameters and multiply-accumulates per image "
                                   "(MACs) at the default input size, and where pretrained weights come from.")
    p.add_argument("--classes", type=int, default=1000, help="output classes for the counts (default 1000, ImageNet's)")
    p.set_defaults(run=_cmd_models)


def _cmd_models(args: argparse.Namespace) -> int:
    from lesionlens.models.profile import model_cost
    from lesionlens.models.registry import MODELS

    print(f"{'name':<20}{'parameters':>13}{'input':>7}{'GMACs':>8}  pretrained weights  ({args.classes} classes)")
    for name, spec in MODELS.items():
        cost = model_cost(name, args.classes)
        weights = spec.weights.description if spec.weights else "none (train from scratch)"
        print(f"{name:<20}{cost.parameters:>13,}{cost.image_size:>7}{cost.macs / 1e9:>8.2f}  {weights}")
    return 0


def _explore_parser(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--config", type=Path, help="YAML of shared settings (defaults otherwise)")
    p.add_argument("--epochs", type=int, help="epochs of each gradient-trained run")
    p.add_argument("--head", help="top model of the runs (linear, avg, max, mlp), or a comma-separated grid of "
                   "them, e.g. linear,mlp (default: the config's)")
    p.add_argument("--weights", help="local weights file or folder, e.g. ../shared/weights")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any setting, as for train")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(run=_cmd_explore)


def _cmd_explore(args: argparse.Namespace) -> int:
    from lesionlens.config import load_config, parse_assignment
    from lesionlens.explore import explore
    from lesionlens.models.heads import HEADS

    heads = _names(args.head) if args.head else None
    unknown = [h for h in heads or [] if h not in HEADS]
    if unknown:
        raise ValueError(f"unknown top model {', '.join(unknown)} in --head; choose from {', '.join(HEADS)}")
    overrides = dict(parse_assignment(s) for s in args.set)
    for key, value in (("train.epochs", args.epochs), ("model.weights", args.weights)):
        if value is not None:
            overrides[key] = value
    base = load_config(args.config, overrides)
    _quiet_lightning(args)
    rows = explore(base, args.data, args.out, _names(args.models), _names(args.strategies),
                   [int(z) for z in _names(args.sizes)], args.budget_minutes, progress=not args.quiet, heads=heads)
    print(f"{'model':<20}{'strategy':<10}{'head':<7}{'size':>5}{'bal.acc':>9}{'AUC':>7}  status")
    for r in rows:
        acc = "" if r.get("balanced_accuracy") is None else f"{r['balanced_accuracy']:.3f}"
        auc = "" if r.get("macro_auc") is None else f"{r['macro_auc']:.3f}"
        print(f"{r['model']:<20}{r['strategy']:<10}{r['head']:<7}{r['image_size']:>5}{acc:>9}{auc:>7}  {r['status']}"
              + (f": {r['reason']}" if r.get("reason") else ""))
    print(f"\nLeaderboard: {args.out / 'leaderboard.csv'} and {args.out / 'leaderboard.html'}")
    return 0


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo-data", help="write a small synthetic data set",
                       description="Write a synthetic 3-class image folder for trying the tool without real data.")
    p.add_argument("out", type=Path)
    p.add_argument("--per-class", type=int, default=80)
    p.set_defaults(run=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from lesionlens.data.demo import make_demo_dataset

    print(make_demo_dataset(args.out, args.per_class))
    return 0


def _export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write the bundle's model as ONNX for the torch-free server",
        description="Write BUNDLE/model.onnx (dynamic batch; logits, plus the last feature maps for "
                    "class-activation maps where the head allows) and check it against PyTorch on real "
                    "images: the largest probability difference must be at most 1e-4. The check, the CAM "
                    "vs Grad-CAM agreement and, with --int8, the quantized model's measured accuracy "
                    "change and speed-up are written into the card.",
        epilog="examples:\n  lesionlens export runs/ham\n  lesionlens export runs/ham --images some_lesions/ --int8",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", type=Path)
    p.add_argument("--images", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER",
                   help="check on these images (default: the bundle's validation images from split.csv)")
    p.add_argument("--check-images", type=int, default=200, help="how many images to check on (default 200)")
    p.add_argument("--int8", action="store_true",
                   help="also write model.int8.onnx (static quantization) and report its accuracy and speed; "
                        "the server uses it only with `serve --int8`")
    p.set_defaults(run=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from lesionlens.export import export_bundle

    r = export_bundle(args.bundle, args.images, args.check_images, int8=args.int8)
    c = r["check"]
    print(f"Wrote {args.bundle / r['file']} (opset {r['opset']}, outputs {', '.join(r['outputs'])})")
    print(f"  checked against PyTorch on {c['images']}: max |p_onnx - p_torch| = {c['max_abs_prob_diff']:.2e} "
          f"(allowed {c['tolerance']:.0e}), top-1 agreement {c['top1_agreement']:.3f}")
    if r["cam"]:
        g = r["cam"]["gradcam_check"]
        print(f"  class-activation maps: {args.bundle / r['cam']['file']}; correlation with PyTorch Grad-CAM over "
              f"{g['compared']} images: mean {_fmt(g['mean_correlation'])}, min {_fmt(g['min_correlation'])}")
    else:
        print("  no class-activation maps: the head is not global average pooling + one linear layer")
    if "int8" in r:
        q = r["int8"]
        acc = (f"accuracy {q['accuracy']['fp32']:.3f} -> {q['accuracy']['int8']:.3f} ({q['accuracy_change']:+.3f}), "
               if "accuracy" in q else "")
        print(f"  INT8 {args.bundle / q['file']}: {acc}top-1 agreement with fp32 {q['top1_agreement']:.3f}, "
              f"max prob change {q['max_abs_prob_diff']:.3f}; batch-1 latency {q['batch1_latency_ms']['fp32']:.2f} -> "
              f"{q['batch1_latency_ms']['int8']:.2f} ms (x{q['speedup']:.2f}). Not used unless `serve --int8`.")
    print(f"Next: lesionlens serve {args.bundle}")
    return 0


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    from lesionlens.serving.settings import ServeSettings

    d = ServeSettings()
    p = sub.add_parser(
        "serve", help="serve a bundle over HTTP (REST API and web page; torch-free)",
        description="Serve an exported bundle with FastAPI on uvicorn and ONNX Runtime (no PyTorch): "
                    "POST /v1/predict, POST /v1/predict/batch, POST /v1/explain, GET /v1/model, /healthz, "
                    "/readyz, the web page at / and the OpenAPI docs at /docs. Run `lesionlens export "
                    "BUNDLE` once first.",
        epilog="examples:\n  lesionlens serve runs/ham --port 8000\n"
               "  curl -F file=@lesion.jpg http://127.0.0.1:8000/v1/predict\n"
               "  LESIONLENS_API_TOKEN=secret lesionlens serve runs/ham --host 0.0.0.0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", type=Path)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=float, default=d.max_upload_bytes / 2**20,
                   help=f"largest accepted file (default {d.max_upload_bytes / 2**20:g} MB)")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels,
                   help=f"largest accepted width x height, checked before decoding (default {d.max_pixels:,})")
    p.add_argument("--max-batch-files", type=int, default=d.max_batch_files, help="files per batch request")
    p.add_argument("--batching", action=argparse.BooleanOptionalAction, default=d.batching,
                   help=f"group concurrent requests into one model call (default {'on' if d.batching else 'off'})")
    p.add_argument("--max-batch-size", type=int, default=d.max_batch_size, help="images per model call")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                   help="how long a batch waits to fill (default %(default)s ms)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (default: the usable cores)")
    p.add_argument("--decode-workers", type=int, default=0, help="decoding threads (default: the usable cores)")
    p.add_argument("--int8", action="store_true", help="use model.int8.onnx from `lesionlens export --int8`")
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on /v1/* "
                                   "(default: $LESIONLENS_API_TOKEN; none when unset)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(run=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from lesionlens.serving.app import create_app
    from lesionlens.serving.settings import ServeSettings

    settings = ServeSettings(
        max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels,
        max_batch_files=args.max_batch_files, token=args.token or os.environ.get("LESIONLENS_API_TOKEN") or None,
        batching=args.batching, max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
        threads=args.threads, decode_workers=args.decode_workers, int8=args.int8,
    )
    app = create_app(args.bundle, settings)
    print(f"LesionLens serving {args.bundle} on http://{args.host}:{args.port}/ (docs at /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, access_log=args.access_log, log_level="info")
    return 0


def _quiet_lightning(args: argparse.Namespace) -> None:
    """Lightning's start-up notices and advice are for Lightning users; ours see one line per epoch.
    Called after Lightning is imported, because importing it resets its loggers."""
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesionlens",
        description="Train, evaluate and use image classifiers for skin-lesion (and any other) images.",
        epilog="Run `lesionlens COMMAND --help` for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"lesionlens {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debugging detail")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add in (_train_parser, _evaluate_parser, _report_parser, _calibrate_parser, _predict_parser, _models_parser,
                _explore_parser, _demo_parser, _export_parser, _serve_parser):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return args.run(args)
    except ImportError as e:
        print(f"error: {e}. Training and evaluation need `pip install lesionlens[train]`.", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as e:
        if args.verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
