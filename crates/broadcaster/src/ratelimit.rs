//! Per-API-key request rate limiting: a token bucket per key, refilled continuously.

use std::collections::HashMap;
use std::sync::Mutex;

/// Token buckets keyed by API key id.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

impl RateLimiter {
    /// Takes one token for `key` at `now_ms` with capacity `per_minute` (refilled evenly over a
    /// minute). `Err(seconds)` says when the next token is available.
    pub fn check(&self, key: &str, per_minute: u32, now_ms: i64) -> Result<(), u64> {
        if per_minute == 0 {
            return Ok(());
        }
        let cap = f64::from(per_minute);
        let rate_per_ms = cap / 60_000.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let b = buckets.entry(key.to_owned()).or_insert(Bucket { tokens: cap, at_ms: now_ms });
        let elapsed = (now_ms - b.at_ms).max(0) as f64;
        b.tokens = (b.tokens + elapsed * rate_per_ms).min(cap);
        b.at_ms = now_ms.max(b.at_ms);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait_ms = (1.0 - b.tokens) / rate_per_ms;
            Err((wait_ms / 1000.0).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_empties_and_refills() {
        let r = RateLimiter::default();
        for _ in 0..3 {
            assert!(r.check("k", 3, 0).is_ok());
        }
        let wait = r.check("k", 3, 0).unwrap_err();
        assert_eq!(wait, 20);
        assert!(r.check("other", 3, 0).is_ok());
        assert!(r.check("k", 3, 20_000).is_ok());
        assert!(r.check("k", 3, 20_000).is_err());
        assert!(r.check("k", 0, 0).is_ok());
    }
}
