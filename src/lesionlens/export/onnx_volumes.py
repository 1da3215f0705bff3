"""Write a volume bundle's 3D network as ONNX, checked against PyTorch on real volumes before the
card records it (the volume twin of :mod:`lesionlens.export.onnx`).

    lesionlens export runs/volumes                 # checked on the bundle's validation volumes
    lesionlens export runs/volumes --images DIR    # checked on these NIfTI volumes instead

The graph's input ``image`` is N x 1 x D x H x W float32, the volume after the card's
:class:`~lesionlens.data.volumes.VolumePreprocessing` (grid, spacing, normalisation), with a dynamic
batch dimension. A classifier's output is ``logits``, checked like a 2D classifier's (every calibrated
probability within 1e-4 of PyTorch's); a U-Net's is ``mask_logits``, checked voxel by voxel: every
probability within 1e-4 and the thresholded masks identical except at voxels within 1e-4 of the
threshold (there the runtimes' rounding decides; the record counts them).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from lesionlens.bundle.card import Card, read_card, update_card
from lesionlens.bundle.schema import OnnxInfo
from lesionlens.bundle.split import read_split
from lesionlens.data.volumes import VolumeError, preprocess_volume
from lesionlens.digest import file_digest
from lesionlens.export.check import ExportError
from lesionlens.export.onnx import ONNX_FILE, OPSET, _run_batches, _torch_outputs, _write_onnx
from lesionlens.export.parity import TOLERANCE, check_classes, check_values


def check_volumes(card: Card, volumes: list[Path] | None, limit: int) -> tuple[np.ndarray, str]:
    """Up to ``limit`` preprocessed volumes: ``volumes`` (files or folders) when given, else the
    bundle's validation volumes listed in its split file; with where they came from."""
    from lesionlens.predict_volumes import collect_volumes

    if volumes:
        paths = [p for p, err in collect_volumes(volumes) if err is None]
        source = ", ".join(str(p) for p in volumes)
    else:
        split = card.file("split")
        paths = [Path(r.path) for r in read_split(split) if r.partition == "val"] if split else []
        source = f"{card.path / 'split.csv'} (val partition)"
    arrays = []
    for path in paths[:limit]:
        try:
            arrays.append(preprocess_volume(path, card.preprocessing))
        except VolumeError:
            continue
    if not arrays:
        raise ExportError(f"no readable volume in {source}; the export must be checked on real volumes: pass --images")
    return np.stack(arrays)[:, None], f"{len(arrays)} volumes from {source}"


def check_volume_masks(onnx_logits: np.ndarray, torch_logits: np.ndarray, threshold: float, source: str) -> dict:
    """Voxel probabilities within ``TOLERANCE``; thresholded masks identical except at ties."""
    p_onnx, p_torch = 1 / (1 + np.exp(-onnx_logits)), 1 / (1 + np.exp(-torch_logits))
    diff = float(np.abs(p_onnx - p_torch).max()) if p_onnx.size else 0.0
    if diff > TOLERANCE:
        raise ExportError(f"ONNX voxel probabilities differ from PyTorch's by up to {diff:.2e} on {source} "
                          f"(allowed {TOLERANCE:.0e}); nothing was written")
    differing = (p_onnx > threshold) != (p_torch > threshold)
    ties = np.abs(p_torch - threshold) <= TOLERANCE
    if (differing & ~ties).any():
        raise ExportError(f"the ONNX masks differ from PyTorch's in {int((differing & ~ties).sum())} voxels away from "
                          f"the threshold on {source}; nothing was written")
    return {"max_abs_mask_prob_diff": diff, "mask_tolerance": TOLERANCE, "mask_threshold": threshold,
            "mask_voxels": int(p_torch.size), "mask_voxels_at_threshold": int(ties.sum()),
            "mask_voxels_differing": int(differing.sum())}


def export_volume_bundle(bundle: str | Path, volumes: list[Path] | None = None, check_limit: int = 50) -> OnnxInfo:
    """Write ``model.onnx`` into the volume bundle, check it, and record it in the card under
    ``"onnx"``; returns that record. Nothing is written when the check fails."""
    import onnxruntime as ort
    import torch

    from lesionlens.predict_volumes import load_volume_model

    card = read_card(bundle)
    model = load_volume_model(card).float().eval()
    x_np, source = check_volumes(card, volumes, check_limit)
    x = torch.from_numpy(x_np)
    outputs = ["mask_logits"] if card.task == "segmentation" else ["logits"]
    onnx_path = card.path / ONNX_FILE
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / ONNX_FILE
        _write_onnx(model, x[:2], tmp_path, outputs)
        session = ort.InferenceSession(str(tmp_path), providers=["CPUExecutionProvider"])
        (got,) = _run_batches(session, x_np)
        expected = _torch_outputs(model, x, outputs)[outputs[0]]
        if card.task == "segmentation":
            threshold = card.segmentation.threshold if card.segmentation else 0.5
            passed = check_volume_masks(got, expected, threshold, source)
        elif card.regression is not None:
            passed = check_values(got, expected, card.regression, source)
        else:
            passed = check_classes(got, expected, card.rule, source)
        tmp_path.replace(onnx_path)
    record = {
        "file": ONNX_FILE,
        "sha256": file_digest(onnx_path),
        "opset": OPSET,
        "input": {"name": "image", "shape": ["batch", 1, *card.preprocessing.size], "dtype": "float32",
                  "note": "a NIfTI volume after the card's volume preprocessing (grid, spacing, normalisation)"},
        "outputs": outputs,
        "export_time_s": round(time.perf_counter() - started, 1),
        "check": {"images": source, **passed},
        "cam": None,
    }
    return update_card(card.path, {"onnx": record}, by="lesionlens export").onnx
