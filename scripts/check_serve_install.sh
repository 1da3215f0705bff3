#!/usr/bin/env bash
# The `serve` extra on its own, as a deployment installs it: a separate virtual environment with
# only `pip install -c constraints.txt .[serve]` (no torch), where `lesionlens serve --help` must
# work and a real server process must answer a prediction for an exported bundle, and a multi-task
# bundle's server a mask with its outline and measurements (/v1/segment) as well.
#   scripts/check_serve_install.sh        # CI runs it after the tests; uses .venv to make the bundle
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
venv=${SERVE_VENV:-$work/serve-venv}
source scripts/fresh_venv.sh
fresh_venv serve "$venv" torch torchvision pandas lightning timm
"$venv/bin/lesionlens" serve --help > /dev/null

echo "making a tiny exported classifier and a tiny exported multi-task bundle with .venv"
bundles=$(.venv/bin/python - "$work" <<'PY'
import logging, sys
from pathlib import Path
sys.path[:0] = ["tests"]
logging.disable(logging.WARNING)
from tiny_bundle import make_exported_bundle, make_segmentation_bundle
print(make_exported_bundle(Path(sys.argv[1])), make_segmentation_bundle(Path(sys.argv[1]) / "multi", task="multitask"))
PY
)
read -r bundle multitask <<< "$(echo "$bundles" | tail -1)"
image=$(ls ../shared/data/ham10000/images/*.jpg 2>/dev/null | head -1 || true)
image=${image:-$(find "$work/images" -name '*.jpg' | head -1)}
"$venv/bin/python" scripts/serve_smoke.py "$bundle" "$image" "$multitask"
