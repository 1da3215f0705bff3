"""The new-clinic scenario of issue 14, end to end through the real server and CLI: a HAM10000 champion
meets a clinic whose images are ISIC 2017's; the monitor notices, the clinic's labels arrive, a
challenger is retrained, gated, promoted under load, and both are scored on ISIC 2017 test.

    python benchmarks/new_clinic.py --champion runs/upkeep/champion --work runs/new-clinic

--champion is a trained and exported bundle of the default recipe (`scripts/main.sh`, then
`lesionlens export`). Each step leaves its outputs in --work and is skipped on a re-run where they
exist, so the scenario can be resumed. Steps:

 1. registry with the champion; its reference profile on half of its HAM10000 validation images
    (the other half is the "before" traffic, so the in-distribution check uses unseen images)
 2. the gate set: ISIC 2017 validation (150 images, less any altered copy of a clinic image): the
    clinic's kind of images, official, and disjoint from the clinic's cases, so no model trains on it
 3. the server (serve --registry --db): the champion's own kind of cases (the other half of HAM10000
    validation, sent without research consent: predictions only, never exported); monitor verdict
 4. the new clinic: the 2,000 ISIC 2017 training images as cases (research consent); monitor verdict
 5. their labels arrive through POST /v1/cases/{id}/labels (mel / bkl for seborrheic keratosis / nv)
 6. lesionlens cases export; lesionlens retrain (the champion's recipe, snapshot = HAM10000 + cases,
    grouped), with the gate on the gate set
 7. promotion while a bounded client keeps requests in flight: answers per model digest, failures
 8. both models on ISIC 2017 test (600) and on the champion's HAM10000 validation images:
    lesionlens report (95% intervals, paired bootstrap, DeLong)
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

from lesionlens.bundle.split import read_split
from lesionlens.quality.duplicates import HASH_THRESHOLD, cross_hash_pairs
from lesionlens.quality.fingerprint import scan_files
from lesionlens.serving.process import server_process

TOKEN = "new-clinic-admin-token"


def cli(*args: str, check: bool = True, log: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``lesionlens ARGS`` and echo it; its output goes to ``log`` too."""
    print("$ lesionlens " + " ".join(args), flush=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lesionlens.cli", *args], capture_output=True, text=True)
    print(f"  ({time.perf_counter() - started:.0f} s, exit {done.returncode})")
    tail = (done.stdout + done.stderr).strip().splitlines()[-25:]
    print("\n".join(f"  | {line}" for line in tail), flush=True)
    if log is not None:
        log.write_text(done.stdout + done.stderr)
    if check and done.returncode not in (0,):
        raise SystemExit(f"lesionlens {args[0]} failed with {done.returncode}")
    return done


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def without_copies(rows: list[dict], clinic_hashes) -> tuple[list[dict], list[str]]:
    """``rows`` as a CSV table for ISIC 2017's labels, less the images that are copies (pHash over the
    8 views) of a clinic image: the gate and evaluate refuse images the challenger trained on. ISIC
    2017 has such copies across its partitions: the gate's check found 1 of the 150 validation images
    (ISIC_0015124) and evaluate's 4 of the 600 test images; this check of the files also finds
    ISIC_0012127 (distance 0), which the gate rightly does not flag: its copy fell in the clinic cases'
    validation partition, so the challenger never trained on it."""
    prints = scan_files([Path(r["path"]) for r in rows])
    copies = {p.a for p in cross_hash_pairs(prints.hashes, clinic_hashes[:, :1].repeat(8, axis=1), HASH_THRESHOLD)}
    names = {"mel": "melanoma", "bkl": "seborrheic_keratosis", "nv": "nevus"}
    kept = [{"image": r["path"], "label": names[r["label"]]} for i, r in enumerate(rows) if i not in copies]
    return kept, [rows[i]["image_id"] for i in sorted(copies)]


def isic_rows(isic: Path, part: str) -> list[dict]:
    """(image path, HAM10000 label) of an ISIC 2017 partition: melanoma -> mel, SK -> bkl, else nv."""
    folder = {"train": "ISIC-2017_Training", "val": "ISIC-2017_Validation", "test": "ISIC-2017_Test_v2"}[part]
    out = []
    with open(isic / f"{folder}_Part3_GroundTruth.csv") as f:
        for r in csv.DictReader(f):
            label = "mel" if float(r["melanoma"]) else "bkl" if float(r["seborrheic_keratosis"]) else "nv"
            out.append({"path": str(isic / f"{folder}_Data" / f"{r['image_id']}.jpg"), "label": label,
                        "image_id": r["image_id"]})
    return out


async def submit(url: str, rows: list[dict], consent: bool, tag: str, concurrency: int = 8) -> list[dict]:
    """Send each image as a case (request ids make a re-run idempotent); returns the answers."""
    limits = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(timeout=120, headers=headers) as client:
        async def one(r: dict) -> dict:
            async with limits:
                data = {"request_id": f"{tag}-{r['image_id']}", "consent_research": str(consent).lower(),
                        "lesion_id": r["image_id"], "consent_version": "clinic-2026" if consent else ""}
                if not consent:
                    data.pop("consent_version")
                resp = await client.post(f"{url}/v1/cases", data=data,
                                         files={"file": (Path(r["path"]).name, Path(r["path"]).read_bytes(), "image/jpeg")})
                body = resp.json()
                if resp.status_code != 200:
                    raise RuntimeError(f"{r['path']}: {resp.status_code} {body}")
                return {**r, "case_id": body["case_id"], "model": body["model"].get("digest")}
        return await asyncio.gather(*(one(r) for r in rows))


async def label(url: str, answers: list[dict], concurrency: int = 8) -> int:
    limits = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        async def one(a: dict) -> None:
            async with limits:
                resp = await client.post(f"{url}/v1/cases/{a['case_id']}/labels",
                                         json={"label": a["label"], "source": "histo"})
                if resp.status_code != 200:
                    raise RuntimeError(f"{a['case_id']}: {resp.status_code} {resp.text}")
        await asyncio.gather(*(one(a) for a in answers))
    return len(answers)


async def load_during(url: str, files: list[bytes], in_flight: int, action, after: int, total: int) -> dict:
    """Keep ``in_flight`` predictions going; after ``after`` answers run ``action`` in a thread;
    stop after ``total``. Every answer's model digest and time are kept."""
    answers: list[tuple[float, str | None, int]] = []
    moved: dict = {}
    sent = 0
    lock = asyncio.Lock()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(timeout=60, headers=headers, limits=limits) as client:
        async def worker() -> None:
            nonlocal sent
            while True:
                async with lock:
                    if sent >= total:
                        return
                    i = sent
                    sent += 1
                try:
                    resp = await client.post(f"{url}/v1/predict", files={"file": (f"{i}.jpg", files[i % len(files)])})
                    digest = resp.json().get("model", {}).get("digest") if resp.status_code == 200 else None
                    answers.append((time.monotonic(), digest, resp.status_code))
                except httpx.HTTPError as e:
                    answers.append((time.monotonic(), None, -1))
                    print(f"  request failed: {e!r}")
                if len(answers) == after:
                    def run() -> None:
                        moved["started"] = time.monotonic()
                        action()
                        moved["returned"] = time.monotonic()
                    threading.Thread(target=run, daemon=True).start()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
    return {"answers": answers, **moved}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--champion", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("runs/new-clinic"))
    ap.add_argument("--shared", type=Path, default=Path("../shared"))
    ap.add_argument("--window", type=int, default=200)
    ap.add_argument("--in-flight", type=int, default=32)
    ap.add_argument("--load-requests", type=int, default=800)
    args = ap.parse_args()
    work, ham, isic = args.work, args.shared / "data" / "ham10000", args.shared / "data" / "isic2017"
    work.mkdir(parents=True, exist_ok=True)
    registry, db, figures = work / "registry", work / "cases.sqlite", {}

    # 1. registry, reference profile on half of the champion's validation images
    # split.csv lists images grouped by class: a random half each, and the "before" traffic in a random
    # order, as a clinic's stream of patients would be (in file order every window would be one class)
    val = [r for r in read_split(args.champion) if r.partition == "val"]
    order = np.random.default_rng(0).permutation(len(val))
    reference_half, before_half = [val[i] for i in order[0::2]], [val[i] for i in order[1::2]]
    ref_csv = write_csv(work / "reference.csv", [{"path": r.path, "label": r.label} for r in reference_half])
    if not (registry / "registry.json").exists():
        cli("registry", "add", str(registry), str(args.champion), "--champion",
            "--reason", "default recipe on HAM10000 (scripts/main.sh)", "--who", "scenario")
    if not (work / "reference.npz").exists():
        cli("monitor", "reference", str(args.champion), "--data", str(ref_csv), "--out", str(work / "reference.npz"))
    # 2. the gate set: ISIC 2017 validation less its altered copies of the clinic's images (one,
    # ISIC_0015124, pHash distance 18 from a training image: the gate refuses a set that overlaps
    # the challenger's training data, and the challenger will train on the clinic's cases)
    clinic_hashes = scan_files([Path(r["path"]) for r in isic_rows(isic, "train")]).hashes
    if not (work / "gateset").exists():
        kept, figures["gate_set_left_out"] = without_copies(isic_rows(isic, "val"), clinic_hashes)
        cli("gate", "freeze", str(write_csv(work / "gate-set.csv", kept)), "--out", str(work / "gateset"))
    (work / "figures.json").write_text(json.dumps(figures, indent=2, default=str))

    clinic = isic_rows(isic, "train")
    before = [{"path": r.path, "label": r.label, "image_id": r.image_id} for r in before_half]
    flags = ["--registry", str(registry), "--db", str(db), "--token", TOKEN]
    with server_process(None, *flags, log_path=work / "server.log", timeout=180) as (url, _):
        # 3. the champion's own kind of cases
        t = time.perf_counter()
        asyncio.run(submit(url, before, consent=False, tag="ham"))
        figures["before_cases_s"] = time.perf_counter() - t
        cli("monitor", "--db", str(db), "--registry", str(registry), "--reference", str(work / "reference.npz"),
            "--window", str(args.window), "--out", str(work / "monitor-before"), check=False,
            log=work / "monitor-before.txt")
        # 4. the new clinic's cases
        t = time.perf_counter()
        answers = asyncio.run(submit(url, clinic, consent=True, tag="clinic"))
        figures["clinic_cases_s"] = time.perf_counter() - t
        figures["clinic_models"] = dict(Counter(a["model"] for a in answers))
        cli("monitor", "--db", str(db), "--registry", str(registry), "--reference", str(work / "reference.npz"),
            "--window", str(args.window), "--out", str(work / "monitor-after"), check=False,
            log=work / "monitor-after.txt")
        # 5. labels
        t = time.perf_counter()
        figures["labels"] = asyncio.run(label(url, answers))
        figures["labels_s"] = time.perf_counter() - t

        # 6. export, retrain, gate
        if not (work / "export").exists():
            cli("cases", "export", "--db", str(db), "--out", str(work / "export"))
        if not (work / "retrain" / "challenger" / "card.json").exists():
            t = time.perf_counter()
            cli("retrain", "--registry", str(registry), "--cases", str(work / "export"), "--out",
                str(work / "retrain"), "--gate-set", str(work / "gateset"), check=False, log=work / "retrain.txt")
            figures["retrain_s"] = time.perf_counter() - t
        gate = json.loads((work / "retrain" / "gate" / "gate.json").read_text())
        figures["gate"] = {"decision": gate["decision"], "reasons": gate.get("reasons")}
        (work / "figures.json").write_text(json.dumps(figures, indent=2, default=str))

        # 7. promotion under load
        files = [Path(r["path"]).read_bytes() for r in isic_rows(isic, "test")[:200]]
        reason = "retrained on HAM10000 + the clinic's 2,000 labelled cases; gate on ISIC 2017 validation"
        promote = ["registry", "promote", str(registry), "challenger", "--gate",
                   str(work / "retrain" / "gate" / "gate.json"), "--reason", reason, "--who", "scenario"]
        if gate["decision"] != "pass":
            promote += ["--force"]
            promote[promote.index("--reason") + 1] = reason + (" -- FORCED for the scenario: the gate said "
                                                                f"{gate['decision']}: {'; '.join(gate.get('reasons') or [])}")
        load = asyncio.run(load_during(url, files, args.in_flight, lambda: cli(*promote), args.load_requests // 3,
                                       args.load_requests))
        after = [a for a in load["answers"] if a[0] >= load["returned"]]
        new_digest = after[-1][1] if after else None
        first_new = min((a[0] for a in load["answers"] if a[1] == new_digest), default=None)
        figures["promotion"] = {
            "requests": len(load["answers"]),
            "failed": sum(1 for a in load["answers"] if a[2] != 200),
            "answers_by_model": dict(Counter((a[1] or "none")[:12] for a in load["answers"])),
            "first_new_answer_after_cli_returned_s": None if first_new is None else first_new - load["returned"],
            "old_answers_after_cli_returned": sum(1 for a in after if a[1] != new_digest),
        }
        (work / "figures.json").write_text(json.dumps(figures, indent=2, default=str))
    cli("registry", "verify", str(registry))
    cli("registry", "history", str(registry), log=work / "history.txt")

    # 8. both models on ISIC 2017 test and on the champion's HAM10000 validation images
    state = json.loads((registry / "aliases.json").read_text())["aliases"]
    champion, challenger = registry / "bundles" / state["previous"], registry / "bundles" / state["champion"]
    if not (work / "report-isic-test" / "report.json").exists():
        kept, figures["test_left_out"] = without_copies(isic_rows(isic, "test"), clinic_hashes)
        test_csv = write_csv(work / "isic-test.csv", kept)
        cli("report", str(champion), str(challenger), "--data", str(test_csv), "--split", "all",
            "--out", str(work / "report-isic-test"), log=work / "report-isic-test.txt")
    ham_val = write_csv(work / "ham-val.csv", [{"path": r.path, "label": r.label} for r in val])
    if not (work / "report-ham-val" / "report.json").exists():
        cli("report", str(champion), str(challenger), "--data", str(ham_val), "--split", "all",
            "--out", str(work / "report-ham-val"), log=work / "report-ham-val.txt")
    (work / "figures.json").write_text(json.dumps(figures, indent=2, default=str))
    print(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
