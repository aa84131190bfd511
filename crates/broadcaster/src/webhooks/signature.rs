//! The webhook signature scheme (also in the README and in the OpenAPI description of
//! `POST /api/v1/webhooks`).
//!
//! Every delivery carries `X-Broadcaster-Timestamp: <unix seconds>` and
//! `X-Broadcaster-Signature: v1=<hex>`, where `<hex>` is HMAC-SHA256, keyed with the webhook's
//! secret (the `whsec_…` string returned once at creation, used as is: its UTF-8 bytes), over the
//! timestamp, a `.`, and the raw request body. A receiver recomputes it over the bytes it
//! received (before parsing the JSON), compares in constant time, and refuses a timestamp more
//! than a few minutes old (a replayed capture). `X-Broadcaster-Event-Id` repeats the envelope's
//! `id`: the same on every retry and replay, so receivers can drop duplicates.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "x-broadcaster-signature";
pub const TIMESTAMP_HEADER: &str = "x-broadcaster-timestamp";
pub const EVENT_ID_HEADER: &str = "x-broadcaster-event-id";

fn mac(secret: &str, timestamp_s: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// `v1=<hex HMAC-SHA256(secret, timestamp "." body)>`.
pub fn sign(secret: &str, timestamp_s: i64, body: &[u8]) -> String {
    format!("v1={}", hex::encode(mac(secret, timestamp_s, body).finalize().into_bytes()))
}

/// Verifies a signature in constant time (for receivers and tests).
pub fn verify(secret: &str, timestamp_s: i64, body: &[u8], signature: &str) -> bool {
    let Some(hex_sig) = signature.strip_prefix("v1=") else { return false };
    let Ok(sig) = hex::decode(hex_sig) else { return false };
    mac(secret, timestamp_s, body).verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trips_and_binds_timestamp() {
        let s = sign("sec", 1700000000, b"{}");
        assert!(verify("sec", 1700000000, b"{}", &s));
        assert!(!verify("sec", 1700000001, b"{}", &s));
        assert!(!verify("other", 1700000000, b"{}", &s));
        assert!(!verify("sec", 1700000000, b"{ }", &s));
        assert!(!verify("sec", 1700000000, b"{}", "v1=zz"));
    }

    /// The documented example (README, OpenAPI), computed independently with Python's `hmac`.
    #[test]
    fn the_documented_example_holds() {
        assert_eq!(
            sign("whsec_test", 1700000000, br#"{"id":"evt_1"}"#),
            "v1=c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925"
        );
    }
}
