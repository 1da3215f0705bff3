"""Attribution maps: which pixels a class's score depends on, by several methods, as RAW maps.

The Grad-CAM family comes from pytorch-grad-cam (Gildenblat et al.), the pixel-space methods
(integrated gradients, occlusion, guided backpropagation) from Captum. Both libraries normalise
their maps for display; every metric here (faithfulness, lesion focus, the sanity check) needs the
raw values, so the CAMs are taken before the library's min-max scaling (``_raw``) and upsampled
bilinearly to the image's size, and the pixel methods' attributions are reduced over colour
channels without rescaling. Normalise only to draw (:func:`lesionlens.explain.cam.colorize`).

Maps are N x H x W float32 at the bundle's input size. What each method's values mean:
- CAMs (``gradcam``, ``gradcam++``, ``xgradcam``, ``layercam``): ReLU of the weighted feature maps of a
  layer (``features`` by default), >= 0.
- ``integrated_gradients``: sum over channels of IG from a black image (32 steps, Riemann trapezoid);
  signed, and its pixels sum to about the score's change from the black image (completeness).
- ``occlusion``: the drop of the class's score when a square (1/8 of the side, stride 1/16) is
  replaced by the mean colour, spread over the pixels it covers; signed.
- ``guided_backprop``: sum over channels of |guided backpropagation| (ReLU6 counts as a ReLU).
- Baselines: ``random`` (uniform noise, seeded per image) and ``centre`` (a centred Gaussian of
  sigma = side / 4): a method must beat "looks at random" and "looks at the middle", where
  dermoscopy puts the lesion.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lesionlens.explain.baselines import BASELINES, baseline_maps
from lesionlens.explain.settings import CAM_METHODS, METHODS
from lesionlens.explain.subject import FEATURES, Subject

IG_STEPS = 32


@dataclass
class Maps:
    """Raw maps of one method for a batch of images, and what they cost."""

    method: str
    layer: str | None  # the layer of a CAM; None for pixel methods and baselines
    values: np.ndarray  # N x H x W float32
    targets: np.ndarray  # the class index each map explains
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / max(len(self.values), 1)


def attribute(subject: Subject, images: np.ndarray, targets: np.ndarray, method: str, layer: str | None = None,
              batch_size: int = 16, seed: int = 0) -> Maps:
    """Raw maps of ``method`` for ``images`` (N x H x W x 3 uint8), each for class ``targets[i]``."""
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose from {', '.join(METHODS)}")
    targets = np.asarray(targets, dtype=np.int64)
    if len(targets) != len(images):
        raise ValueError(f"{len(images)} images but {len(targets)} targets")
    size = images.shape[1:3]
    started = time.perf_counter()
    if method in BASELINES:
        values = baseline_maps(method, len(images), size, seed)
        return Maps(method, None, values, targets, time.perf_counter() - started)
    run = _CAMS[method] if method in CAM_METHODS else _PIXEL[method]
    name = subject.layer(layer).name if method in CAM_METHODS else None
    parts = []
    for i in range(0, len(images), batch_size):
        x = subject.inputs(images[i:i + batch_size])
        t = targets[i:i + batch_size]
        parts.append(run(subject, x, t, name) if method in CAM_METHODS else run(subject, x, t))
    values = np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, *size), np.float32)
    notes = []
    if method == "guided_backprop" and not any(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in subject.net.modules()):
        notes.append("the network has no ReLU modules: guided backpropagation is plain gradients here")
    return Maps(method, name, values, targets, time.perf_counter() - started, notes)


def low_resolution_cam(subject: Subject, x: torch.Tensor, targets: np.ndarray, method: str = "gradcam",
                       layer: str = FEATURES) -> np.ndarray:
    """The library's raw CAM at the layer's own resolution (N x h x w), before any upsampling."""
    return _library_cam(subject.model, subject.module(layer), x, targets, method)


def feature_cam(net: nn.Module, x: torch.Tensor, targets: np.ndarray, method: str = "gradcam") -> np.ndarray:
    """A CAM of any network with the features / head seam on the output of ``forward_features``
    (N x h x w, raw): ``lesionlens export`` compares the server's NumPy CAMs with it."""
    from lesionlens.explain.subject import Tapped

    tapped = Tapped(net).eval()
    return _library_cam(tapped, tapped.tap, x, targets, method)


def _library_cam(model: nn.Module, module: nn.Module, x: torch.Tensor, targets: np.ndarray, method: str) -> np.ndarray:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = _raw(_CAM_CLASSES()[method])(model=model, target_layers=[module])
    try:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    finally:
        cam.activations_and_grads.release()


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[:, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[:, 0].numpy()


# -- the Grad-CAM family (pytorch-grad-cam) -------------------------------------------------------
def _CAM_CLASSES() -> dict:
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, XGradCAM

    return {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "xgradcam": XGradCAM, "layercam": LayerCAM}


def _raw(cls):
    """``cls`` returning the ReLU'd CAM of its one target layer as computed, without the library's
    per-image min-max scaling and resizing (pytorch-grad-cam 1.5: ``compute_cam_per_layer``)."""

    class RawCAM(cls):
        def compute_cam_per_layer(self, input_tensor, targets, eigen_smooth):
            grads = self.activations_and_grads.gradients
            cam = self.get_cam_image(input_tensor, self.target_layers[0], targets,
                                     self.activations_and_grads.activations[0].cpu().data.numpy(),
                                     grads[0].cpu().data.numpy() if grads else None, eigen_smooth)
            return np.maximum(cam, 0)[:, None]

        def aggregate_multi_layers(self, cam_per_target_layer):
            return cam_per_target_layer[:, 0]

    RawCAM.__name__ = f"Raw{cls.__name__}"
    return RawCAM


def _cam(method: str):
    def run(subject: Subject, x: torch.Tensor, targets: np.ndarray, layer: str) -> np.ndarray:
        return upsample(low_resolution_cam(subject, x, targets, method, layer), tuple(x.shape[2:]))
    return run


_CAMS = {m: _cam(m) for m in CAM_METHODS}


# -- pixel-space methods (Captum) -----------------------------------------------------------------
def _integrated_gradients(subject: Subject, x: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    from captum.attr import IntegratedGradients

    black = subject.inputs(np.zeros((1, *x.shape[2:], 3), np.uint8)).expand_as(x)
    ig = IntegratedGradients(subject.model)
    a = ig.attribute(x, baselines=black, target=torch.as_tensor(targets), n_steps=IG_STEPS,
                     method="riemann_trapezoid", internal_batch_size=max(len(x) * 4, 16))
    return a.sum(dim=1).detach().numpy()


def _occlusion(subject: Subject, x: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    from captum.attr import Occlusion

    side = x.shape[-1]
    window, stride = max(side // 8, 2), max(side // 16, 1)
    with torch.no_grad():
        a = Occlusion(subject.model).attribute(x, sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
                                               baselines=0.0, target=torch.as_tensor(targets),
                                               perturbations_per_eval=16)
    return a.sum(dim=1).numpy()  # baselines 0.0 is the mean colour: inputs are (x - mean) / std


def _guided_backprop(subject: Subject, x: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    from captum.attr import GuidedBackprop

    model = guided_copy(subject.model)
    a = GuidedBackprop(model).attribute(x.clone().requires_grad_(True), target=torch.as_tensor(targets))
    return a.abs().sum(dim=1).detach().numpy()


_PIXEL = {"integrated_gradients": _integrated_gradients, "occlusion": _occlusion, "guided_backprop": _guided_backprop}


class _GuidedReLU6(nn.ReLU):
    """ReLU6 as an ``nn.ReLU`` subclass, so Captum's guided backpropagation (which hooks ``nn.ReLU``
    modules only) treats the ReLU6 of MobileNet / EfficientNet-Lite like a ReLU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x)


def guided_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with ReLU6 made guided-backprop-able and no in-place ReLUs (backward hooks
    on in-place modules are unreliable)."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, _GuidedReLU6())
            elif isinstance(child, nn.ReLU):
                child.inplace = False
    return model.eval()
