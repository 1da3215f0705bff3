"""The ``lesionlens explain`` report: ``explain.html`` (self-contained: every figure embedded),
``explain.json`` (every figure's numbers) and the PNGs, in one folder.

Each section says what it measures and how to read it, then its verdicts (the result's own
``lines()``), then its figures; an analysis that did not run says why.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from lesionlens import __version__
from lesionlens.evaluation.report import data_uri, template_environment
from lesionlens.evaluation.result import json_safe
from lesionlens.explain.figures import maps_figure
from lesionlens.explain.run import Explanation

TEMPLATE = "explain.html.j2"

# What each section measures, in a sentence or two a clinician can follow.
INTROS = {
    "maps": "Where each method says the network looked, for the class it predicted. Colours are scaled per map "
            "for display only; every number in this report comes from the raw maps.",
    "faithfulness": "Deletion blurs away the pixels a map ranks most important first and follows the predicted "
                    "class's probability: a faithful map makes it fall fast (low area). Insertion restores them "
                    "first: it should rise fast (high area). Each method is compared, image by image, with a random "
                    "map and with a centred Gaussian (lesions sit in the middle of the picture).",
    "sanity": "Cascading randomisation (Adebayo et al. 2018): the network's blocks are re-initialised from the "
              "head down, and the maps are recomputed. Maps that explain the model must change; guided "
              "backpropagation is the control known not to.",
    "focus": "How much of the map's mass lies on the lesion (from its mask), how much more than the lesion's share "
             "of the picture (lift), and whether the map's peak falls on it (pointing game), against a centred "
             "Gaussian that knows nothing of the image.",
    "shortcuts": "Benign images with an ink mark, a ruler or a colour patch drawn outside the lesion: a model that "
                 "reads the artifact rather than the lesion raises its melanoma or malignant probability, and "
                 "decisions flip at its operating point.",
    "inside": "What the layers compute: one image's feature maps, the first layer's filters, and for channels of "
              "a chosen layer the nine image patches (cropped to the unit's receptive field) that excite them "
              "most over the data set (Zeiler and Fergus 2014).",
    "embedding": "The images' penultimate features mapped to 2-D (t-SNE), coloured by class, by error and by source; "
                 "linear probes say how well a nuisance variable can be read off the features, against chance and "
                 "against the same probe on shuffled labels.",
}
TITLES = {"maps": "Maps per image", "faithfulness": "Faithfulness", "sanity": "Sanity check", "focus": "Lesion focus",
          "shortcuts": "Shortcut test", "inside": "Inside the network", "embedding": "Embedding and probes"}


def write_report(ex: Explanation, images, out: str | Path) -> dict[str, Path]:
    """Write the figures, ``explain.json`` and ``explain.html`` into ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    sections = []
    for analysis in ex.settings.analyses:
        figures: dict[str, Path] = {}
        lines: list[str] = []
        if analysis == "maps" and ex.gallery:
            figures = {"maps": _gallery(ex, images, out / "maps.png")}
            lines = [f"{name}: {m.seconds_per_image:.3f} s per image" + (f" (layer {m.layer})" if m.layer else "")
                     + ("; " + "; ".join(m.notes) if m.notes else "") for name, m in ex.gallery.items()]
        elif analysis in ex.results:
            result = ex.results[analysis]
            figures = result.write_figures(out)
            lines = result.lines()
        files.update({f"{analysis}:{k}": v for k, v in figures.items()})
        sections.append({"id": analysis, "title": TITLES[analysis], "intro": INTROS[analysis], "lines": lines,
                         "skipped": ex.skipped.get(analysis), "seconds": ex.seconds.get(analysis, 0.0),
                         "figures": [{"name": k, "uri": data_uri(v)} for k, v in figures.items()]})
    data = {"format": "lesionlens-explain/1", "lesionlens": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "bundle": ex.bundle,
            "images": ex.n_images, "source": ex.source, "layers": ex.layers,
            "settings": {k: v for k, v in vars(ex.settings).items()},
            "results": {k: r.to_dict() for k, r in ex.results.items()},
            "seconds": ex.seconds, "skipped": ex.skipped,
            "seconds_per_image": {k: m.seconds_per_image for k, m in ex.gallery.items()}}
    files["json"] = out / "explain.json"
    files["json"].write_text(json.dumps(json_safe(data), indent=2, default=str))
    files["html"] = out / "explain.html"
    html = template_environment("lesionlens.explain").get_template(TEMPLATE).render(
        report=data, sections=sections, notes=getattr(images, "notes", []))
    files["html"].write_text(html, encoding="utf-8")
    return files


def _gallery(ex: Explanation, images, path: Path) -> Path:
    k = len(next(iter(ex.gallery.values())).values)
    classes = ex.predictions.shape[1]
    captions = []
    for i in range(k):
        top = ex.predictions[i].argsort()[::-1][:2]
        truth = f"true {images.labels[i]}\n" if images.labels else ""
        captions.append(f"{images.ids[i][:22]}\n{truth}" + ", ".join(
            f"{_name(ex, c)} {ex.predictions[i, c]:.2f}" for c in top if c < classes))
    layer = next((m.layer for m in ex.gallery.values() if m.layer), "")
    return maps_figure(images.array[:k], captions, {n: m.values for n, m in ex.gallery.items()}, path,
                       layer_note=f"layer {layer}" if layer else "")


def _name(ex: Explanation, c: int) -> str:
    from lesionlens.bundle.card import read_card

    return read_card(ex.bundle, verify=False).classes[c]
