"""INT8 quantization of an exported model (ONNX Runtime static quantization, QDQ format), with
what it costs in accuracy and what it gains in speed measured on real images.

The quantized file is written beside ``model.onnx`` and its measurements into the card; the server
uses it only when asked (``lesionlens serve --int8``), never silently.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from lesionlens.data.images import Preprocessing, normalize
from lesionlens.decision import DecisionRule
from lesionlens.export.check import CheckImages
from lesionlens.digest import file_digest


class _Calibration:
    """ONNX Runtime's CalibrationDataReader protocol: one normalised image per call, then None."""

    def __init__(self, x: np.ndarray):
        self._rows = iter(range(len(x)))
        self._x = x

    def get_next(self) -> dict | None:
        i = next(self._rows, None)
        return None if i is None else {"image": self._x[i:i + 1]}


def batch1_latency_ms(session, x: np.ndarray, repeats: int = 100) -> float:
    """Median wall time of one single-image run, after a warm-up."""
    for i in range(5):
        session.run(None, {"image": x[i % len(x):i % len(x) + 1]})
    times = []
    for i in range(repeats):
        row = x[i % len(x):i % len(x) + 1]
        t = time.perf_counter()
        session.run(None, {"image": row})
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def quantize_bundle_model(fp32_path: Path, int8_path: Path, check: CheckImages, calibration: CheckImages, rule: DecisionRule,
                          pre: Preprocessing) -> dict:
    """Quantize ``fp32_path`` with ``calibration`` images; measure it against fp32 on ``check``."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))  # the quantizer logs one line per adjusted channel
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(int8_path), _Calibration(normalize(calibration.images, pre)),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    root.setLevel(level)
    x = normalize(check.images, pre)
    options = ort.SessionOptions()
    sessions = {name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                for name, path in (("fp32", fp32_path), ("int8", int8_path))}
    probs = {name: rule.probabilities(np.concatenate([s.run(["logits"], {"image": x[i:i + 32]})[0]
                                                      for i in range(0, len(x), 32)]))
             for name, s in sessions.items()}
    latency = {name: batch1_latency_ms(s, x) for name, s in sessions.items()}
    report = {
        "file": int8_path.name,
        "sha256": file_digest(int8_path),
        "method": "ONNX Runtime static quantization, QDQ, per-channel int8 weights, uint8 activations, MinMax",
        "calibration_images": calibration.source,
        "evaluated_on": check.source,
        "max_abs_prob_diff": float(np.abs(probs["int8"] - probs["fp32"]).max()),
        "top1_agreement": float((probs["int8"].argmax(1) == probs["fp32"].argmax(1)).mean()),
        "batch1_latency_ms": {k: round(v, 3) for k, v in latency.items()},
        "speedup": round(latency["fp32"] / latency["int8"], 3),
        "used_by_server": "only with `lesionlens serve --int8`",
    }
    if check.labels is not None:
        known = check.labels >= 0
        acc = {k: float((p.argmax(1)[known] == check.labels[known]).mean()) for k, p in probs.items()}
        report["accuracy"] = acc
        report["accuracy_change"] = acc["int8"] - acc["fp32"]
    return report
