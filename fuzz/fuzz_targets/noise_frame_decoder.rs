//! The streaming frame decoder (both roles) fed arbitrary bytes in arbitrary chunks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wa_noise::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else { return };
    let mut dec = if control & 1 == 0 { FrameDecoder::client() } else { FrameDecoder::server() };
    if control & 2 != 0 {
        dec = dec.with_max_frame_len(usize::from(control) * 64);
    }
    let chunk = usize::from(control >> 2) + 1;
    let mut taken = 0usize;
    'feed: for c in rest.chunks(chunk) {
        dec.push(c);
        loop {
            match dec.next_frame() {
                Ok(Some(frame)) => taken += frame.len() + 3,
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
    assert!(taken <= rest.len());
    let _ = dec.finish();
});
