//! Pacing: keeping bulk work (backfill, sweep) inside what both services allow.
//!
//! - QuickBooks allows 500 requests per minute per company (and 10 at once, and about 10 a
//!   second). Every QuickBooks API call made through a [`Paced`] host, webhook or bulk, is
//!   counted in a per-SECOND KV counter shared by every instance (`pace/qbo/{second}`). Bulk
//!   work starts a job only while the current second's count is below [`QBO_BULK_PER_SECOND`]
//!   (8 a second, 480 a minute: below the limit, and webhooks counted in the same counters
//!   make bulk work yield to live traffic). A job may make several calls; they all count, and
//!   what a second used beyond [`QBO_PAYBACK_PER_SECOND`] is carried into the next second's
//!   counter (so overspending is paid back and any window of `n` seconds holds at most about
//!   `n × 7` calls plus one second's overspend). Bulk work runs one job at a time under
//!   one lease, so it adds at most one concurrent request.
//! - A QuickBooks 429 seen by [`Paced`] (any call) stops bulk work everywhere until its
//!   `Retry-After` has passed (60 s when it names none, at most a day): `pace/qbo/pause_until`.
//!   Every other job waits for it too ([`crate::sync::limiter`]), and the limiter's budget
//!   stays low for a while after it.
//! - BigCommerce's quota is per store and shared by every app: [`Paced`] remembers the last
//!   `X-Rate-Limit-Requests-Left` / `X-Rate-Limit-Time-Reset-Ms` it saw, and bulk work stops
//!   while fewer than [`bc_reserve`] requests are left, until the window resets
//!   (`pace/bc/pause_until`).
//!
//! Everything here reads time from the host; nothing here sleeps (a slice waiting for the next
//! second sleeps through [`Host::sleep_ms`], see [`crate::jobs::bulk`]).

use chrono::{DateTime, Duration, Utc};

use crate::host::{Host, KvError, LogLevel};
use crate::http::{HttpRequest, HttpResponse, TransportError};
use crate::models::bigcommerce::RateLimit;
use crate::settings;
use crate::sync::failure;

/// QuickBooks Online's documented limit per company and minute.
pub const QBO_REQUESTS_PER_MINUTE: i64 = 500;
/// What bulk work may use of a second (480 a minute, 96 % of the limit): a job starts only
/// while the second's count, webhooks included, is below it.
pub const QBO_BULK_PER_SECOND: i64 = 8;
/// QuickBooks requests one queued order may need (invoice, customer lookup/creation, payment):
/// how far one job can take a second's count past [`QBO_BULK_PER_SECOND`].
pub const QBO_COST_PER_JOB: i64 = 4;
/// How fast what busy seconds overspent is paid back (420 a minute): the long-run rate of every
/// QuickBooks request the connector makes, whoever makes it. A batch's 30 operations or a second
/// in which many jobs started owe the seconds after them; paying back at 7 a second keeps any
/// 60 s window at 420 plus one second's overspend, below QuickBooks' 500 (paying back at the
/// bulk rate of 8 let a long burst with batches reach 500 and draw a 429).
pub const QBO_PAYBACK_PER_SECOND: i64 = 7;
/// The most a busy second carries into the next ones: a minute's worth of the limit.
const QBO_CARRY_CAP: i64 = QBO_REQUESTS_PER_MINUTE;

const BC_PAUSE_KEY: &str = "pace/bc/pause_until";
const QBO_PAUSE_KEY: &str = "pace/qbo/pause_until";

fn second_of(at: DateTime<Utc>) -> i64 {
    at.timestamp()
}

/// The second of the newest per-second QuickBooks counter (a cleanup hint, not a counter).
const QBO_LAST_KEY: &str = "pace/qbo/last";

fn qbo_key(second: i64) -> String {
    format!("pace/qbo/{second}")
}

fn read_counter(host: &mut dyn Host, key: &str) -> Result<Option<i64>, KvError> {
    Ok(host
        .kv_get(key)?
        .and_then(|b| super::store::decode_counter(&b)))
}

fn last_second(host: &mut dyn Host) -> Result<Option<i64>, KvError> {
    Ok(host
        .kv_get(QBO_LAST_KEY)?
        .and_then(|b| std::str::from_utf8(&b).ok()?.parse::<i64>().ok()))
}

/// What a second that counted `count` calls still owes `gap` seconds later.
fn carry(count: i64, gap: i64) -> i64 {
    count
        .saturating_sub(QBO_PAYBACK_PER_SECOND.saturating_mul(gap))
        .clamp(0, QBO_CARRY_CAP)
}

/// QuickBooks requests counted so far in the second of `now`, with what earlier seconds
/// overspent.
pub fn qbo_used(host: &mut dyn Host, now: DateTime<Utc>) -> Result<i64, KvError> {
    let second = second_of(now);
    if let Some(count) = read_counter(host, &qbo_key(second))? {
        return Ok(count);
    }
    // No call yet this second: what the last busy second overspent still counts.
    match last_second(host)? {
        Some(last) if last < second => {
            Ok(read_counter(host, &qbo_key(last))?.map_or(0, |count| carry(count, second - last)))
        }
        _ => Ok(0),
    }
}

/// Counts `extra` QuickBooks operations beyond the request [`Paced`] counted: a batch request
/// is one request, but each of its operations counts toward the per-minute limit.
pub fn count_qbo_operations(host: &mut dyn Host, extra: usize) {
    if extra == 0 {
        return;
    }
    // Counted in the second the batch request itself was counted in (the newest counter).
    let second = match last_second(host) {
        Ok(Some(s)) => s,
        _ => second_of(host.now()),
    };
    let key = qbo_key(second);
    if let Err(e) = host.kv_increment(&key, i64::try_from(extra).unwrap_or(i64::MAX)) {
        host.log(LogLevel::Warn, &format!("pacing counter not updated: {e}"));
    }
}

/// BigCommerce requests to leave to others (webhooks, other apps) out of a window's quota.
pub fn bc_reserve(quota: Option<u64>) -> u64 {
    quota.map_or(10, |q| (q / 5).max(3))
}

/// Why bulk work waits, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// This second's QuickBooks budget is used (by bulk work or webhooks).
    QuickBooks { until: DateTime<Utc> },
    /// QuickBooks answered 429: bulk work waits out its `Retry-After`.
    QuickBooksThrottled { until: DateTime<Utc> },
    /// BigCommerce's window is nearly spent.
    BigCommerce { until: DateTime<Utc> },
}

impl Wait {
    /// When the work may go on.
    pub fn until(&self) -> DateTime<Utc> {
        match self {
            Wait::QuickBooks { until }
            | Wait::QuickBooksThrottled { until }
            | Wait::BigCommerce { until } => *until,
        }
    }

    /// A short explanation for progress reports.
    pub fn describe(&self) -> String {
        match self {
            Wait::QuickBooks { until } => format!(
                "pacing: bulk work uses at most {QBO_BULK_PER_SECOND} QuickBooks requests a second                  (QuickBooks allows {QBO_REQUESTS_PER_MINUTE} a minute, webhooks included) and                  they are used; going on at {until}"
            ),
            Wait::QuickBooksThrottled { until } => format!(
                "pacing: QuickBooks answered 429 (too many requests); bulk work waits for its                  Retry-After and goes on at {until}"
            ),
            Wait::BigCommerce { until } => format!(
                "pacing: BigCommerce's rate-limit window is nearly used up; going on at {until}"
            ),
        }
    }
}

/// Whether bulk work may start one more job now. Whatever QuickBooks calls the job makes
/// count when they are made.
pub fn check(host: &mut dyn Host) -> Result<Option<Wait>, KvError> {
    if let Some(wait) = paused(host)? {
        return Ok(Some(wait));
    }
    let now = host.now();
    let used = qbo_used(host, now)?;
    if used >= QBO_BULK_PER_SECOND {
        // What is owed beyond this second is paid by the seconds after it.
        let owed = (used - QBO_BULK_PER_SECOND) / QBO_BULK_PER_SECOND;
        let until = DateTime::<Utc>::from_timestamp(second_of(now) + 1 + owed, 0).unwrap_or(now);
        return Ok(Some(Wait::QuickBooks { until }));
    }
    Ok(None)
}

/// Whether bulk work is paused (BigCommerce's window nearly spent, or a QuickBooks 429): what
/// listing the next page checks (listing makes no QuickBooks call, so the second's budget does
/// not hold it back).
pub fn paused(host: &mut dyn Host) -> Result<Option<Wait>, KvError> {
    let now = host.now();
    if let Some(until) = pause_until(host, BC_PAUSE_KEY)?
        && until > now
    {
        return Ok(Some(Wait::BigCommerce { until }));
    }
    if let Some(until) = pause_until(host, QBO_PAUSE_KEY)?
        && until > now
    {
        return Ok(Some(Wait::QuickBooksThrottled { until }));
    }
    Ok(None)
}

pub(crate) fn pause_until(
    host: &mut dyn Host,
    key: &str,
) -> Result<Option<DateTime<Utc>>, KvError> {
    Ok(host
        .kv_get(key)?
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|d| d.with_timezone(&Utc)))
}

/// Stops bulk work until `until` (BigCommerce's window resets then).
pub fn pause_bigcommerce(host: &mut dyn Host, until: DateTime<Utc>) -> Result<(), KvError> {
    host.kv_set(BC_PAUSE_KEY, until.to_rfc3339().as_bytes())
}

/// Stops bulk work until `until` (QuickBooks throttled a call). An existing later pause is
/// kept.
pub fn pause_quickbooks(host: &mut dyn Host, until: DateTime<Utc>) -> Result<(), KvError> {
    if pause_until(host, QBO_PAUSE_KEY)?.is_some_and(|t| t >= until) {
        return Ok(());
    }
    host.kv_set(QBO_PAUSE_KEY, until.to_rfc3339().as_bytes())
}

/// A [`Host`] that counts QuickBooks API calls into the shared per-second counters, pauses
/// bulk work on a QuickBooks 429, and remembers BigCommerce's rate-limit headers. Everything else passes straight through.
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
        let second = second_of(self.inner.now());
        let key = qbo_key(second);
        match self.inner.kv_increment(&key, 1) {
            // The first call of a second carries in what the last busy second overspent, and
            // deletes that second's counter (only the current second is ever read), so the
            // store keeps at most two of them however long the gaps between busy seconds are.
            Ok(1) => {
                let last = last_second(self.inner).ok().flatten();
                if let Some(last) = last.filter(|l| *l != second) {
                    let owed = match read_counter(self.inner, &qbo_key(last)) {
                        Ok(Some(count)) if last < second => carry(count, second - last),
                        _ => 0,
                    };
                    if owed > 0 {
                        let _ = self.inner.kv_increment(&key, owed);
                    }
                    let _ = self.inner.kv_delete(&qbo_key(last));
                }
                let _ = self
                    .inner
                    .kv_set(QBO_LAST_KEY, second.to_string().as_bytes());
            }
            Ok(_) => {}
            Err(e) => self
                .inner
                .log(LogLevel::Warn, &format!("pacing counter not updated: {e}")),
        }
    }

    /// A QuickBooks 429: bulk work everywhere waits out its Retry-After.
    fn note_qbo_answer(&mut self, resp: &HttpResponse) {
        if resp.status != 429 {
            return;
        }
        let wait = failure::quickbooks_throttle_wait(&resp.headers);
        let wait = Duration::from_std(wait).unwrap_or_else(|_| Duration::days(1));
        let now = self.inner.now();
        let until = now + wait;
        if let Err(e) = pause_quickbooks(self.inner, until)
            .and_then(|()| super::limiter::throttled(self.inner, now, wait))
        {
            self.inner
                .log(LogLevel::Warn, &format!("pacing pause not saved: {e}"));
        }
    }
}

impl Host for Paced<'_> {
    crate::host::pass_through_to_inner!();

    fn http(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let qbo = request.url.starts_with(&self.qbo_prefix);
        if qbo {
            self.count_qbo();
        }
        let result = self.inner.http(request);
        if qbo && let Ok(resp) = &result {
            self.note_qbo_answer(resp);
        }
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

    fn sleep_ms(&mut self, ms: u64) {
        self.inner.sleep_ms(ms)
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

    fn qbo_call(h: &mut FakeHost, path: &str) -> HttpResponse {
        let mut p = Paced::new(h);
        let resp = p
            .http(&HttpRequest::new(
                Method::Get,
                format!("https://qbo.test/v3/company/1/{path}"),
            ))
            .unwrap();
        assert_eq!(p.qbo_calls, 1);
        resp
    }

    fn at(secs: i64) -> DateTime<Utc> {
        t0() + Duration::seconds(secs)
    }

    fn counters(h: &FakeHost) -> usize {
        h.kv.keys()
            .filter(|k| {
                k.strip_prefix("pace/qbo/")
                    .is_some_and(|n| n.parse::<i64>().is_ok())
            })
            .count()
    }

    #[test]
    fn quickbooks_calls_are_counted_per_second_and_the_budget_stops_bulk_work_until_the_next() {
        let mut h = host();
        for _ in 0..(QBO_BULK_PER_SECOND - 1) {
            qbo_call(&mut h, "query");
        }
        assert_eq!(qbo_used(&mut h, t0()).unwrap(), QBO_BULK_PER_SECOND - 1);
        assert_eq!(check(&mut h).unwrap(), None, "one more job may start");
        // That job makes four calls: they all count, the second is used up.
        for _ in 0..QBO_COST_PER_JOB {
            qbo_call(&mut h, "invoice");
        }
        let wait = check(&mut h).unwrap().unwrap();
        assert_eq!(wait, Wait::QuickBooks { until: at(1) });
        assert!(
            wait.describe().contains("8 QuickBooks requests a second"),
            "{}",
            wait.describe()
        );
        // Half a second later it is still this second.
        h.advance(Duration::milliseconds(500));
        assert_eq!(
            check(&mut h).unwrap(),
            Some(Wait::QuickBooks { until: at(1) })
        );
        // The next second starts with what this one still owes (11 calls, 7 paid back a second:
        // 4) already used.
        h.advance(Duration::milliseconds(500));
        assert_eq!(qbo_used(&mut h, at(1)).unwrap(), 4);
        assert_eq!(check(&mut h).unwrap(), None);
        qbo_call(&mut h, "query");
        assert_eq!(qbo_used(&mut h, at(1)).unwrap(), 5);
        assert!(!h.kv.contains_key(&qbo_key(second_of(t0()))));
        assert_eq!(counters(&h), 1);
        // Quiet seconds pay nothing back twice: two seconds on, nothing is owed.
        h.advance(Duration::seconds(2));
        assert_eq!(qbo_used(&mut h, at(3)).unwrap(), 0);
    }

    #[test]
    fn a_burst_of_webhook_calls_holds_bulk_work_back_until_it_is_paid_back() {
        let mut h = host();
        for _ in 0..20 {
            qbo_call(&mut h, "invoice");
        }
        // 20 calls, paid back at 7 a second: 13 owed in the next second, 6 in the one after.
        assert_eq!(
            check(&mut h).unwrap(),
            Some(Wait::QuickBooks { until: at(2) })
        );
        h.advance(Duration::seconds(1));
        assert_eq!(qbo_used(&mut h, at(1)).unwrap(), 13);
        assert_eq!(
            check(&mut h).unwrap(),
            Some(Wait::QuickBooks { until: at(2) })
        );
        h.advance(Duration::seconds(1));
        assert_eq!(qbo_used(&mut h, at(2)).unwrap(), 6);
        assert_eq!(check(&mut h).unwrap(), None);
        // However long the gaps, the store keeps at most two counters.
        for gap in [1, 5, 60, 3600] {
            h.advance(Duration::seconds(gap));
            qbo_call(&mut h, "query");
            assert!(counters(&h) <= 2, "{:?}", h.kv.keys().collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_quickbooks_429_pauses_bulk_work_for_its_retry_after_or_a_minute() {
        let mut h = host();
        h.route("https://qbo.test/v3/company/1/query?asked", |_| {
            let mut r = HttpResponse::new(429, "");
            r.headers = vec![("Retry-After".into(), "7".into())];
            Ok(r)
        });
        h.route("https://qbo.test/v3/company/1/query?silent", |_| {
            Ok(HttpResponse::new(429, ""))
        });
        qbo_call(&mut h, "query?asked");
        let wait = check(&mut h).unwrap().unwrap();
        assert_eq!(wait, Wait::QuickBooksThrottled { until: at(7) });
        assert!(wait.describe().contains("429"), "{}", wait.describe());
        h.advance(Duration::seconds(7));
        assert_eq!(check(&mut h).unwrap(), None);
        // A 429 naming no time: a minute. A shorter one after it does not shorten the pause.
        qbo_call(&mut h, "query?silent");
        qbo_call(&mut h, "query?asked");
        assert_eq!(
            check(&mut h).unwrap(),
            Some(Wait::QuickBooksThrottled { until: at(67) })
        );
        h.advance(Duration::seconds(60));
        assert_eq!(check(&mut h).unwrap(), None);
        // Successful calls pause nothing.
        qbo_call(&mut h, "query");
        assert_eq!(check(&mut h).unwrap(), None);
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
        assert_eq!(check(&mut h).unwrap(), Some(Wait::BigCommerce { until }));
        h.advance(Duration::seconds(13));
        assert_eq!(check(&mut h).unwrap(), None);
    }
}
