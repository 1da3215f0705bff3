"""``lesionlens export``: write a bundle's network as ONNX for the torch-free server, checked
against PyTorch on real images before the card records it.

    lesionlens export runs/ham                  # model.onnx, checked on the bundle's validation images
    lesionlens export runs/ham --images DIR     # checked on these images instead
    lesionlens export runs/ham --int8           # also model.int8.onnx, with its measured cost and gain

The graph has a dynamic batch dimension. Its outputs are the logits and, for networks that end in
global average pooling + one linear layer, the last convolutional feature maps: with the linear
layer's weights (saved beside it as ``cam_head.npz``, read without pickle) the server computes
class-activation maps in NumPy. The same check compares those maps with Grad-CAM in PyTorch.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lesionlens.bundle import CARD, Card, read_card
from lesionlens.data.images import ImageDecodeError, normalize, preprocess_image
from lesionlens.decision import DecisionRule
from lesionlens.digest import file_digest
from lesionlens.inference import load_model
from lesionlens.serving.cam import class_activation_maps

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
CAM_FILE = "cam_head.npz"
OPSET = 18
TOLERANCE = 1e-4  # largest allowed |p_onnx - p_torch| over every class of every checked image


class ExportError(RuntimeError):
    pass


class _LogitsAndFeatures(nn.Module):
    """The network through its features/head seam, returning both (or only the logits)."""

    def __init__(self, model: nn.Module, with_features: bool):
        super().__init__()
        self.model = model
        self.with_features = with_features

    def forward(self, x: torch.Tensor):
        features = self.model.forward_features(x)
        logits = self.model.forward_head(features)
        return (logits, features) if self.with_features else logits


@dataclass(frozen=True)
class CheckImages:
    """Decoded images (N x H x W x 3 uint8) with their labels where known, and where they came from."""

    images: np.ndarray
    labels: np.ndarray | None  # class indices, -1 where unknown
    source: str


def find_check_images(card: Card, images: list[Path] | None, limit: int, partition: str = "val") -> CheckImages:
    """``images`` (files or folders) when given, else the bundle's own ``partition`` images listed
    in its split.csv (paths as written at training time, or relative to the bundle)."""
    from lesionlens.predict import collect_images

    labels: list[int] = []
    if images:
        paths = [p for p, err in collect_images(images) if err is None]
        source = ", ".join(str(p) for p in images)
    else:
        paths, labels = _split_images(card, partition)
        source = f"{card.path / 'split.csv'} ({partition} partition)"
    decoded, kept = [], []
    for i, path in enumerate(paths):
        if len(decoded) == limit:
            break
        try:
            decoded.append(preprocess_image(path, card.preprocessing))
            kept.append(labels[i] if labels else -1)
        except (ImageDecodeError, OSError) as e:
            log.warning("skipping %s: %s", path, e)
    if not decoded:
        where = "the images given" if images else f"{card.path}/split.csv ({partition} rows whose files exist here)"
        raise ExportError(f"no readable image in {where}; the export must be checked on real images: pass --images")
    y = np.asarray(kept)
    return CheckImages(np.stack(decoded), None if (y < 0).all() else y, f"{len(decoded)} images from {source}")


def _split_images(card: Card, partition: str) -> tuple[list[Path], list[int]]:
    import csv

    split = card.path / "split.csv"
    if not split.is_file():
        return [], []
    index = {c: i for i, c in enumerate(card.classes)}
    paths, labels = [], []
    with split.open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get("partition") != partition:
                continue
            for candidate in (Path(row["path"]), card.path / row["path"]):
                if candidate.is_file():
                    paths.append(candidate)
                    labels.append(index.get(row.get("label"), -1))
                    break
    return paths, labels


def has_cam_head(model: nn.Module, x: torch.Tensor) -> bool:
    """True when the logits are exactly the linear classifier of the averaged feature maps."""
    classifier = model.get_classifier()
    if not isinstance(classifier, nn.Linear):
        return False
    with torch.inference_mode():
        features = model.forward_features(x)
        if features.ndim != 4:
            return False
        direct = model.forward_head(features)
        via_cam = classifier(features.mean(dim=(2, 3)))
    return bool(torch.allclose(direct, via_cam, atol=1e-4, rtol=1e-4))


def grad_cam(model: nn.Module, x: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) on the last feature maps, for class ``targets[i]`` of image i:
    ReLU(sum_k mean(d score / d A_k) A_k). Returns N x h x w."""
    features = model.forward_features(x).detach().requires_grad_(True)
    logits = model.forward_head(features)
    score = logits[torch.arange(len(x)), torch.as_tensor(targets)].sum()
    (grads,) = torch.autograd.grad(score, features)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * features).sum(dim=1)).detach().numpy()


def _correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of maps; NaN where either map is constant."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(axis=1) / denom, np.nan)


def export_bundle(bundle: str | Path, images: list[Path] | None = None, check_limit: int = 200,
                  int8: bool = False, calibration_limit: int = 100) -> dict:
    """Write ``model.onnx`` (and ``cam_head.npz``, ``model.int8.onnx``) into the bundle, check them,
    and record them in its card under ``"onnx"``; returns that record. Nothing is recorded when the
    ONNX probabilities differ from PyTorch's by more than ``TOLERANCE``."""
    import onnxruntime as ort

    card = read_card(bundle)
    model = load_model(card).float().eval()
    pre = card.preprocessing
    rule = DecisionRule.from_card(card.data)
    check = find_check_images(card, images, check_limit)
    x = torch.from_numpy(normalize(check.images, pre))
    with_cam = has_cam_head(model, x[:4])

    onnx_path = card.path / ONNX_FILE
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / ONNX_FILE
        _write_onnx(_LogitsAndFeatures(model, with_cam).eval(), x[:2], tmp_path, with_cam)
        session = ort.InferenceSession(str(tmp_path), providers=["CPUExecutionProvider"])
        outputs = _run_batches(session, x.numpy())
        with torch.inference_mode():
            torch_logits = torch.cat([model(x[i:i + 32]) for i in range(0, len(x), 32)]).numpy()
        p_onnx, p_torch = rule.probabilities(outputs[0]), rule.probabilities(torch_logits)
        diff = float(np.abs(p_onnx - p_torch).max())
        if diff > TOLERANCE:
            raise ExportError(f"ONNX probabilities differ from PyTorch's by up to {diff:.2e} on {check.source} "
                              f"(allowed {TOLERANCE:.0e}); nothing was written")
        tmp_path.replace(onnx_path)
    record = {
        "file": ONNX_FILE,
        "sha256": file_digest(onnx_path),
        "opset": OPSET,
        "input": {"name": "image", "shape": ["batch", 3, pre.image_size, pre.image_size], "dtype": "float32",
                  "note": "normalised with the card's preprocessing mean/std"},
        "outputs": ["logits", "features"] if with_cam else ["logits"],
        "export_time_s": round(time.perf_counter() - started, 1),
        "check": {
            "images": check.source,
            "max_abs_prob_diff": diff,
            "tolerance": TOLERANCE,
            "top1_agreement": float((p_onnx.argmax(1) == p_torch.argmax(1)).mean()),
        },
        "cam": None,
    }
    if with_cam:
        record["cam"] = _export_cam_head(model, card.path, x, outputs[1], p_torch.argmax(1))
    if int8:
        from lesionlens.quantize import quantize_bundle_model

        calibration = find_check_images(card, images, calibration_limit, partition="train") if not images else check
        record["int8"] = quantize_bundle_model(onnx_path, card.path / INT8_FILE, check, calibration, rule, pre)
    _record(card, record)
    return record


def _write_onnx(module: nn.Module, example: torch.Tensor, path: Path, with_features: bool) -> None:
    for name in ("onnx_ir", "onnxscript"):  # one INFO line per rewritten initializer
        logging.getLogger(name).setLevel(logging.WARNING)
    batch = torch.export.Dim("batch", min=1, max=4096)
    outputs = ["logits", "features"] if with_features else ["logits"]
    program = torch.onnx.export(module, (example,), dynamo=True, opset_version=OPSET, external_data=False,
                                input_names=["image"], output_names=outputs,
                                dynamic_shapes={"x": {0: batch}}, verbose=False)
    program.save(str(path))


def _run_batches(session, x: np.ndarray, batch: int = 32) -> list[np.ndarray]:
    parts = [session.run(None, {"image": x[i:i + batch]}) for i in range(0, len(x), batch)]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def _export_cam_head(model: nn.Module, folder: Path, x: torch.Tensor, features: np.ndarray,
                     targets: np.ndarray) -> dict:
    """Save the classifier's weights for NumPy CAMs and compare those with Grad-CAM in PyTorch."""
    classifier = model.get_classifier()
    weight = classifier.weight.detach().numpy().astype(np.float32)
    bias = classifier.bias.detach().numpy().astype(np.float32)
    path = folder / CAM_FILE
    np.savez(path, weight=weight, bias=bias)
    cams = class_activation_maps(features, weight, targets)
    gradcams = np.concatenate([grad_cam(model, x[i:i + 16], targets[i:i + 16]) for i in range(0, len(x), 16)])
    r = _correlations(cams, gradcams)
    valid = r[~np.isnan(r)]
    return {
        "file": CAM_FILE,
        "sha256": file_digest(path),
        "feature_shape": list(features.shape[1:]),
        "gradcam_check": {
            "images": int(len(r)),
            "compared": int(len(valid)),  # maps that are not constant on both sides
            "mean_correlation": float(valid.mean()) if len(valid) else None,
            "min_correlation": float(valid.min()) if len(valid) else None,
            "class": "the top PyTorch class of each image",
        },
    }


def _record(card: Card, record: dict) -> None:
    data = json.loads((card.path / CARD).read_text())
    data["onnx"] = record
    (card.path / CARD).write_text(json.dumps(data, indent=2))
