"""Defaults, YAML, flags: in that order, every value type-checked."""

from __future__ import annotations

import pytest

from lesionlens.config import ConfigError, RunConfig, config_from_dict, load_config, parse_assignment


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.01\n  epochs: 3\naugment:\n  zoom: [0.8, 1.2]\n")
    cfg = load_config(path, {"train.epochs": 7})
    assert cfg.train.lr == 0.01 and cfg.train.epochs == 7 and cfg.augment.zoom == (0.8, 1.2)
    assert cfg.model.name == RunConfig().model.name


def test_unknown_keys_and_bad_values_name_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  learning_rate: 0.01\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown setting 'train.learning_rate'"):
        load_config(path)
    with pytest.raises(ConfigError, match="train.optimizer must be one of"):
        load_config(overrides={"train.optimizer": "adamm"})
    with pytest.raises(ConfigError, match="train.epochs must be int"):
        load_config(overrides={"train.epochs": 2.5})
    with pytest.raises(ConfigError, match="augment.zoom must be a list of 2"):
        load_config(overrides={"augment.zoom": 1.1})


def test_assignments_are_yaml_values_never_code():
    assert load_config(overrides=dict([parse_assignment("train.lr=3e-4")])).train.lr == 3e-4  # YAML 1.1 says str
    assert parse_assignment("train.epochs=4") == ("train.epochs", 4)
    assert parse_assignment("model.image_size=null") == ("model.image_size", None)
    assert parse_assignment("data.path=__import__('os')") == ("data.path", "__import__('os')")
    with pytest.raises(ConfigError):
        parse_assignment("train.lr")


def test_saved_configuration_round_trips(tmp_path):
    cfg = load_config(overrides={"train.lr": 0.02, "augment.zoom": [0.7, 1.3], "model.image_size": 96})
    cfg.save(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    assert config_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name", ["demo", "cpu_recipe"])
def test_shipped_configs_load(name):
    """Every recipe in configs/ is valid as written (a typo in a key would otherwise surface only
    when someone trains with it)."""
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml")
    assert isinstance(cfg, RunConfig)
    if name == "cpu_recipe":
        assert (cfg.model.name, cfg.model.image_size, cfg.model.tta) == ("efficientnet_lite0", 224, "d4")


def test_the_printed_template_reads_back_as_the_defaults(tmp_path):
    """`lesionlens config` writes every setting with its help as a comment; the file it prints is
    the default recipe itself (the one source of the defaults is RunConfig)."""
    from lesionlens.config import settings

    path = tmp_path / "template.yaml"
    path.write_text(RunConfig().to_yaml())
    assert load_config(path) == RunConfig()
    undocumented = [key for key, f, _ in settings() if not f.metadata.get("help")]
    assert undocumented == []
    text = path.read_text()
    assert all(f"  {key.partition('.')[2]}: " in text for key, _, _ in settings())
