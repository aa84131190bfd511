# Sourced by scripts/test. Starts a MongoDB-wire server for the wa-store tests: secantusdb
# (PyPI; a wire-compatible server on WiredTiger with multi-document transactions), in-memory,
# on 127.0.0.1 only. Debian ships no mongod. Exports WA_TEST_MONGO_URL.

secantus_version="0.7.0b3"
secantus_venv="${WA_SECANTUS_VENV:-$HOME/.cache/wa-store/secantus-$secantus_version}"
if [ ! -x "$secantus_venv/bin/secantusd-py" ]; then
  log "installing secantusdb $secantus_version into $secantus_venv"
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
  fi
  rm -rf "$secantus_venv"
  python3 -m venv "$secantus_venv"
  "$secantus_venv/bin/pip" install -q --pre "secantusdb==$secantus_version"
fi

mongo_port=$(wa_free_port)
mongo_log=$(mktemp /tmp/wa-secantus.XXXXXX.log)
log "starting secantusdb on 127.0.0.1:$mongo_port"
"$secantus_venv/bin/secantusd-py" --host 127.0.0.1 --port "$mongo_port" --storage-path :memory: >"$mongo_log" 2>&1 &
mongo_pid=$!
cleanup_actions+=("kill $mongo_pid 2>/dev/null; rm -f '$mongo_log'")
for _ in $(seq 1 600); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$mongo_port") 2>/dev/null; then break; fi
  kill -0 "$mongo_pid" 2>/dev/null || { cat "$mongo_log" >&2; echo "secantusdb exited" >&2; exit 1; }
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$mongo_port") 2>/dev/null || { cat "$mongo_log" >&2; echo "secantusdb did not start" >&2; exit 1; }
export WA_TEST_MONGO_URL="mongodb://127.0.0.1:$mongo_port/?directConnection=true"
