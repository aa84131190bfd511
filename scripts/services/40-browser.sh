# Headless Chromium (Debian's `chromium`) + npm `playwright-core` and `axe-core` (accessibility
# checks run in the page) for the dashboard browser test
# (crates/broadcaster/tests/browser.rs; sourced by scripts/test). playwright-core downloads no
# browser: the test launches the Debian binary exported here. Idempotent: apt-get only when the
# binary is missing, `npm ci` only when the lockfile changed (stamp file).
browser_dir="$root/tests/browser"
if ! command -v chromium >/dev/null 2>&1; then
  log "installing chromium (Debian)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
BROADCASTER_CHROMIUM=$(command -v chromium)
export BROADCASTER_CHROMIUM
browser_stamp="$browser_dir/node_modules/.lockfile-sha256"
browser_want=$(sha256sum "$browser_dir/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$browser_stamp" 2>/dev/null)" != "$browser_want" ]; then
  log "npm ci (playwright-core for the dashboard browser test)"
  (cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$browser_want" > "$browser_stamp"
fi
export BROADCASTER_BROWSER_DIR="$browser_dir"
# Screenshots of each step of the walk; kept after the run as test artefacts.
export BROADCASTER_BROWSER_ARTIFACTS="${BROADCASTER_BROWSER_ARTIFACTS:-$root/target/browser-artifacts}"
