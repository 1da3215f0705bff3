"""A real `lesionlens serve` process on a segmentation bundle: /v1/segment over the network, the
hostile corpus (no 5xx, the process stays up), and the web page in a real browser drawing the
lesion's outline over the image and showing its measurements (in mm when the scale is given).

LESIONLENS_SCREENSHOT_DIR=DIR keeps the page's screenshot there to look at."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from serving.hostile import corpus
from serving.segment_helpers import decoded_mask, lesion_upload, valid_segmentation
from serving.test_hostile import check_answer

from lesionlens.serving.process import server_process


@pytest.fixture(scope="module")
def segment_server(segmentation_bundle):
    with server_process(segmentation_bundle) as (url, proc):
        yield url, proc


def test_the_server_segments_and_survives_the_corpus(segment_server):
    url, proc = segment_server
    data, truth = lesion_upload(seed=7, size=(120, 90), fmt="JPEG")
    with httpx.Client(base_url=url, timeout=60) as c:
        r = c.post("/v1/segment", files={"file": ("lesion.jpg", data, "image/jpeg")}, data={"mm_per_pixel": "0.05"})
        assert r.status_code == 200, r.text
        body = r.json()
        mask = decoded_mask(body)
        assert mask.shape == (90, 120) and (mask & truth).sum() / (mask | truth).sum() > 0.7
        assert body["measurements"]["diameter_mm"] == pytest.approx(body["measurements"]["diameter_px"] * 0.05)
        for case in corpus():
            r = c.post("/v1/segment", files={"file": (case.filename, case.data, "application/octet-stream")})
            check_answer(case, r.status_code, r.json(), valid=valid_segmentation)
        assert proc.poll() is None
        assert c.get("/healthz").json() == {"status": "ok"}


def _outline_pixels(png: bytes) -> int:
    """Pixels of the outline's colour (#00e5ff) in a screenshot."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((rgb[..., 0] < 60) & (rgb[..., 1] > 190) & (rgb[..., 2] > 215)).sum())


def test_the_page_draws_the_outline_and_shows_the_measurements(browser, segment_server, tmp_path):
    url, _ = segment_server
    data, _ = lesion_upload(seed=11, size=(240, 180), fmt="JPEG")
    image = tmp_path / "lesion.jpg"
    image.write_bytes(data)
    page = browser.new_page(viewport={"width": 900, "height": 1100})
    page.goto(url + "/")
    page.wait_for_selector("#scale-box", state="visible", timeout=30_000)  # the page learnt the model segments
    page.set_input_files("#file", str(image))
    page.wait_for_selector("#result:not([hidden])", timeout=30_000)
    assert page.locator("#status").inner_text() == f"Result for {image.name}"
    assert page.locator("#class-result").is_hidden() and page.locator("#probs-box").is_hidden()
    svg = page.locator("#outline")
    assert svg.get_attribute("viewBox") == "0 0 240 180"
    assert page.locator("#outline-img").get_attribute("src").startswith("blob:")
    polygons = page.locator("#outline polygon")
    assert polygons.count() == 1
    points = polygons.first.get_attribute("points").split()
    assert len(points) >= 8 and all(0 <= float(v) <= 240 for p in points for v in p.split(","))
    assert _outline_pixels(svg.screenshot()) > 100  # drawn, in its colour, over the image
    area = page.locator('#measures tr[data-measure="Area"] td').inner_text()
    assert area.endswith(" px") and "mm" not in area
    for name in ("Diameter (greatest)", "Asymmetry", "Border", "Colours"):
        assert page.locator(f'#measures tr[data-measure="{name}"] td').inner_text(), name

    page.fill("#mm-per-pixel", "0.05")
    page.set_input_files("#file", [])
    page.set_input_files("#file", str(image))
    page.wait_for_function("document.querySelector('#measures tr[data-measure=\"Area\"] td')?.textContent.includes('mm²')",
                           timeout=30_000)
    assert "mm" in page.locator('#measures tr[data-measure="Diameter (greatest)"] td').inner_text()

    # a phone photo stored sideways (EXIF orientation 6): outlined on the upright image, as shown
    picture = Image.open(io.BytesIO(data))
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = tmp_path / "sideways.jpg"
    picture.save(rotated, "JPEG", quality=95, exif=exif)
    page.set_input_files("#file", str(rotated))
    page.wait_for_function("document.getElementById('status').textContent === 'Result for sideways.jpg'",
                           timeout=30_000)
    assert svg.get_attribute("viewBox") == "0 0 180 240"
    page.wait_for_function("document.getElementById('outline-img').naturalWidth === 180 && "
                           "document.getElementById('outline-img').naturalHeight === 240", timeout=10_000)
    assert _outline_pixels(svg.screenshot()) > 100
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("LESIONLENS_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["LESIONLENS_SCREENSHOT_DIR"]) / "browser_segment_test.png")
    page.close()
