"""Mixup and CutMix (train.mixup, train.cutmix, train.mix_prob): the mixed images and the pairwise loss
against hand computations, the settings refused with the key named, and a real tiny run that mixes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_run_config

from lesionlens.config import ConfigError, TrainConfig
from lesionlens.data.images import Preprocessing
from lesionlens.models.registry import create_model
from lesionlens.training.mixing import BatchMixing, check_mixing
from lesionlens.training.module import Classifier


def _labelled(n: int, *spatial: int) -> torch.Tensor:
    """n images (or volumes) of one channel, image i filled with the value i: a pixel's value names
    the image it came from."""
    return torch.arange(n, dtype=torch.float32).view(n, 1, *([1] * len(spatial))).expand(n, 1, *spatial).clone()


def test_mixup_blends_each_image_with_its_partner_in_the_drawn_share():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 8, 8)
    mixed = BatchMixing(mixup=0.4)(x)
    assert mixed.kind == "mixup" and 0.0 < mixed.lam < 1.0
    assert sorted(mixed.partners.tolist()) == list(range(6))  # a permutation of the batch
    torch.testing.assert_close(mixed.inputs, mixed.lam * x + (1 - mixed.lam) * x[mixed.partners])


@pytest.mark.parametrize("spatial", [(16, 12), (6, 8, 10)])
def test_cutmix_pastes_one_box_of_the_partner_and_lam_is_the_share_left(spatial):
    """Every pixel is either its own image's or its partner's; the partner's pixels form one box
    (a cuboid for volumes), in the same place in every image, and lam is exactly the share left."""
    x = _labelled(5, *spatial)
    for seed in range(20):
        torch.manual_seed(seed)
        mixed = BatchMixing(cutmix=1.0)(x)
        assert mixed.kind == "cutmix"
        own = mixed.inputs == x
        from_partner = mixed.inputs == x[mixed.partners]
        assert torch.all(own | from_partner)
        moved = mixed.partners != torch.arange(5)
        share_own = own[moved].float().mean().item() if moved.any() else None
        if share_own is not None:
            assert share_own == pytest.approx(mixed.lam)
        pasted = ~own[moved][0, 0] if moved.any() else None
        if pasted is not None and pasted.any():
            ranges = [pasted.any(dim=tuple(d for d in range(pasted.dim()) if d != k)).nonzero().flatten()
                      for k in range(pasted.dim())]
            box = tuple(slice(int(r.min()), int(r.max()) + 1) for r in ranges)
            assert pasted[box].all() and int(pasted.sum()) == pasted[box].numel()


def test_the_same_seed_mixes_alike_and_mix_prob_leaves_batches_unmixed():
    x = torch.randn(4, 3, 8, 8)
    torch.manual_seed(5)
    first = BatchMixing(mixup=0.2, cutmix=1.0)(x)
    torch.manual_seed(5)
    again = BatchMixing(mixup=0.2, cutmix=1.0)(x)
    assert first.lam == again.lam and torch.equal(first.inputs, again.inputs)
    torch.manual_seed(0)
    mixing = BatchMixing(mixup=0.2, cutmix=1.0, prob=0.5)
    draws = [mixing(x) for _ in range(400)]
    unmixed = sum(d is None for d in draws)
    kinds = [d.kind for d in draws if d is not None]
    assert 140 < unmixed < 260  # binomial(400, 0.5): 200 +- 6 sd
    assert 0.35 < kinds.count("cutmix") / len(kinds) < 0.65
    assert BatchMixing(mixup=0.2)(x[:1]) is None  # one image has no partner


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_the_loss_takes_both_labels_in_the_images_shares():
    """training_step's loss, against the class-weighted, logit-adjusted cross-entropy of the mixed
    batch written out by hand: lam * loss(own labels) + (1 - lam) * loss(partners' labels)."""
    weights, prior = torch.tensor([1.0, 3.0]), torch.tensor([0.8, 0.2])
    module = Classifier(create_model("tiny_cnn", 2), TrainConfig(mixup=0.4, logit_adjustment=0.5),
                        Preprocessing(image_size=32), weights, steps_per_epoch=1, class_prior=prior).eval()
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    targets = torch.tensor([0, 1, 0, 0, 1, 0])
    torch.manual_seed(1)
    loss = module.training_step((images, targets), 0)
    torch.manual_seed(1)
    mixed = module.mixing(module.model_input(images))
    with torch.no_grad():
        log_p = F.log_softmax(module.model(mixed.inputs) + 0.5 * prior.log(), 1)

    def weighted(labels):
        w = weights[labels]
        return -(w * log_p[torch.arange(6), labels]).sum() / w.sum()

    expected = mixed.lam * weighted(targets) + (1 - mixed.lam) * weighted(targets[mixed.partners])
    assert 0 < mixed.lam < 1 and (targets != targets[mixed.partners]).any()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("settings, message", [
    (dict(mixup=-0.1), "train.mixup"),
    (dict(cutmix=-1.0), "train.cutmix"),
    (dict(mixup=0.2, mix_prob=0.0), "train.mix_prob"),
    (dict(mixup=0.2, mix_prob=1.5), "train.mix_prob"),
])
def test_meaningless_settings_are_refused_with_the_key(settings, message):
    with pytest.raises(ConfigError, match=message):
        check_mixing(TrainConfig(**settings))


@pytest.mark.parametrize("task", ["segmentation", "multitask", "regression"])
def test_tasks_without_class_labels_refuse_mixing(task):
    with pytest.raises(ConfigError, match=f"--task {task}"):
        check_mixing(TrainConfig(cutmix=1.0), task)
    check_mixing(TrainConfig(), task)  # off: nothing to refuse


def test_the_features_strategy_refuses_mixing():
    with pytest.raises(ConfigError, match="features strategy"):
        check_mixing(TrainConfig(mixup=0.2, strategy="features"), "classification")


def test_a_segmentation_run_with_mixing_fails_before_reading_data(tmp_path):
    from lesionlens.training.fit import train

    cfg = tiny_run_config(tmp_path / "nothing-here", mixup=0.2, task="segmentation")
    with pytest.raises(ConfigError, match="--task segmentation"):
        train(cfg, tmp_path / "out", progress=False)


def test_a_tiny_run_with_mixup_and_cutmix_trains_and_keeps_a_bundle(class_folder, tmp_path):
    from lesionlens.training.fit import train

    result = train(tiny_run_config(class_folder, mixup=0.4, cutmix=1.0), tmp_path / "out", progress=False)
    assert 0.0 <= result.validation["balanced_accuracy"] <= 1.0
    saved = (tmp_path / "out" / "config.yaml").read_text()
    assert "mixup: 0.4" in saved and "cutmix: 1.0" in saved
