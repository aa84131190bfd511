//! The whole send path of a stanza: owned node -> encrypted transport frame
//! (`len24 ‖ AES-256-GCM(payload) ‖ tag`) appended to a reused output buffer, as a
//! client's writer puts it on the socket. Same corpus as `binary.rs`.
//! `cargo bench -p wa-benches --no-default-features --features binary,noise --bench binary_send`
//!
//! - `wa (segments)`: `wa_binary::encode_frame` (large byte contents referenced, not
//!   copied) then `FrameSender::encrypt_frame_buf` (gathered once into the frame,
//!   encrypted in place): what wa-client does.
//! - `wa (contiguous)`: `wa_binary::encode` then `FrameSender::encrypt_frame` (the
//!   payload is copied twice): the path before segmented encoding.
//! - `wacore`: `marshal_auto`, then whatsapp-rust's inline send path assembled from
//!   wacore-noise 0.7's public pieces: `append_frame_header_into`, the payload copied
//!   into the output, encrypted in place there (`NoiseCipher::encrypt_in_place_with_counter`
//!   on the split-off tail of a `BytesMut`, rejoined without copying).
//!
//! The setup checks that all three produce byte-identical frames.
//!
//! Interleaved rounds as in `binary_quick.rs`; `WA_SEND_ONE=<side>:<case>:<iterations>`
//! (side `segments`/`contiguous`/`wacore`) runs one loop for callgrind.
#![allow(clippy::unwrap_used)] // bench setup: a panic is the failure report

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use wa_noise::FrameSender;

#[path = "common/binary_corpus.rs"]
#[allow(dead_code)] // shared with the other binary benches
mod binary_corpus;

use binary_corpus::{Case, cases};

const KEY: [u8; 32] = [7; 32];

struct Sides {
    segments: FrameSender,
    contiguous: FrameSender,
    wacore: wacore_noise::NoiseCipher,
    wacore_counter: u32,
    out: BytesMut,
}

impl Sides {
    fn new() -> Sides {
        Sides {
            segments: FrameSender::from_key(&KEY),
            contiguous: FrameSender::from_key(&KEY),
            wacore: wacore_noise::NoiseCipher::new(&KEY).unwrap(),
            wacore_counter: 0,
            out: BytesMut::new(),
        }
    }

    fn segments(&mut self, case: &Case) {
        self.out.clear();
        for n in &case.ours {
            let frame = wa_binary::encode_frame(black_box(n)).unwrap();
            self.out.reserve(frame.len() + 19);
            self.segments.encrypt_frame_buf(frame, &mut self.out).unwrap();
        }
        black_box(&self.out);
    }

    fn contiguous(&mut self, case: &Case) {
        self.out.clear();
        for n in &case.ours {
            let payload = wa_binary::encode(black_box(n)).unwrap();
            self.out.reserve(payload.len() + 19);
            self.contiguous.encrypt_frame(&payload, &mut self.out).unwrap();
        }
        black_box(&self.out);
    }

    fn wacore(&mut self, case: &Case) {
        self.out.clear();
        for n in &case.theirs {
            let payload = wacore_binary::marshal::marshal_auto(black_box(n)).unwrap();
            wacore_noise::framing::append_frame_header_into(payload.len() + 16, None, &mut self.out).unwrap();
            let base = self.out.len();
            self.out.extend_from_slice(&payload);
            let mut body = self.out.split_off(base);
            self.wacore.encrypt_in_place_with_counter(self.wacore_counter, &mut body).unwrap();
            self.wacore_counter += 1;
            self.out.unsplit(body);
        }
        black_box(&self.out);
    }
}

fn check_identical(case: &Case) {
    let mut s = Sides::new();
    s.segments(case);
    let a = s.out.clone();
    s.contiguous(case);
    let b = s.out.clone();
    s.wacore(case);
    let c = s.out.clone();
    assert_eq!(a, b, "{}: segmented and contiguous frames differ", case.name);
    assert_eq!(a, c, "{}: our frames differ from wacore's", case.name);
    eprintln!(
        "{}: {} frames, {} bytes on the wire, identical on all three paths",
        case.name,
        case.ours.len(),
        a.len()
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time(iters: u32, mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed() / iters
}

fn main() {
    let all = cases();
    if let Ok(spec) = std::env::var("WA_SEND_ONE") {
        let parts: Vec<&str> = spec.split(':').collect();
        let [side, name, iters] = parts[..] else { panic!("WA_SEND_ONE=side:case:iterations") };
        let case = all.iter().find(|c| c.name == name).unwrap();
        let mut s = Sides::new();
        for _ in 0..iters.parse::<u32>().unwrap() {
            match side {
                "segments" => s.segments(case),
                "contiguous" => s.contiguous(case),
                "wacore" => s.wacore(case),
                _ => panic!("unknown side {side}"),
            }
        }
        return;
    }
    for case in &all {
        check_identical(case);
        let iters = if case.name == "media_1mib" { 4 } else { 40 };
        let mut s = Sides::new();
        let (mut best, mut r_wacore, mut r_contig) = ([Duration::MAX; 3], Vec::new(), Vec::new());
        for _ in 0..101 {
            let a = time(iters, || s.segments(case));
            let b = time(iters, || s.contiguous(case));
            let c = time(iters, || s.wacore(case));
            best = [best[0].min(a), best[1].min(b), best[2].min(c)];
            r_wacore.push(c.as_secs_f64() / a.as_secs_f64());
            r_contig.push(b.as_secs_f64() / a.as_secs_f64());
        }
        println!(
            "{:<12} node -> encrypted frame: wa segments {:>10.2?}  wa contiguous {:>10.2?}  wacore {:>10.2?}  median ratio wacore/segments {:.2}x  contiguous/segments {:.2}x",
            case.name,
            best[0],
            best[1],
            best[2],
            median(r_wacore),
            median(r_contig)
        );
    }
}
