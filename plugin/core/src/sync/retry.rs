//! The retry schedule: exponential from the configured base, capped at an hour, spread by
//! jitter, and never shorter than what the upstream asked for (itself capped at a day).
//!
//! Waits asked for by an upstream (`Retry-After`, BigCommerce's rate-limit reset) are numbers
//! from outside: they are capped at [`MAX_UPSTREAM_WAIT`] before they meet a date, and the
//! date itself is computed with checked arithmetic ([`retry_at`]), so no header can make a
//! job panic.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Longest retry delay from the schedule.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
/// Longest wait an upstream can impose (`Retry-After`, rate-limit reset): a day (CONTRACT §3).
pub const MAX_UPSTREAM_WAIT: Duration = Duration::from_secs(24 * 3600);
/// How long a 429 that names no time waits, for QuickBooks and BigCommerce alike (CONTRACT §3).
pub const THROTTLE_DELAY: Duration = Duration::from_secs(60);

/// The wait after a 429: what the upstream asked for, capped at [`MAX_UPSTREAM_WAIT`], or
/// [`THROTTLE_DELAY`] when it named no time.
pub fn throttle_wait(asked: Option<Duration>) -> Duration {
    asked.map_or(THROTTLE_DELAY, |d| d.min(MAX_UPSTREAM_WAIT))
}

/// Delay before retry number `attempt` (1-based): `base × 2^(attempt−1)`, capped at
/// [`MAX_RETRY_DELAY`], spread ±20 % by `jitter` (uniform random input), and never below
/// `min` (Retry-After, rate-limit reset, the 60 s of a 429), which is capped at
/// [`MAX_UPSTREAM_WAIT`].
pub fn retry_delay(attempt: u32, base_secs: u64, jitter: u32, min: Option<Duration>) -> Duration {
    let cap_ms = MAX_RETRY_DELAY.as_millis() as u64;
    let exp = attempt.saturating_sub(1).min(40);
    let raw_ms = base_secs
        .saturating_mul(1000)
        .saturating_mul(1u64 << exp)
        .min(cap_ms);
    // Map the 32-bit random input onto 0..=400 per-mille without modulo bias, then shift to ±200.
    let permille = (u64::from(jitter) * 401) >> 32;
    let jittered = raw_ms * (800 + permille) / 1000;
    let delay = Duration::from_millis(jittered.min(cap_ms));
    delay.max(min.unwrap_or(Duration::ZERO).min(MAX_UPSTREAM_WAIT))
}

/// `now + delay` without overflow: a date past the end of chrono's calendar is clamped to its
/// last instant (only a host clock gone wild can get there once delays are capped).
pub fn retry_at(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MID: u32 = 1 << 31; // jitter input that lands near the middle (+0 %)

    #[test]
    fn schedule_doubles_from_the_base_and_caps_at_an_hour() {
        // jitter input chosen so the per-mille offset is exactly 0: (j*401)>>32 == 200.
        let j = ((200u64 << 32) / 401 + 1) as u32;
        assert_eq!((u64::from(j) * 401) >> 32, 200);
        let d: Vec<u64> = (1..=8)
            .map(|a| retry_delay(a, 60, j, None).as_secs())
            .collect();
        assert_eq!(d, vec![60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(retry_delay(100, 60, j, None), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(u32::MAX, u64::MAX, j, None), MAX_RETRY_DELAY);
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_spans_it() {
        for attempt in 1..=5 {
            let nominal = 10_000u64 * (1 << (attempt - 1));
            for j in [0, 1, 12345, MID, u32::MAX - 1, u32::MAX] {
                let ms = retry_delay(attempt, 10, j, None).as_millis() as u64;
                assert!(
                    ms >= nominal * 8 / 10 && ms <= nominal * 12 / 10,
                    "attempt {attempt} jitter {j}: {ms}"
                );
            }
        }
        assert_eq!(retry_delay(1, 10, 0, None), Duration::from_secs(8));
        assert_eq!(retry_delay(1, 10, u32::MAX, None), Duration::from_secs(12));
        // At the cap jitter can only shorten the delay.
        assert!(retry_delay(9, 60, u32::MAX, None) <= MAX_RETRY_DELAY);
        assert!(retry_delay(9, 60, 0, None) >= Duration::from_secs(2880));
    }

    #[test]
    fn upstream_waits_are_capped_at_a_day_and_dates_never_overflow() {
        assert_eq!(
            retry_delay(1, 60, MID, Some(Duration::from_secs(u64::MAX))),
            MAX_UPSTREAM_WAIT
        );
        assert_eq!(
            throttle_wait(Some(Duration::from_secs(u64::MAX))),
            MAX_UPSTREAM_WAIT
        );
        assert_eq!(throttle_wait(None), THROTTLE_DELAY);
        assert_eq!(
            throttle_wait(Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        let t = DateTime::<Utc>::MAX_UTC - chrono::Duration::seconds(1);
        assert_eq!(retry_at(t, MAX_UPSTREAM_WAIT), DateTime::<Utc>::MAX_UTC);
        assert_eq!(retry_at(t, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        assert_eq!(
            retry_at(t0, Duration::from_secs(60)),
            t0 + chrono::Duration::seconds(60)
        );
    }

    #[test]
    fn minimum_delays_win_over_short_schedules() {
        assert_eq!(
            retry_delay(1, 1, 0, Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
        assert!(retry_delay(7, 60, MID, Some(Duration::from_secs(5))).as_secs() >= 2880);
    }
}
