"""The labelling page (/label) and the study page (/study) end to end: a real `lesionlens serve --db`
process, cases sent to it over HTTP, and a real headless browser (Playwright driving Debian's
chromium).

Skipped where playwright or chromium is missing, unless LESIONLENS_REQUIRE_BROWSER=1 (CI), where
their absence fails. LESIONLENS_SCREENSHOT_DIR=DIR keeps the screenshots there to look at.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from lesionlens.cases.store import CaseStore
from lesionlens.serving.process import server_process

ADMIN = "admin-secret"
INTERVAL = re.compile(r"^\d\.\d\d \[\d\.\d\d, \d\.\d\d\] n=\d+$")
# (site, age, sex, colour): a few subgroups on every dimension; the colours spread the tiny model's answers
CASES = [("back", 60, "male", (60, 40, 30)), ("back", 72, "female", (150, 100, 70)),
         ("face", 35, "female", (220, 150, 160)), ("chest", 20, "male", (120, 80, 60)),
         ("lower extremity", 50, "male", (100, 70, 50))]


class Server:
    """The running server, the store it writes (opened beside it, as the CLI would), and helpers
    that talk to it over HTTP."""

    def __init__(self, url: str, db: Path):
        self.url = url
        self.store = CaseStore.open(db)
        self.http = httpx.Client(base_url=url, timeout=60)

    def token(self, role: str, name: str | None = None) -> tuple[str, str]:
        name = name or f"{role}_{uuid.uuid4().hex[:6]}"  # a fresh reader has the whole queue to themselves
        return name, self.store.add_token(name, role)

    def get(self, path: str, token: str = ADMIN) -> dict:
        r = self.http.get(path, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        return r.json()

    def submit(self, seed: int, colour, consent: bool = True, **fields) -> str:
        rng = np.random.default_rng(seed)
        pixels = np.clip(np.array(colour) + rng.normal(0, 30, (150, 200, 3)), 0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "JPEG", quality=90)
        form = {"consent_research": str(consent).lower(), "device": "DermLite DL4"} | {k: str(v) for k, v in fields.items()}
        r = self.http.post("/v1/cases", files={"file": ("lesion.jpg", out.getvalue(), "image/jpeg")}, data=form,
                           headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 200, r.text
        return r.json()["case_id"]

    def label(self, case_id: str, token: str, label: str) -> dict:
        r = self.http.post(f"/v1/cases/{case_id}/labels", json={"label": label},
                           headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def server(exported_bundle, tmp_path_factory):
    db = tmp_path_factory.mktemp("case_pages") / "cases.sqlite"
    with server_process(exported_bundle, "--db", str(db), "--token", ADMIN) as (url, _):
        s = Server(url, db)
        for i, (site, age, sex, colour) in enumerate(CASES):
            s.submit(i, colour, site=site, age=age, sex=sex, patient_id=f"p{i}", lesion_id=f"l{i}")
        s.submit(99, (90, 90, 90), consent=False, site="back")  # counted as left out on the study page
        yield s
        s.http.close()
        s.store.close()


def sign_in(browser, server: Server, page_path: str, token: str, width: int = 1000):
    page = browser.new_page(viewport={"width": width, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + page_path)
    page.fill("#token", token)
    page.click("#signin button[type=submit]")
    return page, errors


def screenshot(page, tmp_path: Path, name: str) -> None:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("LESIONLENS_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["LESIONLENS_SCREENSHOT_DIR"]) / name)


def rate_text(r: dict) -> str:
    return "-" if r["n"] == 0 else f"{r['estimate']:.2f} [{r['low']:.2f}, {r['high']:.2f}] n={r['n']}"


def shown_case(page) -> str:
    return page.locator("#case").get_attribute("data-case-id")


def test_a_labeller_labels_the_first_queue_case_by_keyboard_and_gets_the_next(browser, server, tmp_path):
    name, token = server.token("label")
    queue = server.get("/v1/labelling/queue", token)
    first = queue["items"][0]["case"]["case_id"]
    page, errors = sign_in(browser, server, "/label", token)
    page.wait_for_selector("#case:not([hidden])", timeout=30_000)
    assert page.locator("#who").inner_text() == f"Signed in as {name} (label)."
    assert "not a diagnosis" in page.locator("#disclaimer").inner_text().lower()
    assert shown_case(page) == first
    # the photo came through fetch + Authorization header + blob URL, and decoded
    page.wait_for_function("document.getElementById('case-image').naturalWidth > 0", timeout=30_000)
    assert page.locator("#case-image").get_attribute("src").startswith("blob:")
    # the model's answer, the metadata and why the case is queued
    assert page.locator("#probs .row").count() == 3
    assert page.locator("#decisions .decision").count() == 2  # malignant and melanoma
    assert "threshold" in page.locator("#decisions").inner_text()
    details = page.locator("#metadata").inner_text()
    assert first in details and "DermLite DL4" in details
    assert "usefulness" in page.locator("#reasons").inner_text()
    assert page.locator("#settlement").inner_text() == "Status: unlabelled"
    # one button per class, in the queue's order, each showing its key
    buttons = page.locator("#classes button")
    assert buttons.count() == len(queue["classes"])
    for i, c in enumerate(queue["classes"]):
        assert buttons.nth(i).get_attribute("data-label") == c
        assert buttons.nth(i).locator("kbd").inner_text() == str(i + 1)
    assert page.locator("#source").input_value() == "single_reader"
    assert page.locator("#agreement tbody").inner_text()  # the panel answered (a row or "no case ...")
    screenshot(page, tmp_path, "label_page.png")

    page.keyboard.press("2")
    page.wait_for_function(f"document.getElementById('case').dataset.caseId !== '{first}'", timeout=30_000)
    assert page.locator("#message").inner_text().startswith(f"Labelled case {first[:8]}… as {queue['classes'][1]}")
    page.wait_for_function("document.getElementById('case-image').naturalWidth > 0", timeout=30_000)
    stored = server.get(f"/v1/cases/{first}", token)["settlement"]["current"]
    assert [(lab["reader"], lab["label"], lab["source"]) for lab in stored] == [(name, queue["classes"][1], "single_reader")]

    # S skips without storing anything; typing a digit into the note is text, not a shortcut
    second = shown_case(page)
    page.fill("#note", "3")
    page.keyboard.press("3")
    page.wait_for_timeout(500)  # time for a (wrong) label to be sent, were it sent
    assert shown_case(page) == second and page.locator("#note").input_value() == "33"
    page.locator("#case-title").focus()
    page.keyboard.press("s")
    page.wait_for_function(f"document.getElementById('case').dataset.caseId !== '{second}'")
    assert server.get(f"/v1/cases/{second}", token)["settlement"]["current"] == []
    assert errors == []
    page.close()


def test_the_label_page_fits_a_phone(browser, server, tmp_path):
    _, token = server.token("label")
    page, errors = sign_in(browser, server, "/label", token, width=390)
    page.wait_for_selector("#case:not([hidden])", timeout=30_000)
    page.wait_for_function("document.getElementById('case-image').naturalWidth > 0", timeout=30_000)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, tmp_path, "label_page_phone.png")
    assert errors == []
    page.close()


def test_a_submit_only_or_wrong_token_is_refused_with_a_readable_message(browser, server, tmp_path):
    name, token = server.token("submit")
    page, errors = sign_in(browser, server, "/label", token)
    page.wait_for_selector("#who.error")
    message = page.locator("#who").inner_text()
    assert f"“{name}” has the “submit” role" in message and "label" in message
    assert page.locator("#work").is_hidden()
    assert page.evaluate("sessionStorage.getItem('lesionlens.token')") is None  # not kept

    page.fill("#token", "not-a-token")
    page.click("#signin button[type=submit]")
    page.wait_for_function("document.getElementById('who').textContent.includes('wrong or revoked')")
    assert page.locator("#who").inner_text() == "Not signed in: the API token is wrong or revoked."
    assert page.locator("#work").is_hidden()
    page.close()

    page, errors = sign_in(browser, server, "/study", token)  # the study needs the label role too
    page.wait_for_selector("#who.error")
    assert "needs the 'label' role" in page.locator("#who").inner_text()
    assert page.locator("#study").is_hidden()
    assert errors == []
    page.close()


HOSTILE = '<img id="injected" src="x" onerror="window.pwned = 1">'


def test_an_admin_adjudicates_a_disagreement(browser, server, tmp_path):
    # server-provided text that is also HTML must show as text, never run
    case_id = server.submit(7, (130, 90, 70), site="face", age=45, sex="female", device=HOSTILE)
    (a, token_a), (b, token_b) = server.token("label"), server.token("label")
    r = server.http.post(f"/v1/cases/{case_id}/labels", json={"label": "mel", "note": HOSTILE},
                         headers={"Authorization": f"Bearer {token_a}"})
    assert r.status_code == 200, r.text
    assert server.label(case_id, token_b, "nv")["settlement"]["status"] == "disagreement"

    page, errors = sign_in(browser, server, "/label", ADMIN)
    page.wait_for_selector("#adjudicate-box:not([hidden])", timeout=30_000)
    assert page.locator("#who").inner_text() == "Signed in as admin (admin)."
    page.check("#adjudicate")
    page.wait_for_function("document.getElementById('queue-info').textContent.startsWith('Disagreements')")
    page.wait_for_selector("#case:not([hidden])", timeout=30_000)
    for _ in range(20):  # other tests may have left disagreements before ours: skip them
        if shown_case(page) == case_id:
            break
        before = shown_case(page)
        page.click("#skip")
        page.wait_for_function(f"document.getElementById('case').dataset.caseId !== '{before}'")
    assert shown_case(page) == case_id
    assert page.locator("#settlement").inner_text() == "Status: disagreement"
    readers = page.locator("#labels tbody").inner_text()
    assert a in readers and b in readers and "mel" in readers and "nv" in readers
    assert "readers disagree" in page.locator("#reasons").inner_text()
    assert page.locator("#source").input_value() == "consensus"
    assert HOSTILE in page.locator("#metadata").inner_text() and HOSTILE in readers
    assert page.locator("#injected").count() == 0 and page.evaluate("window.pwned") is None
    page.fill("#note", "dermoscopy reviewed together")
    screenshot(page, tmp_path, "label_adjudicate.png")

    page.click("#classes button[data-label=nv]")
    page.wait_for_function("document.getElementById('message').textContent.startsWith('Adjudicated')", timeout=30_000)
    assert "it is now adjudicated" in page.locator("#message").inner_text()
    settled = server.get(f"/v1/cases/{case_id}")["settlement"]
    assert (settled["status"], settled["label"], settled["source"]) == ("adjudicated", "nv", "consensus")
    assert server.get("/v1/labelling/queue?adjudicate=true")["items"] == []  # nobody else disagrees in this module
    page.wait_for_selector("#empty:not([hidden])")
    assert page.locator("#empty").inner_text().startswith("No disagreements to adjudicate: the queue is empty.")
    assert page.locator("#case").is_hidden()
    # the two readers now show in the agreement panel
    page.wait_for_function(f"document.getElementById('agreement').textContent.includes('{a}')")
    assert errors == []
    page.close()


def test_the_study_page_shows_totals_a_bar_per_site_and_intervals(browser, server, tmp_path):
    (_, token_a), (_, token_b) = server.token("label"), server.token("label")
    queue = server.get("/v1/labelling/queue?limit=200", token_a)["items"]
    for item in queue[:3]:  # settle a few cases so that some rates have an n
        for token in (token_a, token_b):
            server.label(item["case"]["case_id"], token, item["case"]["top_class"])
    study = server.get("/v1/study", token_a)

    page, errors = sign_in(browser, server, "/study", token_a)
    page.wait_for_selector("#study:not([hidden])", timeout=30_000)
    assert page.locator("#totals").inner_text() == (
        f"{study['cases']} cases with research consent; {study['without_consent']} without consent, left out.")
    assert study["without_consent"] == 1
    assert "operating point" in page.locator("#basis").inner_text()
    assert "in force" in page.locator("#basis").inner_text()
    assert "not a diagnosis" in page.locator("#disclaimer").inner_text().lower()

    sites = [g for g in study["groups"] if g.get("dimension") == "site"]
    assert {g["value"] for g in sites} >= {"back", "face", "chest", "lower extremity"}
    bars = page.locator(".chart[data-dimension=site] .bar-row")
    assert bars.count() == len(sites)
    most = max(g["cases"] for g in sites)
    for g in sites:
        bar = page.locator(f'.chart[data-dimension=site] .bar-row[data-value="{g["value"]}"]')
        assert bar.locator(".bar-label").inner_text() == g["value"]
        assert bar.locator(".count").inner_text() == str(g["cases"])
        # the bar's drawn length is proportional to the subgroup's cases
        drawn = bar.locator(".track").evaluate("t => [...t.children].reduce((w, s) => w + s.getBoundingClientRect().width, 0)")
        track = bar.locator(".track").evaluate("t => t.getBoundingClientRect().width")
        assert abs(drawn / track - g["cases"] / most) < 0.02
        row = page.locator(f'#table-site tbody tr[data-value="{g["value"]}"]')
        assert row.locator("td").nth(0).inner_text() == str(g["cases"])
    for dim in ("age_band", "sex"):
        assert page.locator(f".chart[data-dimension={dim}] .bar-row").count() == sum(
            g["dimension"] == dim for g in study["groups"])

    # every rate cell, in the tables of every dimension, reads as the API's numbers do
    for g in study["groups"]:
        row = page.locator(f'#table-{g["dimension"]} tbody tr[data-value="{g["value"]}"]')
        cells = row.locator("td.rate").all_text_contents()
        expected = [rate_text(g[m][v]) for v in study["views"] for m in ("sensitivity", "specificity")]
        assert cells == expected, (g["dimension"], g["value"])
    rates = page.locator("#dimensions td.rate").all_text_contents()
    assert any(INTERVAL.match(t) for t in rates), rates
    assert all(INTERVAL.match(t) or t == "-" for t in rates), rates
    screenshot(page, tmp_path, "study_page.png")
    page.set_viewport_size({"width": 390, "height": 900})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # wide tables scroll in place
    screenshot(page, tmp_path, "study_page_phone.png")
    assert errors == []
    page.close()
