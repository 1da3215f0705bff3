"""Lesion masks: find each image's mask, check it, and bring it to the network's square exactly as
its image.

Two layouts are read:
- ISIC 2017 Part 1: ``ISIC-2017_<Set>_Part1_GroundTruth/ISIC_xxxxxxx_segmentation.png`` beside the
  ``ISIC-2017_<Set>_Data/`` folder of the images (give the folder that holds both, or the data
  folder itself);
- any image folder with a mask folder, matched by file stem: ``a.jpg`` takes ``a.png``,
  ``a_segmentation.png`` or ``a_mask.png`` (any image suffix).

A mask is a single-channel image, binary (0/255 or 0/1; any other value is an error naming the file
and the values found), of the image's size, or a scaled copy of the same aspect ratio (resized
with nearest neighbour to the image's size first). :func:`preprocess_mask` then repeats the image's
:class:`~lesionlens.data.images.Preprocessing` geometry ("squash" or "crop") with nearest
neighbour, so mask and image stay aligned pixel for pixel. Lesion-focus metrics read these masks
now; segmentation models will train on :func:`load_pairs`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lesionlens.data.images import IMAGE_SUFFIXES, ImageDecodeError, Preprocessing, preprocess_image, resize_square
from lesionlens.data.table import DataError, DataIssue

MASK_SUFFIXES = ("_segmentation", "_mask", "")  # tried in this order after the image's stem
_ISIC2017_DATA = re.compile(r"^(ISIC-2017_[A-Za-z0-9_]+?)_Data$")
# A scaled mask keeps the image's aspect ratio to within this (rounding of either side).
_ASPECT_TOLERANCE = 0.01


@dataclass(frozen=True)
class MaskPair:
    image_id: str  # the image's file stem
    image: Path
    mask: Path


@dataclass
class MaskPairs:
    """Images matched with their masks; ``missing`` names every image found without one."""

    pairs: list[MaskPair]
    missing: list[DataIssue] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pairs)

    def lines(self) -> list[str]:
        out = [f"{len(self.pairs)} image(s) with a lesion mask"]
        if self.missing:
            out.append(f"{len(self.missing)} image(s) without a mask:")
            out += [f"  {issue}" for issue in self.missing[:20]]
            if len(self.missing) > 20:
                out.append(f"  ... and {len(self.missing) - 20} more")
        return out


def isic2017_mask_folder(data_folder: Path) -> Path | None:
    """``ISIC-2017_<Set>_Data`` -> its ``ISIC-2017_<Set>_Part1_GroundTruth`` sibling, if the name fits."""
    m = _ISIC2017_DATA.match(data_folder.name)
    return data_folder.parent / f"{m.group(1)}_Part1_GroundTruth" if m else None


def find_mask(image: Path, mask_folders: Sequence[Path]) -> Path | None:
    """The mask of ``image`` in ``mask_folders`` (then in its ISIC 2017 Part 1 sibling folder):
    ``<stem><suffix><ext>`` for each suffix of ``MASK_SUFFIXES`` and image extension, first found."""
    folders = list(mask_folders)
    sibling = isic2017_mask_folder(image.parent)
    if sibling is not None:
        folders.append(sibling)
    for folder in folders:
        for suffix in MASK_SUFFIXES:
            for ext in (".png", *IMAGE_SUFFIXES):
                candidate = folder / f"{image.stem}{suffix}{ext}"
                if candidate != image and candidate.is_file():
                    return candidate
    return None


def pair_images(images: Sequence[Path], mask_folders: Sequence[Path] = ()) -> MaskPairs:
    """Each image with its mask (see :func:`find_mask`); an image without one is listed in ``missing``."""
    pairs, missing = [], []
    for image in images:
        mask = find_mask(Path(image), mask_folders)
        if mask is None:
            where = ", ".join(str(f) for f in [*mask_folders, isic2017_mask_folder(Path(image).parent)] if f)
            missing.append(DataIssue(str(image), None, None, f"no lesion mask (looked in {where or 'no folder'})"))
        else:
            pairs.append(MaskPair(Path(image).stem, Path(image), mask))
    return MaskPairs(pairs, missing)


def pair_folder(root: Path, masks: Path | None = None) -> MaskPairs:
    """Every image under ``root`` with its mask: the ISIC 2017 layout (``root`` holds
    ``ISIC-2017_<Set>_Data`` folders, or is one), or ``root``'s images with the ``masks`` folder."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    if masks is not None and not Path(masks).is_dir():
        raise FileNotFoundError(f"{masks}: no such mask folder")
    data_folders = [root] if isic2017_mask_folder(root) else sorted(
        d for d in root.iterdir() if d.is_dir() and isic2017_mask_folder(d) and isic2017_mask_folder(d).is_dir())
    if masks is None and not any(isic2017_mask_folder(d).is_dir() for d in data_folders):
        raise FileNotFoundError(f"{root}: neither the ISIC 2017 Part 1 layout (ISIC-2017_<Set>_Data beside "
                                "ISIC-2017_<Set>_Part1_GroundTruth) nor a mask folder given")
    folders = data_folders if masks is None else [root]
    images = [f for d in folders for f in sorted(d.iterdir())
              if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")]
    return pair_images(images, [Path(masks)] if masks is not None else [])


def read_mask(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """The mask at ``path`` as a bool H x W array (True = lesion). ``size`` (width, height) is its
    image's: a mask of another size but the same aspect ratio is resized to it with nearest
    neighbour; another aspect ratio is an error. Errors are :class:`MaskError` naming the file."""
    try:
        with Image.open(path) as img:
            img.load()
            mask = _single_channel(img, path)
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as e:
        if isinstance(e, MaskError):
            raise
        raise MaskError(path, f"cannot read the mask: {e}") from e
    values = np.unique(mask)
    if not (set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}):
        shown = ", ".join(str(v) for v in values[:8]) + (" ..." if len(values) > 8 else "")
        raise MaskError(path, f"not a binary mask: values {shown} (expected 0/255 or 0/1)")
    binary = mask > 0
    if size is None or binary.shape[::-1] == tuple(size):
        return binary
    (w, h), (mw, mh) = size, binary.shape[::-1]
    if abs(mw / mh - w / h) > _ASPECT_TOLERANCE * (w / h):
        raise MaskError(path, f"the mask is {mw}x{mh} but its image is {w}x{h} (another aspect ratio)")
    resized = Image.fromarray(binary.astype(np.uint8) * 255, "L").resize((w, h), Image.Resampling.NEAREST)
    return np.asarray(resized) > 0


def _single_channel(img: Image.Image, path: Path) -> np.ndarray:
    if img.mode in ("1", "L", "P", "I", "I;16", "I;16L", "I;16B"):
        return np.asarray(img.convert("L") if img.mode in ("1", "P") else img)
    if img.mode in ("RGB", "RGBA", "LA"):
        a = np.asarray(img)
        channels = a[..., :3] if img.mode != "LA" else a[..., :1]
        if (channels == channels[..., :1]).all():
            return channels[..., 0]
        raise MaskError(path, f"a colour image ({img.mode}), not a single-channel mask")
    raise MaskError(path, f"an image of mode {img.mode}, not a single-channel mask")


def upright_size(path: Path) -> tuple[int, int]:
    """(width, height) of the image at ``path`` as :func:`~lesionlens.data.images.load_rgb` turns it
    upright (EXIF orientations 5-8 swap the sides), read from the header alone."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            return (h, w) if img.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (w, h)
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as e:
        raise ImageDecodeError(f"{path}: cannot decode image: {e}") from e


class MaskError(ValueError):
    """A mask that cannot be used; the message names the file."""

    def __init__(self, path: Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")


def preprocess_mask(mask: np.ndarray, pre: Preprocessing, image: Path | None = None) -> np.ndarray:
    """A bool H x W mask at its image's full size -> bool S x S at ``pre.image_size``, by the image's
    own geometry (:func:`~lesionlens.data.images.resize_square`) with nearest neighbour. With a
    lesion crop in ``pre`` the mask is cut to the box its ``image`` is cut to, so the two stay aligned."""
    nearest = Preprocessing(pre.image_size, pre.mean, pre.std, "nearest", pre.resize)
    img = Image.fromarray(np.asarray(mask, bool).astype(np.uint8) * 255, "L").convert("RGB")
    if pre.lesion_crop is not None:
        if image is None:
            raise ValueError("a mask for a bundle that crops to the lesion needs its image (the crop box comes from it)")
        from lesionlens.data.crop import lesion_box

        box = lesion_box(image, pre, img.size)
        img = img if box is None else img.crop(box)
    return resize_square(img, nearest)[..., 0] > 127


def load_pairs(pairs: MaskPairs | Sequence[MaskPair], pre: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x S x S x 3 uint8, as the network sees them) and their masks (N x S x S bool), both
    at ``pre``. Every unreadable, non-binary or misfitting mask or image is listed in one
    :class:`~lesionlens.data.table.DataError`, as are the ``missing`` masks of a :class:`MaskPairs`."""
    issues = list(pairs.missing) if isinstance(pairs, MaskPairs) else []
    items = pairs.pairs if isinstance(pairs, MaskPairs) else list(pairs)
    images, masks = [], []
    for pair in items:
        try:
            image = preprocess_image(pair.image, pre)  # exactly the cached form of the image
            mask = read_mask(pair.mask, upright_size(pair.image))
        except ImageDecodeError as e:
            issues.append(DataIssue(str(pair.image), None, None, str(e).removeprefix(f"{pair.image}: ")))
            continue
        except MaskError as e:
            issues.append(DataIssue(str(e.path), None, None, e.problem))
            continue
        images.append(image)
        masks.append(preprocess_mask(mask, pre, Path(pair.image)))
    if issues:
        raise DataError(issues)
    s = pre.image_size
    return (np.stack(images) if images else np.zeros((0, s, s, 3), np.uint8),
            np.stack(masks) if masks else np.zeros((0, s, s), bool))
