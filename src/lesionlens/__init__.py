"""LesionLens: train, evaluate, explain and serve image classifiers, built first for dermoscopy.

The public API, importable from here (loaded on first use, so that ``import lesionlens`` stays
light and the torch-free parts work without PyTorch):

    load_config, RunConfig          lesionlens.config
    read_table                      lesionlens.data.load
    create_model, list_models       lesionlens.models.registry
    train                           lesionlens.training.fit
    Predictor                       lesionlens.inference
    read_card                       lesionlens.bundle.card
    Evaluation                      lesionlens.evaluation.result
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "load_config": "lesionlens.config",
    "RunConfig": "lesionlens.config",
    "read_table": "lesionlens.data.load",
    "create_model": "lesionlens.models.registry",
    "list_models": "lesionlens.models.registry",
    "train": "lesionlens.training.fit",
    "Predictor": "lesionlens.inference",
    "read_card": "lesionlens.bundle.card",
    "Evaluation": "lesionlens.evaluation.result",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'lesionlens' has no attribute {name!r}")
