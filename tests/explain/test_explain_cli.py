"""``lesionlens explain`` end to end on the session's tiny bundle: a labelled CSV with metadata and a
mask folder, every analysis, the report's JSON, and the HTML in a real browser with every figure
decoded; and the errors a user meets (no images, a missing mask, an unknown layer)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import COLOURS, write_image
from PIL import Image

from lesionlens.cli import main
from lesionlens.explain.settings import ANALYSES


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """12 images a class (unseen by the bundle) with sex, age, site and a 'scanner' column, and a
    mask folder with a central disc for each."""
    root = tmp_path_factory.mktemp("explain-data")
    lines = ["image,label,patient,sex,age,site,scanner"]
    yy, xx = np.mgrid[:48, :48]
    disc = ((yy - 24) ** 2 + (xx - 24) ** 2 < 14 ** 2).astype(np.uint8) * 255
    (root / "masks").mkdir()
    for c, colour in COLOURS.items():
        for i in range(12):
            name = f"{c}_{i}.jpg"
            write_image(root / "images" / name, colour, seed=500 + i, size=48)
            Image.fromarray(disc).save(root / "masks" / f"{c}_{i}_mask.png")
            lines.append(f"images/{name},{c},p{i % 6},{('female', 'male')[i % 2]},{30 + i},back,{'AB'[i % 2]}")
    (root / "data.csv").write_text("\n".join(lines) + "\n")
    return root


def test_explain_writes_every_analysis_and_the_report_renders(exported_bundle, data, tmp_path, browser, capsys):
    out = tmp_path / "report"
    assert main(["explain", str(exported_bundle), "--data", str(data / "data.csv"), "--masks", str(data / "masks"),
                 "--probe", "scanner", "--limit", "36", "--gallery", "3", "--steps", "4", "--sanity-images", "4",
                 "--resamples", "200", "--method", "gradcam", "--method", "integrated_gradients",
                 "--faithfulness-method", "gradcam", "--faithfulness-method", "integrated_gradients",
                 "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "Report:" in printed and "faithfulness on 36 images" in printed
    report = json.loads((out / "explain.json").read_text())
    assert report["format"] == "lesionlens-explain/1" and report["images"] == 36
    assert report["skipped"] == {} and set(report["results"]) == set(ANALYSES) - {"maps"}
    assert set(report["seconds_per_image"]) == {"gradcam", "integrated_gradients"}
    faith = report["results"]["faithfulness"]
    assert {c["baseline"] for c in faith["comparisons"]} == {"random", "centre"}
    assert {c["method"] for c in faith["comparisons"]} == {"gradcam", "integrated_gradients"}
    probed = json.dumps(report["results"]["embedding"])
    assert "scanner" in probed and "sex" in probed
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "maps.png" in pngs and "deletion_curves.png" in pngs and "sanity.png" in pngs and len(pngs) >= 8

    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((out / "explain.html").as_uri())
    page.wait_for_load_state("load")
    total = page.evaluate("document.images.length")
    broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length")
    sections = page.evaluate("Array.from(document.querySelectorAll('section h2')).map(h => h.textContent)")
    page.close()
    assert errors == [] and total == len(pngs) and broken == 0
    assert sections == ["Maps per image", "Faithfulness", "Sanity check", "Lesion focus", "Shortcut test",
                        "Inside the network", "Embedding and probes"]


def test_files_without_labels_skip_what_needs_labels_and_say_why(exported_bundle, data, tmp_path):
    out = tmp_path / "files"
    files = [str(p) for p in sorted((data / "images").glob("mel_*.jpg"))[:3]]
    assert main(["explain", str(exported_bundle), *files, "--analyses", "maps,shortcuts,embedding,focus",
                 "--out", str(out), "-q"]) == 0
    report = json.loads((out / "explain.json").read_text())
    assert set(report["skipped"]) == {"shortcuts", "embedding", "focus"}
    assert "needs to know which are benign" in report["skipped"]["shortcuts"]
    html = (out / "explain.html").read_text()
    assert "Not run: no lesion masks" in html


def test_bad_input_is_named(exported_bundle, data, tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    assert main(["explain", str(exported_bundle), str(broken), "--out", str(tmp_path / "x"), "-q"]) != 0
    assert "broken.jpg" in capsys.readouterr().err
    lonely = tmp_path / "lonely.jpg"
    write_image(lonely, (10, 20, 30), size=48)
    assert main(["explain", str(exported_bundle), str(lonely), "--masks", str(data / "masks"),
                 "--out", str(tmp_path / "y"), "-q"]) != 0
    assert "lonely.jpg" in capsys.readouterr().err
    assert main(["explain", str(exported_bundle), str(lonely), "--layer", "blocks.9", "--out", str(tmp_path / "z"),
                 "-q"]) != 0
    err = capsys.readouterr().err
    assert "no layer 'blocks.9'" in err and "features.0" in err
    assert main(["explain", str(exported_bundle), "--out", str(tmp_path / "w")]) != 0
    assert "give image files or --data" in capsys.readouterr().err
