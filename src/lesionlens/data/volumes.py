"""Read a NIfTI volume (an MRI head, a CT scan) into the grid the network sees.

    .nii / .nii.gz -> nibabel, turned to the closest canonical (RAS+) orientation -> float32 array
        (D x H x W: the file's first, second and third voxel axes after reorientation) + voxel spacing (mm)
    -> intensity normalisation -> resampling to a common spacing -> centre crop or pad to a fixed size

Volumes from different scanners differ in orientation, voxel size and field of view. Reorienting
makes an axis mean the same direction in every volume; resampling to one spacing makes a voxel the
same physical size, so a shape or a volume in mm^3 looks the same to the network whatever the
scanner; cropping or padding (not stretching) to one size keeps that physical scale. With
``spacing=None`` the whole volume is instead resized to ``size`` (the scale is then lost).

:class:`VolumePreprocessing` records all of it; it travels with the weights on the bundle's card
(``to_dict`` / ``from_dict``) so prediction never re-declares it. Torch-free on purpose, like
:mod:`lesionlens.data.images`: training and prediction call the same :func:`preprocess_volume`.

A file that cannot be used raises :class:`VolumeError` naming the file and the problem: unreadable
or corrupt, not three-dimensional (a trailing axis of length one is dropped; a 2D image, a single
slice or a multi-channel 4D volume is refused), voxels that are NaN or infinite, or a bad voxel size.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesionlens.config import VolumeNormalisation, choices

VOLUME_SUFFIXES = (".nii", ".nii.gz")
# z-score over every voxel; z-score from the voxels that are not exactly zero (MRI skull-stripped or
# masked volumes, where zero is "outside the body"; those stay 0); or clip to two percentiles and
# scale to [0, 1] (robust to a few extreme voxels). The names are declared once, in the configuration.
NORMALISATIONS: tuple[str, ...] = choices(VolumeNormalisation)
MIN_SIDE = 2  # an axis shorter than this makes the "volume" a 2D image


class VolumeError(ValueError):
    """A volume (or a volume's mask) that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")


def is_volume_path(path: str | Path) -> bool:
    """Whether ``path`` names a NIfTI file (by its suffix)."""
    name = str(path).strip().lower()
    return any(name.endswith(s) for s in VOLUME_SUFFIXES)


@dataclass(frozen=True)
class Volume:
    """A volume's voxels (float32, D x H x W) and their size in millimetres along each axis."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    path: Path | None = None

    @property
    def extent_mm(self) -> tuple[float, float, float]:
        return tuple(float(n * s) for n, s in zip(self.array.shape, self.spacing))


@dataclass(frozen=True)
class VolumePreprocessing:
    """How a NIfTI file becomes the network's input; travels with the weights and with every bundle.

    ``size`` is the network's input grid (D, H, W). ``spacing`` (mm per voxel) is the common voxel
    size every volume is resampled to before it is cropped or padded to ``size``; None resizes the
    whole volume to ``size`` instead. ``normalisation`` is one of :data:`NORMALISATIONS`;
    ``percentiles`` are the clip points of ``percentile``.
    """

    size: tuple[int, int, int] = (32, 32, 32)
    spacing: tuple[float, float, float] | None = (1.5, 1.5, 1.5)
    normalisation: VolumeNormalisation = "zscore"
    percentiles: tuple[float, float] = (0.5, 99.5)

    def __post_init__(self) -> None:
        if len(self.size) != 3 or any(int(s) < MIN_SIDE for s in self.size):
            raise ValueError(f"volume size must be three sides of at least {MIN_SIDE} voxels, got {self.size}")
        if self.spacing is not None and (len(self.spacing) != 3 or not all(np.isfinite(s) and s > 0
                                                                           for s in self.spacing)):
            raise ValueError(f"volume spacing must be three positive millimetre values or None, got {self.spacing}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"unknown volume normalisation {self.normalisation!r}; choose one of {list(NORMALISATIONS)}")
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"volume percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """One example's input to the network: one channel, then the grid."""
        return (1, *self.size)

    def to_dict(self) -> dict:
        return {"kind": "volume", "size": list(self.size),
                "spacing": None if self.spacing is None else list(self.spacing),
                "normalisation": self.normalisation, "percentiles": list(self.percentiles)}

    @classmethod
    def from_dict(cls, d: dict) -> VolumePreprocessing:
        if d.get("kind") != "volume":
            raise ValueError(f"not a volume preprocessing record (kind {d.get('kind')!r}): {d}")
        spacing = d.get("spacing")
        return cls(size=tuple(int(s) for s in d["size"]),
                   spacing=None if spacing is None else tuple(float(s) for s in spacing),
                   normalisation=d.get("normalisation", "zscore"),
                   percentiles=tuple(float(p) for p in d.get("percentiles", (0.5, 99.5))))


def read_volume(path: str | Path) -> Volume:
    """A NIfTI file's voxels (float32, canonical orientation) and spacing; :class:`VolumeError` when
    the file is unreadable, not a single-channel 3D volume, holds NaN or infinite voxels, or has a
    voxel size that is not positive."""
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    path = Path(path)
    if not path.is_file():
        raise VolumeError(path, "no such file")
    try:
        image = nib.load(str(path))
        if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
            raise VolumeError(path, f"not a NIfTI volume (nibabel reads it as {type(image).__name__})")
        shape = tuple(int(n) for n in image.shape)
        image = _squeezed(image, shape, path)
        image = nib.as_closest_canonical(image)
        array = np.asarray(image.get_fdata(dtype=np.float32))
        spacing = tuple(float(z) for z in image.header.get_zooms()[:3])
    except VolumeError:
        raise
    except (ImageFileError, OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile, MemoryError) as e:
        raise VolumeError(path, f"cannot read the NIfTI file (corrupt or truncated?): {e}") from e
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        nan = int(np.count_nonzero(np.isnan(array)))
        raise VolumeError(path, f"{bad} of {array.size} voxels are not finite ({nan} NaN, {bad - nan} infinite)")
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise VolumeError(path, f"voxel size {spacing} mm is not three positive numbers")
    return Volume(np.ascontiguousarray(array, dtype=np.float32), spacing, path)


def _squeezed(image, shape: tuple[int, ...], path: Path):
    """The image with trailing axes of length one dropped; anything but three axes left is refused."""
    if len(shape) < 3:
        raise VolumeError(path, f"a {len(shape)}D image of shape {shape}; a volume needs three axes")
    if len(shape) > 3:
        if any(n != 1 for n in shape[3:]):
            raise VolumeError(path, f"a {len(shape)}D image of shape {shape} (several channels or time points); "
                                    "LesionLens reads single-channel 3D volumes")
        image = image.slicer[(slice(None),) * 3 + (0,) * (len(shape) - 3)]
    if min(shape[:3]) < MIN_SIDE:
        raise VolumeError(path, f"shape {shape[:3]} has an axis of length {min(shape[:3])}: a single slice, "
                                "not a volume")
    return image


def read_mask_volume(path: str | Path, like: Volume) -> np.ndarray:
    """The binary mask (bool, the grid of ``like``) in a NIfTI file: every voxel 0 or 1 (label
    images with several labels are refused), on the same grid as its volume."""
    mask = read_volume(path)
    if mask.array.shape != like.array.shape:
        raise VolumeError(path, f"mask of shape {mask.array.shape} for a volume of shape {like.array.shape}"
                                + (f" ({like.path.name})" if like.path else ""))
    if not np.allclose(mask.spacing, like.spacing, rtol=1e-3):
        raise VolumeError(path, f"mask voxel size {mask.spacing} mm differs from its volume's {like.spacing} mm")
    values = np.unique(mask.array)
    if not np.isin(values, (0.0, 1.0)).all():
        shown = ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if len(values) > 6 else "")
        raise VolumeError(path, f"a mask must hold only 0 and 1, found {shown}")
    return mask.array > 0.5


def normalise(array: np.ndarray, pre: VolumePreprocessing) -> np.ndarray:
    """The volume's intensities on the scale ``pre.normalisation`` names (float32)."""
    x = array.astype(np.float32, copy=True)
    if pre.normalisation == "percentile":
        lo, hi = np.percentile(x, pre.percentiles)
        return ((np.clip(x, lo, hi) - lo) / max(float(hi - lo), 1e-6)).astype(np.float32)
    inside = x != 0 if pre.normalisation == "zscore_nonzero" else np.ones(x.shape, dtype=bool)
    if not inside.any():  # an all-zero volume: nothing to standardise
        return x
    values = x[inside]
    mean, std = float(values.mean()), float(values.std())
    x[inside] = (values - mean) / max(std, 1e-6)
    return x


def resample(array: np.ndarray, spacing: tuple[float, float, float], target: tuple[float, float, float],
             order: int = 1) -> np.ndarray:
    """``array`` at ``spacing`` mm onto a grid of ``target`` mm voxels covering the same extent:
    trilinear (``order=1``) for intensities, nearest neighbour (``order=0``) for masks."""
    shape = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(array.shape, spacing, target))
    return resize(array, shape, order)


def resize(array: np.ndarray, shape: tuple[int, int, int], order: int = 1) -> np.ndarray:
    """``array`` resized to ``shape``; voxels are treated as cubes (grid mode), so the volume's
    extent maps exactly onto the new grid."""
    from scipy import ndimage  # imported here: the torch-free server reads cards through this module

    if tuple(array.shape) == tuple(shape):
        return array.copy()
    factors = [n / o for n, o in zip(shape, array.shape)]
    out = ndimage.zoom(array, factors, order=order, mode="nearest", grid_mode=True)
    if out.shape != tuple(shape):  # zoom rounds the output shape itself; force the one asked for
        out = _crop_or_pad(out, shape, float(out.min()) if out.size else 0.0)
    return out


def _crop_or_pad(array: np.ndarray, size: tuple[int, ...], fill: float) -> np.ndarray:
    """The centre of ``array`` at ``size``: cut where it is larger, filled with ``fill`` where smaller."""
    out = np.full(size, fill, dtype=array.dtype)
    src, dst = [], []
    for n, m in zip(array.shape, size):
        if n >= m:
            start = (n - m) // 2
            src.append(slice(start, start + m))
            dst.append(slice(0, m))
        else:
            start = (m - n) // 2
            src.append(slice(0, n))
            dst.append(slice(start, start + n))
    out[tuple(dst)] = array[tuple(src)]
    return out


def fit_grid(volume: Volume, pre: VolumePreprocessing, order: int, fill: float) -> np.ndarray:
    """A (normalised) volume or a mask on the network's grid: resampled to ``pre.spacing`` then
    centre-cropped or padded with ``fill`` to ``pre.size``; or, without a spacing, resized to it."""
    if pre.spacing is None:
        return resize(volume.array, pre.size, order)
    return _crop_or_pad(resample(volume.array, volume.spacing, pre.spacing, order), pre.size, fill)


def preprocess_volume(source: str | Path | Volume, pre: VolumePreprocessing) -> np.ndarray:
    """File (or read volume) -> float32 D x H x W at ``pre``: normalised, resampled, cropped or
    padded. The padding takes the background's value (the normalised minimum; 0 for zscore_nonzero,
    where zero is outside the body)."""
    volume = source if isinstance(source, Volume) else read_volume(source)
    x = normalise(volume.array, pre)
    fill = 0.0 if pre.normalisation == "zscore_nonzero" else float(x.min())
    return fit_grid(Volume(x, volume.spacing, volume.path), pre, order=1, fill=fill).astype(np.float32)


def preprocess_pair(image: str | Path, mask: str | Path,
                    pre: VolumePreprocessing) -> tuple[np.ndarray, np.ndarray]:
    """A volume and its mask on the network's grid, voxel for voxel: float32 and bool D x H x W
    (the mask by nearest neighbour, so it stays binary)."""
    volume = read_volume(image)
    voxels = read_mask_volume(mask, volume)
    grid = fit_grid(Volume(voxels.astype(np.uint8), volume.spacing, volume.path), pre, order=0, fill=0)
    return preprocess_volume(volume, pre), grid.astype(bool)
