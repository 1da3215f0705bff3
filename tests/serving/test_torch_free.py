"""The server's modules import neither torch, pandas nor lightning (the `serve` extra has none)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, sys
from fastapi.testclient import TestClient
from lesionlens.cli import build_parser
from lesionlens.serving.app import create_app
import lesionlens.bundle.registry  # the server follows a registry: it must stay torch-free too
import lesionlens.serving.registry_models, lesionlens.serving.shadow  # serve --registry, --shadow
build_parser().parse_args(["serve", sys.argv[1]])
with TestClient(create_app(sys.argv[1])) as c:
    status = c.get("/readyz").status_code
heavy = sorted(m for m in ("torch", "pandas", "lightning", "torchvision", "timm", "sklearn") if m in sys.modules)
print(json.dumps({"status": status, "heavy": heavy}))
"""


def test_server_runs_without_importing_torch_pandas_or_lightning(exported_bundle):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(exported_bundle)], capture_output=True, text=True,
                         check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"status": 200, "heavy": []}
