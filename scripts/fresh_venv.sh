# Sourced by the install checks: `fresh_venv EXTRA VENV MODULE...` makes a new virtual environment
# VENV with only `pip install -c constraints.txt .[EXTRA]`, and fails if any MODULE is importable
# there (a package the extra must not pull in, or one whose presence would hide a missing dependency).
fresh_venv() {
  local extra=$1 venv=$2
  shift 2
  echo "$extra-only install into $venv"
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c constraints.txt ".[$extra]" 2>&1 \
    | grep -v "is ignored" || true
  "$venv/bin/python" - "$extra" "$@" <<'PY'
import importlib.util, sys
present = [m for m in sys.argv[2:] if importlib.util.find_spec(m)]
sys.exit(f"the {sys.argv[1]} extra pulled in {present}" if present else 0)
PY
}
