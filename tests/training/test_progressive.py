"""Progressive resizing (train.progressive_size, train.progressive_epochs): the sizes per epoch and the
cost against hand computations, the settings refused with the key named, the network fed the small
size, and a real tiny run."""

from __future__ import annotations

import logging

import pytest
import torch
from helpers import tiny_run_config

from lesionlens.config import ConfigError, TrainConfig
from lesionlens.data.images import Preprocessing
from lesionlens.models.registry import create_model
from lesionlens.training.module import Classifier
from lesionlens.training.progressive import (check_progressive, check_progressive_size, epoch_sizes, relative_cost,
                                             shrink)


def test_sizes_grow_linearly_in_steps_of_eight_then_stay_full():
    # 128 + 96 e / 5 for e = 0..4: 128, 147.2, 166.4, 185.6, 204.8 -> nearest multiples of 8
    cfg = TrainConfig(epochs=10, progressive_size=128)
    assert epoch_sizes(cfg, 224) == [128, 144, 168, 184, 208] + [224] * 5
    assert epoch_sizes(TrainConfig(epochs=4, progressive_size=100, progressive_epochs=1), 260) == [100, 260, 260, 260]
    assert epoch_sizes(TrainConfig(epochs=4), 260) is None


def test_the_cost_is_the_mean_share_of_pixels():
    cfg = TrainConfig(epochs=4, progressive_size=112, progressive_epochs=2)  # 112, 168, 224, 224
    assert relative_cost(cfg, 224) == pytest.approx((0.25 + 0.5625 + 1 + 1) / 4)
    assert relative_cost(TrainConfig(), 224) == 1.0


def test_shrink_resizes_and_keeps_the_memory_format():
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    small = shrink(x, 40)
    assert small.shape == (2, 3, 40, 40) and small.is_contiguous(memory_format=torch.channels_last)
    assert shrink(x, 64) is x
    flat = torch.full((1, 3, 64, 64), 0.7)
    torch.testing.assert_close(shrink(flat, 24), torch.full((1, 3, 24, 24), 0.7))  # a flat image stays flat


def test_the_network_trains_on_the_epochs_size_and_validates_at_full_size():
    module = Classifier(create_model("tiny_cnn", 2), TrainConfig(epochs=4, progressive_size=32, logit_adjustment=0.0),
                        Preprocessing(image_size=64), None, steps_per_epoch=1)
    seen = []
    module.model.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    targets = torch.tensor([0, 1, 0, 1])
    with pytest.warns(UserWarning, match="self.log"):
        module.training_step((images, targets), 0)  # epoch 0 (no trainer): the first size
    module(images)  # prediction and validation: the full size
    assert seen == [(32, 32), (64, 64)]


@pytest.mark.parametrize("settings, task, message", [
    (dict(progressive_size=16), "classification", "at least 32"),
    (dict(progressive_epochs=2.0), "classification", "progressive_size is not"),
    (dict(progressive_size=64, progressive_epochs=9.0, epochs=4), "classification", "progressive_epochs"),
    (dict(progressive_size=64), "segmentation", "--task segmentation"),
    (dict(progressive_size=64, strategy="features"), "classification", "features strategy"),
])
def test_settings_it_cannot_honour_are_refused(settings, task, message):
    with pytest.raises(ConfigError, match=message):
        check_progressive(TrainConfig(**settings), task)


def test_volumes_and_a_size_not_below_the_models_are_refused():
    with pytest.raises(ConfigError, match="volumes"):
        check_progressive(TrainConfig(progressive_size=64), "classification", volumes=True)
    with pytest.raises(ConfigError, match="below the model's input size"):
        check_progressive_size(TrainConfig(progressive_size=224), 224)


def test_a_tiny_run_grows_its_images_and_says_so(class_folder, tmp_path, caplog):
    from lesionlens.training.fit import train

    cfg = tiny_run_config(class_folder, epochs=3, progressive_size=32, progressive_epochs=2.0)
    cfg.model.image_size = 48
    with caplog.at_level(logging.INFO, logger="lesionlens"):
        result = train(cfg, tmp_path / "out", progress=False)
    assert "growing from 32 px to 48 px over the first 2 epochs" in caplog.text
    assert result.card.data["training"]["epochs_run"] == 3
    assert 0.0 <= result.validation["balanced_accuracy"] <= 1.0
