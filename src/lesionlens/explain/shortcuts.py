"""Shortcut tests: would an ink mark, a ruler or a colour patch beside a benign lesion change the
model's mind?

For each benign image and each artifact kind (:mod:`lesionlens.explain.artifacts`), the bundle
predicts the image as it is and with the artifact drawn outside the lesion (same preprocessing, the
same decision rule, no test-time augmentation unless asked). Per kind and per clinical view the
bundle's classes define (``melanoma``: p(mel); ``malignant``: p(mel) + p(bcc) + p(akiec), see
:mod:`lesionlens.decision`), the result holds the mean change of the view's probability with a
paired bootstrap interval, and how many decisions flip at the bundle's operating point (benign ->
positive and back) with Wilson intervals.

The verdict rule (settings ``margin`` and ``flip_limit``): a kind FAILS when, for either view, the
whole 95% interval of the mean change lies above ``+margin`` (default 0.02: two points of
probability), or the Wilson lower bound of the benign -> positive flip rate lies above
``flip_limit`` (default 2%). Either says, with 95% confidence, that the artifact alone pushes benign
lesions towards a malignant call; otherwise the kind passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch import nn  # noqa: E402

from lesionlens.data.images import Preprocessing  # noqa: E402
from lesionlens.data.labels import MALIGNANT, canonical  # noqa: E402
from lesionlens.decision import DecisionRule  # noqa: E402
from lesionlens.evaluation.bootstrap import (  # noqa: E402
    Interval,
    mean_interval,  # noqa: E402
    stratified_indices,
)
from lesionlens.evaluation.proportions import wilson_interval  # noqa: E402
from lesionlens.explain.artifacts import ARTIFACT_KINDS, ArtifactSettings, add_artifacts  # noqa: E402
from lesionlens.inference import predict_logits  # noqa: E402

KIND_NAMES = {"ink": "a surgical-ink mark", "ruler": "a ruler", "patch": "a colour patch"}


@dataclass(frozen=True)
class ShortcutSettings:
    kinds: tuple[str, ...] = ARTIFACT_KINDS
    margin: float = 0.02  # fail when the mean change's whole interval lies above this rise of probability
    flip_limit: float = 0.02  # fail when the benign -> positive flip rate's Wilson lower bound lies above this
    tta: str = "none"  # the artifact's effect on the network itself, not averaged over views
    n_resamples: int = 1000
    level: float = 0.95
    seed: int = 0  # artifacts and bootstrap
    examples: int = 4  # per kind, in the gallery: the images whose melanoma probability rose most
    artifacts: ArtifactSettings = ArtifactSettings()


@dataclass(frozen=True)
class ViewShift:
    """How one view's probability and decision moved when the artifact was added."""

    view: str
    before: float  # mean probability without the artifact
    after: float
    change: Interval  # mean of after - before, paired bootstrap
    up_flips: int  # negative -> positive at the bundle's decision rule
    down_flips: int
    n: int
    up_rate: tuple[float, float, float]  # Wilson (estimate, low, high) of up_flips / n
    failed: bool

    def to_dict(self) -> dict:
        return {"view": self.view, "mean_before": self.before, "mean_after": self.after,
                "mean_change": self.change.to_dict(), "flips_to_positive": self.up_flips,
                "flips_to_negative": self.down_flips, "n": self.n,
                "flip_rate_to_positive": dict(zip(("estimate", "low", "high"), self.up_rate)), "failed": self.failed}


@dataclass(frozen=True)
class Example:
    image_id: str
    original: np.ndarray  # H x W x 3 uint8
    altered: np.ndarray
    before: dict[str, float]  # view -> probability
    after: dict[str, float]


@dataclass
class KindResult:
    kind: str
    n_images: int  # benign images offered
    no_room: list[str]  # image ids where the artifact did not fit outside the lesion
    views: dict[str, ViewShift]
    examples: list[Example] = field(default_factory=list)

    @property
    def n_tested(self) -> int:
        return self.n_images - len(self.no_room)

    @property
    def failed(self) -> bool:
        return any(v.failed for v in self.views.values())

    def verdict(self) -> str:
        """One sentence: FAILED or passed, with the figures that decided it."""
        if self.n_tested == 0:
            return f"not tested: {KIND_NAMES[self.kind]} fitted outside the lesion on none of {self.n_images} images"
        shown = [v for v in self.views.values() if v.failed] or list(self.views.values())
        parts = [f"{'raises' if v.change.estimate > 0 else 'changes'} the {v.view} probability by "
                 f"{v.change.estimate:+.3f} [{v.change.low:+.3f}, {v.change.high:+.3f}] and flips {v.up_flips}/{v.n} "
                 f"benign decisions to {v.view} ({100 * v.up_rate[0]:.1f}% [{100 * v.up_rate[1]:.1f}, "
                 f"{100 * v.up_rate[2]:.1f}])" for v in shown]
        head = "FAILED" if self.failed else "passed"
        return f"{head}: adding {KIND_NAMES[self.kind]} " + "; it ".join(parts)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "n_images": self.n_images, "n_tested": self.n_tested, "no_room": list(self.no_room),
                "failed": self.failed, "verdict": self.verdict(),
                "views": {name: v.to_dict() for name, v in self.views.items()}}


@dataclass
class ShortcutResult:
    kinds: list[KindResult]
    n_benign: int
    benign_classes: list[str]
    rule: list[str]  # the bundle's decision rule in words
    settings: ShortcutSettings

    @property
    def failed(self) -> bool:
        return any(k.failed for k in self.kinds)

    def kind(self, name: str) -> KindResult:
        return next(k for k in self.kinds if k.kind == name)

    def decision_rule(self) -> str:
        s = self.settings
        return (f"a kind fails when the {100 * s.level:g}% interval of the mean probability change lies wholly above "
                f"+{s.margin:g}, or the lower bound of the benign -> positive flip rate lies above "
                f"{100 * s.flip_limit:g}%, for either view")

    def to_dict(self) -> dict:
        s = self.settings
        return {"failed": self.failed, "n_benign": self.n_benign, "benign_classes": self.benign_classes,
                "decision_rule": self.rule, "verdict_rule": self.decision_rule(), "tta": s.tta,
                "bootstrap": {"resamples": s.n_resamples, "seed": s.seed, "level": s.level,
                              "method": "paired percentile bootstrap of the mean change"},
                "flip_interval": "Wilson", "kinds": [k.to_dict() for k in self.kinds]}

    def lines(self) -> list[str]:
        out = [f"Shortcut test on {self.n_benign} benign image(s) ({', '.join(self.benign_classes)}); "
               f"test-time augmentation: {self.settings.tta}",
               f"  verdict rule: {self.decision_rule()}"]
        out += [f"  decisions: {line}" for line in self.rule]
        for k in self.kinds:
            out.append(f"  {k.kind}: {k.verdict()}")
            if k.no_room:
                out.append(f"    no room outside the lesion on {len(k.no_room)} image(s): "
                           f"{', '.join(k.no_room[:5])}{' ...' if len(k.no_room) > 5 else ''}")
        return out

    def write_figures(self, out_dir: Path) -> dict[str, Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        return {"shortcut_changes": plot_changes(self, out_dir / "shortcut_changes.png"),
                "shortcut_gallery": plot_gallery(self, out_dir / "shortcut_gallery.png")}


def benign_rows(labels: Sequence[str], benign_classes: Sequence[str] | None = None) -> np.ndarray:
    """Which images are benign: labels in ``benign_classes`` when given, else labels that name a
    known diagnosis outside :data:`~lesionlens.data.labels.MALIGNANT` (any dataset's names)."""
    labels = [str(v) for v in labels]
    if benign_classes is not None:
        return np.array([v in set(benign_classes) for v in labels], bool)
    unknown = sorted({v for v in labels if canonical(v) is None})
    if unknown:
        raise ValueError(f"labels {', '.join(map(repr, unknown[:5]))} are not known diagnoses; say which classes "
                         "are benign")
    return np.array([canonical(v) not in MALIGNANT for v in labels], bool)


def shortcut_test(model: nn.Module, rule: DecisionRule, pre: Preprocessing, images: np.ndarray,
                  labels: Sequence[str], masks: np.ndarray | None = None, image_ids: Sequence[str] | None = None,
                  benign_classes: Sequence[str] | None = None,
                  settings: ShortcutSettings = ShortcutSettings()) -> ShortcutResult:
    """The shortcut test of a bundle's network (``model``, its ``rule`` and preprocessing ``pre``) on
    the benign ones of ``images`` (N x S x S x 3 uint8 at ``pre``; ``masks`` N x S x S bool aligned
    with them, or None to keep artifacts outside a central disc)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (pre.image_size, pre.image_size, 3) or images.dtype != np.uint8:
        raise ValueError(f"images must be N x {pre.image_size} x {pre.image_size} x 3 uint8 (the bundle's "
                         f"preprocessing), not {images.shape} {images.dtype}")
    if len(labels) != len(images) or (masks is not None and len(masks) != len(images)):
        raise ValueError(f"{len(images)} images but {len(labels)} labels"
                         + ("" if masks is None else f" and {len(masks)} masks"))
    views = sorted(rule.views, key=lambda v: v != "melanoma")  # melanoma first: the view Winkler et al. measured
    if not views:
        raise ValueError("the model's classes are not diagnoses: there is no melanoma or malignant view to test")
    ids = list(image_ids) if image_ids is not None else [str(i) for i in range(len(images))]
    rows = np.flatnonzero(benign_rows(labels, benign_classes))
    if len(rows) == 0:
        raise ValueError("no benign image to test among the labels given")
    originals = images[rows]
    before = _scores(model, rule, pre, originals, settings.tta)
    kinds = []
    for kind in settings.kinds:
        altered, placed = add_artifacts(originals, kind, None if masks is None else np.asarray(masks)[rows],
                                        settings.seed, settings.artifacts)
        tested = np.flatnonzero(placed)
        after = _scores(model, rule, pre, altered[tested], settings.tta)
        shifts = {view: _shift(view, before[view][0][tested], after[view][0], before[view][1][tested],
                               after[view][1], settings) for view in views}
        first = views[0] if "melanoma" not in views else "melanoma"
        rise = after[first][0] - before[first][0][tested]
        examples = [Example(ids[rows[tested[j]]], originals[tested[j]], altered[tested[j]],
                            {v: float(before[v][0][tested[j]]) for v in views},
                            {v: float(after[v][0][j]) for v in views})
                    for j in np.argsort(-rise, kind="stable")[:settings.examples]]
        kinds.append(KindResult(kind, len(rows), [ids[rows[i]] for i in np.flatnonzero(~placed)], shifts, examples))
    benign = sorted({str(labels[i]) for i in rows})
    return ShortcutResult(kinds, len(rows), benign, rule.describe(), settings)


def _scores(model: nn.Module, rule: DecisionRule, pre: Preprocessing, images: np.ndarray,
            tta: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per view: (score, positive decision) of each image under the bundle's rule."""
    probs = rule.probabilities(predict_logits(model, images, pre, tta=tta))
    return {view: (d["score"], np.asarray(d["positive"], bool)) for view, d in rule.decide(probs).items()}


def _shift(view: str, before: np.ndarray, after: np.ndarray, was: np.ndarray, now: np.ndarray,
           settings: ShortcutSettings) -> ViewShift:
    n = len(before)
    if n == 0:
        nan = Interval(np.nan, np.nan, np.nan, settings.level)
        return ViewShift(view, np.nan, np.nan, nan, 0, 0, 0, (np.nan, np.nan, np.nan), False)
    idx = stratified_indices(np.zeros(n, int), settings.n_resamples, settings.seed)
    change = mean_interval(after - before, idx, settings.level)
    up, down = int((~was & now).sum()), int((was & ~now).sum())
    rate = wilson_interval(up, n, settings.level)
    failed = bool(change.low > settings.margin or rate[1] > settings.flip_limit)
    return ViewShift(view, float(before.mean()), float(after.mean()), change, up, down, n, rate, failed)


def plot_changes(result: ShortcutResult, path: Path) -> Path:
    """Mean change of each view's probability per artifact kind, with intervals and the margin."""
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(result.kinds), 4.2))
    views = list(result.kinds[0].views) if result.kinds else []
    width = 0.8 / max(len(views), 1)
    for j, view in enumerate(views):
        x = np.arange(len(result.kinds)) + (j - (len(views) - 1) / 2) * width
        iv = [k.views[view].change for k in result.kinds]
        est = np.array([i.estimate for i in iv])
        err = np.array([[i.estimate - i.low for i in iv], [i.high - i.estimate for i in iv]])
        ax.bar(x, est, width, yerr=err, capsize=3, label=f"p({view})", color=("tab:red", "tab:purple")[j % 2])
    ax.axhline(0, color="black", lw=0.8)
    ax.axhline(result.settings.margin, color="tab:red", lw=0.8, ls="--", label=f"margin +{result.settings.margin:g}")
    labels = [f"{k.kind}\n{'FAILED' if k.failed else 'passed'}\n"
              + "\n".join(f"{v.view}: {v.up_flips}/{v.n} flipped" for v in k.views.values()) for k in result.kinds]
    ax.set_xticks(np.arange(len(result.kinds)), labels, fontsize=8)
    ax.set_ylabel("mean change of probability")
    ax.set_title(f"Adding an artifact to {result.n_benign} benign images", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_gallery(result: ShortcutResult, path: Path) -> Path:
    """For each kind, its examples: the original and the image with the artifact, with probabilities."""
    cols = max([len(k.examples) for k in result.kinds] + [1])
    fig, axes = plt.subplots(max(len(result.kinds), 1), 2 * cols, figsize=(2.3 * 2 * cols, 2.6 * len(result.kinds)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, k in enumerate(result.kinds):
        for c, ex in enumerate(k.examples):
            for side, (image, probs) in enumerate(((ex.original, ex.before), (ex.altered, ex.after))):
                ax = axes[r, 2 * c + side]
                ax.imshow(image, interpolation="nearest")
                text = "\n".join(f"p({v}) {p:.2f}" for v, p in probs.items())
                ax.set_title(f"{ex.image_id if side == 0 else k.kind}\n{text}", fontsize=7)
    fig.suptitle("Shortcut test: original | with artifact (largest rises)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
