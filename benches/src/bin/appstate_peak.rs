//! Peak memory of applying a snapshot, measured from outside with `/usr/bin/time -v`
//! (maximum resident set size); see BENCHMARKS.md. Modes, each a separate process:
//!
//! - `write FILE N`: writes an N-record snapshot to FILE;
//! - `load FILE`: reads FILE and exits (the baseline: binary, allocator, the bytes);
//! - `ours FILE` / `theirs FILE`: reads FILE and applies it with wa-appstate /
//!   wacore-appstate 0.7, MACs verified, keeping the result until the end.

use std::sync::Arc;

use wa_benches::appstate::{COLLECTION, KEY_DATA, KEY_ID, snapshot_bytes};
use waproto::buffa::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (mode, file) = match args.as_slice() {
        [_, mode, file, ..] => (mode.as_str(), file.as_str()),
        _ => return Err("usage: appstate_peak write|load|ours|theirs FILE [N]".into()),
    };
    if mode == "write" {
        let n: usize = args.get(3).ok_or("write needs N")?.parse()?;
        std::fs::write(file, snapshot_bytes(n))?;
        return Ok(());
    }
    let bytes = std::fs::read(file)?;
    match mode {
        "load" => println!("{} bytes", bytes.len()),
        "ours" => {
            let mut ring = wa_appstate::KeyRing::new();
            ring.insert(&wa_appstate::KeyId(KEY_ID.to_vec()), &KEY_DATA);
            let snap = wa_appstate::decode_snapshot(&bytes)?;
            let applied = wa_appstate::apply_snapshot(COLLECTION, &snap, &ring)?;
            println!("{} records, version {}", applied.mutations.len(), applied.state.version);
        }
        "theirs" => {
            let keys = Arc::new(wacore_appstate::expand_app_state_keys(&KEY_DATA));
            let snap = waproto::whatsapp::SyncdSnapshot::decode_from_slice(&bytes)?;
            let mut state = wacore_appstate::hash::HashState::default();
            let r = wacore_appstate::processor::process_snapshot(
                &snap,
                &mut state,
                |_| Ok(keys.clone()),
                true,
                COLLECTION.as_str(),
            )?;
            println!("{} records, version {}", r.mutations.len(), r.state.version);
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    Ok(())
}
