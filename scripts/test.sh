#!/usr/bin/env bash
# README command 2: set up .venv if needed, then run the whole test suite.
# Tests marked `shared` use the real data in ../shared and are skipped where it is absent; set
# LESIONLENS_REQUIRE_SHARED=1 to make its absence an error instead (CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# pytest exits 5 when it collects no test: with `set -e` that is a failure, as it should be.
exec .venv/bin/python -m pytest "$@"
