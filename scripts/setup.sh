#!/usr/bin/env bash
# Create .venv at the repository root and install LesionLens with the pinned versions in
# constraints.txt. Does nothing when the installed set is already up to date.
#   scripts/setup.sh            # training + tests (the `dev` extra)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
stamp=.venv/.lesionlens-installed
wanted=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  echo "setting up .venv (first time: about 3 minutes, PyTorch is large)"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]" 2>&1 \
  | grep -v "is ignored" || true
.venv/bin/python -c "import lesionlens, torch, timm, lightning" # fail here, not later, if the install is broken
echo "$wanted" > "$stamp"
