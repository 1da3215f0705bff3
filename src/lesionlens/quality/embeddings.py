"""One embedding per image for the data-quality check: a bundle's network, or ImageNet weights.

The embedding is the input of the model's last layer, reached through the features / head seam
(``forward_head(forward_features(x), pre_logits=True)``, as the ``features`` strategy does). With
ImageNet weights the images are decoded at 160 px (the default recipe's size: the decoded-image
cache of a training run is reused); a bundle's own preprocessing is used with a bundle.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lesionlens.data.table import ImageTable

log = logging.getLogger(__name__)

IMAGENET_SIZE = 160


def embed_table(table: ImageTable, bundle: str | Path | None = None, weights: str | Path | None = None,
                architecture: str = "efficientnet_lite0", cache_dir: str | Path | None = None,
                progress: bool = True) -> tuple[np.ndarray, str]:
    """N x D embeddings of ``table``'s images (zeros for the unreadable) and where they came from."""
    from lesionlens.data.cache import decode_images
    from lesionlens.training.features import embed

    model, pre, source = _network(bundle, weights, architecture)
    decoded = decode_images(table.paths, pre, cache_dir, progress=progress)
    rows = np.arange(len(table))
    log.info("embedding %d images with %s", len(table), source)
    features = embed(model.eval(), decoded.array, rows, pre)
    features[sorted(decoded.failures)] = 0.0
    return features, source


def describe_copies(table: ImageTable, bundle: str | Path | None = None, weights: str | Path | None = None,
                    architecture: str = "efficientnet_lite0", cache_dir: str | Path | None = None,
                    progress: bool = True) -> tuple[np.ndarray, str]:
    """N x 8 x D copy descriptors (quality.copies) of ``table``'s images with the same network, at
    the copies' own small size; zeros for the unreadable."""
    from lesionlens.data.cache import decode_images
    from lesionlens.quality.copies import COPY_SIZE, copy_descriptors

    model, pre, source = _network(bundle, weights, architecture)
    pre = pre.resized(COPY_SIZE)
    decoded = decode_images(table.paths, pre, cache_dir, progress=progress)
    log.info("copy descriptors of %d images (8 views at %d px) with %s", len(table), COPY_SIZE, source)
    descriptors = copy_descriptors(model, decoded.array, pre)
    descriptors[sorted(decoded.failures)] = 0.0
    return descriptors, f"{source.split(' (')[0]}, feature maps of 8 views at {COPY_SIZE} px"


def _network(bundle: str | Path | None, weights: str | Path | None, architecture: str):
    """The model, its preprocessing and a description: a bundle's, or ImageNet weights at 160 px."""
    if bundle is not None:
        from lesionlens.bundle.card import read_card
        from lesionlens.inference import load_model

        card = read_card(bundle)
        pre = card.preprocessing
        return load_model(card).eval(), pre, f"bundle {card.name} ({card.architecture}, {pre.image_size} px)"
    if weights is not None:
        from lesionlens.models.registry import create_model, get_spec

        pre = get_spec(architecture).preprocessing_for(True).resized(IMAGENET_SIZE)
        model = create_model(architecture, 2, pretrained=True, weights=weights, image_size=pre.image_size)
        return model.eval(), pre, f"ImageNet {architecture} ({pre.image_size} px)"
    raise ValueError("embeddings need a bundle or a weights folder")
