"""The web page end to end in a real headless browser (Playwright driving Debian's chromium).

Skipped where playwright or chromium is missing, unless LESIONLENS_REQUIRE_BROWSER=1 (CI), where
their absence fails. LESIONLENS_SCREENSHOT_DIR=DIR keeps the screenshot there to look at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from helpers import write_image


def _real_image(shared: Path, tmp_path: Path) -> Path:
    """A real HAM10000 image where ../shared is present, else a generated one."""
    images = shared / "data" / "ham10000" / "images"
    if images.is_dir():
        return sorted(images.glob("*.jpg"))[0]
    return write_image(tmp_path / "lesion.jpg", (120, 80, 60), size=200)


def test_upload_shows_probabilities_decision_heatmap_and_disclaimer(browser, live_server, shared, tmp_path):
    url, _ = live_server
    image = _real_image(shared, tmp_path)
    page = browser.new_page(viewport={"width": 900, "height": 1100})
    page.goto(url + "/")
    assert "not a diagnosis" in page.locator("#disclaimer").inner_text().lower()
    assert page.locator("#camera").get_attribute("capture") == "environment"
    page.set_input_files("#file", str(image))
    page.wait_for_selector("#result:not([hidden])", timeout=30_000)
    assert page.locator("#top").inner_text().startswith("Most likely:")
    assert page.locator("#probs .row").count() == 3  # the tiny model's classes
    shown = sum(float(t.rstrip("%")) for t in page.locator("#probs .row > span:last-child").all_inner_texts())
    assert abs(shown - 100) < 0.5
    assert page.locator(".decision").count() == 2  # malignant and melanoma
    assert page.locator("#heatmap").get_attribute("src").startswith("data:image/png;base64,")
    page.wait_for_function("document.getElementById('heatmap').naturalWidth === 320")
    assert page.locator("#status").inner_text() == f"Result for {image.name}"
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("LESIONLENS_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["LESIONLENS_SCREENSHOT_DIR"]) / "browser_test.png")

    notes = tmp_path / "notes.png"
    notes.write_text("not an image at all")
    page.set_input_files("#file", str(notes))
    page.wait_for_selector("#status.error", timeout=30_000)
    assert "only JPEG and PNG" in page.locator("#status").inner_text()
    page.close()
