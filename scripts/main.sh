#!/usr/bin/env bash
# README command 1: set up .venv if needed, then train and evaluate the default recipe.
#
# With ../shared/data/ham10000 present (override with LESIONLENS_SHARED=/path/to/shared): an
# ImageNet-pretrained EfficientNet-Lite0 fine-tuned on the 5,984 HAM10000 images (12-18 minutes of
# training on 2 CPU cores, by machine), evaluated on its validation split and, as external data, on the ISIC 2017 test set.
# Without it: a small built-in synthetic data set, so that every step still runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

SHARED=${LESIONLENS_SHARED:-../shared}
OUT=${LESIONLENS_OUT:-runs}
ll=.venv/bin/lesionlens

if [ -d "$SHARED/data/ham10000" ]; then
  bundle="$OUT/ham10000-efficientnet_lite0"
  weights=()
  [ -d "$SHARED/weights" ] && weights=(--weights "$SHARED/weights")
  if [ -f "$bundle/card.json" ]; then
    echo "$bundle already holds a finished run; remove it to train again."
  elif [ -f "$bundle/checkpoints/last.ckpt" ]; then
    "$ll" train --out "$bundle" --resume
  else
    # no --config: the built-in defaults are the default recipe (`lesionlens config` prints them)
    "$ll" train --data "$SHARED/data/ham10000" "${weights[@]}" --out "$bundle"
  fi
  if [ -d "$SHARED/data/isic2017" ]; then
    echo
    echo "External test: ISIC 2017 test set (other clinics and cameras; expect lower figures)"
    "$ll" evaluate "$bundle" --data "$SHARED/data/isic2017" --split test --out "$bundle/evaluations/isic2017-test" --report
  fi
else
  echo "No real data found at $SHARED/data/ham10000."
  echo "Running on a small built-in SYNTHETIC data set instead: its figures say nothing about skin lesions."
  echo "For real results, point LesionLens at your images, e.g.:"
  echo "  .venv/bin/lesionlens train --data path/to/class_folders_or_labels.csv --out runs/mine"
  echo
  "$ll" demo-data "$OUT/demo-data"
  rm -rf "$OUT/demo-simple_cnn"
  "$ll" train --config configs/demo.yaml --data "$OUT/demo-data" --out "$OUT/demo-simple_cnn"
  echo
  echo "Reminder: these figures come from synthetic drawings, not from dermoscopy."
fi
