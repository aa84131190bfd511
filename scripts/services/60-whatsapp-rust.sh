# whatsapp-rust 0.7.0 (crates.io, unmodified) as the second third-party peer of the wa-emulator
# interop tests (crates/wa-emulator/tests/whatsapp_rust.rs; sourced by scripts/test).
# tests/interop/whatsapp-rust is its own Cargo project with its own lock file, excluded from the
# workspace: whatsapp-rust's SQLite store links libsqlite3-sys 0.37, our rusqlite 0.41 links
# 0.39, and one dependency graph can hold only one `links = "sqlite3"` package. Built once per run
# into target/wa-rs-peer (or WA_RS_PEER_TARGET_DIR); a clean build costs ~390 CPU-seconds
# (~1 GB), and cargo's freshness check makes later runs a no-op (~1 s); only the first rebuild
# after a clean build recompiles waproto and the crates above it once (~180 CPU-s), because
# waproto's build script lists a file it writes itself as rerun-if-changed.
# Exports WA_RS_PEER_BIN. Can also be run on its own: it builds and prints the binary's path.
wa_rs_root="${root:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
wa_rs_dir="$wa_rs_root/tests/interop/whatsapp-rust"
wa_rs_target="${WA_RS_PEER_TARGET_DIR:-$wa_rs_root/target/wa-rs-peer}"
if declare -F log >/dev/null; then log "cargo build (whatsapp-rust 0.7 test peer, $wa_rs_target)"; fi
cargo build --locked --quiet --manifest-path "$wa_rs_dir/Cargo.toml" --target-dir "$wa_rs_target" \
  || { echo "building the whatsapp-rust test peer failed" >&2; exit 1; }
export WA_RS_PEER_BIN="$wa_rs_target/debug/wa-rs-peer"
if [ "${BASH_SOURCE[0]}" = "$0" ]; then echo "$WA_RS_PEER_BIN"; fi
