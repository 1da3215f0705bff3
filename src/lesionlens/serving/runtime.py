"""A bundle's exported ONNX graph, loaded without pickle, checked against its card, tuned for the CPU.

ONNX Runtime is the only model runtime here: no torch. The card's sha256 checks cover the
safetensors weights (by :func:`lesionlens.bundle.card.read_card`), the ONNX file and the CAM head.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from lesionlens.bundle.card import BundleError, Card, read_card
from lesionlens.digest import file_digest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outputs:
    logits: np.ndarray | None  # N x C; None for a segmentation-only model
    features: np.ndarray | None  # N x K x h x w, for class-activation maps
    masks: np.ndarray | None = None  # N x 1 x S x S lesion logits, for a model with a mask head


class BundleModel:
    """``BundleModel(path).run(x)``: logits (and feature maps), or mask logits, or both (a multi-task
    model), for a normalised N x 3 x H x W batch."""

    def __init__(self, bundle: str | Path, int8: bool = False, threads: int = 1):
        self.card: Card = read_card(bundle)
        if self.card.is_volume:
            raise BundleError(f"{self.card.path}: a bundle for NIfTI volumes ({self.card.architecture}); the server "
                              "takes 2D images. Use `lesionlens predict` for volumes")
        if self.card.task == "regression":
            raise BundleError(f"{self.card.path}: a regression bundle ({', '.join(self.card.classes)}); the server "
                              "answers with classes. Use `lesionlens predict` for its values")
        record = self.card.onnx
        if record is None:
            raise BundleError(f"{self.card.path}: the bundle has no ONNX model; run `lesionlens export "
                              f"{self.card.path}` first (it needs the training install, once)")
        if int8 and record.int8 is None:
            raise BundleError(f"{self.card.path}: no INT8 model; run `lesionlens export {self.card.path} --int8`")
        entry = record.int8 if int8 else record
        self.model_path = _checked(self.card.path / entry.file, entry.sha256)
        self.runtime = f"onnxruntime {ort.__version__} ({'int8' if int8 else 'fp32'})"
        self.rule = self.card.rule
        if self.card.tta != "none":
            fitted = ("its masks were evaluated" if self.card.task == "segmentation"
                      else "its temperature and operating points were fitted")
            log.warning("%s: %s with test-time augmentation %s; the server predicts one view, so its answers may "
                        "differ a little from `lesionlens predict`", self.card.path, fitted, self.card.tta)
        self.classes = self.card.classes
        self.task = self.card.task
        self.segmentation = self.card.segmentation  # threshold and clean-up of the mask head
        self.preprocessing = self.card.preprocessing
        self.threads = threads
        self.session = ort.InferenceSession(str(self.model_path), session_options(threads),
                                            providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.cam_weight = None
        if record.cam is not None and "features" in self.output_names:
            cam_path = _checked(self.card.path / record.cam.file, record.cam.sha256)
            with np.load(cam_path, allow_pickle=False) as head:
                self.cam_weight = head["weight"].astype(np.float32)
        if self.preprocessing.lesion_crop is not None:  # crop-then-classify: load and check the segmenter now,
            from lesionlens.data.crop import segmenter  # not at the first upload

            segmenter(self.preprocessing.lesion_crop)

    @property
    def explains(self) -> bool:
        return self.cam_weight is not None

    @property
    def classifies(self) -> bool:
        """Whether the graph has a classification head (``logits``)."""
        return "logits" in self.output_names

    @property
    def segments(self) -> bool:
        """Whether the graph has a mask head (``mask_logits``) and the card its threshold."""
        return "mask_logits" in self.output_names and self.segmentation is not None

    @property
    def heads(self) -> list[str]:
        """What the model answers: "classification", "segmentation" or both."""
        return [name for name, has in (("classification", self.classifies), ("segmentation", self.segments)) if has]

    def run(self, x: np.ndarray, features: bool = True) -> Outputs:
        names = [n for n in self.output_names if n != "features" or (features and self.explains)]
        values = dict(zip(names, self.session.run(names, {"image": x})))
        return Outputs(values.get("logits"), values.get("features"), values.get("mask_logits"))


def session_options(threads: int) -> ort.SessionOptions:
    """One model call at a time uses ``threads`` cores; between calls its threads sleep instead of
    spinning, so the threads decoding uploads get the CPU."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _checked(path: Path, sha256: str) -> Path:
    if not path.is_file():
        raise BundleError(f"{path}: missing (the card lists it); run `lesionlens export` again")
    digest = file_digest(path)
    if digest != sha256:
        raise BundleError(f"{path}: sha256 {digest} does not match the card ({sha256}); the file was "
                          "changed or damaged")
    return path
