//! wa-binary against wacore-binary 0.7 (whatsapp-rust), same inputs, same run.
//!
//! Corpus: every stanza of a real Baileys registration + login transcript
//! (data/stanzas.json), a group message fanned out to 256 participant devices,
//! and a 1 MiB media node. Encode: owned node -> frame payload (flags byte
//! included) in a fresh Vec; for wacore both its production path
//! (`marshal_auto`, one pass into a growing buffer) and its exact-size two-pass
//! path (`marshal_exact`, the contract our encoder keeps). Decode: payload body
//! -> borrowed node tree.
#![allow(clippy::unwrap_used)] // bench setup: a panic is the failure report

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

#[path = "common/binary_corpus.rs"]
mod binary_corpus;

use binary_corpus::cases;

fn bench(c: &mut Criterion) {
    for case in cases() {
        let mut g = c.benchmark_group(format!("encode/{}", case.name));
        g.throughput(Throughput::Bytes(case.bytes()));
        g.bench_function(BenchmarkId::from_parameter("wa-binary"), |b| {
            b.iter(|| {
                for n in &case.ours {
                    black_box(wa_binary::encode(black_box(n)).unwrap());
                }
            })
        });
        g.bench_function(BenchmarkId::from_parameter("wacore-binary"), |b| {
            b.iter(|| {
                for n in &case.theirs {
                    black_box(wacore_binary::marshal::marshal_auto(black_box(n)).unwrap());
                }
            })
        });
        // Our segmented encoder: large byte contents referenced, not copied. Not the
        // same work as the contiguous encoders; the fair whole-path comparison is
        // binary_send.rs (node -> encrypted frame).
        g.bench_function(BenchmarkId::from_parameter("wa-binary-frame"), |b| {
            b.iter(|| {
                for n in &case.ours {
                    black_box(wa_binary::encode_frame(black_box(n)).unwrap());
                }
            })
        });
        // Their two-pass exact-size variant: the same contract as our encoder.
        g.bench_function(BenchmarkId::from_parameter("wacore-binary-exact"), |b| {
            b.iter(|| {
                for n in &case.theirs {
                    black_box(wacore_binary::marshal::marshal_exact(black_box(n)).unwrap());
                }
            })
        });
        g.finish();

        let mut g = c.benchmark_group(format!("decode/{}", case.name));
        g.throughput(Throughput::Bytes(case.bytes()));
        g.bench_function(BenchmarkId::from_parameter("wa-binary"), |b| {
            b.iter(|| {
                for w in &case.wire_ours {
                    black_box(wa_binary::decode(black_box(&w[1..])).unwrap());
                }
            })
        });
        g.bench_function(BenchmarkId::from_parameter("wacore-binary"), |b| {
            b.iter(|| {
                for w in &case.wire_theirs {
                    black_box(wacore_binary::marshal::unmarshal_ref(black_box(&w[1..])).unwrap());
                }
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40);
    targets = bench
}
criterion_main!(benches);
