#!/usr/bin/env bash
# The training install on its own, as the README documents it: a separate virtual environment with
# only `pip install -c constraints.txt .[train]` (no dev or serve extra), where a user must be able to
# train, evaluate, predict and export (the export is checked in ONNX Runtime against PyTorch).
#   scripts/check_train_install.sh        # CI runs it after the tests
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
venv=${TRAIN_VENV:-$work/train-venv}
source scripts/fresh_venv.sh
fresh_venv train "$venv" fastapi uvicorn pytest playwright  # the dev extra's: they would hide a missing one
ll="$venv/bin/lesionlens"
export LESIONLENS_CACHE="$work/cache"
"$ll" demo-data "$work/data" --per-class 12 > /dev/null
"$ll" train --data "$work/data" --out "$work/bundle" --model tiny_cnn --no-pretrained --image-size 32 \
  --epochs 1 --batch-size 8 -q > /dev/null
"$ll" evaluate "$work/bundle" --data "$work/data" --bootstrap 50 -q > /dev/null
"$ll" predict "$work/bundle" "$work/data" --out "$work/predictions.csv" > /dev/null
"$ll" export "$work/bundle"
"$ll" check "$work/data" --out "$work/check" -q > /dev/null
echo "train-only install OK: train, evaluate, predict, export and check ran"
