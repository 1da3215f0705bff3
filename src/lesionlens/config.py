"""Typed run configuration: dataclass defaults, overridden by a YAML file, overridden by flags.

This module is the one source of every setting: its name, type, allowed values, default (the
documented default recipe: what ``scripts/main.sh`` trains), the reason for the default, and the
help text. The ``lesionlens train`` flags, the YAML template (``lesionlens config``) and the checks
are all derived from it, so a new option is declared here once (see :func:`option`).

The final configuration is written beside every run (``config.yaml``) and into the model card, so
a run can be repeated exactly. Nothing here is ever evaluated as code: YAML is read with
``yaml.safe_load`` and every value is checked against its field's type.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

# The allowed values of every named choice, written once. The CLI's choices, the checks and the
# modules that act on a name read them from here (``choices``); a module that maps each name to
# behaviour checks at import that it covers exactly these (``check_covers``).
DataFormat = Literal["auto", "folder", "csv", "ham10000", "isic2018", "isic2017"]
LabelView = Literal["all", "malignant", "melanoma"]
BadInput = Literal["stop", "skip"]
Head = Literal["linear", "avg", "max", "mlp"]
Tta = Literal["none", "flips", "d4"]
Strategy = Literal["full", "scratch", "baseline", "shallow", "deep", "features"]
FeaturesClassifier = Literal["logistic", "svm", "random_forest"]
Optimizer = Literal["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "nadam", "amsgrad", "adamw"]
Schedule = Literal["constant", "step", "exponential", "inverse_time", "cosine", "plateau"]
ClassWeights = Literal["none", "balanced", "sqrt"]
Sampler = Literal["shuffle", "balanced"]
# Where training runs: Lightning picks a GPU when there is one ("auto"), or the CPU.
Accelerator = Literal["auto", "cpu", "gpu"]
Monitor = Literal["val_balanced_accuracy", "val_macro_auc", "val_accuracy", "val_loss", "val_jaccard", "val_mae"]
# What a run learns: a label per image, a lesion mask per image, both from one encoder, or numbers
# per image (an age, a box's corners).
Task = Literal["classification", "segmentation", "multitask", "regression"]
# The regression losses: squared error, absolute error, or Huber's (squared near 0, absolute beyond
# regression.huber_delta standard deviations of the target).
RegLoss = Literal["mse", "mae", "huber"]
# The segmentation losses (lesionlens.training.seg_losses): binary cross-entropy, the same with the
# lesion pixels weighted by beta, soft Dice per image or pooled over the batch, and BCE + Dice.
SegLoss = Literal["bce", "weighted_bce", "dice", "dice_global", "ce_dice"]
# How the U-Net decoder doubles its resolution: a learned transposed convolution, or a bilinear
# resize followed by a convolution (no checkerboard artefacts; Odena et al. 2016).
Upsample = Literal["transposed", "resize"]
# How a volume's intensities are normalised (lesionlens.data.volumes): z-score over every voxel, over
# the non-zero voxels (masked or skull-stripped MRI), or clipped to two percentiles and scaled to [0, 1].
VolumeNormalisation = Literal["zscore", "zscore_nonzero", "percentile"]
# Which images of labelled data an evaluation uses; "auto" resolves to the bundle's own validation
# split (on its own training data), else the test partition, else all.
Split = Literal["auto", "train", "val", "test", "all"]
# How an operating point is chosen on validation data (lesionlens.evaluation.operating).
Criterion = Literal["sensitivity", "specificity", "youden"]
# The case store's metadata vocabularies: HAM10000's ``sex``, ``localization`` and ``dx_type``
# columns (the last as how a label was established), plus "single_reader" for one reader's opinion.
Sex = Literal["male", "female", "unknown"]
BodySite = Literal["abdomen", "acral", "back", "chest", "ear", "face", "foot", "genital", "hand",
                   "lower extremity", "neck", "scalp", "trunk", "upper extremity", "unknown"]
LabelSource = Literal["histo", "confocal", "follow_up", "consensus", "single_reader"]
# What a server token may do; each role includes the ones before it (lesionlens.serving.auth).
Role = Literal["submit", "label", "admin"]


def choices(alias: Any) -> tuple[str, ...]:
    """The allowed values of a ``Literal`` alias above, in their declared order."""
    return typing.get_args(alias)


def check_covers(mapping: typing.Mapping[str, Any], alias: Any, what: str, besides: tuple[str, ...] = ()) -> None:
    """Fail at import when a name -> behaviour table and its allowed values (less ``besides``,
    the names resolved before the table is consulted) disagree."""
    if set(mapping) != set(choices(alias)) - set(besides):
        raise RuntimeError(f"the {what} table covers {sorted(mapping)}; the configuration allows "
                           f"{sorted(choices(alias))}")


def option(default: Any, help: str, *, flag: str | None = None, group: str | None = None,
           cli: bool = True) -> Any:
    """A setting with its default and help text. With ``cli`` it is also a ``lesionlens train``
    flag: ``--<name-with-dashes>`` unless ``flag`` names it, in the argument group of its section
    unless ``group`` names another; its type, choices and default come from the field itself."""
    return field(default=default, metadata={"help": help, "flag": flag, "group": group, "cli": cli})


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where decoded images and converted weights are kept: ``cache_dir``, else ``$LESIONLENS_CACHE``,
    else ``~/.cache/lesionlens``."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("LESIONLENS_CACHE", Path.home() / ".cache" / "lesionlens"))


@dataclass
class DataConfig:
    path: str | None = option(
        None, "folder, CSV or official layout of labelled images", flag="--data")
    format: DataFormat = option("auto", "force the data format (auto: detected from the path)")
    images: str | None = option(None, "folder of the CSV's images, when not beside it")
    masks: str | None = option(
        None, "segmentation: folder of lesion masks matched to the images by file stem (default: the layout's own: "
              "ISIC 2017 Part 1, DATA/masks beside DATA/images, or a CSV's mask column)")
    target: str | None = option(
        None, "--task regression: the numeric column(s) of the table to predict, comma-separated for several "
              "(a box: x0,y0,x1,y1)")
    labels: LabelView = option(
        "all", "learn all classes, malignant vs benign (mel, bcc, akiec vs the rest), or melanoma vs rest")
    # 80/20 is the protocol of the course material and of the benchmark.
    val_fraction: float = option(0.2, "share held out for validation, stratified and grouped by lesion")
    test_fraction: float = option(0.0, "share held out as a test partition", cli=False)
    # Several training seeds on one validation set (a recipe's spread over seeds) need the split's seed apart.
    split_seed: int | None = option(None, "seeds the split alone (default: --seed, which seeds the split, the "
                                          "initialisation and the batches)")
    group_column: str | None = option(
        None, "CSV column whose images must stay together in one split (default: lesion_id or patient_id "
              "when the table has one)")
    on_bad_input: BadInput = option(
        "stop", "stop at unreadable or mislabelled input and list it all, or skip it and write data_issues.csv")
    # Leakage inflates every validation figure; the check (identical and altered copies by perceptual
    # hash, groups) costs seconds (README, "Checking a data set"), so it runs on every split.
    allow_leakage: bool = option(
        False, "train or evaluate even when the same lesion (group id) or a copy of an image is on both sides of "
               "the split; the card records it")
    cache_dir: str | None = option(None, "where decoded images are cached (default $LESIONLENS_CACHE or "
                                         "~/.cache/lesionlens)")
    # None: no worker on a CPU-only machine (a worker competes with the model for the same cores:
    # measured 82% of the bare-loop speed with one worker on 2 cores, 98% with none), up to 8
    # beside a GPU.
    num_workers: int | None = option(
        None, "data-loading worker processes (default: 0 on a CPU, up to 8 with a GPU)", flag="--workers")
    # The ISIC challenges' protocol: fit on training + validation, score the test set. The last
    # epoch is kept, and the validation figures, the temperature and the operating points are then
    # measured on images the model has seen.
    train_on_val: bool = option(
        False, "also train on the validation images (ISIC challenge protocol: fit on train + val, score test); "
               "keeps the last epoch, and the validation figures are then not held out")


@dataclass
class AugmentConfig:
    """Random training-time changes; dermoscopic images have no canonical orientation."""

    hflip: float = option(0.5, "probability of a horizontal flip", cli=False)
    vflip: float = option(0.5, "probability of a vertical flip", cli=False)
    rotation: float = option(180.0, "degrees, uniform in [-rotation, rotation]: dermoscopy has no up", cli=False)
    translate: float = option(0.05, "shift, as a fraction of the side", cli=False)
    zoom: tuple[float, float] = option((0.9, 1.15), "scale range: <1 zooms out, >1 zooms in", cli=False)
    brightness: float = option(0.15, "colour jitter: brightness", cli=False)
    contrast: float = option(0.15, "colour jitter: contrast", cli=False)
    saturation: float = option(0.1, "colour jitter: saturation", cli=False)
    hue: float = option(0.0, "colour jitter: hue (costs 4x the rest of the pipeline on a CPU; off)", cli=False)


@dataclass
class ModelConfig:
    # The most accurate network per CPU-second among the weights that can be had offline.
    name: str = option("efficientnet_lite0", "architecture; `lesionlens models` lists them", flag="--model")
    pretrained: bool = option(True, "start from ImageNet weights, or from random weights (--no-pretrained)")
    weights: str | None = option(None, "local weights file or folder, e.g. ../shared/weights (checked by sha256)")
    # 224 (the weights' own) is 2x slower to train; 160 keeps 4 epochs under 20 minutes on 2 cores.
    image_size: int | None = option(160, "input side in pixels (null: the pretrained weights' own)")
    drop_rate: float = option(0.2, "dropout before the classifier")
    head: Head = option(
        "linear", "top model: the architecture's own head with a new last layer (linear), global average or max "
                  "pooling + a dense layer (avg, max), or flatten + a 256-unit hidden layer (mlp)")
    # The end-of-training evaluation, temperature and operating points are fitted with it, and
    # evaluate / predict / report use it unless --tta says otherwise (the server predicts one view).
    tta: Tta = option(
        "none", "test-time augmentation the bundle is used with: none, flips (4 mirror views) or d4 (all 8 flips "
                "and quarter turns)", cli=False)
    # 2 frozen stages: ~10% faster here, but macro AUC 0.947 vs 0.959 after 5 epochs. Frozen
    # stages keep ImageNet's filters and batch-norm statistics and skip their backward pass.
    frozen_stages: int = option(0, "strategy full: freeze the stem and this many early stages")
    # Segment, then classify (lesionlens.data.crop): the bundle carries a copy of the segmenter.
    lesion_crop: str | None = option(None, "crop-then-classify: a segmentation (or multitask) bundle; every image is "
                                           "cut to the box around the lesion it finds before classification")
    # 15% of the box's side on every side keeps the border and some surrounding skin in view.
    crop_margin: float = option(0.15, "--lesion-crop: grow the lesion's box by this share of its side on every side")


@dataclass
class TrainConfig:
    # Fine-tune every layer from the ImageNet weights (README, "Architectures and strategies").
    strategy: Strategy = option(
        "full", "full: fine-tune everything; scratch: random weights (with --no-pretrained); baseline: frozen "
                "backbone, new last layer; shallow: frozen backbone, new top model (--head); deep: shallow, then "
                "unfreeze one block per --unfreeze-every epochs from the output, each block --lr-decay times "
                "slower than the one above; features: frozen-backbone embeddings + --features-classifier",
        group="transfer learning")
    unfreeze_every: int = option(1, "deep: epochs between unfreezing one more block", group="transfer learning")
    # 0.5 over the 7 stages of EfficientNet puts the stem at lr/128, which barely moves the generic
    # ImageNet filters.
    lr_decay: float = option(0.5, "deep: learning-rate factor per block below the top", group="transfer learning")
    features_classifier: FeaturesClassifier = option(
        "logistic", "features: the scikit-learn classifier on the embeddings", group="transfer learning")
    epochs: int = option(4, "passes over the training images")
    batch_size: int = option(32, "images per step (the global batch: shared out among the processes under DDP)")
    optimizer: Optimizer = option("adamw", "the update rule")
    lr: float = option(1e-3, "base learning rate")
    momentum: float = option(0.9, "for momentum, nesterov and rmsprop", cli=False)
    weight_decay: float = option(1e-4, "L2 penalty (decoupled for adamw)")
    l1: float = option(0.0, "L1 penalty on weights; with --weight-decay it is the elastic net")
    # One warm-up half epoch, then cosine decay to 1% of lr.
    schedule: Schedule = option("cosine", "learning-rate schedule")
    # Protects pretrained weights from the new head's first gradients.
    warmup_epochs: float = option(0.5, "linear learning-rate warm-up, in epochs")
    step_epochs: float = option(3.0, "step schedule: multiply by gamma every this many epochs", cli=False)
    gamma: float | None = option(
        None, "step: factor per step (0.1); exponential: factor per epoch (0.8); inverse_time: the k in "
              "lr / (1 + k * epoch) (0.5); plateau: factor on a plateau (0.1); null: those defaults", cli=False)
    min_lr_ratio: float = option(0.01, "cosine floor, as a fraction of lr", cli=False)
    plateau_patience: int = option(2, "plateau: epochs without improvement before the rate drops", cli=False)
    label_smoothing: float = option(0.0, "share of each target spread over the other classes")
    # Off in the built-in recipes. Each training batch is blended with a shuffled copy of itself and
    # the loss takes both labels in the same shares (lesionlens.training.mixing): a regulariser for
    # runs that over-fit, at no cost in speed.
    mixup: float = option(0.0, "mixup: blend image pairs, the share drawn from Beta(a, a) per batch "
                               "(0: off; 0.2-0.4 is usual when fine-tuning)")
    cutmix: float = option(0.0, "CutMix: paste a box of a partner image, its area from Beta(a, a) per batch (0: off; "
                                "1.0 is usual); with --mixup too, each mixed batch takes one of the two")
    mix_prob: float = option(1.0, "share of training batches mixed when --mixup or --cutmix is on")
    # Off in the built-in recipes (lesionlens.training.progressive): the first epochs on smaller
    # images cost less (pixels), so a time budget holds more epochs; validation stays at full size.
    progressive_size: int | None = option(
        None, "progressive resizing: the first epoch trains on images of this size (px), growing linearly to "
              "model.image_size")
    progressive_epochs: float | None = option(
        None, "progressive resizing: epochs over which the size grows (default: half of --epochs)")
    # Off in the default recipe: AdamW with a warm-up already keeps the first steps small. Clipping
    # helps with higher learning rates, SGD, or a loss that spikes on a bad batch.
    gradient_clip: float | None = option(None, "rescale the gradients when their global L2 norm exceeds this")
    # Off in the built-in recipe (a cosine schedule already ends on small steps). On, every epoch is
    # validated, and the kept model taken, with the average (lesionlens.training.averaging).
    ema_decay: float | None = option(
        None, "average the weights: an exponential moving average with this decay per step (e.g. 0.998), "
              "validated and kept instead of the last step's weights")
    keep_epochs: bool = option(False, "keep every epoch's checkpoint (checkpoints/epoch-NN.ckpt, the raw weights "
                                      "and, with --ema-decay, their average): for snapshot ensembles and analysis")
    # HAM10000 is 72% nevi and balanced accuracy is the ranking metric: square-root class weights
    # keep the gradients of rare classes moderate, and logit adjustment with tau 0.5 supplies the
    # rest of the class-balanced decision (together they balance the prior fully).
    class_weights: ClassWeights = option("sqrt", "loss weights per class: none, balanced (inverse frequency) or sqrt")
    logit_adjustment: float = option(
        0.5, "train logits for a class-balanced decision (Menon et al. 2021; tau: 1.0 full, 0 off)")
    sampler: Sampler = option("shuffle", "balanced: draw every class equally often")
    task: Task = option("classification", "learn a label per image, a lesion mask (segmentation: image/mask "
                                          "pairs), both from one encoder (multitask), or numbers per image "
                                          "(regression: --target COLUMNS)")
    # The ISIC 2018 challenge's ranking metric; segmentation runs monitor val_jaccard (ISIC 2017's).
    monitor: Monitor = option("val_balanced_accuracy", "validation metric that picks the best epoch")
    patience: int | None = option(None, "stop after this many epochs without improvement")
    seed: int = option(0, "seeds the split (unless --split-seed), the initialisation and the batches")
    max_minutes: float | None = option(None, "stop training after this long (the best epoch so far is kept)")
    channels_last: bool = option(True, "channels-last memory: 1.6x faster convolutions on a CPU", cli=False)
    # Distributed data parallel (lesionlens.training.distributed): one process per device, each on a
    # disjoint share of every global batch of batch_size images, gradients averaged across them.
    devices: int = option(1, "processes per machine (one per GPU, or CPU processes); more than one trains with DDP, "
                             "launched by `lesionlens train` itself, or by torchrun / srun", group="distributed")
    num_nodes: int = option(1, "machines in a torchrun or SLURM job (each starts --devices processes)",
                            group="distributed")
    accelerator: Accelerator = option("auto", "auto: a GPU when there is one, else the CPU", group="distributed")
    # Off: per-process statistics are what DDP users get by default and cost no communication; on,
    # a multi-process run normalises over the global batch as one process does.
    sync_batchnorm: bool = option(False, "under DDP on GPUs, batch-norm statistics over the global batch",
                                  group="distributed")


@dataclass
class SegmentConfig:
    """Settings of --task segmentation and multitask (a U-Net on the model's encoder)."""

    # Dice + cross-entropy is nnU-Net's loss: Dice for the overlap the metric ranks, cross-entropy
    # for well-behaved gradients early on.
    loss: SegLoss = option("ce_dice", "segmentation loss: bce, weighted_bce (lesion pixels x --pos-weight), dice "
                                      "(per image), dice_global (pooled over the batch) or ce_dice")
    pos_weight: float = option(2.0, "weighted_bce: weight of a lesion pixel against a background pixel (beta)")
    upsample: Upsample = option("resize", "decoder upsampling: transposed convolution or resize + convolution")
    # 128 channels at the deepest level, halved per level up (to 16): about a fifth of the
    # multiply-accumulates of smp's (256, 128, 64, 32, 16), which a 2-core CPU needs.
    decoder_width: int = option(128, "decoder channels at the deepest level (halved at each level up, at least 16)")
    threshold: float = option(0.5, "probability above which a pixel is lesion", cli=False)
    # ISIC masks hold one lesion: stray islands only lower the Jaccard.
    keep_largest: bool = option(True, "keep only the largest connected region of a predicted mask (and fill its "
                                      "holes)", cli=False)
    class_weight: float = option(1.0, "multitask: weight of the classification loss beside the segmentation loss")


@dataclass
class RegressionConfig:
    """Settings of --task regression: the network's outputs are the targets, each standardised by
    its training mean and standard deviation (recorded on the card; predictions are in the
    target's own units)."""

    # Huber is robust to the odd mislabelled age or box without giving up the squared loss's
    # smooth gradients near the answer.
    loss: RegLoss = option("huber", "regression loss: mse, mae or huber (on the standardised targets)",
                           flag="--regression-loss")
    huber_delta: float = option(1.0, "huber: where the loss turns from squared to absolute, in standard deviations")
    box: bool = option(False, "the four targets are a box's corners (x0, y0, x1, y1, as fractions of the side): "
                              "the evaluation adds the box IoU")


@dataclass
class VolumeConfig:
    """Runs on NIfTI volumes (a 3D model, or a CSV of .nii / .nii.gz files); ignored for 2D images.
    Each null keeps the 3D model's own (lesionlens.models.registry: 32^3 voxels of 1.5 mm, z-score)."""

    size: tuple[int, int, int] | None = option(None, "volumes: the network's grid in voxels (D, H, W)", cli=False)
    spacing: tuple[float, float, float] | None = option(
        None, "volumes: the common voxel size in mm every volume is resampled to before it is cropped or padded to "
              "the grid", cli=False)
    normalisation: VolumeNormalisation | None = option(
        None, "volumes: intensity normalisation: zscore, zscore_nonzero (masked MRI) or percentile (0.5-99.5 clip, "
              "then [0, 1])", flag="--volume-normalisation")
    # On: lesion shapes and the synthetic volumes have no orientation. Anatomy has one (left / right,
    # head / feet): switch them off there, keeping the small affine warp and the intensity changes.
    flips_and_turns: bool = option(True, "volumes: augment with random flips and quarter turns (off where the "
                                         "orientation matters)", flag="--volume-flips")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    regression: RegressionConfig = field(default_factory=RegressionConfig)
    volume: VolumeConfig = field(default_factory=VolumeConfig)

    def split_seed(self) -> int:
        """The seed of the train / validation split: ``data.split_seed``, else ``train.seed``."""
        return self.train.seed if self.data.split_seed is None else self.data.split_seed

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(_plain(self.to_dict()), sort_keys=False))

    def to_yaml(self) -> str:
        """The configuration as YAML with each setting's help as a comment (``lesionlens config``);
        ``load_config`` reads it back."""
        lines = []
        for section in dataclasses.fields(self):
            lines.append(f"{section.name}:")
            values = getattr(self, section.name)
            for f in dataclasses.fields(values):
                value = yaml.safe_dump(_plain(getattr(values, f.name)), default_flow_style=True).strip()
                value = value.removesuffix("\n...").strip()
                lines.append(f"  {f.name}: {value}  # {f.metadata.get('help', '')}".rstrip())
        return "\n".join(lines) + "\n"


def settings() -> list[tuple[str, dataclasses.Field, Any]]:
    """Every setting as (dotted key, field, resolved type), in declaration order."""
    out = []
    for section in dataclasses.fields(RunConfig):
        cls = section.default_factory  # type: ignore[misc]
        hints = typing.get_type_hints(cls)
        out += [(f"{section.name}.{f.name}", f, hints[f.name]) for f in dataclasses.fields(cls)]
    return out


class ConfigError(ValueError):
    """A configuration value or file that cannot be used; the message names the key."""


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Defaults, then the YAML file at ``path``, then ``overrides`` (dotted keys: ``train.lr``)."""
    cfg = RunConfig()
    if path is not None:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read the configuration: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (data, augment, model, train)")
        for section, values in raw.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: section {section!r} must be a mapping")
            for key, value in values.items():
                _set(cfg, f"{section}.{key}", value, origin=str(path))
    for dotted, value in (overrides or {}).items():
        _set(cfg, dotted, value, origin="command line")
    return cfg


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    """Rebuild a configuration saved by :meth:`RunConfig.to_dict` (for example in a model card)."""
    cfg = RunConfig()
    for section, values in raw.items():
        for key, value in values.items():
            _set(cfg, f"{section}.{key}", value, origin="saved configuration")
    return cfg


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"train.lr=3e-4"`` -> ``("train.lr", 0.0003)``; the value is read as YAML, never as code."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ConfigError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)


def _set(cfg: RunConfig, dotted: str, value: Any, origin: str) -> None:
    section_name, _, key = dotted.partition(".")
    sections = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    if section_name not in sections or not key:
        raise ConfigError(f"{origin}: unknown setting {dotted!r}; sections are {sorted(sections)}")
    section = sections[section_name]
    hints = typing.get_type_hints(type(section))
    if key not in hints:
        raise ConfigError(
            f"{origin}: unknown setting {dotted!r}; {section_name} has {sorted(hints)}"
        )
    setattr(section, key, _coerce(value, hints[key], dotted, origin))


def _coerce(value: Any, hint: Any, dotted: str, origin: str) -> Any:
    """Check ``value`` against a field's type, converting only the lossless cases (int -> float)."""
    origin_type = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin_type in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, dotted, origin)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin_type is Literal:
        if value not in args:
            raise ConfigError(f"{origin}: {dotted} must be one of {list(args)}, got {value!r}")
        return value
    if origin_type is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{origin}: {dotted} must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, dotted, origin) for v, a in zip(value, args))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is bool and isinstance(value, bool):
        return value
    if hint in (int, str) and isinstance(value, hint) and not isinstance(value, bool):
        return value
    raise ConfigError(f"{origin}: {dotted} must be {getattr(hint, '__name__', hint)}, got {value!r}")


def _plain(obj: Any) -> Any:
    """Tuples become lists so the YAML stays plain (safe_load reads it back)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
