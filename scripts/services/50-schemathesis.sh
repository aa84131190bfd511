# schemathesis (PyPI) for broadcaster's OpenAPI fuzz test (sourced by scripts/test).
# Installs exactly tests/interop/schemathesis/requirements.txt (schemathesis and its pinned
# dependency set) into a venv there; skipped when the venv was built from the same file (stamp).
st_dir="$root/tests/interop/schemathesis"
st_venv="$st_dir/.venv"
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  log "installing python3-venv"
  apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
fi
st_stamp="$st_venv/.requirements-sha256"
st_want=$(sha256sum "$st_dir/requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$st_stamp" 2>/dev/null)" != "$st_want" ] || [ ! -x "$st_venv/bin/st" ]; then
  log "pip install schemathesis (venv $st_venv)"
  rm -rf "$st_venv"
  python3 -m venv "$st_venv"
  "$st_venv/bin/pip" install --quiet --disable-pip-version-check -r "$st_dir/requirements.txt"
  echo "$st_want" > "$st_stamp"
fi
export WA_SCHEMATHESIS_ST="$st_venv/bin/st"
