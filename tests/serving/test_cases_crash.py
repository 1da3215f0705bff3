"""`kill -9` of a real server during concurrent submissions loses no acknowledged case.

1,000 submissions with distinct request ids go to a real `lesionlens serve --db` process from 32
client threads; the server is killed with SIGKILL three times, each time after a random number
(50-250) of acknowledgements while others are in flight, and restarted, and every submission that
was not acknowledged is retried, as a phone app would. Afterwards: each
request id is stored exactly once, every acknowledged case is there with the id it was given, the
database passes its integrity check, no row points at a missing or damaged image, and orphan images
are collected. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import io
import random
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from lesionlens.cases.store import CaseStore
from lesionlens.serving.process import server_process

SUBMISSIONS = 1000
KILLS = 3


def photos(n: int = 16) -> list[bytes]:
    out = []
    for seed in range(n):
        rng = np.random.default_rng(seed)
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(buf, "JPEG")
        out.append(buf.getvalue())
    return out


def submit_all(url: str, pending: list[str], images: list[bytes], kill_after: int | None = None,
               proc=None) -> dict[str, str]:
    """Send every pending request id; returns request id -> case id for the acknowledged ones. With
    ``kill_after``, SIGKILL ``proc`` once that many are acknowledged (others still in flight)."""
    acked: dict[str, str] = {}
    lock = threading.Lock()
    local = threading.local()

    def one(rid: str) -> None:
        client = getattr(local, "client", None) or httpx.Client(timeout=30)
        local.client = client
        try:
            r = client.post(f"{url}/v1/cases", data={"request_id": rid, "consent_research": "true"},
                            files={"file": ("x.jpg", images[hash(rid) % len(images)], "image/jpeg")})
        except httpx.HTTPError:
            return  # the server died: not acknowledged, will be retried
        assert r.status_code == 200, r.text  # a live server never refuses a good submission
        with lock:
            acked[rid] = r.json()["case_id"]
            if kill_after is not None and len(acked) == kill_after:
                proc.send_signal(signal.SIGKILL)

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(one, pending))
    return acked


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_during_submissions_loses_no_acknowledged_case(exported_bundle, tmp_path, request, backend):
    db = str(tmp_path / "cases.sqlite") if backend == "sqlite" else request.getfixturevalue("postgres_url")
    images_dir = tmp_path / "images"
    flags = ["--db", db, "--case-images", str(images_dir)]
    images = photos()
    ids = [f"req-{i:05d}" for i in range(SUBMISSIONS)]
    acked: dict[str, str] = {}
    rng = random.Random(0)
    kills = partial = 0
    for attempt in range(KILLS + 3):
        pending = [rid for rid in ids if rid not in acked]
        if not pending:
            break
        with server_process(exported_bundle, *flags) as (url, proc):
            killing = kills < KILLS
            got = submit_all(url, pending, images, rng.randint(50, 250) if killing else None, proc)
            if killing:
                kills += proc.wait(10) is not None and proc.returncode == -signal.SIGKILL
                partial += 0 < len(got) < len(pending)  # killed in the middle of the stream
        for rid, case in got.items():
            assert acked.setdefault(rid, case) == case
    assert kills == KILLS, f"only {kills} kills landed during submissions"
    assert partial >= 1, "no kill landed while cases were being acknowledged"
    assert set(acked) == set(ids)

    with server_process(exported_bundle, *flags) as (url, _):  # retries of acknowledged ids store nothing
        again = submit_all(url, ids[:50], images)
    assert again == {rid: acked[rid] for rid in ids[:50]}

    store = CaseStore.open(db, images_dir)
    records = store.records()
    assert len(records) == SUBMISSIONS == len({r.metadata.request_id for r in records})
    assert {r.metadata.request_id: r.id for r in records} == acked
    found = store.check()
    assert found.ok, found.to_dict()
    store.collect_orphans(older_than_s=0)
    assert store.check().orphan_images == [] and store.check().temporary_files == 0
    store.close()
