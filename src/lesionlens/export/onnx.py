"""Write a bundle's network as ONNX for the torch-free server, checked against PyTorch on real
images before the card records it.

    lesionlens export runs/ham                  # model.onnx, checked on the bundle's validation images
    lesionlens export runs/ham --images DIR     # checked on these images instead
    lesionlens export runs/ham --int8           # also model.int8.onnx, with its measured cost and gain

The graph has a dynamic batch dimension. Its outputs are the logits and, for networks that end in
global average pooling + one linear layer, the last convolutional feature maps: with the linear
layer's weight (saved beside it as ``cam_head.npz``, read without pickle) the server computes
class-activation maps in NumPy (:mod:`lesionlens.explain.cam`). The same check compares those maps
with the Grad-CAM of pytorch-grad-cam (:mod:`lesionlens.explain.attribution`).

A segmentation bundle's graph outputs ``mask_logits`` (N x 1 x S x S); a multi-task bundle's,
``mask_logits`` and ``logits``. Their check (:mod:`lesionlens.export.parity`) covers every pixel's
probability and the cleaned-up masks, which must be identical.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lesionlens.bundle.card import read_card, update_card
from lesionlens.bundle.schema import OnnxInfo
from lesionlens.data.images import normalize
from lesionlens.digest import file_digest
from lesionlens.explain.cam import class_activation_maps
from lesionlens.explain.agreement import map_correlations
from lesionlens.explain.attribution import feature_cam
from lesionlens.export.check import ExportError, find_check_images
from lesionlens.export.parity import check_classes, check_masks, check_values
from lesionlens.inference import load_model

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
CAM_FILE = "cam_head.npz"
OPSET = 18
# The graph's outputs per task, in the order the network returns them (a U-Net: mask first).
TASK_OUTPUTS = {"segmentation": ["mask_logits"], "multitask": ["mask_logits", "logits"]}


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


def export_bundle(bundle: str | Path, images: list[Path] | None = None, check_limit: int = 200,
                  int8: bool = False, calibration_limit: int = 100) -> OnnxInfo:
    """Write ``model.onnx`` (and ``cam_head.npz``, ``model.int8.onnx``) into the bundle, check them,
    and record them in its card under ``"onnx"``; returns that record. Nothing is written when the
    ONNX outputs fail the check of :mod:`lesionlens.export.parity`."""
    import onnxruntime as ort

    card = read_card(bundle)
    if int8 and card.task != "classification":
        raise ExportError(f"{card.path}: --int8 is measured on class probabilities only; export this {card.task} "
                          "bundle without --int8")
    model = load_model(card).float().eval()
    pre = card.preprocessing
    check = find_check_images(card, images, check_limit)
    x = torch.from_numpy(normalize(check.images, pre))
    with_cam = card.task == "classification" and has_cam_head(model, x[:4])
    outputs = TASK_OUTPUTS.get(card.task) or (["logits", "features"] if with_cam else ["logits"])

    onnx_path = card.path / ONNX_FILE
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / ONNX_FILE
        module = model if card.task in TASK_OUTPUTS else _LogitsAndFeatures(model, with_cam).eval()
        _write_onnx(module, x[:2], tmp_path, outputs)
        session = ort.InferenceSession(str(tmp_path), providers=["CPUExecutionProvider"])
        got = dict(zip(outputs, _run_batches(session, x.numpy())))
        expected = _torch_outputs(model, x, outputs)
        passed = {}
        if "logits" in outputs and card.regression is not None:
            passed |= check_values(got["logits"], expected["logits"], card.regression, check.source)
        elif "logits" in outputs:
            passed |= check_classes(got["logits"], expected["logits"], card.rule, check.source)
        if "mask_logits" in outputs:
            passed |= check_masks(got["mask_logits"], expected["mask_logits"], card.segmentation, check.source)
        tmp_path.replace(onnx_path)
    record = {
        "file": ONNX_FILE,
        "sha256": file_digest(onnx_path),
        "opset": OPSET,
        "input": {"name": "image", "shape": ["batch", 3, pre.image_size, pre.image_size], "dtype": "float32",
                  "note": "normalised with the card's preprocessing mean/std"},
        "outputs": outputs,
        "export_time_s": round(time.perf_counter() - started, 1),
        "check": {"images": check.source, **passed},
        "cam": None,
    }
    if with_cam:
        targets = card.rule.probabilities(expected["logits"]).argmax(1)
        record["cam"] = _export_cam_head(model, card.path, x, got["features"], targets)
    if int8:
        from lesionlens.export.quantize import quantize_bundle_model

        calibration = find_check_images(card, images, calibration_limit, partition="train") if not images else check
        record["int8"] = quantize_bundle_model(onnx_path, card.path / INT8_FILE, check, calibration, card.rule, pre)
    return update_card(card.path, {"onnx": record}, by="lesionlens export").onnx


def _torch_outputs(model: nn.Module, x: torch.Tensor, outputs: list[str], batch: int = 32) -> dict[str, np.ndarray]:
    """PyTorch's values of the graph's outputs (the feature maps aside) on ``x``."""
    parts: list[tuple] = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            y = model(x[i:i + batch])
            parts.append(tuple(t.numpy() for t in y) if isinstance(y, tuple) else (y.numpy(),))
    names = [n for n in outputs if n != "features"]
    return {name: np.concatenate([p[k] for p in parts]) for k, name in enumerate(names)}


def _write_onnx(module: nn.Module, example: torch.Tensor, path: Path, outputs: list[str]) -> None:
    for name in ("onnx_ir", "onnxscript"):  # one INFO line per rewritten initializer
        logging.getLogger(name).setLevel(logging.WARNING)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(module, (example,), dynamo=True, opset_version=OPSET, external_data=False,
                                input_names=["image"], output_names=outputs,
                                dynamic_shapes={"x": {0: batch}}, verbose=False)
    program.save(str(path))


def _run_batches(session, x: np.ndarray, batch: int = 32) -> list[np.ndarray]:
    parts = [session.run(None, {"image": x[i:i + batch]}) for i in range(0, len(x), batch)]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def _export_cam_head(model: nn.Module, folder: Path, x: torch.Tensor, features: np.ndarray,
                     targets: np.ndarray) -> dict:
    """Save the classifier's weight for NumPy CAMs and compare those with Grad-CAM in PyTorch."""
    weight = model.get_classifier().weight.detach().numpy().astype(np.float32)
    path = folder / CAM_FILE
    np.savez(path, weight=weight)
    cams = class_activation_maps(features, weight, targets)
    gradcams = np.concatenate([feature_cam(model, x[i:i + 16], targets[i:i + 16]) for i in range(0, len(x), 16)])
    r = map_correlations(cams, gradcams)
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


def describe_export(info: OnnxInfo, bundle: Path) -> list[str]:
    """What ``lesionlens export`` wrote and measured."""
    c = info.check
    volume = len(info.input.get("shape", [])) == 5
    lines = [f"Wrote {bundle / info.file} (opset {info.opset}, outputs {', '.join(info.outputs)})"]
    if "max_abs_prob_diff" in c:
        lines.append(f"  checked against PyTorch on {c['images']}: max |p_onnx - p_torch| = {c['max_abs_prob_diff']:.2e} "
                     f"(allowed {c['tolerance']:.0e}), top-1 agreement {c['top1_agreement']:.3f}")
    if "max_abs_diff_in_sd" in c:  # a regression bundle
        units = ", ".join(f"{t} {v:.2e}" for t, v in c["max_abs_value_diff"].items())
        lines.append(f"  checked against PyTorch on {c['images']}: max |value_onnx - value_torch| = "
                     f"{c['max_abs_diff_in_sd']:.2e} standard deviations (allowed {c['tolerance_in_sd']:.0e}; {units})")
    if "mask_voxels" in c:  # a volume U-Net (lesionlens.export.onnx_volumes)
        lines.append(f"  masks checked against PyTorch on {c['images']}: max |p_onnx - p_torch| over {c['mask_voxels']:,} "
                     f"voxels = {c['max_abs_mask_prob_diff']:.2e} (allowed {c['mask_tolerance']:.0e}); thresholded at "
                     f"{c['mask_threshold']:g}, {c['mask_voxels_differing']} of {c['mask_voxels_at_threshold']} voxels "
                     "within the tolerance of the threshold differ, none elsewhere")
    elif "max_abs_mask_prob_diff" in c:
        lines.append(f"  lesion masks checked against PyTorch on {c['images']}: max |p_onnx - p_torch| over "
                     f"{c['mask_pixels']:,} pixels = {c['max_abs_mask_prob_diff']:.2e} (allowed "
                     f"{c['mask_tolerance']:.0e}); masks after thresholding at {c['mask_threshold']:g} and the "
                     f"clean-up identical except at ties ({c['mask_pixels_differing']} of "
                     f"{c.get('mask_pixels_at_threshold', 0)} pixels within {c['mask_tolerance']:.0e} of the threshold differ)")
    if info.cam is not None:
        g = info.cam.gradcam_check
        lines.append(f"  class-activation maps: {bundle / info.cam.file}; correlation with PyTorch Grad-CAM over "
                     f"{g['compared']} images: mean {_fmt(g['mean_correlation'])}, min {_fmt(g['min_correlation'])}")
    elif not volume and "max_abs_diff_in_sd" not in c:
        lines.append("  no class-activation maps: the graph has no feature-map output (a U-Net, or a head other "
                     "than global average pooling + one linear layer)")
    q = info.int8
    if q is not None:
        acc = (f"accuracy {q.accuracy['fp32']:.3f} -> {q.accuracy['int8']:.3f} ({q.accuracy_change:+.3f}), "
               if q.accuracy else "")
        lines.append(f"  INT8 {bundle / q.file}: {acc}top-1 agreement with fp32 {q.top1_agreement:.3f}, "
                     f"max prob change {q.max_abs_prob_diff:.3f}; batch-1 latency {q.batch1_latency_ms['fp32']:.2f} -> "
                     f"{q.batch1_latency_ms['int8']:.2f} ms (x{q.speedup:.2f}). Not used unless `serve --int8`.")
    if volume:  # a 3D network (lesionlens.export.onnx_volumes): N x 1 x D x H x W in
        lines.append("  (the server takes 2D images: run the graph in ONNX Runtime on volumes prepared with the card's "
                     "volume preprocessing)")
    elif "max_abs_diff_in_sd" in c:
        lines.append("  (the server answers with classes: run the graph in ONNX Runtime, and turn each output into the "
                     "target's units with the card's regression mean and std)")
    else:
        lines.append(f"Next: lesionlens serve {bundle}")
    return lines


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"
