"""The evaluation a reviewer reads: decision rule in the bundle, calibrate, evaluate --report, report
comparing two bundles, predict using the operating points, and the HTML rendered in a real browser."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from lesionlens.bundle.card import read_card
from lesionlens.cli import main

SECTIONS = ("summary", "model", "data", "metrics", "operating-point", "isic", "roc", "pr", "confusion",
            "calibration", "top-losses", "learning-curves")


def _train(root: Path, out: Path, seed: int) -> Path:
    args = ["train", "--data", str(root), "--out", str(out), "--model", "tiny_cnn", "--no-pretrained",
            "--image-size", "32", "--epochs", "2", "--batch-size", "8", "--seed", str(seed), "-q"]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def two_bundles(tmp_path_factory):
    """A 7-class HAM10000-like layout (colours tell the classes apart) and two bundles trained on it."""
    from helpers import COLOURS, write_image

    root = tmp_path_factory.mktemp("ham")
    colours = {**COLOURS, "akiec": (200, 60, 60), "bkl": (120, 120, 40), "df": (60, 120, 160), "vasc": (160, 40, 160)}
    lines = ["lesion_id,image_id,dx,dx_type,age,sex,localization"]
    for n in range(84):
        dx = ("mel", "nv", "bcc", "akiec", "bkl", "df", "vasc")[n % 7]
        write_image(root / "images" / f"ISIC_{n:07d}.jpg", colours[dx], seed=n)
        lines.append(f"HAM_{n},ISIC_{n:07d},{dx},histo,50,male,back")
    (root / "HAM10000_metadata.csv").write_text("\n".join(lines) + "\n")
    runs = tmp_path_factory.mktemp("runs")
    return root, _train(root, runs / "a", 0), _train(root, runs / "b", 1)


def test_training_stores_temperature_and_operating_points(two_bundles):
    _, a, _ = two_bundles
    card = read_card(a).data
    assert card["calibration"]["temperature"] > 0 and card["calibration"]["method"] == "temperature scaling"
    assert set(card["operating_points"]) == {"malignant", "melanoma"}
    for point in card["operating_points"].values():
        assert point["criterion"] == "sensitivity" and point["target"] == pytest.approx(0.866)
        assert point["validation_sensitivity"] >= 0.866
    metrics = json.loads((a / "evaluation" / "metrics.json").read_text())
    assert metrics["binary"]["melanoma"]["decision"].startswith("score >= ")
    assert metrics["binary"]["melanoma"]["sensitivity"] >= 0.866


def test_calibrate_replaces_the_rule(two_bundles, tmp_path, capsys):
    _, a, _ = two_bundles
    bundle = shutil.copytree(a, tmp_path / "copy")
    assert main(["calibrate", str(bundle), "--target-specificity", "0.8", "-q"]) == 0
    out = capsys.readouterr().out
    assert "temperature" in out and "melanoma: positive when p_melanoma >=" in out
    card = read_card(bundle).data
    assert {p["criterion"] for p in card["operating_points"].values()} == {"specificity"}
    assert all(p["validation_specificity"] >= 0.8 for p in card["operating_points"].values())
    assert read_card(bundle).data["weights"] == read_card(a).data["weights"]  # the weights are untouched


def test_calibrate_tta_becomes_the_bundles_default(two_bundles, tmp_path, capsys):
    """calibrate --tta d4 fits the rule on 8-view logits and makes d4 what evaluate and predict use
    unless told otherwise; the probabilities then equal an explicit --tta d4's."""
    root, a, _ = two_bundles
    bundle = shutil.copytree(a, tmp_path / "copy")
    assert read_card(bundle).tta == "none"
    assert main(["calibrate", str(bundle), "-q", "--tta", "d4"]) == 0
    assert "test-time augmentation d4" in capsys.readouterr().out
    card = read_card(bundle)
    assert card.tta == "d4" and "TTA d4" in card.data["calibration"]["fitted_on"]
    default, explicit, none = (tmp_path / f"{n}.csv" for n in ("default", "explicit", "none"))
    assert main(["predict", str(bundle), str(root / "images"), "--out", str(default)]) == 0
    assert "test-time augmentation d4 (the bundle's default)" in capsys.readouterr().err
    assert main(["predict", str(bundle), str(root / "images"), "--out", str(explicit), "--tta", "d4"]) == 0
    assert main(["predict", str(bundle), str(root / "images"), "--out", str(none), "--tta", "none"]) == 0
    assert "the rule below was fitted with d4" in capsys.readouterr().err
    read = lambda f: [float(r["p_mel"]) for r in csv.DictReader(f.open())]  # noqa: E731
    assert read(default) == read(explicit) != read(none)
    assert main(["evaluate", str(bundle), "--data", str(root), "--split", "all", "--allow-leakage",
                 "--out", str(tmp_path / "ev"),
                 "--bootstrap", "0", "-q"]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["tta"] == "d4"


def test_predict_decides_at_the_operating_point(two_bundles, tmp_path, capsys):
    root, a, _ = two_bundles
    out = tmp_path / "p.csv"
    assert main(["predict", str(a), str(root / "images"), "--out", str(out)]) == 0
    assert "positive when p_melanoma >=" in capsys.readouterr().err
    threshold = read_card(a).data["operating_points"]["melanoma"]["threshold"]
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 84
    for r in rows:
        assert (r["melanoma"] == "positive") == (float(r["p_melanoma"]) >= threshold - 1e-6)


def test_evaluate_report_is_complete(two_bundles, tmp_path):
    root, a, _ = two_bundles
    out = tmp_path / "ev"
    assert main(["evaluate", str(a), "--data", str(root), "--split", "all", "--allow-leakage", "--out", str(out),
                 "--report",
                 "--bootstrap", "200", "--tta", "flips", "-q"]) == 0
    for name in ("metrics.json", "predictions.csv", "roc.png", "precision_recall.png", "confusion_matrix.png",
                 "reliability.png", "top_losses.jpg", "most_confused.png", "report.html", "report.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tta"] == "flips" and metrics["bootstrap"]["resamples"] == 200
    ci = metrics["confidence_intervals"]["balanced_accuracy"]
    assert ci["low"] <= metrics["balanced_accuracy"] <= ci["high"]
    assert {"melanoma_auc", "melanoma_sensitivity", "malignant_specificity", "auc[mel]"} <= set(metrics["confidence_intervals"])
    assert metrics["calibration"]["temperature"] == pytest.approx(read_card(a).data["calibration"]["temperature"])
    assert len(metrics["top_losses"]) == 20 and metrics["isic"]["balanced_accuracy"] is not None
    html = (out / "report.html").read_text()
    for section in SECTIONS:
        assert f'id="a-{section}"' in html, section
    assert "http://" not in html and "https://" not in html  # self-contained: nothing to fetch
    assert len(re.findall(r'src="data:image/(?:png|jpeg);base64,', html)) == 7  # every figure, learning curves included
    training = read_card(a).training
    assert f"best epoch {training.best_epoch} by {training.monitor}</dd>" in html


def test_report_compares_bundles_on_the_same_images(two_bundles, tmp_path):
    root, a, b = two_bundles
    out = tmp_path / "cmp"
    assert main(["report", str(a), str(b), "--data", str(root), "--split", "all", "--allow-leakage", "--out", str(out),
                 "--bootstrap", "200", "-q"]) == 0
    report = json.loads((out / "report.json").read_text())
    comparison = report["comparison"]
    assert comparison["names"] == ["a", "b"] and comparison["n_images"] == 84
    metrics = {t["metric"] for t in comparison["tests"]}
    assert {"balanced_accuracy", "melanoma_auc", "melanoma_auc_delong"} <= metrics
    html = (out / "report.html").read_text()
    assert 'id="comparison"' in html and 'id="b-calibration"' in html
    assert (out / "a" / "metrics.json").is_file() and (out / "roc_comparison.png").is_file()


def test_comparing_different_validation_splits_is_a_clear_error(two_bundles, tmp_path, capsys):
    root, a, b = two_bundles
    assert main(["report", str(a), str(b), "--data", str(root), "--out", str(tmp_path / "x"), "-q"]) == 2
    assert "not evaluated on the same images" in capsys.readouterr().err


def _browser():
    """Playwright driving Debian's chromium; skipped where either is missing, unless
    LESIONLENS_REQUIRE_BROWSER=1 (CI) makes that a failure."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not Path(chromium).exists():
        if os.environ.get("LESIONLENS_REQUIRE_BROWSER") == "1":
            pytest.fail("LESIONLENS_REQUIRE_BROWSER=1 but playwright or /usr/bin/chromium is missing")
        pytest.skip("needs the playwright package and Debian's chromium (apt-get install -y chromium)")
    return sync_playwright, chromium


def test_report_renders_in_headless_chromium(two_bundles, tmp_path):
    sync_playwright, chromium = _browser()
    root, a, b = two_bundles
    out = tmp_path / "browser"
    assert main(["report", str(a), str(b), "--data", str(root), "--split", "all", "--allow-leakage", "--out", str(out),
                 "--bootstrap", "100", "-q"]) == 0
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
        page.goto((out / "report.html").as_uri())
        page.wait_for_load_state("load")
        assert page.title().startswith("LesionLens report")
        for name in ("a", "b"):
            for section in SECTIONS:
                assert page.locator(f"#{name}-{section}").is_visible(), f"{name}-{section}"
        assert page.locator("#comparison").is_visible() and page.locator("#disclaimer").is_visible()
        broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length")
        total = page.evaluate("document.images.length")
        shot = Path(os.environ.get("LESIONLENS_SCREENSHOTS", tmp_path)) / "report.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert total == 15 and broken == 0  # 7 figures per bundle and the overlaid ROC curves
    assert errors == []
    assert shot.stat().st_size > 50_000
