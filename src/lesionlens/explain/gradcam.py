"""Grad-CAM in PyTorch through the model's features / head seam, and how closely two sets of maps
agree (``lesionlens export`` checks the server's NumPy CAMs against it)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def grad_cam(model: nn.Module, x: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) on the last feature maps, for class ``targets[i]`` of image i:
    ReLU(sum_k mean(d score / d A_k) A_k). Returns N x h x w."""
    features = model.forward_features(x).detach().requires_grad_(True)
    logits = model.forward_head(features)
    score = logits[torch.arange(len(x)), torch.as_tensor(targets)].sum()
    (grads,) = torch.autograd.grad(score, features)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * features).sum(dim=1)).detach().numpy()


def map_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of maps; NaN where either map is constant."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(axis=1) / denom, np.nan)
