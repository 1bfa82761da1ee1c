//! Pacing: keeping bulk work (backfill, sweep) inside what both services allow.
//!
//! - QuickBooks allows 500 requests per minute per company (and 10 at once). Every QuickBooks
//!   API call made through a [`Paced`] host is counted in a per-minute KV counter shared by
//!   every instance (`pace/qbo/{minute}`); bulk work runs only while the current minute has
//!   budget left ([`QBO_BULK_BUDGET`], below the limit so live webhooks keep their share) and
//!   runs one job at a time under one lease, so it adds at most one concurrent request.
//! - BigCommerce's quota is per store and shared by every app: [`Paced`] remembers the last
//!   `X-Rate-Limit-Requests-Left` / `X-Rate-Limit-Time-Reset-Ms` it saw, and bulk work stops
//!   while fewer than [`bc_reserve`] requests are left, until the window resets
//!   (`pace/bc/pause_until`).
//!
//! Everything here reads time from the host; nothing sleeps for long.

use chrono::{DateTime, Duration, Utc};

use crate::host::{CasOutcome, Host, KvError, LogLevel};
use crate::http::{HttpRequest, HttpResponse, TransportError};
use crate::models::bigcommerce::RateLimit;
use crate::settings;

/// QuickBooks Online's documented limit per company and minute.
pub const QBO_REQUESTS_PER_MINUTE: i64 = 500;
/// What bulk work may use of a minute: the rest is left for webhooks already in flight.
pub const QBO_BULK_BUDGET: i64 = 400;
/// QuickBooks requests one queued order may need (invoice, customer lookup/creation, payment).
pub const QBO_COST_PER_JOB: i64 = 4;

const BC_PAUSE_KEY: &str = "pace/bc/pause_until";

fn minute_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

/// The minute of the newest per-minute QuickBooks counter (a cleanup hint, not a counter).
const QBO_LAST_KEY: &str = "pace/qbo/last";

fn qbo_key(minute: i64) -> String {
    format!("pace/qbo/{minute}")
}

/// QuickBooks requests counted so far in the minute of `now`.
pub fn qbo_used(host: &mut dyn Host, now: DateTime<Utc>) -> Result<i64, KvError> {
    Ok(host
        .kv_get(&qbo_key(minute_of(now)))?
        .and_then(|b| super::store::decode_counter(&b))
        .unwrap_or(0))
}

/// BigCommerce requests to leave to others (webhooks, other apps) out of a window's quota.
pub fn bc_reserve(quota: Option<u64>) -> u64 {
    quota.map_or(10, |q| (q / 5).max(3))
}

/// Why bulk work waits, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// This minute's QuickBooks budget is spent.
    QuickBooks { until: DateTime<Utc> },
    /// BigCommerce's window is nearly spent.
    BigCommerce { until: DateTime<Utc> },
}

impl Wait {
    /// When the work may go on.
    pub fn until(&self) -> DateTime<Utc> {
        match self {
            Wait::QuickBooks { until } | Wait::BigCommerce { until } => *until,
        }
    }

    /// A short explanation for progress reports.
    pub fn describe(&self) -> String {
        match self {
            Wait::QuickBooks { until } => format!(
                "pacing: this minute's QuickBooks budget ({QBO_BULK_BUDGET} of {QBO_REQUESTS_PER_MINUTE} requests) is used; \
                 going on at {until}"
            ),
            Wait::BigCommerce { until } => format!(
                "pacing: BigCommerce's rate-limit window is nearly used up; going on at {until}"
            ),
        }
    }
}

/// Whether bulk work may run one more job (costing up to `qbo_cost` QuickBooks requests) now.
pub fn check(host: &mut dyn Host, qbo_cost: i64) -> Result<Option<Wait>, KvError> {
    let now = host.now();
    if let Some(until) = bc_pause_until(host)?
        && until > now
    {
        return Ok(Some(Wait::BigCommerce { until }));
    }
    if qbo_used(host, now)? + qbo_cost > QBO_BULK_BUDGET {
        let until = DateTime::<Utc>::from_timestamp((minute_of(now) + 1) * 60, 0).unwrap_or(now);
        return Ok(Some(Wait::QuickBooks { until }));
    }
    Ok(None)
}

fn bc_pause_until(host: &mut dyn Host) -> Result<Option<DateTime<Utc>>, KvError> {
    Ok(host
        .kv_get(BC_PAUSE_KEY)?
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|d| d.with_timezone(&Utc)))
}

/// Stops bulk work until `until` (BigCommerce's window resets then).
pub fn pause_bigcommerce(host: &mut dyn Host, until: DateTime<Utc>) -> Result<(), KvError> {
    host.kv_set(BC_PAUSE_KEY, until.to_rfc3339().as_bytes())
}

/// A [`Host`] that counts QuickBooks API calls into the shared per-minute counter and
/// remembers BigCommerce's rate-limit headers. Everything else passes straight through.
pub struct Paced<'a> {
    inner: &'a mut dyn Host,
    qbo_prefix: String,
    bc_prefix: String,
    /// QuickBooks API calls made through this host.
    pub qbo_calls: u64,
    /// BigCommerce calls made through this host.
    pub bc_calls: u64,
    /// The rate-limit headers of the last BigCommerce answer.
    pub bc_rate: Option<RateLimit>,
    /// When the last BigCommerce answer was seen.
    pub bc_seen_at: Option<DateTime<Utc>>,
}

impl<'a> Paced<'a> {
    /// Wraps `inner`; the API bases come from its configuration.
    pub fn new(inner: &'a mut dyn Host) -> Paced<'a> {
        let qbo = settings::optional(inner, "qbo_api_base")
            .unwrap_or_else(|| settings::DEFAULT_QBO_API_BASE.into());
        let bc = settings::optional(inner, "bigcommerce_api_base")
            .unwrap_or_else(|| settings::DEFAULT_BIGCOMMERCE_API_BASE.into());
        Paced {
            inner,
            qbo_prefix: format!("{}/v3/company/", qbo.trim().trim_end_matches('/')),
            bc_prefix: format!("{}/stores/", bc.trim().trim_end_matches('/')),
            qbo_calls: 0,
            bc_calls: 0,
            bc_rate: None,
            bc_seen_at: None,
        }
    }

    /// When BigCommerce's last answer says too little of its window is left: when it resets.
    pub fn bigcommerce_wait(&self) -> Option<DateTime<Utc>> {
        let rate = self.bc_rate?;
        let left = rate.requests_left?;
        if left > bc_reserve(rate.quota) {
            return None;
        }
        let reset = rate.reset_ms.or(rate.window_ms).unwrap_or(30_000);
        Some(self.bc_seen_at? + Duration::milliseconds(i64::try_from(reset).unwrap_or(30_000)))
    }

    fn count_qbo(&mut self) {
        self.qbo_calls += 1;
        let minute = minute_of(self.inner.now());
        match self.inner.kv_increment(&qbo_key(minute), 1) {
            // The first call of a minute deletes the counter of the last minute that had one
            // (only the current minute is ever read), so the store keeps at most two of them
            // however long the gaps between busy minutes are.
            Ok(1) => {
                let last = self
                    .inner
                    .kv_get(QBO_LAST_KEY)
                    .ok()
                    .flatten()
                    .and_then(|b| std::str::from_utf8(&b).ok()?.parse::<i64>().ok());
                if let Some(last) = last.filter(|l| *l != minute) {
                    let _ = self.inner.kv_delete(&qbo_key(last));
                }
                let _ = self
                    .inner
                    .kv_set(QBO_LAST_KEY, minute.to_string().as_bytes());
            }
            Ok(_) => {}
            Err(e) => self
                .inner
                .log(LogLevel::Warn, &format!("pacing counter not updated: {e}")),
        }
    }
}

impl Host for Paced<'_> {
    fn now(&self) -> DateTime<Utc> {
        self.inner.now()
    }

    fn random_bytes(&mut self, buf: &mut [u8]) {
        self.inner.random_bytes(buf)
    }

    fn config(&mut self, name: &str) -> Option<String> {
        self.inner.config(name)
    }

    fn http(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let qbo = request.url.starts_with(&self.qbo_prefix);
        if qbo {
            self.count_qbo();
        }
        let result = self.inner.http(request);
        if !qbo && request.url.starts_with(&self.bc_prefix) {
            self.bc_calls += 1;
            if let Ok(resp) = &result {
                let rate = RateLimit::from_response(resp);
                if rate.requests_left.is_some() {
                    self.bc_rate = Some(rate);
                    self.bc_seen_at = Some(self.inner.now());
                    // Nearly spent: bulk work everywhere holds off until the window resets.
                    if let Some(until) = self.bigcommerce_wait()
                        && let Err(e) = pause_bigcommerce(self.inner, until)
                    {
                        self.inner
                            .log(LogLevel::Warn, &format!("pacing pause not saved: {e}"));
                    }
                }
            }
        }
        result
    }

    fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.kv_get(key)
    }

    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.inner.kv_set(key, value)
    }

    fn kv_delete(&mut self, key: &str) -> Result<(), KvError> {
        self.inner.kv_delete(key)
    }

    fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.inner.kv_increment(key, delta)
    }

    fn kv_cas(&mut self, key: &str, expected: &[u8], new: &[u8]) -> Result<CasOutcome, KvError> {
        self.inner.kv_cas(key, expected, new)
    }

    fn sleep_ms(&mut self, ms: u64) {
        self.inner.sleep_ms(ms)
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        self.inner.log(level, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;
    use crate::testing::FakeHost;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-02T10:00:05Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn host() -> FakeHost {
        let mut h = FakeHost::new(t0());
        h.set_config("qbo_api_base", "https://qbo.test")
            .set_config("bigcommerce_api_base", "https://bc.test");
        h.route("https://qbo.test", |_| Ok(HttpResponse::new(200, "{}")));
        h.route("https://bc.test", |_| {
            let mut r = HttpResponse::new(200, "[]");
            r.headers = vec![
                ("X-Rate-Limit-Requests-Left".into(), "4".into()),
                ("X-Rate-Limit-Requests-Quota".into(), "150".into()),
                ("X-Rate-Limit-Time-Reset-Ms".into(), "12000".into()),
            ];
            Ok(r)
        });
        h
    }

    #[test]
    fn quickbooks_calls_are_counted_per_minute_and_the_budget_stops_bulk_work() {
        let mut h = host();
        for _ in 0..(QBO_BULK_BUDGET - QBO_COST_PER_JOB) {
            let mut p = Paced::new(&mut h);
            p.http(&HttpRequest::new(
                Method::Get,
                "https://qbo.test/v3/company/1/query",
            ))
            .unwrap();
        }
        assert_eq!(qbo_used(&mut h, t0()).unwrap(), QBO_BULK_BUDGET - 4);
        assert_eq!(check(&mut h, QBO_COST_PER_JOB).unwrap(), None);
        let mut p = Paced::new(&mut h);
        p.http(&HttpRequest::new(
            Method::Post,
            "https://qbo.test/v3/company/1/invoice",
        ))
        .unwrap();
        assert_eq!(p.qbo_calls, 1);
        let wait = check(&mut h, QBO_COST_PER_JOB).unwrap().unwrap();
        assert_eq!(
            wait.until(),
            DateTime::parse_from_rfc3339("2026-03-02T10:01:00Z").unwrap()
        );
        // The next minute starts with a fresh budget and drops the counter of two minutes ago.
        h.advance(Duration::seconds(60));
        assert_eq!(check(&mut h, QBO_COST_PER_JOB).unwrap(), None);
        h.advance(Duration::seconds(60));
        let mut p = Paced::new(&mut h);
        p.http(&HttpRequest::new(
            Method::Get,
            "https://qbo.test/v3/company/1/query",
        ))
        .unwrap();
        assert!(!h.kv.contains_key(&qbo_key(minute_of(t0()))));
    }

    #[test]
    fn a_nearly_spent_bigcommerce_window_means_waiting_for_its_reset() {
        let mut h = host();
        let mut p = Paced::new(&mut h);
        p.http(&HttpRequest::new(
            Method::Get,
            "https://bc.test/stores/x/v2/orders",
        ))
        .unwrap();
        assert_eq!(p.bc_calls, 1);
        assert_eq!(p.qbo_calls, 0);
        let until = p.bigcommerce_wait().unwrap();
        assert_eq!(until, t0() + Duration::milliseconds(12_000));
        pause_bigcommerce(&mut h, until).unwrap();
        assert_eq!(check(&mut h, 1).unwrap(), Some(Wait::BigCommerce { until }));
        h.advance(Duration::seconds(13));
        assert_eq!(check(&mut h, 1).unwrap(), None);
    }
}
