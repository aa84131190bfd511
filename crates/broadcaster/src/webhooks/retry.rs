//! When a failed webhook delivery is tried again: plain data the configuration builds and the
//! delivery worker reads, so that neither needs the other.

use std::time::Duration;

/// Retry schedule.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay_ms: i64,
    pub max_delay_ms: i64,
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay_ms: 5_000,
            max_delay_ms: 3_600_000,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `attempts + 1`, after `attempts` failures: exponential, capped, with
    /// "equal jitter" (half fixed, half random) so retries of many deliveries spread out.
    pub fn delay_after(&self, attempts: u32, random: u64) -> i64 {
        let exp = self.base_delay_ms.saturating_mul(1i64 << attempts.saturating_sub(1).min(30));
        let d = exp.min(self.max_delay_ms).max(1);
        let half = d / 2;
        half + (random % (d - half + 1) as u64) as i64
    }
}
