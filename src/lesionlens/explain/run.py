"""``lesionlens explain``: every analysis of :mod:`lesionlens.explain` on one bundle and one set of
images, as result objects; :mod:`lesionlens.explain.report` writes them out.

    images (files, or a data set with labels) -> Subject (the bundle) ->
      maps per image (gallery)           faithfulness (deletion / insertion vs baselines)
      sanity check (randomisation)       lesion focus (with masks)     shortcut test (benign images)
      inside: feature maps, filters, top-9 patches      embedding map and linear probes (with labels)

Each analysis is skipped only for a stated reason (no labels, no masks, not asked for), and the
reason is in the report.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lesionlens.explain.attribution import Maps, attribute
from lesionlens.explain.inputs import Images
from lesionlens.explain.settings import CAM_METHODS, ExplainSettings
from lesionlens.explain.subject import Subject

log = logging.getLogger(__name__)

@dataclass
class Explanation:
    bundle: str
    settings: ExplainSettings
    n_images: int
    source: str
    layers: list[str]
    predictions: np.ndarray  # N x C probabilities
    results: dict[str, object] = field(default_factory=dict)  # analysis -> result object
    gallery: dict[str, Maps] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # analysis -> why not
    seconds: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"explained {self.bundle} on {self.n_images} images ({self.source})"]
        for name, maps in self.gallery.items():
            out.append(f"  {name}: {maps.seconds_per_image:.3f} s per image" + (f" at layer {maps.layer}" if maps.layer else ""))
        for name, result in self.results.items():
            out += result.lines()
        out += [f"skipped {name}: {why}" for name, why in self.skipped.items()]
        return out


def explain(bundle: str | Path, images: Images, settings: ExplainSettings | None = None) -> Explanation:
    """Run the asked analyses (``settings.analyses``) on ``images``."""
    settings = settings or ExplainSettings()
    subject = Subject.open(bundle)
    subject.layer(settings.layer)  # an unknown layer fails now, naming the known ones
    probs = subject.probabilities(images.array)
    targets = probs.argmax(axis=1)
    ex = Explanation(str(bundle), settings, len(images.array), images.source,
                     [layer.describe() for layer in subject.layers()], probs)
    n = min(settings.limit, len(images.array))
    for analysis in settings.analyses:
        log.info("explain: %s (%d images)...", analysis, n if analysis not in ("maps", "sanity") else
                 min(settings.gallery if analysis == "maps" else settings.sanity_images, len(images)))
        started = time.perf_counter()
        why = _run(analysis, subject, images, targets, settings, n, ex)
        if why:
            ex.skipped[analysis] = why
            log.info("skipped %s: %s", analysis, why)
        ex.seconds[analysis] = time.perf_counter() - started
        log.info("explain: %s took %.0f s", analysis, ex.seconds[analysis])
    return ex


def _run(analysis: str, subject: Subject, images: Images, targets: np.ndarray, s: ExplainSettings, n: int,
         ex: Explanation) -> str | None:
    """Run one analysis into ``ex``; returns why it was skipped, or None."""
    head = slice(0, n)
    if analysis == "maps":
        k = min(s.gallery, len(images.array))
        for m in s.methods:
            ex.gallery[m] = attribute(subject, images.array[:k], targets[:k], m, s.layer)
    elif analysis == "faithfulness":
        from lesionlens.explain.faithfulness import compare, curves

        all_curves = {}
        chosen = s.faithfulness_methods or tuple(m for m in s.methods if m in CAM_METHODS) or ("gradcam",)
        for m in dict.fromkeys((*chosen, "random", "centre")):
            maps = attribute(subject, images.array[head], targets[head], m, s.layer, seed=s.seed)
            all_curves[m] = curves(subject, images.array[head], maps, s.steps, seed=s.seed)
        ex.results["faithfulness"] = compare(all_curves, n_resamples=s.resamples, seed=s.seed)
    elif analysis == "sanity":
        from lesionlens.explain.sanity import CONTROL, sanity_check

        methods = s.sanity_methods or (*[m for m in s.methods if m in CAM_METHODS], CONTROL)
        k = min(s.sanity_images, len(images.array))
        ex.results["sanity"] = sanity_check(subject, images.array[:k], list(dict.fromkeys(methods)), s.layer,
                                            targets[:k], s.resamples, s.seed)
    elif analysis == "focus":
        if images.masks is None:
            return "no lesion masks (--masks DIR, or a data set in the ISIC 2017 layout with its Part 1 masks)"
        from lesionlens.explain.focus import FocusSettings, lesion_focus

        rows = np.flatnonzero(images.has_mask)[:s.limit]
        method = _focus_method(s)
        maps = attribute(subject, images.array[rows], targets[rows], method, s.layer)
        y_true = _label_indices(subject, images)
        ex.results["focus"] = lesion_focus(maps.values, images.masks[rows], None if y_true is None else y_true[rows],
                                           targets[rows], subject.classes,
                                           FocusSettings(n_resamples=s.resamples, seed=s.seed), method=method)
    elif analysis == "shortcuts":
        if images.labels is None:
            return "no labels: the shortcut test changes benign images, so it needs to know which are benign"
        from lesionlens.explain.shortcuts import (
            ShortcutSettings,
            benign_rows,
            shortcut_test,
        )

        rows = np.flatnonzero(benign_rows(images.labels))[:n]
        if len(rows) == 0:
            return "no benign images among the labelled ones"
        masked = images.has_mask is not None and bool(images.has_mask[rows].all())
        ex.results["shortcuts"] = shortcut_test(
            subject.net, subject.card.rule, subject.preprocessing, images.array[rows], [images.labels[i] for i in rows],
            images.masks[rows] if masked else None, [images.ids[i] for i in rows],
            settings=ShortcutSettings(n_resamples=s.resamples, seed=s.seed))
    elif analysis == "inside":
        from lesionlens.explain.inside import look_inside

        ex.results["inside"] = look_inside(subject, images.array[head], images.ids[:n], s.inside_layer)
    elif analysis == "embedding":
        if images.labels is None:
            return "no labels: the embedding map is coloured by class and error, and probes need a reference"
        from lesionlens.explain.inside import embed_and_probe

        ex.results["embedding"] = embed_and_probe(subject, images, targets, n, s.probes, s.seed)
    return None


def _focus_method(s: ExplainSettings) -> str:
    """Lesion focus is measured on the first chosen CAM (Grad-CAM by default): a mass of a signed
    pixel map is not a share of attention."""
    return next((m for m in s.methods if m in CAM_METHODS), "gradcam")


def _label_indices(subject: Subject, images: Images) -> np.ndarray | None:
    """Each image's label as an index into the bundle's classes (-1 where it has none of them)."""
    if images.labels is None:
        return None
    from lesionlens.data.labels import canonical

    index = {c: i for i, c in enumerate(subject.classes)}
    index.update({canonical(c): i for i, c in enumerate(subject.classes) if canonical(c)})
    return np.array([index.get(lab, index.get(canonical(lab) or "", -1)) for lab in images.labels])
