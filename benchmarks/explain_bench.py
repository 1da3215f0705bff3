"""What do a bundle's heatmaps mean? Issue 15's benchmark, on real data, printed as tables.

    .venv/bin/python benchmarks/explain_bench.py --bundle runs/upkeep/champion --out runs/explain-bench \
        [--faithfulness-images 1000] [--steps 10] [--focus-images 2150] [--shortcut-images 200]

1. Faithfulness: Grad-CAM's deletion and insertion AUC against a random and a centred-Gaussian map on
   the first N images of the bundle's HAM10000 validation split (its split.csv), paired 95% intervals.
2. Lesion focus of Grad-CAM on the ISIC 2017 images that have Part 1 masks (training + validation,
   2,150), against the centred Gaussian, split by correct / wrong and by class.
3. Shortcut test: ink, ruler and colour patch on the first N benign ISIC 2017 images with masks
   (validation first, then training, by image id), placed outside the lesion.
4. Source probe: linear probes on the penultimate features of the HAM10000 validation images for the
   metadata columns (dx_type, sex, localization, age band) against chance and shuffled labels.
5. The server's CAM (ONNX Runtime features + the saved head, NumPy: what `lesionlens serve` draws)
   against the library's Grad-CAM in PyTorch, on the same validation images: Pearson correlation of
   the raw maps at the feature resolution.
6. Cost: seconds per image of each method at --cost-size px on EfficientNet-Lite0 (the bundle's
   weights when its size matches, else an ImageNet-weight Lite0 with a new head: cost does not depend
   on training), and the whole `lesionlens explain` report on --report-images images.
Each step writes its JSON into --out and is skipped when that file exists (a re-run resumes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lesionlens.bundle.split import read_split
from lesionlens.data.images import preprocess_image
from lesionlens.evaluation.result import json_safe
from lesionlens.explain.attribution import attribute
from lesionlens.explain.subject import Subject

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--faithfulness-images", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--focus-images", type=int, default=2150)
    ap.add_argument("--shortcut-images", type=int, default=200)
    ap.add_argument("--cost-size", type=int, default=224)
    ap.add_argument("--report-images", type=int, default=1000)
    ap.add_argument("--skip", default="", help="comma-separated steps to skip: faithfulness,focus,shortcuts,probes,cost,report")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    subject = Subject.open(args.bundle)
    steps = {"faithfulness": faithfulness, "focus": focus, "shortcuts": shortcuts, "probes": probes,
             "server_cam": server_cam, "cost": cost, "report": report}
    for name, step in steps.items():
        path = args.out / f"{name}.json"
        if name in skip:
            continue
        if not path.exists():
            started = time.perf_counter()
            result = step(subject, args)
            result["seconds"] = round(time.perf_counter() - started, 1)
            path.write_text(json.dumps(json_safe(result), indent=2, default=str))
        result = json.loads(path.read_text())
        print(f"\n== {name} ({result['seconds']:.0f} s) ==")
        print("\n".join(result["lines"]))
    return 0


def validation_images(subject: Subject, n: int) -> tuple[np.ndarray, list]:
    rows = [r for r in read_split(subject.card.file("split")) if r.partition == "val"][:n]
    return np.stack([preprocess_image(Path(r.path), subject.preprocessing) for r in rows]), rows


def faithfulness(subject: Subject, args) -> dict:
    from lesionlens.explain.faithfulness import compare, curves

    images, _ = validation_images(subject, args.faithfulness_images)
    targets = subject.probabilities(images).argmax(axis=1)
    all_curves, seconds = {}, {}
    for method in ("gradcam", "random", "centre"):
        maps = attribute(subject, images, targets, method)
        started = time.perf_counter()
        all_curves[method] = curves(subject, images, maps, args.steps)
        seconds[method] = {"maps_per_image": maps.seconds_per_image,
                           "curves_per_image": (time.perf_counter() - started) / len(images)}
    result = compare(all_curves)
    result.write_figures(args.out)
    return {"lines": result.lines(), "result": result.to_dict(), "cost": seconds}


def isic_with_masks(subject: Subject, args):
    from lesionlens.explain.inputs import from_data

    images = from_data(args.shared / "data" / "isic2017", subject.preprocessing, progress=False)
    return images


def focus(subject: Subject, args) -> dict:
    from lesionlens.explain.focus import FocusSettings, lesion_focus
    from lesionlens.explain.run import _label_indices

    images = isic_with_masks(subject, args)
    rows = np.flatnonzero(images.has_mask)[:args.focus_images]
    x = images.array[rows]
    targets = subject.probabilities(x).argmax(axis=1)
    maps = attribute(subject, x, targets, "gradcam")
    y_true = _label_indices(subject, images)[rows]
    result = lesion_focus(maps.values, images.masks[rows], y_true, targets, subject.classes, FocusSettings(),
                          method="gradcam")
    result.write_figures(args.out)
    return {"lines": [f"ISIC 2017 images with masks: {len(rows)}", *result.lines()], "result": result.to_dict()}


def shortcuts(subject: Subject, args) -> dict:
    from lesionlens.explain.shortcuts import benign_rows, shortcut_test

    images = isic_with_masks(subject, args)
    validation = validation_ids(args)
    order = sorted(np.flatnonzero(images.has_mask & benign_rows(images.labels)),
                   key=lambda i: (images.ids[i] not in validation, images.ids[i]))
    rows = np.array(order[:args.shortcut_images])
    result = shortcut_test(subject.net, subject.card.rule, subject.preprocessing, images.array[rows],
                           [images.labels[i] for i in rows], images.masks[rows], [images.ids[i] for i in rows])
    result.write_figures(args.out)
    return {"lines": [f"benign ISIC 2017 images with masks: {len(rows)}", *result.lines()], "result": result.to_dict()}


def validation_ids(args) -> set[str]:
    folder = args.shared / "data" / "isic2017" / "ISIC-2017_Validation_Data"
    return {p.stem for p in folder.glob("*.jpg")}


def probes(subject: Subject, args) -> dict:
    from lesionlens.explain.inputs import from_data
    from lesionlens.explain.inside import embed_and_probe

    validation = {r.image_id for r in read_split(subject.card.file("split")) if r.partition == "val"}
    images = from_data(args.shared / "data" / "ham10000", subject.preprocessing, probes=("dx_type",),
                       image_ids=validation, progress=False)
    targets = subject.probabilities(images.array).argmax(axis=1)
    result = embed_and_probe(subject, images, targets, len(images), ("dx_type",), 0)
    result.write_figures(args.out)
    return {"lines": result.lines(), "result": result.to_dict()}


def server_cam(subject: Subject, args) -> dict:
    from lesionlens.explain.agreement import map_correlations
    from lesionlens.explain.attribution import low_resolution_cam
    from lesionlens.explain.cam import class_activation_maps
    from lesionlens.serving.runtime import BundleModel

    images, _ = validation_images(subject, 200)
    served = BundleModel(args.bundle)
    x = subject.inputs(images)
    logits, features = [], []
    for i in range(0, len(x), 32):
        out = served.run(x[i:i + 32].numpy())
        logits.append(out.logits)
        features.append(out.features)
    targets = np.concatenate(logits).argmax(axis=1)
    numpy_cams = class_activation_maps(np.concatenate(features), served.cam_weight, targets)
    library = np.concatenate([low_resolution_cam(subject, x[i:i + 32], targets[i:i + 32]) for i in range(0, len(x), 32)])
    r = map_correlations(numpy_cams, library)
    valid = r[~np.isnan(r)]
    lines = [f"server CAM (ONNX Runtime + NumPy) vs pytorch-grad-cam Grad-CAM on {len(r)} HAM10000 validation images "
             f"({len(valid)} with non-constant maps): Pearson r mean {valid.mean():.5f}, min {valid.min():.5f}"]
    return {"lines": lines, "images": len(r), "compared": int(len(valid)), "mean_r": float(valid.mean()),
            "min_r": float(valid.min())}


def cost(subject: Subject, args) -> dict:
    from lesionlens.explain.settings import METHODS

    if subject.size != args.cost_size:
        from lesionlens.data.images import Preprocessing
        from lesionlens.models.registry import create_model

        weights = args.shared / "weights" / "tf_efficientnet_lite0.pth"
        net = create_model("efficientnet_lite0", len(subject.classes), pretrained=True, weights=weights,
                           image_size=args.cost_size)
        subject = Subject(net, subject.classes, Preprocessing(args.cost_size))
    images, _ = validation_images(Subject.open(args.bundle), 8)
    images = np.stack([np.asarray(Image.fromarray(im).resize((args.cost_size,) * 2, Image.Resampling.BICUBIC))
                       for im in images])
    targets = subject.probabilities(images).argmax(axis=1)
    attribute(subject, images[:1], targets[:1], "gradcam")  # warm-up
    lines, figures = [f"seconds per image at {args.cost_size} px, EfficientNet-Lite0, 2 cores:"], {}
    for method in METHODS:
        n = 2 if method in ("occlusion", "integrated_gradients") else 8
        maps = attribute(subject, images[:n], targets[:n], method)
        figures[method] = maps.seconds_per_image
        lines.append(f"  {method:<22}{maps.seconds_per_image:8.3f} s")
    return {"lines": lines, "seconds_per_image": figures}


def report(subject: Subject, args) -> dict:
    out = args.out / "report"
    command = [sys.executable, "-m", "lesionlens.cli", "explain", str(args.bundle), "--data",
               str(args.bundle / "split.csv"), "--partition", "val", "--limit", str(args.report_images),
               "--out", str(out), "-q"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    minutes = (time.perf_counter() - started) / 60
    if done.returncode != 0:
        raise SystemExit(f"lesionlens explain failed:\n{done.stderr[-3000:]}")
    seconds = json.loads((out / "explain.json").read_text())["seconds"]
    return {"lines": [f"`lesionlens explain` on {args.report_images} HAM10000 validation images: {minutes:.1f} min",
                      *(f"  {k:<14}{v / 60:6.1f} min" for k, v in seconds.items())],
            "minutes": minutes, "command": " ".join(command)}


if __name__ == "__main__":
    raise SystemExit(main())
