# Node.js + Baileys 7.0.0-rc14 for the wa-emulator interop tests (sourced by scripts/test).
# Installs exactly what tests/interop/baileys/package-lock.json pins, with `npm ci`;
# skipped when node_modules was installed from the same lockfile (stamp file).
baileys_dir="$root/tests/interop/baileys"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "installing node.js and npm"
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
baileys_stamp="$baileys_dir/node_modules/.lockfile-sha256"
baileys_want=$(sha256sum "$baileys_dir/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$baileys_stamp" 2>/dev/null)" != "$baileys_want" ]; then
  log "npm ci (Baileys interop harness)"
  (cd "$baileys_dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$baileys_want" > "$baileys_stamp"
fi
export WA_BAILEYS_DIR="$baileys_dir"
