"""Classical classifiers on CNN embeddings, as PyTorch modules (the ``features`` strategy).

scikit-learn fits them (:mod:`lesionlens.training.features`); what it fitted is copied here into
plain tensors, so the classifier lives in the bundle's ``model.safetensors`` beside the backbone,
is checked by the same sha256, and is loaded without pickle (no joblib, no ``.skops``). Prediction
needs no scikit-learn.

    logistic       a linear layer whose softmax is scikit-learn's ``predict_proba`` (binary: [0, z])
    svm            a linear SVM's decision values as logits; the bundle's temperature (fitted on
                   validation) turns them into probabilities
    random_forest  every tree as arrays (feature, threshold, children, leaf class frequencies),
                   walked in parallel; logits are the log of the averaged leaf frequencies

A feature scaling fitted before a linear model is folded into its weights.
"""

from __future__ import annotations

import torch
from torch import nn

CLASSIFIERS = ("logistic", "svm", "random_forest")
MIN_PROBABILITY = 1e-6  # a forest's log-probability floor: an unanimous vote is not a certainty


class LinearScores(nn.Module):
    def __init__(self, n_features: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(n_features, num_classes)
        self.out_features = num_classes

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z.float())


class ForestScores(nn.Module):
    """Trees padded to the same node count; a leaf's children point to itself."""

    def __init__(self, n_trees: int, n_nodes: int, num_classes: int, max_depth: int):
        super().__init__()
        self.register_buffer("feature", torch.zeros(n_trees, n_nodes, dtype=torch.int64))
        self.register_buffer("threshold", torch.zeros(n_trees, n_nodes, dtype=torch.float64))
        self.register_buffer("left", torch.zeros(n_trees, n_nodes, dtype=torch.int64))
        self.register_buffer("right", torch.zeros(n_trees, n_nodes, dtype=torch.int64))
        self.register_buffer("value", torch.zeros(n_trees, n_nodes, num_classes))
        self.max_depth = max_depth
        self.out_features = num_classes

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # scikit-learn's trees compare float32 inputs with float64 thresholds: so do we
        x = z.float().double()
        n_trees = self.feature.shape[0]
        trees = torch.arange(n_trees, device=z.device).expand(len(z), n_trees)
        node = torch.zeros(len(z), n_trees, dtype=torch.int64, device=z.device)
        for _ in range(self.max_depth):
            value = x.gather(1, self.feature[trees, node])
            node = torch.where(value <= self.threshold[trees, node], self.left[trees, node], self.right[trees, node])
        probs = self.value[trees, node].mean(1)
        return probs.clamp_min(MIN_PROBABILITY).log()


def scores_from_shape(shape: dict) -> nn.Module:
    """An empty classifier of the shape a card records (``load_state_dict`` fills it)."""
    kind = shape["kind"]
    if kind in ("logistic", "svm"):
        return LinearScores(shape["n_features"], shape["num_classes"])
    if kind == "random_forest":
        return ForestScores(shape["n_trees"], shape["n_nodes"], shape["num_classes"], shape["max_depth"])
    raise ValueError(f"unknown embedding classifier {kind!r}; choose one of {list(CLASSIFIERS)}")


class EmbeddingClassifier(nn.Module):
    """A frozen backbone's embedding (``forward_head(..., pre_logits=True)``) into a fitted classifier.

    ``forward`` returns logits like any model here, so evaluation, calibration and prediction use
    it unchanged.
    """

    def __init__(self, backbone: nn.Module, classifier: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        self.num_classes = classifier.out_features
        self.pretrained_source = getattr(backbone, "pretrained_source", None)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        z = self.backbone.forward_head(x, pre_logits=True)
        return z if pre_logits else self.classifier(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        raise ValueError("a fitted embedding classifier cannot change its classes; fit a new one")
