"""Start `lesionlens serve BUNDLE` and check one real prediction over HTTP, then a server with a case
store (`--db`, whose migrations ship as package data) and one submitted case, then (given a
multi-task bundle) a server answering /v1/segment with a mask, an outline and measurements as well
as /v1/predict; standard library only, so it runs in the serve-only environment
(scripts/check_serve_install.sh).

    python scripts/serve_smoke.py BUNDLE IMAGE [MULTITASK_BUNDLE]
"""

from __future__ import annotations

import base64
import importlib.util
import json
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from pathlib import Path


def _multipart(path: Path, fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode()
                    for k, v in (fields or {}).items())
    body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
             f"Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def main(bundle: str, image: str, multitask: str | None = None) -> int:
    if importlib.util.find_spec("torch") is not None:
        print("torch is importable here: this is not a serve-only environment", file=sys.stderr)
        return 1
    from lesionlens.serving.process import ServerStartError, server_process

    try:
        with server_process(bundle) as (base, _):
            _check(base, image)
        with tempfile.TemporaryDirectory() as tmp:
            db = str(Path(tmp) / "cases.sqlite")
            with server_process(bundle, "--db", db) as (base, _):
                _check_cases(base, image)
            subprocess.run([sys.executable, "-m", "lesionlens.cli", "cases", "check", "--db", db], check=True)
        if multitask:
            with server_process(multitask) as (base, _):
                _check_segment(base, image)
        return 0
    except ServerStartError as e:
        print(e, file=sys.stderr)
        return 1


def _check(base: str, image: str) -> None:
    with urllib.request.urlopen(f"{base}/", timeout=10) as r:  # the page ships as package data
        assert "not a diagnosis" in r.read().decode().lower(), "the web page is missing"
    body, content_type = _multipart(Path(image))
    request = urllib.request.Request(f"{base}/v1/predict?explain=true", body, {"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as r:
        answer = json.load(r)
    total = sum(answer["probabilities"].values())
    assert abs(total - 1) < 1e-6, answer
    assert answer["heatmap"]["png_base64"], "no heatmap"
    print(f"serve-only install OK: {Path(image).name} -> {answer['top_class']} "
          f"({answer['top_probability']:.3f}) with {answer['model']['runtime']}, no torch")


def _check_cases(base: str, image: str) -> None:
    body, content_type = _multipart(Path(image), {"request_id": "smoke-1", "consent_research": "true", "site": "back"})
    request = urllib.request.Request(f"{base}/v1/cases", body, {"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as r:
        answer = json.load(r)
    assert answer["created"] and len(answer["case_id"]) == 32, answer
    print(f"case store OK (SQLite, migrated from package data): case {answer['case_id']}, "
          f"quality problems {[q['code'] for q in answer['quality']]}")


def _check_segment(base: str, image: str) -> None:
    body, content_type = _multipart(Path(image), {"mm_per_pixel": "0.05"})
    request = urllib.request.Request(f"{base}/v1/segment", body, {"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as r:
        answer = json.load(r)
    png = base64.b64decode(answer["mask_png_base64"])
    assert png.startswith(b"\x89PNG"), "the mask is not a PNG"
    m = answer["measurements"] or {}
    if answer["lesion"]:
        assert m["area_px"] > 0 and answer["outline"], answer
        assert abs(m["diameter_mm"] - 0.05 * m["diameter_px"]) < 1e-6, m
    body, content_type = _multipart(Path(image))
    request = urllib.request.Request(f"{base}/v1/predict", body, {"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as r:
        classes = json.load(r)
    assert abs(sum(classes["probabilities"].values()) - 1) < 1e-6, classes
    print(f"segmentation OK (multi-task bundle, no torch): {answer['width']}x{answer['height']} mask, "
          f"lesion {answer['lesion']}, area {m.get('area_px')} px; its class head: {classes['top_class']}")


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
