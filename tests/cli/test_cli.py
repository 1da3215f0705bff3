"""The command line as a user meets it: help, train, evaluate, predict, errors."""

from __future__ import annotations

import csv
import json

import pytest
from helpers import write_image

from lesionlens.cli import build_parser, main

TINY = ["--model", "tiny_cnn", "--no-pretrained", "--image-size", "32", "--epochs", "1", "--batch-size", "8",
        "--workers", "0", "-q"]


def test_help_is_written_for_a_newcomer(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--data accepts" in text and "HAM10000" in text


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from helpers import COLOURS

    root = tmp_path_factory.mktemp("cli") / "data"
    for c, colour in COLOURS.items():
        for i in range(10):
            write_image(root / c / f"{i}.png", colour, seed=i, fmt="PNG")
    out = root.parent / "bundle"
    assert main(["train", "--data", str(root), "--out", str(out), *TINY, "--set", "augment.rotation=90"]) == 0
    return root, out


def test_train_writes_a_bundle_and_flags_override_the_config(bundle, tmp_path):
    root, out = bundle
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["config"]["augment"]["rotation"] == 90
    assert card["training"]["config"]["train"]["epochs"] == 1
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  epochs: 5\n  lr: 0.05\nmodel:\n  name: simple_cnn\n")
    again = tmp_path / "again"
    assert main(["train", "--config", str(config), "--data", str(root), "--out", str(again), *TINY]) == 0
    cfg = json.loads((again / "card.json").read_text())["training"]["config"]
    assert cfg["train"]["lr"] == 0.05 and cfg["train"]["epochs"] == 1 and cfg["model"]["name"] == "tiny_cnn"


def test_evaluate_writes_metrics_and_plots(bundle, tmp_path, capsys):
    root, out = bundle
    assert main(["evaluate", str(out), "--data", str(root), "--out", str(tmp_path / "ev"), "-q"]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert {"balanced_accuracy", "accuracy", "macro_auc", "per_class"} <= set(metrics)
    assert metrics["n_images"] == 6  # the bundle's own validation split, not its training images
    assert (tmp_path / "ev" / "roc.png").stat().st_size > 1000
    assert "balanced accuracy" in capsys.readouterr().out


def test_evaluate_all_refuses_training_images_unless_allowed(bundle, tmp_path, caplog, capsys):
    root, out = bundle
    args = ["evaluate", str(out), "--data", str(root), "--split", "all", "--out", str(tmp_path / "e"), "-q"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "training images or copies of them" in error and "--allow-leakage" in error
    assert main([*args, "--allow-leakage"]) == 0
    assert "allowed by --allow-leakage" in caplog.text


def test_predict_reports_every_file(bundle, tmp_path, capsys):
    root, out = bundle
    folder = tmp_path / "in"
    write_image(folder / "a.jpg", (60, 40, 30))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 nope")
    (folder / "readme.txt").write_text("x")
    target = tmp_path / "p.csv"
    code = main(["predict", str(out), str(folder), str(tmp_path / "missing.png"), "--out", str(target)])
    assert code == 1  # some inputs failed, and said so
    rows = {r["path"].split("/")[-1]: r for r in csv.DictReader(target.open())}
    assert set(rows) == {"a.jpg", "broken.jpg", "readme.txt", "missing.png"}
    assert rows["a.jpg"]["predicted"] in {"bcc", "mel", "nv"} and not rows["a.jpg"]["error"]
    assert abs(sum(float(rows["a.jpg"][f"p_{c}"]) for c in ("bcc", "mel", "nv")) - 1) < 1e-4
    assert float(rows["a.jpg"]["p_malignant"]) >= 0  # the clinical view, derived from diagnoses
    assert "cannot decode" in rows["broken.jpg"]["error"]
    assert "not an image" in rows["readme.txt"]["error"]
    assert "no such file" in rows["missing.png"]["error"]


def test_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), *TINY]) == 2
    assert "nowhere: no such file or folder" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--data", str(tmp_path)]) == 2
    assert "not a LesionLens bundle" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--set", "train.lr=fast", *TINY]) == 2
    assert "train.lr must be float" in capsys.readouterr().err


def test_models_lists_the_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "simple_cnn" in out
    vgg16 = next(line for line in out.splitlines() if line.startswith("vgg16 "))
    assert "138,357,544" in vgg16 and "15.47" in vgg16 and "timm hub" in vgg16


def test_a_strategy_that_needs_pretrained_weights_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(out), "--strategy", "deep", *TINY]) == 2
    err = capsys.readouterr().err
    assert "strategy 'deep'" in err and "needs pretrained weights" in err
    with pytest.raises(SystemExit):
        main(["train", "--data", str(tmp_path), "--out", str(out), "--strategy", "medium", *TINY])
    assert "invalid choice: 'medium'" in capsys.readouterr().err
    assert not out.exists()


def test_every_setting_reaches_the_help_the_yaml_template_and_the_card(bundle, capsys):
    """A setting is declared once, in lesionlens.config; the flag, the template and the card follow."""
    from lesionlens.config import settings

    _, out = bundle
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    help_text = capsys.readouterr().out
    assert main(["config"]) == 0
    template = capsys.readouterr().out
    saved = json.loads((out / "card.json").read_text())["training"]["config"]
    for key, f, _ in settings():
        section, name = key.split(".")
        if f.metadata["cli"]:
            flag = f.metadata["flag"] or "--" + name.replace("_", "-")
            assert flag in help_text and f.metadata["help"].split()[0] in help_text, key
        assert f"  {name}: " in template, key
        assert name in saved[section], key


@pytest.mark.parametrize("command, extra", [("serve", "serve"), ("export", "train")])
def test_a_missing_package_names_the_extra_that_installs_it(command, extra, monkeypatch, tmp_path, capsys):
    import lesionlens.cli.serve as group

    def missing(args):
        raise ModuleNotFoundError("No module named 'somepackage'", name="somepackage")

    monkeypatch.setattr(group, f"_{command}", missing)
    assert main([command, str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"`lesionlens {command}` needs the {extra} extra: pip install 'lesionlens[{extra}]'" in err
