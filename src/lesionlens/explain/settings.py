"""The settings of ``lesionlens explain`` and the one list of its methods and analyses (torch-free:
the command line builds its choices from here)."""

from __future__ import annotations

from dataclasses import dataclass

from lesionlens.explain.baselines import BASELINES

CAM_METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam")
PIXEL_METHODS = ("integrated_gradients", "occlusion", "guided_backprop")
METHODS = CAM_METHODS + PIXEL_METHODS + BASELINES
DEFAULT_METHODS = ("gradcam", "gradcam++", "integrated_gradients", "occlusion")
ANALYSES = ("maps", "faithfulness", "sanity", "focus", "shortcuts", "inside", "embedding")


@dataclass
class ExplainSettings:
    methods: tuple[str, ...] = DEFAULT_METHODS
    layer: str | None = None  # the CAMs' layer; None: the output of forward_features
    analyses: tuple[str, ...] = ANALYSES
    gallery: int = 8  # images shown with every method's map
    limit: int = 200  # images for faithfulness, focus, shortcuts, patches and the embedding (first N)
    steps: int = 16  # deletion / insertion steps
    sanity_images: int = 16
    sanity_methods: tuple[str, ...] | None = None  # default: the chosen CAMs and guided backpropagation
    # default: the chosen CAMs. Pixel methods cost far more per map (integrated gradients ~6 s, occlusion
    # ~15 s an image at 160 px on 2 cores), so they are measured only when named.
    faithfulness_methods: tuple[str, ...] | None = None
    inside_layer: str | None = None  # feature maps / top patches; default: the middle stage
    probes: tuple[str, ...] = ()  # extra metadata columns to probe (sex, age, site are always tried)
    resamples: int = 2000
    seed: int = 0

    def __post_init__(self):
        unknown = [m for m in (*self.methods, *(self.faithfulness_methods or ()), *(self.sanity_methods or ()))
                   if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
        bad = [a for a in self.analyses if a not in ANALYSES]
        if bad:
            raise ValueError(f"unknown analysis {', '.join(bad)}; choose from {', '.join(ANALYSES)}")


