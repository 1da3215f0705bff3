"""Labelled synthetic volumes: a functional check of the 3D pipeline, not a benchmark.

No 3D medical data set can be downloaded where LesionLens is built and tested, so the volume code
is checked on volumes drawn here. Each is one object in a 48 mm cube of background:

    solid      one filled ellipsoid (semi-axes 7-12 mm), randomly turned
    shell      one hollow ellipsoid (semi-axes 11-15 mm, wall 5-6 mm: a cavity at least 10 mm across)
    multiple   two to four separate balls (radius 4.5-6 mm)

so the classes differ by shape (solid against hollow) and by count (one against several), not by
brightness or size alone. Every volume is sampled at its own voxel size (0.9-1.8 mm along each axis,
drawn independently, so shapes are anisotropic on the voxel grid and resampling matters), lit by a
smooth multiplicative bias field (up to +-30%, as MRI coils give) and overlaid with Gaussian noise.
Each comes with its mask (the object's voxels) and a numeric target: the object's volume in mm^3
(the mask's voxels times the voxel volume).

The same seed gives the same files, byte for byte: volume ``i`` is drawn from its own generator,
``numpy.random.default_rng([seed, i])``.

    python -m lesionlens.data.synthetic_volumes OUT [--per-class 40] [--seed 0]

writes ``OUT/volumes/*.nii.gz``, ``OUT/masks/*.nii.gz`` and ``OUT/volumes.csv`` (columns ``path``,
``label``, ``mask``, ``volume_mm3``, ``group``; paths relative to the CSV).
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SYNTHETIC_CLASSES = ("solid", "shell", "multiple")
CSV_NAME = "volumes.csv"


@dataclass(frozen=True)
class SyntheticSettings:
    """What the drawn volumes look like (defaults: see the module docstring)."""

    field_of_view_mm: float = 48.0  # 32 voxels at the default 1.5 mm preprocessing spacing
    spacing_mm: tuple[float, float] = (0.9, 1.8)  # each axis's voxel size is drawn from this range
    background: float = 100.0
    contrast: tuple[float, float] = (0.8, 1.5)  # object brightness above background, x background
    noise: float = 0.15  # Gaussian noise standard deviation, x (object - background)
    bias: float = 0.3  # the bias field stays within 1 +- bias


@dataclass(frozen=True)
class SyntheticVolume:
    array: np.ndarray  # float32 D x H x W
    mask: np.ndarray  # bool, the object's voxels
    spacing: tuple[float, float, float]
    label: str

    @property
    def volume_mm3(self) -> float:
        return float(self.mask.sum() * np.prod(self.spacing))


def _grid(shape: tuple[int, ...], spacing: tuple[float, ...]) -> list[np.ndarray]:
    """Voxel-centre coordinates in mm, one array per axis."""
    return np.meshgrid(*[(np.arange(n) + 0.5) * s for n, s in zip(shape, spacing)], indexing="ij", sparse=True)


def _ellipsoid(grid: list[np.ndarray], centre: np.ndarray, axes: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Voxels inside the ellipsoid of semi-axes ``axes`` (mm), turned by ``rotation``."""
    d = [g - c for g, c in zip(grid, centre)]
    q = [sum(rotation[k, j] * d[k] for k in range(3)) for j in range(3)]  # rotation^T (p - c)
    return sum((qj / a) ** 2 for qj, a in zip(q, axes)) <= 1.0


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _object(kind: str, grid: list[np.ndarray], fov: float, rng: np.random.Generator) -> np.ndarray:
    centre = np.full(3, fov / 2) + rng.uniform(-4, 4, 3)
    if kind == "solid":
        return _ellipsoid(grid, centre, rng.uniform(7, 12, 3), _rotation(rng))
    if kind == "shell":
        axes, wall, turn = rng.uniform(11, 15, 3), rng.uniform(5.0, 6.0), _rotation(rng)
        return _ellipsoid(grid, centre, axes, turn) & ~_ellipsoid(grid, centre, axes - wall, turn)
    if kind == "multiple":
        balls: list[tuple[np.ndarray, float]] = []
        wanted = int(rng.integers(2, 5))
        while len(balls) < wanted:  # separate balls (2 mm apart at least), inside a 21 mm sphere
            c = np.full(3, fov / 2) + rng.uniform(-15, 15, 3)
            r = float(rng.uniform(4.5, 6.0))
            if np.linalg.norm(c - fov / 2) + r <= 21 and all(np.linalg.norm(c - c2) >= r + r2 + 2 for c2, r2 in balls):
                balls.append((c, r))
        inside = np.zeros(np.broadcast_shapes(*(g.shape for g in grid)), bool)
        for c, r in balls:
            inside |= _ellipsoid(grid, c, np.full(3, r), np.eye(3))
        return inside
    raise ValueError(f"unknown synthetic class {kind!r}; choose one of {list(SYNTHETIC_CLASSES)}")


def _bias_field(grid: list[np.ndarray], fov: float, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth multiplicative field: exp of a random quadratic in the coordinates, within 1 +- amplitude."""
    u = [2 * g / fov - 1 for g in grid]  # -1 .. 1 across the field of view
    log_field = sum(rng.uniform(-1, 1) * ui for ui in u)
    log_field = log_field + sum(rng.uniform(-1, 1) * u[i] * u[j] for i in range(3) for j in range(i, 3))
    log_field = np.broadcast_to(log_field, np.broadcast_shapes(*(g.shape for g in grid)))
    top = float(np.abs(log_field).max())
    return np.exp(log_field * (np.log1p(amplitude) / top if top > 0 else 0.0))


def draw_volume(kind: str, rng: np.random.Generator, settings: SyntheticSettings = SyntheticSettings()) -> SyntheticVolume:
    """One volume of class ``kind`` with its mask, at a voxel size drawn for it."""
    fov = settings.field_of_view_mm
    spacing = tuple(float(s) for s in np.round(rng.uniform(*settings.spacing_mm, 3), 3))
    shape = tuple(max(2, int(round(fov / s))) for s in spacing)
    grid = _grid(shape, spacing)
    mask = np.broadcast_to(_object(kind, grid, fov, rng), shape).copy()
    step = settings.background * rng.uniform(*settings.contrast)
    clean = settings.background + step * mask
    noisy = clean * _bias_field(grid, fov, settings.bias, rng) + rng.normal(0, settings.noise * step, shape)
    return SyntheticVolume(noisy.astype(np.float32), mask, spacing, kind)


def write_synthetic_volumes(out: str | Path, per_class: int = 40, seed: int = 0,
                            settings: SyntheticSettings = SyntheticSettings()) -> Path:
    """Write ``per_class`` volumes of each class (NIfTI, int16 like most scanners' files), their
    masks and the table; returns the table's path. The classes alternate row by row."""
    import nibabel as nib

    out = Path(out)
    (out / "volumes").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(per_class * len(SYNTHETIC_CLASSES)):
        kind = SYNTHETIC_CLASSES[i % len(SYNTHETIC_CLASSES)]
        v = draw_volume(kind, np.random.default_rng([seed, i]), settings)
        affine = np.diag([*v.spacing, 1.0])
        name = f"vol_{i:04d}"
        image = nib.Nifti1Image(np.round(v.array).clip(-32768, 32767).astype(np.int16), affine)
        mask = nib.Nifti1Image(v.mask.astype(np.uint8), affine)
        for img in (image, mask):
            img.header.set_xyzt_units("mm")
        nib.save(image, str(out / "volumes" / f"{name}.nii.gz"))
        nib.save(mask, str(out / "masks" / f"{name}_mask.nii.gz"))
        rows.append({"path": f"volumes/{name}.nii.gz", "label": kind, "mask": f"masks/{name}_mask.nii.gz",
                     "volume_mm3": f"{v.volume_mm3:.1f}", "group": name})
    table = out / CSV_NAME
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Write labelled synthetic NIfTI volumes, their masks and a CSV "
                                            "(a functional check of the 3D pipeline, not a benchmark).")
    p.add_argument("out", type=Path)
    p.add_argument("--per-class", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(write_synthetic_volumes(args.out, args.per_class, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
