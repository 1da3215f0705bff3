"""GET /v1/monitor and the /monitor page: the served model's windows against its reference, through
the API (TestClient), in a torch-free process, and in a real browser against a real server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from monitor_helpers import ADMIN, WINDOW, fill_store, make_reference

from lesionlens.bundle.card import update_card
from lesionlens.cases.store import CaseStore
from lesionlens.serving.app import create_app
from lesionlens.serving.process import server_process
from lesionlens.serving.settings import ServeSettings


@pytest.fixture(scope="module")
def monitored(exported_bundle, tmp_path_factory):
    reference = make_reference(exported_bundle, tmp_path_factory.mktemp("reference"))
    return fill_store(exported_bundle, reference, tmp_path_factory.mktemp("store"))


def client_for(bundle, m, reference="same"):
    settings = ServeSettings(db=str(m.db), case_images=str(m.images), token=ADMIN, token_cache_s=0,
                             monitor_reference=str(m.reference) if reference == "same" else reference)
    return TestClient(create_app(bundle, settings))


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_the_monitor_report_for_a_label_token_and_not_for_a_submitter(monitored):
    store = CaseStore.open(monitored.db, monitored.images)
    label, submit = store.add_token("reader", "label"), store.add_token("phone", "submit")
    store.close()
    with client_for(monitored.bundle, monitored) as c:
        r = c.get("/v1/monitor", headers=bearer(label))
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["format"] == "lesionlens-monitor/1" and report["window"] == WINDOW
        assert [w["drift"] for w in report["windows"]] == [False, False, True, True]
        assert report["latest"] == {"index": 3, "drift": True, "fired": report["windows"][3]["fired"]}
        again = c.get(f"/v1/monitor?window={WINDOW}", headers=bearer(ADMIN)).json()  # kept outputs, same answer
        assert again["windows"] == report["windows"]
        assert c.get("/v1/monitor", headers=bearer(submit)).status_code == 403
        assert c.get("/v1/monitor").status_code == 401
        r = c.get("/v1/monitor?window=7", headers=bearer(ADMIN))
        assert r.status_code == 409 and "no thresholds for windows of 7" in r.json()["error"]["message"]
        page = c.get("/monitor")
        assert page.status_code == 200 and "function drawMonitor" in page.text and "/* monitor_plots.js */" not in page.text


def test_without_a_reference_or_with_another_bundles_the_answer_says_what_to_do(monitored, bundle_copy):
    with client_for(monitored.bundle, monitored, reference=None) as c:
        r = c.get("/v1/monitor", headers=bearer(ADMIN))
        assert r.status_code == 409 and "--monitor-reference" in r.json()["error"]["message"]
    update_card(bundle_copy, {"inference": {"tta": "none"}}, by="test")  # same weights, another bundle
    with client_for(bundle_copy, monitored) as c:
        r = c.get("/v1/monitor", headers=bearer(ADMIN))
        assert r.status_code == 409 and "was made for bundle" in r.json()["error"]["message"]


SCRIPT = """
import json, sys
from fastapi.testclient import TestClient
from lesionlens.serving.app import create_app
from lesionlens.serving.settings import ServeSettings
bundle, db, images, reference = sys.argv[1:5]
settings = ServeSettings(db=db, case_images=images, token="t", monitor_reference=reference)
with TestClient(create_app(bundle, settings)) as c:
    r = c.get("/v1/monitor", headers={"Authorization": "Bearer t"})
heavy = sorted(m for m in ("torch", "pandas", "lightning", "torchvision", "timm", "sklearn", "jinja2") if m in sys.modules)
print(json.dumps({"status": r.status_code, "windows": len(r.json()["windows"]), "heavy": heavy}))
"""


def test_the_monitor_runs_in_the_server_without_torch_pandas_or_sklearn(monitored, tmp_path):
    db = tmp_path / "cases.sqlite"
    shutil.copy(monitored.db, db)
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(monitored.bundle), str(db), str(monitored.images),
                          str(monitored.reference)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"status": 200, "windows": 4, "heavy": []}


def test_the_monitor_page_plots_the_windows_in_a_browser(monitored, browser, tmp_path):
    db = tmp_path / "cases.sqlite"
    shutil.copy(monitored.db, db)
    with server_process(monitored.bundle, "--db", str(db), "--case-images", str(monitored.images), "--token", ADMIN,
                        "--monitor-reference", str(monitored.reference)) as (url, _):
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/monitor")
        page.fill("#token", ADMIN)
        page.click("button.primary")
        page.wait_for_selector("#monitor:not([hidden])", timeout=60_000)
        assert page.text_content("#verdict").startswith("Latest window: DRIFT")
        assert page.locator("#windows tr").count() == 1 + 4
        for test, points in {"outputs": 4, "embeddings": 4, "class_mix": 4, "quality": 4, "quality_rate": 4,
                             "class_mix_share": 3 * 4}.items():  # a point per window (per class for the mix)
            assert page.locator(f"figure[data-test='{test}'] svg circle").count() == points, test
        assert page.locator("figure[data-test='outputs'] svg circle[r='5']").count() >= 1  # fired windows marked
        assert not errors
        page.close()


def test_the_report_file_draws_the_same_plots_offline(monitored, browser, tmp_path):
    from lesionlens.upkeep.monitor import monitor_files
    from lesionlens.upkeep.monitor_report import write_report

    html, _ = write_report(monitor_files(monitored.db, monitored.bundle, monitored.reference, WINDOW,
                                         monitored.images), tmp_path / "report")
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route("**/*", lambda route: route.abort() if not route.request.url.startswith("file:") else route.continue_())
    page.goto(html.as_uri())
    assert page.text_content("#verdict").strip() == "DRIFT"
    assert page.locator("figure[data-test='embeddings'] svg circle").count() == 4
    assert page.locator("#window-table tr").count() == 1 + 4
    assert not errors
    page.close()
