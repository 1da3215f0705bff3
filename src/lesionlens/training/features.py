"""The ``features`` strategy: a frozen ImageNet backbone's embeddings + a scikit-learn classifier.

    training images -> backbone (eval, no augmentation) -> embeddings -> scikit-learn fit
                    -> tensors (lesionlens.models.classical) -> the bundle's model.safetensors

Logistic regression and the linear SVM see standardised embeddings (the scaling is folded into the
exported weights); the random forest sees them as they are.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lesionlens.config import FeaturesClassifier, check_covers, choices
from lesionlens.data.images import Preprocessing
from lesionlens.data.transforms import to_input
from lesionlens.models.classical import EmbeddingClassifier, scores_from_shape

# Fixed, documented settings: the point of this strategy is a cheap, standard baseline.
FOREST_TREES = 200
SVM_C = 0.1  # embeddings are wide (1,280 for EfficientNet, 4,096 for VGG): a strong margin penalty overfits


@torch.inference_mode()
def embed(model: nn.Module, images: np.ndarray, rows: np.ndarray, pre: Preprocessing,
          batch_size: int = 64) -> np.ndarray:
    """The backbone's embedding (the input of its last layer) of ``images[rows]``."""
    model = model.eval()
    out = []
    for start in range(0, len(rows), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[rows[start:start + batch_size]]))
        x = to_input(batch.permute(0, 3, 1, 2), pre, channels_last=False)
        out.append(model.forward_head(model.forward_features(x), pre_logits=True).float().numpy())
    return np.concatenate(out)


def fit_classifier(kind: str, features: np.ndarray, targets: np.ndarray, num_classes: int,
                   seed: int) -> tuple[dict, dict[str, torch.Tensor]]:
    """Fit ``kind`` on embeddings; returns its shape (for the card) and its tensors."""
    if kind not in CLASSIFIERS:
        raise ValueError(f"unknown embedding classifier {kind!r}; choose one of {choices(FeaturesClassifier)}")
    return CLASSIFIERS[kind](features, targets, num_classes, seed)


def _forest(features: np.ndarray, targets: np.ndarray, num_classes: int, seed: int):
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(FOREST_TREES, class_weight="balanced", random_state=seed, n_jobs=1)
    return forest_tensors(forest.fit(features, targets), num_classes)


def _standardised(kind: str, make):
    """A linear classifier fitted on standardised embeddings; the scaling is folded into its weights."""
    def fit(features: np.ndarray, targets: np.ndarray, num_classes: int, seed: int):
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(features)
        return linear_tensors(kind, make(seed).fit(scaler.transform(features), targets), scaler, num_classes)

    return fit


def _logistic(seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, class_weight="balanced")


def _svm(seed: int):
    from sklearn.svm import LinearSVC

    return LinearSVC(C=SVM_C, class_weight="balanced", random_state=seed)


CLASSIFIERS = {
    "logistic": _standardised("logistic", _logistic),
    "svm": _standardised("svm", _svm),
    "random_forest": _forest,
}
check_covers(CLASSIFIERS, FeaturesClassifier, "embedding classifier")


def linear_tensors(kind: str, model, scaler, num_classes: int) -> tuple[dict, dict[str, torch.Tensor]]:
    """``w . (x - mean) / scale + b`` as one linear layer, one row per class (absent classes: -inf-like)."""
    coef, intercept = np.atleast_2d(model.coef_), np.atleast_1d(model.intercept_)
    if coef.shape[0] == 1:  # binary: scikit-learn keeps the positive class's score only
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    weight = coef / scaler.scale_
    bias = intercept - weight @ scaler.mean_
    full_w = np.zeros((num_classes, coef.shape[1]))
    full_b = np.full(num_classes, -1e4)  # a class the training data lacked is never predicted
    full_w[model.classes_], full_b[model.classes_] = weight, bias
    shape = {"kind": kind, "n_features": int(coef.shape[1]), "num_classes": num_classes}
    return shape, {"linear.weight": torch.tensor(full_w, dtype=torch.float32),
                   "linear.bias": torch.tensor(full_b, dtype=torch.float32)}


def forest_tensors(forest, num_classes: int) -> tuple[dict, dict[str, torch.Tensor]]:
    trees = [e.tree_ for e in forest.estimators_]
    n_nodes = max(t.node_count for t in trees)
    depth = max(t.max_depth for t in trees)
    shape = {"kind": "random_forest", "n_trees": len(trees), "n_nodes": int(n_nodes), "max_depth": int(depth),
             "num_classes": num_classes, "n_features": int(forest.n_features_in_)}
    module = scores_from_shape(shape)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    for i, t in enumerate(trees):
        n = t.node_count
        own = np.arange(n)
        leaf = t.children_left == -1
        state["feature"][i, :n] = torch.from_numpy(np.where(leaf, 0, t.feature))
        state["threshold"][i, :n] = torch.from_numpy(t.threshold)
        state["left"][i, :n] = torch.from_numpy(np.where(leaf, own, t.children_left))
        state["right"][i, :n] = torch.from_numpy(np.where(leaf, own, t.children_right))
        value = t.value[:, 0, :]
        value = value / value.sum(1, keepdims=True)
        state["value"][i, :n][:, forest.classes_] = torch.from_numpy(value).float()
    return shape, state


def fit_embedding_classifier(model: nn.Module, kind: str, images: np.ndarray, rows: np.ndarray,
                             targets: np.ndarray, pre: Preprocessing, num_classes: int,
                             seed: int) -> tuple[EmbeddingClassifier, dict]:
    """The frozen ``model`` with a ``kind`` classifier fitted on its embeddings of ``images[rows]``."""
    features = embed(model, images, rows, pre)
    shape, tensors = fit_classifier(kind, features, targets, num_classes, seed)
    scores = scores_from_shape(shape)
    scores.load_state_dict(tensors)
    combined = EmbeddingClassifier(model, scores).eval()
    for p in combined.parameters():
        p.requires_grad_(False)
    return combined, shape
