//! Interleaved min-of-rounds timing of the same workloads as `binary.rs`: on a
//! shared, noisy machine the minimum over many short alternating rounds is a
//! steadier estimate of each side's cost than a median over one long run.
//! `cargo bench -p wa-benches --bench binary_quick`
//!
//! wa-binary against wacore-binary 0.7 (whatsapp-rust), same inputs, same run.
//!
//! Corpus: every stanza of a real Baileys registration + login transcript
//! (data/stanzas.json), a group message fanned out to 256 participant devices,
//! and a 1 MiB media node. Encode: owned node -> frame payload (flags byte
//! included) in a fresh Vec. Decode: payload body -> borrowed node tree.
#![allow(clippy::unwrap_used)] // bench setup: a panic is the failure report

use std::hint::black_box;
use std::time::{Duration, Instant};

#[path = "common/binary_corpus.rs"]
mod binary_corpus;

use binary_corpus::cases;

fn min_time(rounds: usize, iters: u32, mut f: impl FnMut()) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        best = best.min(t.elapsed() / iters);
    }
    best
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Alternates the two sides in short rounds; returns each side's best time per
/// iteration and the median of the per-round ratios (theirs / ours), which
/// cancels load drift on a shared machine.
fn compare(
    rounds: usize,
    iters: u32,
    mut ours: impl FnMut(),
    mut theirs: impl FnMut(),
) -> (Duration, Duration, f64) {
    let (mut bo, mut bt) = (Duration::MAX, Duration::MAX);
    let mut ratios = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let o = min_time(1, iters, &mut ours);
        let t = min_time(1, iters, &mut theirs);
        bo = bo.min(o);
        bt = bt.min(t);
        ratios.push(t.as_secs_f64() / o.as_secs_f64());
    }
    (bo, bt, median(ratios))
}

/// `WA_BINARY_ONE=<op>:<side>:<case>:<iterations>` (op `encode`/`decode`, side
/// `ours`/`theirs`; or `encode_frame:ours`, the segmented encoder) runs only that loop and exits: a fixed workload for
/// `valgrind --tool=callgrind`, whose instruction counts are repeatable on a
/// noisy machine (subtract a run with 0 iterations to remove the setup).
fn run_one(spec: &str) {
    let parts: Vec<&str> = spec.split(':').collect();
    let [op, side, name, iters] = parts[..] else { panic!("WA_BINARY_ONE=op:side:case:iterations") };
    let iters: u32 = iters.parse().unwrap();
    let case = cases().into_iter().find(|c| c.name == name).unwrap();
    for _ in 0..iters {
        match (op, side) {
            ("encode", "ours") => {
                for n in &case.ours {
                    black_box(wa_binary::encode(black_box(n)).unwrap());
                }
            }
            ("encode_frame", "ours") => {
                for n in &case.ours {
                    black_box(wa_binary::encode_frame(black_box(n)).unwrap());
                }
            }
            ("encode", "theirs") => {
                for n in &case.theirs {
                    black_box(wacore_binary::marshal::marshal_auto(black_box(n)).unwrap());
                }
            }
            ("decode", "ours") => {
                for w in &case.wire_ours {
                    black_box(wa_binary::decode(black_box(&w[1..])).unwrap());
                }
            }
            ("decode", "theirs") => {
                for w in &case.wire_theirs {
                    black_box(wacore_binary::marshal::unmarshal_ref(black_box(&w[1..])).unwrap());
                }
            }
            _ => panic!("unknown op/side {op}/{side}"),
        }
    }
}

fn main() {
    if let Ok(spec) = std::env::var("WA_BINARY_ONE") {
        return run_one(&spec);
    }
    // `cargo bench` passes `--bench`; ignore arguments.
    for case in cases() {
        let iters = if case.name == "media_1mib" { 10 } else { 50 };
        let mib = case.bytes() as f64 / (1024.0 * 1024.0);
        let tp = |d: Duration| mib / d.as_secs_f64();
        let (eo, et, er) = compare(
            101,
            iters,
            || {
                for n in &case.ours {
                    black_box(wa_binary::encode(black_box(n)).unwrap());
                }
            },
            || {
                for n in &case.theirs {
                    black_box(wacore_binary::marshal::marshal_auto(black_box(n)).unwrap());
                }
            },
        );
        let (_, ex, exr) = compare(
            101,
            iters,
            || {
                for n in &case.ours {
                    black_box(wa_binary::encode(black_box(n)).unwrap());
                }
            },
            || {
                for n in &case.theirs {
                    black_box(wacore_binary::marshal::marshal_exact(black_box(n)).unwrap());
                }
            },
        );
        // Not the same work: the segmented encoder references large byte contents
        // instead of copying them (see binary_send.rs for the whole send path).
        let (fo, _, fr) = compare(
            101,
            iters,
            || {
                for n in &case.ours {
                    black_box(wa_binary::encode_frame(black_box(n)).unwrap());
                }
            },
            || {
                for n in &case.theirs {
                    black_box(wacore_binary::marshal::marshal_auto(black_box(n)).unwrap());
                }
            },
        );
        let (d_o, dt, dr) = compare(
            101,
            iters * 4,
            || {
                for w in &case.wire_ours {
                    black_box(wa_binary::decode(black_box(&w[1..])).unwrap());
                }
            },
            || {
                for w in &case.wire_theirs {
                    black_box(wacore_binary::marshal::unmarshal_ref(black_box(&w[1..])).unwrap());
                }
            },
        );
        println!(
            "{:<12} encode: wa-binary {:>10.2?} ({:>9.1} MiB/s)  wacore {:>10.2?} ({:>9.1} MiB/s)  median ratio {:.2}x",
            case.name,
            eo,
            tp(eo),
            et,
            tp(et),
            er
        );
        println!(
            "{:<12} encode vs wacore marshal_exact: wacore {:>10.2?} ({:>9.1} MiB/s)  median ratio {:.2}x",
            case.name,
            ex,
            tp(ex),
            exr
        );
        println!(
            "{:<12} encode_frame (segments, references large payloads) {:>10.2?} vs wacore marshal_auto: median ratio {:.2}x",
            case.name, fo, fr
        );
        println!(
            "{:<12} decode: wa-binary {:>10.2?} ({:>9.1} MiB/s)  wacore {:>10.2?} ({:>9.1} MiB/s)  median ratio {:.2}x",
            case.name,
            d_o,
            tp(d_o),
            dt,
            tp(dt),
            dr
        );
    }
}
