# whatsapp-rust 0.7.0 (crates.io, unmodified) as the second third-party peer of the wa-emulator
# interop tests (crates/wa-emulator/tests/whatsapp_rust.rs; sourced by scripts/test).
# tests/interop/whatsapp-rust is its own Cargo project with its own lock file, excluded from the
# workspace: whatsapp-rust's SQLite store links libsqlite3-sys 0.37, our rusqlite 0.41 links
# 0.39, and one dependency graph can hold only one `links = "sqlite3"` package.
# Built at most once per run into target/wa-rs-peer (or WA_RS_PEER_TARGET_DIR): a clean build
# costs ~390 CPU-seconds and ~1 GB. The binary is then kept in WA_RS_PEER_CACHE (default
# ~/.cache/wa-rs-peer) under a key of the peer's Cargo.toml, Cargo.lock, sources, RUSTFLAGS and
# `rustc -vV`, so other worktrees and later runs on the same machine reuse it without building.
# Exports WA_RS_PEER_BIN. Can also be run on its own: it builds and prints the binary's path.
wa_rs_root="${root:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
wa_rs_dir="$wa_rs_root/tests/interop/whatsapp-rust"
wa_rs_target="${WA_RS_PEER_TARGET_DIR:-$wa_rs_root/target/wa-rs-peer}"
wa_rs_key=$( (rustc -vV; echo "RUSTFLAGS=${RUSTFLAGS:-}"; cd "$wa_rs_dir" && cat Cargo.toml Cargo.lock src/*.rs) \
  | sha256sum | cut -c1-16)
wa_rs_cached="${WA_RS_PEER_CACHE:-$HOME/.cache/wa-rs-peer}/$wa_rs_key/wa-rs-peer"
if [ ! -x "$wa_rs_cached" ]; then
  if declare -F log >/dev/null; then log "cargo build (whatsapp-rust 0.7 test peer, $wa_rs_target)"; fi
  cargo build --locked --quiet --manifest-path "$wa_rs_dir/Cargo.toml" --target-dir "$wa_rs_target" \
    || { echo "building the whatsapp-rust test peer failed" >&2; exit 1; }
  mkdir -p "$(dirname "$wa_rs_cached")"
  # Copy then rename: a concurrent run never sees a half-written binary.
  cp "$wa_rs_target/debug/wa-rs-peer" "$wa_rs_cached.tmp.$$" && mv -f "$wa_rs_cached.tmp.$$" "$wa_rs_cached"
fi
export WA_RS_PEER_BIN="$wa_rs_cached"
if [ "${BASH_SOURCE[0]}" = "$0" ]; then echo "$WA_RS_PEER_BIN"; fi
