"""Load a bundle's model and turn decoded images into class probabilities or lesion-mask
probabilities (PyTorch)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from lesionlens.bundle.card import Card, read_card
from lesionlens.bundle.schema import BundleError
from lesionlens.config import Tta, check_covers, choices
from lesionlens.data.images import ImageDecodeError, Preprocessing, preprocess_image
from lesionlens.data.transforms import to_input
from lesionlens.models.registry import create_model


def load_model(card: Card) -> nn.Module:
    """The bundle's network in eval mode, weights checked against the card's sha256 by read_card."""
    if card.is_volume:  # its own loader: lesionlens.predict_volumes.load_volume_model
        raise BundleError(f"{card.path}: a bundle for NIfTI volumes ({card.architecture}); this command takes "
                          "2D images (`lesionlens predict`, `evaluate` and `export` take volume bundles)")
    info = card.model
    if card.task in ("segmentation", "multitask"):
        from lesionlens.models.unet import create_unet

        seg = card.segmentation
        model = create_unet(info.architecture, len(card.classes), multitask=card.task == "multitask",
                            drop_rate=info.drop_rate, decoder_width=seg.decoder_width, upsample=seg.upsample)
        model.load_state_dict(load_file(card.weights_path), strict=True)
        return model.eval()
    model = create_model(info.architecture, len(card.classes), pretrained=False, drop_rate=info.drop_rate,
                         head=info.head, image_size=card.preprocessing.image_size, classifier=info.features_classifier)
    model.load_state_dict(load_file(card.weights_path), strict=True)
    return model.eval()


def load_classifier(card: Card) -> nn.Module:
    """The bundle's network as a classifier (class logits only): a multi-task U-Net through its
    classification head. A segmentation-only bundle has no class head: the error says so."""
    if card.task == "segmentation":
        raise ValueError(f"{card.path}: a segmentation bundle has no classification head; `lesionlens predict` gives "
                         "its masks, a multitask or classification bundle gives classes")
    if card.task == "regression":
        raise ValueError(f"{card.path}: a regression bundle predicts numbers ({', '.join(card.classes)}), not classes; "
                         "`lesionlens predict` and `lesionlens evaluate` give them")
    model = load_model(card)
    if card.task == "multitask":
        from lesionlens.models.unet import ClassifierView

        return ClassifierView(model).eval()
    return model


# Test-time augmentation: the views of each image whose logits are averaged. "flips" is the
# horizontal and vertical mirror images; "d4" adds the 90-degree rotations (all 8 symmetries of the
# square). Dermoscopy has no up or down, so every view is an image the model could have seen.
TTA_VIEWS = {
    "none": ((0, False),),
    "flips": ((0, False), (0, True), (2, False), (2, True)),
    "d4": tuple((k, f) for k in range(4) for f in (False, True)),
}
check_covers(TTA_VIEWS, Tta, "test-time augmentation")


def _view(x: torch.Tensor, quarter_turns: int, mirror: bool) -> torch.Tensor:
    x = torch.rot90(x, quarter_turns, dims=(2, 3)) if quarter_turns else x
    return torch.flip(x, dims=(3,)) if mirror else x


def predict_logits(model: nn.Module, images: np.ndarray, pre: Preprocessing, rows: np.ndarray | None = None,
                   batch_size: int = 64, tta: str = "none", progress: bool = False) -> np.ndarray:
    """Logits for ``images[rows]`` (N x H x W x 3 uint8, e.g. the decoded cache), averaged over the
    test-time augmentation views ``tta`` (see ``TTA_VIEWS``)."""
    if tta not in TTA_VIEWS:
        raise ValueError(f"unknown test-time augmentation {tta!r}; choose one of {choices(Tta)}")
    rows = np.arange(len(images)) if rows is None else np.asarray(rows)
    device = next(model.parameters()).device
    # outside inference mode: weights converted inside it become inference tensors, and the same
    # model could then no longer be differentiated (Grad-CAM, lesionlens explain)
    model = model.to(memory_format=torch.channels_last).eval()
    out = []
    with torch.inference_mode():
        for start in tqdm(range(0, len(rows), batch_size), disable=None if progress else True, desc="predicting",
                          leave=False):
            idx = rows[start:start + batch_size]
            batch = torch.from_numpy(np.ascontiguousarray(images[idx]))
            x = to_input(batch.permute(0, 3, 1, 2).to(device), pre, channels_last=False)
            views = [model(_view(x, k, f).contiguous(memory_format=torch.channels_last)).float()
                     for k, f in TTA_VIEWS[tta]]
            out.append(torch.stack(views).mean(dim=0).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.get_classifier().out_features), np.float32)


def predict_values(card: Card, model: nn.Module, images: np.ndarray, rows: np.ndarray | None = None,
                   tta: str = "none", progress: bool = False) -> np.ndarray:
    """A regression bundle's predictions for ``images[rows]`` in the targets' units (N x K)."""
    if card.regression is None:
        raise ValueError(f"{card.path}: not a regression bundle (task {card.task})")
    return card.regression.values(predict_logits(model, images, card.preprocessing, rows, tta=tta, progress=progress))


def predict_mask_probabilities(model: nn.Module, images: np.ndarray, pre: Preprocessing,
                               rows: np.ndarray | None = None, batch_size: int = 32, tta: str = "none",
                               progress: bool = False) -> np.ndarray:
    """Per-pixel lesion probabilities (N x S x S float32) of a segmentation or multi-task network
    for ``images[rows]``; with ``tta`` each view's map is turned back before the views are averaged."""
    if tta not in TTA_VIEWS:
        raise ValueError(f"unknown test-time augmentation {tta!r}; choose one of {choices(Tta)}")
    rows = np.arange(len(images)) if rows is None else np.asarray(rows)
    device = next(model.parameters()).device
    model = model.to(memory_format=torch.channels_last).eval()
    size = pre.image_size
    out = []
    with torch.inference_mode():
        for start in tqdm(range(0, len(rows), batch_size), disable=None if progress else True, desc="segmenting",
                          leave=False):
            batch = torch.from_numpy(np.ascontiguousarray(images[rows[start:start + batch_size]]))
            x = to_input(batch.permute(0, 3, 1, 2).to(device), pre, channels_last=False)
            views = []
            for k, mirror in TTA_VIEWS[tta]:
                y = model(_view(x, k, mirror).contiguous(memory_format=torch.channels_last))
                y = torch.sigmoid((y[0] if isinstance(y, tuple) else y).float())
                y = torch.flip(y, dims=(3,)) if mirror else y  # undo the view: mirror first, then the turns
                views.append(torch.rot90(y, -k, dims=(2, 3)) if k else y)
            out.append(torch.stack(views).mean(dim=0)[:, 0].cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, size, size), np.float32)


class Predictor:
    """A bundle ready to predict: ``Predictor(path).predict_files([...])``. Probabilities and
    decisions follow the bundle's decision rule (``Card.rule``: temperature, operating points); a
    regression bundle gives its targets' values instead (N x K, in their units)."""

    def __init__(self, bundle: str | Path, tta: str | None = None, processes: int = 1):
        self.card = read_card(bundle)
        self.processes = processes  # more than one: lesionlens.inference_pool
        tta = self.card.resolve_tta(tta)  # None: the test-time augmentation the bundle was fitted with
        if tta not in TTA_VIEWS:
            raise ValueError(f"unknown test-time augmentation {tta!r}; choose one of {choices(Tta)}")
        self.regression = self.card.regression
        self.model = load_model(self.card) if self.regression else load_classifier(self.card)
        self.preprocessing = self.card.preprocessing
        self.classes = self.card.classes
        self.rule = self.card.rule
        self.tta = tta

    def predict_array(self, images: np.ndarray, rows: np.ndarray | None = None,
                      progress: bool = False) -> np.ndarray:
        from lesionlens.inference_pool import bundle_logits

        logits = bundle_logits(self.model, self.card.path, images, self.preprocessing, rows, self.tta, self.processes,
                               self.regression is not None, progress)
        return self.regression.values(logits) if self.regression else self.rule.probabilities(logits)

    def predict_files(self, paths: list[Path], workers: int = 2) -> tuple[np.ndarray, dict[int, str]]:
        """Probabilities (or values) for the files that could be decoded, and why the others could not."""
        decoded: list[np.ndarray | None] = [None] * len(paths)
        failures: dict[int, str] = {}

        def decode(i: int) -> None:
            try:
                decoded[i] = preprocess_image(paths[i], self.preprocessing)
            except (ImageDecodeError, OSError) as e:
                failures[i] = str(e)

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(decode, range(len(paths))))
        ok = [d for d in decoded if d is not None]
        size = self.preprocessing.image_size
        array = np.stack(ok) if ok else np.zeros((0, size, size, 3), np.uint8)
        return self.predict_array(array), failures
