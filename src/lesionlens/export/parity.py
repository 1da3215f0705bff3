"""The check an export must pass before the card records it: the ONNX graph's outputs against
PyTorch's on the same real images.

- class logits: the calibrated probabilities (the card's decision rule) may differ by at most
  ``TOLERANCE`` for every class of every image;
- regression outputs (standardised values): each may differ by at most ``TOLERANCE`` standard
  deviations of its target;
- mask logits: the lesion probabilities may differ by at most ``TOLERANCE`` at every pixel, and the
  masks the server and ``predict`` make of them (thresholded and cleaned up with the card's
  settings, :func:`~lesionlens.evaluation.mask_ops.postprocess_mask`) must be identical, pixel for
  pixel, except at pixels whose probability is within ``TOLERANCE`` of the threshold: there the
  two runtimes' rounding decides (the recipe's bundle has one such pixel in 150 validation images),
  and the record counts them. Any other difference is refused: a tie that changes the clean-up
  (say, which region is the largest) changes pixels far from the threshold, and a mask that
  differs from the evaluated one there is not the model the card describes.

A failed check raises :class:`~lesionlens.export.check.ExportError` saying by how much and where.
"""

from __future__ import annotations

import numpy as np

from lesionlens.bundle.schema import RegressionInfo, SegmentationInfo
from lesionlens.decision import DecisionRule
from lesionlens.evaluation.mask_ops import mask_probabilities, postprocess_mask
from lesionlens.export.check import ExportError

TOLERANCE = 1e-4  # largest allowed |p_onnx - p_torch| over every class, or every pixel, of every checked image


def check_classes(onnx_logits: np.ndarray, torch_logits: np.ndarray, rule: DecisionRule, source: str) -> dict:
    """The class-probability check; returns its record (``max_abs_prob_diff``, ``top1_agreement``)."""
    p_onnx, p_torch = rule.probabilities(onnx_logits), rule.probabilities(torch_logits)
    diff = float(np.abs(p_onnx - p_torch).max())
    if diff > TOLERANCE:
        raise ExportError(f"ONNX probabilities differ from PyTorch's by up to {diff:.2e} on {source} "
                          f"(allowed {TOLERANCE:.0e}); nothing was written")
    return {"max_abs_prob_diff": diff, "tolerance": TOLERANCE,
            "top1_agreement": float((p_onnx.argmax(1) == p_torch.argmax(1)).mean())}


def check_values(onnx_outputs: np.ndarray, torch_outputs: np.ndarray, info: RegressionInfo, source: str) -> dict:
    """The regression check: every predicted value within ``TOLERANCE`` of its target's training
    standard deviation (the outputs are standardised values, so the same bound as for probabilities);
    returns its record (the largest difference in standard deviations and in the targets' units)."""
    diff = np.abs(np.asarray(onnx_outputs, np.float64) - np.asarray(torch_outputs, np.float64))
    in_sd = float(diff.max()) if diff.size else 0.0
    if in_sd > TOLERANCE:
        raise ExportError(f"ONNX outputs differ from PyTorch's by up to {in_sd:.2e} standard deviations of the target "
                          f"on {source} (allowed {TOLERANCE:.0e}); nothing was written")
    in_units = (diff * np.asarray(info.std)).max(axis=0) if diff.size else np.zeros(len(info.targets))
    return {"max_abs_diff_in_sd": in_sd, "tolerance_in_sd": TOLERANCE,
            "max_abs_value_diff": {t: float(v) for t, v in zip(info.targets, in_units)}}


def check_masks(onnx_mask_logits: np.ndarray, torch_mask_logits: np.ndarray, seg: SegmentationInfo,
                source: str) -> dict:
    """The mask check; returns its record (``max_abs_mask_prob_diff``, the pixels compared, how many
    lie within ``TOLERANCE`` of the threshold, and how many differ after the clean-up: only ties)."""
    p_onnx, p_torch = mask_probabilities(onnx_mask_logits), mask_probabilities(torch_mask_logits)
    diff = float(np.abs(p_onnx - p_torch).max()) if p_onnx.size else 0.0
    if diff > TOLERANCE:
        worst = int(np.abs(p_onnx - p_torch).reshape(len(p_onnx), -1).max(axis=1).argmax())
        raise ExportError(f"ONNX lesion probabilities differ from PyTorch's by up to {diff:.2e} (worst on image "
                          f"#{worst} of {source}; allowed {TOLERANCE:.0e}); nothing was written")
    clean = dict(threshold=seg.threshold, keep_largest=seg.keep_largest, fill_holes=seg.keep_largest)
    m_onnx, m_torch = postprocess_mask(p_onnx, **clean), postprocess_mask(p_torch, **clean)
    differing = m_onnx != m_torch
    ties = np.abs(p_torch - seg.threshold) <= TOLERANCE
    decided = differing & ~ties
    if decided.any():
        images = np.flatnonzero(decided.reshape(len(decided), -1).any(axis=1))
        raise ExportError(f"the ONNX masks differ from PyTorch's in {int(decided.sum())} pixels of {len(images)} "
                          f"image(s) (first: #{int(images[0])} of {source}) after thresholding at {seg.threshold} "
                          f"and the clean-up, at pixels whose probability is more than {TOLERANCE:.0e} from the "
                          "threshold (a tie at the threshold changed the clean-up); nothing was written")
    return {"max_abs_mask_prob_diff": diff, "mask_tolerance": TOLERANCE, "mask_pixels": int(differing.size),
            "mask_pixels_differing": int(differing.sum()), "mask_pixels_at_threshold": int(ties.sum()),
            "mask_threshold": seg.threshold, "keep_largest": seg.keep_largest}
