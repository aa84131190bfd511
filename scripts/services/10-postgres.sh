# Sourced by scripts/test. Starts a throwaway PostgreSQL (Debian's 15) for the wa-store tests:
# a fresh cluster in a temp dir, trust auth, listening on 127.0.0.1 only on a free port.
# TLS is on (ssl=on) with a throwaway CA and a server certificate for 127.0.0.1 and localhost;
# plain connections keep working (no hostssl rule), so tests choose per connection.
# Exports WA_TEST_PG_URL (an admin URL; tests create their own databases), WA_TEST_PG_CA (the
# PEM of the CA that signed the server certificate) and WA_TEST_PG_OTHER_CA (an unrelated CA,
# for tests that must see the certificate refused).

wa_free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( (RANDOM % 20000) + 30000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}

wa_pg_bin() {
  local d best=""
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && best="$d"; done
  echo "$best"
}

pg_bin=$(wa_pg_bin)
if [ -z "$pg_bin" ]; then
  log "installing postgresql (Debian package)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  pg_bin=$(wa_pg_bin)
fi
[ -n "$pg_bin" ] || { echo "postgresql install failed" >&2; exit 1; }

if ! command -v openssl >/dev/null 2>&1; then
  log "installing openssl (Debian package)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi

pg_dir=$(mktemp -d /tmp/wa-pg.XXXXXX)
# Throwaway PKI (EC P-256: fast to generate): ca.pem signs server.pem; other-ca.pem signs nothing.
(
  set -e
  cd "$pg_dir"
  for ca in ca other-ca; do
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -subj "/CN=wa-store test $ca" -keyout "$ca.key" -out "$ca.pem" 2>/dev/null
  done
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile server.ext -out server.pem 2>/dev/null
  rm -f ca.key other-ca.key server.csr server.ext ca.srl
  chmod 0600 server.key
) || { echo "generating the PostgreSQL test certificates failed" >&2; exit 1; }
pg_as() { "$@"; }
if [ "$(id -u)" = 0 ]; then
  # initdb refuses to run as root: run the server as the package's postgres user.
  chown postgres "$pg_dir" "$pg_dir/server.key" "$pg_dir/server.pem"
  pg_as() { runuser -u postgres -- "$@"; }
fi
pg_port=$(wa_free_port)
log "starting postgresql ($pg_bin) on 127.0.0.1:$pg_port"
pg_as "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U postgres --no-sync >"$pg_dir/initdb.log" 2>&1 \
  || { cat "$pg_dir/initdb.log" >&2; exit 1; }
pg_as "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_dir -c max_connections=300 \
  -c ssl=on -c ssl_cert_file=$pg_dir/server.pem -c ssl_key_file=$pg_dir/server.key" start >/dev/null \
  || { cat "$pg_dir/server.log" >&2; exit 1; }
cleanup_actions+=("pg_as '$pg_bin/pg_ctl' -D '$pg_dir/data' -m immediate stop >/dev/null 2>&1; rm -rf '$pg_dir'")
export WA_TEST_PG_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
export WA_TEST_PG_CA="$pg_dir/ca.pem"
export WA_TEST_PG_OTHER_CA="$pg_dir/other-ca.pem"
