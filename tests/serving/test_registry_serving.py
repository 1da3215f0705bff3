"""Serving from a model registry: the champion answers and every answer names its digest; a
promotion or rollback swaps models under concurrent requests with no failure; a damaged bundle or
log is refused while the old model keeps serving; the challenger's shadow answers are stored, never
returned."""

from __future__ import annotations

import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from helpers import write_image

from lesionlens.bundle.registry import Registry, RegistryError
from lesionlens.cases.store import CaseStore
from lesionlens.durable import make_writable, write_atomic
from lesionlens.serving.app import create_app
from lesionlens.serving.process import server_process
from lesionlens.serving.settings import ServeSettings

WAIT_S = 30.0  # how long a test waits for the server to follow the registry (it takes about 0.1 s)


def variant(bundle: Path, root: Path, temperature: float) -> Path:
    """A copy of ``bundle`` with another calibration temperature: another digest and other answers."""
    copy = Path(shutil.copytree(bundle, root / f"model-t{temperature:g}"))
    card = json.loads((copy / "card.json").read_text())
    card["calibration"]["temperature"] = temperature
    (copy / "card.json").write_text(json.dumps(card))
    return copy


@pytest.fixture
def registry(exported_bundle, tmp_path) -> tuple[Registry, str, str]:
    """A registry whose champion is A, with B added as the challenger."""
    registry = Registry.open(tmp_path / "registry", create=True)
    a, _ = registry.add(variant(exported_bundle, tmp_path, 1.0))
    registry.promote(a, reason="first model")
    b, _ = registry.add(variant(exported_bundle, tmp_path, 4.0))
    registry.assign_challenger(b)
    return registry, a, b


def _jpeg(tmp_path: Path, seed: int) -> bytes:
    return write_image(tmp_path / f"x{seed}.jpg", (150, 60, 40), seed=seed, size=48).read_bytes()


def _predict(client, data: bytes):
    return client.post("/v1/predict", files={"file": ("x.jpg", data, "image/jpeg")})


def _wait_for(check, what: str):
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"the server did not {what} within {WAIT_S:g} s")
        time.sleep(0.02)


def _served(client) -> str:
    return client.get("/readyz").json()["model_digest"]


def test_serves_the_champion_with_its_digest_and_keeps_the_aliases_loaded(registry, tmp_path):
    reg, a, b = registry
    with TestClient(create_app(None, ServeSettings(registry=str(reg.root)))) as c:
        body = _predict(c, _jpeg(tmp_path, 0)).json()
        assert body["model"]["digest"] == a and body["model"]["name"] == "model-t1"  # its name, not its folder
        assert c.get("/readyz").json() == {"status": "ready", "model_digest": a, "registry_seq": reg.state().seq}
        info = c.get("/v1/model").json()["serving"]
        assert info["digest"] == a and info["registry"]["served"] == a
        assert info["registry"]["aliases"] == {"champion": a, "challenger": b, "previous": None}
        assert sorted(info["registry"]["loaded"]) == sorted([a, b]) and info["registry"]["problems"] == {}
        reg.assign_challenger(None)  # no alias names B any more: it is unloaded
        _wait_for(lambda: c.get("/v1/model").json()["serving"]["registry"]["loaded"] == [a], "unload B")
        assert _predict(c, _jpeg(tmp_path, 0)).json()["model"]["digest"] == a


def test_a_promotion_and_a_rollback_under_concurrent_requests_fail_nothing(registry, tmp_path):
    """Eight clients send requests without pause while the champion moves to B and back; every
    request succeeds and names A or B; a request started after the server reports the move names
    the new champion only (until the next move: a request that waited in the queue across the
    rollback is rightly answered by the model the server holds when it reaches the model)."""
    reg, a, b = registry
    images = [_jpeg(tmp_path, i) for i in range(8)]
    answers: list[tuple[float, int, str | None, float]] = []  # (started, status, digest, finished)
    stop = threading.Event()

    def client_loop(c, k: int) -> None:
        while not stop.is_set():
            started = time.monotonic()
            r = _predict(c, images[k])
            answers.append((started, r.status_code, r.json().get("model", {}).get("digest"), time.monotonic()))

    with TestClient(create_app(None, ServeSettings(registry=str(reg.root)))) as c, ThreadPoolExecutor(8) as pool:
        running = [pool.submit(client_loop, c, k) for k in range(8)]
        _wait_for(lambda: len(answers) >= 16, "answer")
        reg.promote(b, reason="test: B in", force=True)
        _wait_for(lambda: _served(c) == b, "serve B")
        promoted_at = time.monotonic()
        _wait_for(lambda: sum(1 for s, _, d, _ in answers if s > promoted_at) >= 16, "answer on B")
        rollback_asked_at = time.monotonic()
        reg.rollback(reason="test: back to A")
        _wait_for(lambda: _served(c) == a, "serve A again")
        rolled_back_at = time.monotonic()
        _wait_for(lambda: sum(1 for s, _, d, _ in answers if s > rolled_back_at) >= 16, "answer on A again")
        stop.set()
        for f in running:
            f.result()
        registry_info = c.get("/v1/model").json()["serving"]["registry"]
    assert [s for _, s, _, _ in answers] == [200] * len(answers)
    assert {d for _, _, d, _ in answers} == {a, b}
    assert {d for s, _, d, f in answers if s > promoted_at and f < rollback_asked_at} == {b}
    assert {d for s, _, d, _ in answers if s > rolled_back_at} == {a}
    assert registry_info["swaps"] == 2 and registry_info["seq"] == reg.state().seq


def test_a_damaged_champion_is_refused_and_the_old_one_keeps_serving(registry, exported_bundle, tmp_path):
    reg, a, _ = registry
    with TestClient(create_app(None, ServeSettings(registry=str(reg.root)))) as c:
        bad, _ = reg.add(variant(exported_bundle, tmp_path, 2.0))  # not loaded yet: the server loads it when promoted
        damaged = reg.bundle_path(bad) / "model.onnx"
        make_writable(reg.bundle_path(bad))
        damaged.chmod(0o644)
        damaged.write_bytes(b"half an onnx file")
        reg.promote(bad, reason="test: a damaged champion", force=True)
        seq = reg.state().seq
        _wait_for(lambda: c.get("/readyz").json()["registry_seq"] == seq, "read the new log")
        info = c.get("/v1/model").json()["serving"]["registry"]
        assert info["aliases"]["champion"] == bad and info["served"] == a
        assert f"not {bad[:12]}" in info["problems"][bad]  # "its files have digest ..., not <its name>"
        assert _predict(c, _jpeg(tmp_path, 1)).json()["model"]["digest"] == a

        entries = reg.log_path.read_bytes()  # a log that fails verification: refused, A still serves
        write_atomic(reg.log_path, entries.replace(b'"reason": "first model"', b'"reason": "edited later"'))
        with pytest.raises(RegistryError):
            reg.state()
        _wait_for(lambda: "log" in c.get("/v1/model").json()["serving"]["registry"]["problems"], "refuse the log")
        r = _predict(c, _jpeg(tmp_path, 2))
        assert r.status_code == 200 and r.json()["model"]["digest"] == a
        write_atomic(reg.log_path, entries)
        _wait_for(lambda: "log" not in c.get("/v1/model").json()["serving"]["registry"]["problems"], "reread the log")


def test_a_champion_with_other_classes_is_refused(registry, exported_bundle, tmp_path):
    """Answers and labels are per class: a bundle with another class list is not swapped in."""
    reg, a, _ = registry
    other = variant(exported_bundle, tmp_path, 3.0)
    card = json.loads((other / "card.json").read_text())
    card["classes"] = ["nv", "mel", "sek"]  # a model of other classes (same outputs, for the test)
    (other / "card.json").write_text(json.dumps(card))
    with TestClient(create_app(None, ServeSettings(registry=str(reg.root)))) as c:
        digest, _ = reg.add(other)
        reg.promote(digest, reason="test: other classes", force=True)
        _wait_for(lambda: digest in c.get("/v1/model").json()["serving"]["registry"]["problems"], "refuse it")
        assert "classes" in c.get("/v1/model").json()["serving"]["registry"]["problems"][digest]
        assert _predict(c, _jpeg(tmp_path, 4)).json()["model"]["digest"] == a


def test_shadow_answers_are_stored_for_stored_cases_and_never_returned(registry, tmp_path):
    reg, a, b = registry
    db = tmp_path / "cases.sqlite"
    settings = ServeSettings(registry=str(reg.root), shadow=True, db=str(db), store_predictions=True)
    with TestClient(create_app(None, settings)) as c:
        responses = [_predict(c, _jpeg(tmp_path, i)) for i in range(6)]
        _wait_for(lambda: c.get("/v1/model").json()["serving"]["shadow"]["stored"] == 6, "store 6 shadow answers")
        shadow = c.get("/v1/model").json()["serving"]["shadow"]
    assert all(r.status_code == 200 for r in responses)
    assert all(b not in r.text for r in responses) and all(r.json()["model"]["digest"] == a for r in responses)
    assert shadow["challenger"] == b and shadow["answered"] == 6 and shadow["dropped"] == 0
    store = CaseStore.open(db)
    try:
        ids = [r.json()["case_id"] for r in responses]
        assert {store.record(i).model_digest for i in ids} == {a}
        kept = store.shadow_answers(ids)
        assert sorted(s.case_id for s in kept) == sorted(ids) and {s.model_digest for s in kept} == {b}
        champion_answer = responses[0].json()["probabilities"]
        shadow_answer = next(s for s in kept if s.case_id == ids[0]).probabilities
        assert champion_answer != shadow_answer  # B's temperature flattens them: it really was B
    finally:
        store.close()


def test_shadow_work_beyond_its_queue_is_dropped_and_counted():
    import asyncio

    from lesionlens.serving.shadow import ShadowScorer

    async def burst() -> dict:
        scorer = ShadowScorer(lambda: object(), ServeSettings(shadow_queue=2), decode_pool=None)
        for i in range(5):  # the scorer's task is not started: nothing is taken off the queue
            scorer.submit(f"{i}.jpg", b"", {"top_class": "mel"})
        return scorer.counts.to_dict()

    counts = asyncio.run(burst())
    assert counts["queued"] == 2 and counts["dropped"] == 3


def test_serving_needs_one_source_and_shadow_needs_a_registry(exported_bundle, tmp_path):
    with pytest.raises(ValueError, match="not both or neither"):
        create_app(exported_bundle, ServeSettings(registry=str(tmp_path)))
    with pytest.raises(ValueError, match="not both or neither"):
        create_app(None, ServeSettings())
    with pytest.raises(ValueError, match="--registry"):
        create_app(exported_bundle, ServeSettings(shadow=True))
    empty = Registry.open(tmp_path / "empty", create=True)
    with pytest.raises(RegistryError, match="no champion"):
        create_app(None, ServeSettings(registry=str(empty.root)))


def test_the_serve_command_follows_a_rollback(registry, tmp_path):
    """`lesionlens serve --registry DIR` as a real process: it serves A, then B, then A again."""
    reg, a, b = registry
    reg.promote(b, reason="test: B in", force=True)
    data = _jpeg(tmp_path, 3)
    with server_process(None, "--registry", str(reg.root)) as (url, _), httpx.Client(base_url=url, timeout=30) as c:
        assert _predict(c, data).json()["model"]["digest"] == b
        reg.rollback(reason="test: back to A")
        _wait_for(lambda: _served(c) == a, "serve A")
        assert _predict(c, data).json()["model"]["digest"] == a
