#!/usr/bin/env bash
# Create .venv at the repository root and install LesionLens with the pinned versions in
# constraints.txt. Does nothing when the installed set is already up to date.
#   scripts/setup.sh            # training + tests (the `dev` extra)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

# tcmalloc: `lesionlens train` preloads it when present, for 1.3-1.5x faster training steps on a CPU
# (lesionlens.training.allocator, benchmarks/train_throughput.py). Installed from Debian's packages
# where this user may; otherwise a hint, and training runs on glibc's allocator.
have_fast_malloc() {
  for f in /usr/lib/*/libtcmalloc_minimal.so* /usr/lib/libtcmalloc_minimal.so* /usr/lib64/libtcmalloc_minimal.so* \
      /usr/local/lib/libtcmalloc_minimal.so* /usr/lib/*/libjemalloc.so* /usr/lib64/libjemalloc.so*; do
    [ -e "$f" ] && return 0
  done
  return 1
}
if [ "$(uname -s)" = Linux ] && ! have_fast_malloc; then
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo -n"
  if command -v apt-get >/dev/null 2>&1 && { [ -z "$sudo_" ] || sudo -n true 2>/dev/null; }; then
    echo "installing Debian's libtcmalloc-minimal4 (a faster memory allocator for training)"
    { $sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq libtcmalloc-minimal4; } \
      >/dev/null 2>&1 || echo "could not install libtcmalloc-minimal4; training runs on glibc's allocator, slower" >&2
  else
    echo "hint: install tcmalloc (Debian / Ubuntu: apt install libtcmalloc-minimal4) for 1.3-1.5x faster training on a CPU" >&2
  fi
fi
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
