"""The server's modules import neither torch, pandas nor lightning (the `serve` extra has none), for
classifiers and for segmentation models (/v1/segment: the mask clean-up, outline and measurements)."""

from __future__ import annotations

import json
import subprocess
import sys

from serving.segment_helpers import lesion_upload

SCRIPT = """
import json, sys
from fastapi.testclient import TestClient
from lesionlens.cli import build_parser
from lesionlens.serving.app import create_app
import lesionlens.bundle.registry  # the server follows a registry: it must stay torch-free too
import lesionlens.serving.registry_models, lesionlens.serving.shadow  # serve --registry, --shadow
import lesionlens.evaluation.mask_ops, lesionlens.evaluation.measurements  # the mask code the server runs
import lesionlens.evaluation.outline, lesionlens.evaluation.lesion
build_parser().parse_args(["serve", sys.argv[1]])
with TestClient(create_app(sys.argv[1])) as c:
    status = c.get("/readyz").status_code
    if len(sys.argv) > 2:  # a segmentation bundle: one image through /v1/segment
        with open(sys.argv[2], "rb") as f:
            r = c.post("/v1/segment", files={"file": ("lesion.png", f.read(), "image/png")})
        status = r.status_code if r.json()["measurements"] else -1
heavy = sorted(m for m in ("torch", "pandas", "lightning", "torchvision", "timm", "sklearn") if m in sys.modules)
print(json.dumps({"status": status, "heavy": heavy}))
"""


def test_server_runs_without_importing_torch_pandas_or_lightning(exported_bundle):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(exported_bundle)], capture_output=True, text=True,
                         check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"status": 200, "heavy": []}


def test_segmentation_runs_without_importing_torch_pandas_or_lightning(segmentation_bundle, tmp_path):
    image = tmp_path / "lesion.png"
    image.write_bytes(lesion_upload()[0])
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(segmentation_bundle), str(image)], capture_output=True,
                         text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"status": 200, "heavy": []}
