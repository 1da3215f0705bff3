"""Class vocabularies and label views.

Datasets name the same diagnoses differently (HAM10000 ``mel``, ISIC 2018 ``MEL``, ISIC 2017
``melanoma``). :func:`canonical` maps the known names to the HAM10000 ``dx`` codes so a model
trained on one collection can be evaluated on another, and so the clinical views (malignant vs
benign, melanoma vs rest) can be derived from any model whose classes are diagnoses.
Torch- and pandas-free: the server uses it too.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from lesionlens.config import LabelView, choices

if TYPE_CHECKING:  # only a type here: this module stays free of pandas and torch, for the server
    from lesionlens.data.table import ImageTable

# The ISIC 2018 Task 3 column order.
HAM10000_CLASSES = ("mel", "nv", "bcc", "akiec", "bkl", "df", "vasc")
MALIGNANT = frozenset({"mel", "bcc", "akiec", "scc"})

DX_NAMES = {
    "mel": "melanoma",
    "nv": "melanocytic nevus",
    "bcc": "basal cell carcinoma",
    "akiec": "actinic keratosis / intraepithelial carcinoma",
    "bkl": "benign keratosis-like lesion",
    "df": "dermatofibroma",
    "vasc": "vascular lesion",
    "scc": "squamous cell carcinoma",
}

_SYNONYMS = {
    "melanoma": "mel",
    "nevus": "nv",
    "naevus": "nv",
    "melanocytic_nevus": "nv",
    "seborrheic_keratosis": "bkl",  # ISIC 2017; a subset of HAM10000's benign keratosis-like lesions
    "benign_keratosis": "bkl",
    "basal_cell_carcinoma": "bcc",
    "actinic_keratosis": "akiec",
    "ak": "akiec",
    "dermatofibroma": "df",
    "vascular_lesion": "vasc",
    "squamous_cell_carcinoma": "scc",
}

VIEW_CLASSES = {"malignant": ("benign", "malignant"), "melanoma": ("other", "melanoma")}


def canonical(name: str) -> str | None:
    """The HAM10000 dx code for a class name, or None when the name is not a known diagnosis."""
    key = str(name).strip().lower().replace(" ", "_").replace("-", "_")
    if key in DX_NAMES:
        return key
    return _SYNONYMS.get(key)


def binary_membership(classes: list[str], view: str) -> np.ndarray | None:
    """Boolean mask over ``classes`` of the positive side of ``view``, or None if it cannot be
    derived (a class that is not a known diagnosis, or no positive class at all)."""
    if view in VIEW_CLASSES and list(classes) == list(VIEW_CLASSES[view]):
        return np.array([False, True])
    codes = [canonical(c) for c in classes]
    if any(c is None for c in codes):
        return None
    positive = MALIGNANT if view == "malignant" else {"mel"}
    mask = np.array([c in positive for c in codes])
    return mask if mask.any() else None


def apply_view(table: ImageTable, view: str) -> ImageTable:
    """Relabel ``table`` for ``view``: ``all`` keeps its classes; ``malignant`` and ``melanoma``
    make it binary (negative class first)."""
    if view == "all":
        return table
    if view not in VIEW_CLASSES:
        raise ValueError(f"unknown label view {view!r}; choose one of {choices(LabelView)}")
    mask = binary_membership(table.classes, view)
    if mask is None:
        unknown = [c for c in table.classes if canonical(c) is None]
        why = f"classes {unknown} are not known diagnoses" if unknown else "no class is positive"
        raise ValueError(
            f"{table.source}: cannot derive the {view!r} view from classes {table.classes}: {why}"
        )
    negative, positive = VIEW_CLASSES[view]
    mapping = {c: (positive if m else negative) for c, m in zip(table.classes, mask)}
    frame = table.frame.copy()
    frame["label"] = frame["label"].map(mapping)
    return replace(table, frame=frame, classes=[negative, positive])


def align_classes(data_classes: list[str], model_classes: list[str]) -> dict[str, int]:
    """Map each data class to the index of the model class it means (by name or canonical name).

    Raises ValueError naming the classes the model cannot predict.
    """
    model_index = {c: i for i, c in enumerate(model_classes)}
    model_canon = {canonical(c): i for i, c in enumerate(model_classes) if canonical(c)}
    mapping, missing = {}, []
    for c in data_classes:
        if c in model_index:
            mapping[c] = model_index[c]
        elif canonical(c) in model_canon:
            mapping[c] = model_canon[canonical(c)]
        else:
            missing.append(c)
    if missing:
        raise ValueError(
            f"the data has classes {missing} that the model does not know; its classes are {model_classes}"
        )
    return mapping
