# The npm socket.io-client (pinned by tests/interop/socketio/package-lock.json) that broadcaster's
# Socket.IO tests drive with node (sourced by scripts/test after 30-node.sh installed node/npm).
# Installs with `npm ci`; skipped when node_modules came from the same lockfile (stamp file).
sio_dir="$root/tests/interop/socketio"
sio_stamp="$sio_dir/node_modules/.lockfile-sha256"
sio_want=$(sha256sum "$sio_dir/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$sio_stamp" 2>/dev/null)" != "$sio_want" ]; then
  log "npm ci (socket.io-client for the Socket.IO tests)"
  (cd "$sio_dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$sio_want" > "$sio_stamp"
fi
export WA_SOCKETIO_CLIENT_DIR="$sio_dir"
