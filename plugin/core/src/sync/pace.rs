//! Pacing: keeping the connector inside what both services allow.
//!
//! - **QuickBooks, per minute: a sliding window.** QuickBooks counts every operation (each item
//!   of a batch request too) in a sliding 60 s window per company, and answers 429 past 500.
//!   Every QuickBooks request a job makes is reserved before it is sent
//!   ([`crate::sync::limiter::SlotHost`] calls [`reserve`]): a counter shared by every instance
//!   (`pace/qbo/ops`, every operation ever reserved) grows by its operations, and the request
//!   goes out once the operations reserved since a moment at least [`WINDOW_S`] (62) seconds
//!   back are within the window's limit ([`WINDOW_OPS`], 490). That moment's count comes from
//!   the marks: the first request or look of each second notes the counter's value then
//!   (`pace/qbo/mark/{second mod 128}`, and in `pace/qbo/last` with its anchor, the newest mark
//!   at least 62 s older than itself). So a burst may use the whole window at once, a second that
//!   leaves the window frees what it held, and since every request reserves before it looks,
//!   two instances that look at once never both take the last room.
//! - **QuickBooks, per second.** QuickBooks also allows 10 requests a second: every reserved
//!   request (a batch is one) counts in a per-second counter (`pace/qbo/{second}`), and no job
//!   starts in a second that has counted [`QBO_BULK_PER_SECOND`] (bulk work) or the limiter's
//!   budget. (Requests made outside a job, the few of connecting a company or checking a
//!   mapping's names, are not counted.)
//! - **Bulk work** (backfill, sweep) starts a job only while the second has room and the window
//!   holds at most [`BULK_WINDOW_OPS`] (440): the rest of the window is left to live traffic.
//!   Bulk work runs one job at a time under one lease, so it adds at most one concurrent request.
//! - A QuickBooks 429 seen by [`Paced`] (any call) stops bulk work everywhere until its
//!   `Retry-After` has passed (60 s when it names none, at most a day): `pace/qbo/pause_until`.
//!   Every other job waits for it too ([`crate::sync::limiter`]), and the limiter's budget
//!   stays low for a while after it.
//! - BigCommerce's quota is per store and shared by every app: [`Paced`] remembers the last
//!   `X-Rate-Limit-Requests-Left` / `X-Rate-Limit-Time-Reset-Ms` it saw, and bulk work stops
//!   while fewer than [`bc_reserve`] requests are left, until the window resets
//!   (`pace/bc/pause_until`).
//! - With `qbo_pacing` off (a QuickBooks stand-in without limits) nothing is counted or
//!   reserved; the 429 pauses and BigCommerce's window still apply.
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
/// The operations reserved within [`WINDOW_S`] seconds that may go out: QuickBooks' 500 less
/// a little headroom (another app's call, a clock a little off).
pub const WINDOW_OPS: i64 = 490;
/// How far back the window looks: QuickBooks' 60 s, plus a second for the marks' one-second
/// grain and one for a request's way to QuickBooks after its reservation.
pub const WINDOW_S: i64 = 62;
/// What bulk work leaves of the window to live traffic: it starts a job only while the window
/// holds at most this many operations.
pub const BULK_WINDOW_OPS: i64 = 440;
/// The QuickBooks requests a second may count before bulk work starts no job in it (QuickBooks
/// allows 10 a second).
pub const QBO_BULK_PER_SECOND: i64 = 8;
/// QuickBooks requests one order may need (invoice, customer lookup/creation, payment): the
/// room a job needs in the window to start.
pub const QBO_COST_PER_JOB: i64 = 4;
/// What the jobs running at once may have reserved and not yet sent: each of the limiter's 8
/// slots' jobs a few requests, and a batch.
pub const IN_FLIGHT_OPS: i64 = 8 * QBO_COST_PER_JOB + 30;

const BC_PAUSE_KEY: &str = "pace/bc/pause_until";
const QBO_PAUSE_KEY: &str = "pace/qbo/pause_until";
/// Every QuickBooks operation ever reserved, by every instance.
const OPS_KEY: &str = "pace/qbo/ops";
/// The newest mark (with its anchor): where the window's look-up starts.
const LAST_KEY: &str = "pace/qbo/last";
/// Marks are kept for this many seconds (each second's key is reused this much later).
const MARK_RING: i64 = 128;
/// How far back along the marks' chain a new mark looks for its anchor.
const ANCHOR_STEPS: usize = 8;

fn second_of(at: DateTime<Utc>) -> i64 {
    at.timestamp()
}

fn qbo_key(second: i64) -> String {
    format!("pace/qbo/{second}")
}

fn mark_key(second: i64) -> String {
    format!("pace/qbo/mark/{}", second.rem_euclid(MARK_RING))
}

fn read_counter(host: &mut dyn Host, key: &str) -> Result<Option<i64>, KvError> {
    Ok(host
        .kv_get(key)?
        .and_then(|b| super::store::decode_counter(&b)))
}

/// The operations counter's value as the first request or look of second `at` saw it, with
/// the previous mark's (the last second before `at` that was marked) and its anchor's (the newest mark
/// at least [`WINDOW_S`] seconds older than `at` that it found). Any of them is a value the
/// counter had by the end of its second: what was reserved since is at most the counter now
/// less it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    at: i64,
    ops: i64,
    prev: (i64, i64),
    anchor: (i64, i64),
}

impl Mark {
    fn encode(&self) -> String {
        format!(
            "{} {} {} {} {} {}",
            self.at, self.ops, self.prev.0, self.prev.1, self.anchor.0, self.anchor.1
        )
    }

    fn decode(bytes: &[u8]) -> Option<Mark> {
        let text = std::str::from_utf8(bytes).ok()?;
        let n: Vec<i64> = text
            .split(' ')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        match n[..] {
            [at, ops, p0, p1, a0, a1] => Some(Mark {
                at,
                ops,
                prev: (p0, p1),
                anchor: (a0, a1),
            }),
            _ => None,
        }
    }
}

fn read_mark(host: &mut dyn Host, key: &str) -> Result<Option<Mark>, KvError> {
    Ok(host.kv_get(key)?.and_then(|b| Mark::decode(&b)))
}

/// The mark of second `at`, if that second was marked (its key is reused 128 s later).
fn mark_of(host: &mut dyn Host, at: i64) -> Result<Option<Mark>, KvError> {
    Ok(read_mark(host, &mark_key(at))?.filter(|m| m.at == at))
}

/// The newest counter value noted by the end of second `before` that the marks lead to from
/// `from`: `from` itself, its previous mark, or one further back along the chain; else the
/// anchor of the last mark reached (older, so the window it gives is wider).
fn noted_by(host: &mut dyn Host, from: Mark, before: i64) -> Result<(i64, i64), KvError> {
    let mut m = from;
    for _ in 0..ANCHOR_STEPS {
        if m.at <= before {
            return Ok((m.at, m.ops));
        }
        if m.prev.0 <= before {
            return Ok(m.prev);
        }
        match mark_of(host, m.prev.0)? {
            Some(p) => m = p,
            None => break,
        }
    }
    Ok(if m.anchor.0 <= before {
        m.anchor
    } else {
        (0, 0)
    })
}

/// The counter's value at a moment no later than the end of second `second`, the counter
/// being `total` now: the window's operations are `total` less it.
fn window_base(
    host: &mut dyn Host,
    second: i64,
    total: i64,
    last: Option<Mark>,
) -> Result<i64, KvError> {
    // Once the last marked second is two seconds past, nothing sent since the window's start
    // went out (every request's second is marked): what was reserved since is requests still on
    // their way from reservation to QuickBooks, or reservations that found no room and were not
    // sent. (Two seconds, not one: two instances marking seconds a moment apart may leave the
    // older one as the last.)
    let Some(last) = last else {
        return Ok((total - IN_FLIGHT_OPS).max(0));
    };
    if last.at <= second - 2 {
        return Ok(last.ops.max(total - IN_FLIGHT_OPS));
    }
    if last.at <= second {
        return Ok(last.ops);
    }
    // The last mark's anchor: in a busy minute that very second (or one just before it);
    // otherwise older, so the window it gives is wider, which is as good while even that one
    // holds at most half the limit.
    if last.anchor.0 <= second
        && (last.anchor.0 >= second - 1 || total - last.anchor.1 <= WINDOW_OPS / 2)
    {
        return Ok(last.anchor.1);
    }
    if let Some((_, ops)) = mark_near(host, second)? {
        return Ok(ops);
    }
    Ok(noted_by(host, last, second)?.1)
}

/// The mark of second `at` or of one of the three before it (looks mark their seconds too, so
/// in a busy minute one of them has one): a value the counter had by the end of `at`.
fn mark_near(host: &mut dyn Host, at: i64) -> Result<Option<(i64, i64)>, KvError> {
    for k in (at - 3..=at).rev() {
        if let Some(m) = mark_of(host, k)? {
            return Ok(Some((m.at, m.ops)));
        }
    }
    Ok(None)
}

/// QuickBooks operations reserved within the last [`WINDOW_S`] seconds (at most a second more):
/// at least what QuickBooks' sliding minute holds of the connector's.
///
/// A look marks its second when nothing has yet, so a second in which the window is full and
/// nothing goes out still has a mark for the looks 62 s later.
pub fn window_ops(host: &mut dyn Host, now: DateTime<Utc>) -> Result<i64, KvError> {
    let second = second_of(now);
    let total = read_counter(host, OPS_KEY)?.unwrap_or(0);
    let last = read_mark(host, LAST_KEY)?;
    let base = window_base(host, second - WINDOW_S, total, last)?;
    if last.is_none_or(|l| l.at < second) {
        mark_second(host, second, total, last)?;
    }
    Ok((total - base).max(0))
}

/// What the window will hold `ahead_s` seconds from `now` of what is reserved by now: the
/// operations reserved since the mark of the second that window starts after (or of one of
/// the three before it). With no such mark, what it holds now (it only shrinks as time
/// passes). An estimate for admission: reserving still looks at the window itself.
pub fn window_ops_ahead(
    host: &mut dyn Host,
    now: DateTime<Utc>,
    ahead_s: i64,
) -> Result<i64, KvError> {
    let total = read_counter(host, OPS_KEY)?.unwrap_or(0);
    match mark_near(host, second_of(now) + ahead_s - WINDOW_S)? {
        Some((_, ops)) => Ok((total - ops).max(0)),
        None => window_ops(host, now),
    }
}

/// Reserves `ops` QuickBooks operations for a request about to be sent, and counts the
/// request in its second (the second's first request marks it). With a `limit`: `true` when
/// the window holds them with everything reserved before (the request may go), `false` when it
/// does not (the reservation stays, counted as if sent: the caller waits for room and reserves
/// again). Without one (the caller knows it has room): `true`.
pub fn reserve(host: &mut dyn Host, ops: i64, limit: Option<i64>) -> Result<bool, KvError> {
    let second = second_of(host.now());
    let total = host.kv_increment(OPS_KEY, ops)?;
    let last = read_mark(host, LAST_KEY)?;
    let fits = match limit {
        // This reservation is on its way, not among the others on theirs.
        Some(limit) => total - window_base(host, second - WINDOW_S, total - ops, last)? <= limit,
        None => true,
    };
    if host.kv_increment(&qbo_key(second), 1)? == 1 {
        mark_second(host, second, total, last)?;
    }
    Ok(fits)
}

/// QuickBooks requests counted so far in the second of `now`.
/// The keys a look at the window at `now` starts with: the second's request counter, the
/// operations counter, the newest mark and the marks a window's base is looked for in (for
/// a caller that reads them ahead, [`crate::host::Prefetched`]).
pub fn look_keys(now: DateTime<Utc>) -> Vec<String> {
    let second = second_of(now);
    let base = second - WINDOW_S;
    let mut keys = vec![qbo_key(second), OPS_KEY.to_string(), LAST_KEY.to_string()];
    keys.extend((base - 3..=base).rev().map(mark_key));
    keys
}

pub fn requests_in_second(host: &mut dyn Host, now: DateTime<Utc>) -> Result<i64, KvError> {
    Ok(read_counter(host, &qbo_key(second_of(now)))?.unwrap_or(0))
}

/// The QuickBooks operations a request carries: `None` for a request that is not a QuickBooks
/// API call; a batch request's items one by one (QuickBooks counts each toward its minute).
pub fn qbo_operations(request: &HttpRequest) -> Option<i64> {
    let path = request.url.split('?').next().unwrap_or_default();
    if !path.contains("/v3/company/") {
        return None;
    }
    if !path.ends_with("/batch") {
        return Some(1);
    }
    let items = serde_json::from_slice::<serde_json::Value>(&request.body)
        .ok()
        .and_then(|v| v.get("BatchItemRequest")?.as_array().map(Vec::len))
        .unwrap_or(1);
    Some(i64::try_from(items.max(1)).unwrap_or(i64::MAX))
}

/// The start of the second after `now`.
pub fn next_second(now: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(second_of(now) + 1, 0).unwrap_or(now)
}

/// The first request or look of `second`: notes the operations counter's value as its mark,
/// with the previous mark and an anchor (the newest mark at least [`WINDOW_S`] seconds older),
/// makes it the last mark, and deletes the previous second's request counter (only the current
/// second's is read, so the store keeps about two of them).
fn mark_second(
    host: &mut dyn Host,
    second: i64,
    ops: i64,
    last: Option<Mark>,
) -> Result<(), KvError> {
    let mark = match last {
        Some(l) if l.at < second => {
            let before = second - WINDOW_S;
            let anchor = if l.at <= before - 2 {
                // Nothing was sent in between (see `window_base`).
                (before, l.ops.max(ops - IN_FLIGHT_OPS))
            } else if let Some(m) = mark_near(host, before)? {
                m
            } else {
                noted_by(host, l, before)?
            };
            Mark {
                at: second,
                ops,
                prev: (l.at, l.ops),
                anchor,
            }
        }
        // Another instance already marked a later second (a clock a little ahead, or a race
        // at the turn of the second): this mark borrows its older links.
        Some(l) => Mark {
            at: second,
            ops,
            prev: if l.prev.0 < second { l.prev } else { (0, 0) },
            anchor: l.anchor,
        },
        None => Mark {
            at: second,
            ops,
            prev: (0, 0),
            anchor: (0, 0),
        },
    };
    host.kv_set(&mark_key(second), mark.encode().as_bytes())?;
    match last {
        Some(l) if l.at >= second => Ok(()),
        Some(l) => {
            host.kv_set(LAST_KEY, mark.encode().as_bytes())?;
            host.kv_delete(&qbo_key(l.at))
        }
        None => host.kv_set(LAST_KEY, mark.encode().as_bytes()),
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
                "pacing: bulk work starts a job only while this second has counted fewer than \
                 {QBO_BULK_PER_SECOND} QuickBooks requests and the last minute at most \
                 {BULK_WINDOW_OPS} operations (QuickBooks allows {QBO_REQUESTS_PER_MINUTE} a \
                 minute, webhooks included); going on at {until}"
            ),
            Wait::QuickBooksThrottled { until } => format!(
                "pacing: QuickBooks answered 429 (too many requests); bulk work waits for its \
                 Retry-After and goes on at {until}"
            ),
            Wait::BigCommerce { until } => format!(
                "pacing: BigCommerce's rate-limit window is nearly used up; going on at {until}"
            ),
        }
    }
}

/// Whether the connector paces its QuickBooks requests (`qbo_pacing`; a value that is neither
/// `on` nor `off` keeps it on, and says so in the log).
pub fn pacing_on(host: &mut dyn Host) -> bool {
    settings::qbo_pacing(host).unwrap_or_else(|e| {
        host.log(LogLevel::Warn, &format!("{e}; pacing stays on"));
        true
    })
}

/// Whether bulk work may start one more job now. Whatever QuickBooks calls the job makes are
/// reserved when they are made.
pub fn check(host: &mut dyn Host) -> Result<Option<Wait>, KvError> {
    if let Some(wait) = paused(host)? {
        return Ok(Some(wait));
    }
    if !pacing_on(host) {
        return Ok(None);
    }
    let now = host.now();
    if requests_in_second(host, now)? >= QBO_BULK_PER_SECOND
        || window_ops(host, now)? + QBO_COST_PER_JOB > BULK_WINDOW_OPS
    {
        return Ok(Some(Wait::QuickBooks {
            until: next_second(now),
        }));
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

/// A [`Host`] that counts the QuickBooks API calls it carries ([`Paced::qbo_calls`]; the shared
/// window counts them where they are reserved, [`reserve`]), pauses bulk work on a QuickBooks
/// 429, and remembers BigCommerce's rate-limit headers. Everything else passes straight through.
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
            self.qbo_calls += 1;
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

    /// A request of `ops` operations as a job sends it: reserved (which counts the second's
    /// requests and marks the second), then sent if the window holds it.
    fn send(h: &mut FakeHost, ops: i64) -> bool {
        if !reserve(h, ops, Some(WINDOW_OPS)).unwrap() {
            return false;
        }
        qbo_call(h, "batch");
        true
    }

    #[test]
    fn bulk_work_waits_for_a_busy_second_and_for_room_in_the_minute() {
        let mut h = host();
        for _ in 0..(QBO_BULK_PER_SECOND - 1) {
            reserve(&mut h, 1, None).unwrap();
        }
        assert_eq!(
            requests_in_second(&mut h, t0()).unwrap(),
            QBO_BULK_PER_SECOND - 1
        );
        assert_eq!(check(&mut h).unwrap(), None, "one more job may start");
        reserve(&mut h, 1, None).unwrap();
        let wait = check(&mut h).unwrap().unwrap();
        assert_eq!(wait, Wait::QuickBooks { until: at(1) });
        assert!(
            wait.describe().contains("fewer than 8 QuickBooks requests"),
            "{}",
            wait.describe()
        );
        h.advance(Duration::milliseconds(500));
        assert_eq!(
            check(&mut h).unwrap(),
            Some(Wait::QuickBooks { until: at(1) })
        );
        h.advance(Duration::milliseconds(500));
        assert_eq!(check(&mut h).unwrap(), None, "a new second");
        // The minute: bulk work leaves the last 50 operations of the window to live traffic.
        let used = window_ops(&mut h, at(1)).unwrap();
        assert!(send(&mut h, BULK_WINDOW_OPS - QBO_COST_PER_JOB - used));
        assert_eq!(check(&mut h).unwrap(), None);
        assert!(send(&mut h, 1));
        assert_eq!(
            check(&mut h).unwrap(),
            Some(Wait::QuickBooks { until: at(2) })
        );
        // With pacing off bulk work is not held back.
        h.set_config("qbo_pacing", "off");
        assert_eq!(check(&mut h).unwrap(), None);
    }

    #[test]
    fn the_window_takes_a_burst_at_once_and_frees_it_a_minute_later() {
        let mut h = host();
        for _ in 0..16 {
            assert!(send(&mut h, 30));
        }
        assert!(send(&mut h, 10), "490 operations fit");
        assert!(!send(&mut h, 1), "the 491st does not");
        assert!(window_ops(&mut h, t0()).unwrap() > WINDOW_OPS - 1);
        // Nothing leaves the window for a minute (and the seconds' grain).
        for secs in [1, 30, 61] {
            h.advance(Duration::seconds(secs) - (h.now() - t0()));
            assert!(
                window_ops(&mut h, at(secs)).unwrap() >= WINDOW_OPS,
                "{secs} s after the burst"
            );
            assert!(!send(&mut h, 1), "{secs} s after the burst");
        }
        // Then the burst's second has left it: only what may be on its way still counts.
        h.advance(Duration::seconds(3));
        assert!(window_ops(&mut h, at(64)).unwrap() <= IN_FLIGHT_OPS);
        assert!(send(&mut h, 30));
        // However long the run, the store keeps at most two per-second counters and a mark per
        // second of the last 128.
        for step in 0..400 {
            h.advance(Duration::milliseconds(700));
            send(&mut h, 1 + step % 3);
        }
        assert!(counters(&h) <= 2, "{:?}", h.kv.keys().collect::<Vec<_>>());
        let marks =
            h.kv.keys()
                .filter(|k| k.starts_with("pace/qbo/mark/"))
                .count();
        assert!(marks <= 128, "{marks} marks");
    }

    /// Sends as much as the window lets through, in requests of 1 to 30 operations at uneven
    /// moments, for ten minutes: no 60 s ever hold more than the window's limit, and the
    /// window is used (each minute carries nearly its limit).
    #[test]
    fn no_sixty_seconds_ever_hold_more_than_the_limit_and_the_limit_is_used() {
        let mut h = host();
        let mut sent: Vec<(DateTime<Utc>, i64)> = Vec::new();
        let mut seed: u64 = 7;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        while h.now() < at(600) {
            let ops = 1 + i64::try_from(next(30)).unwrap();
            // A job looks at the window before it reserves (as the limiter's admission does).
            let now = h.now();
            if window_ops(&mut h, now).unwrap() + ops <= WINDOW_OPS && send(&mut h, ops) {
                sent.push((h.now(), ops));
            }
            h.advance(Duration::milliseconds(
                i64::try_from(50 + next(900)).unwrap(),
            ));
        }
        for (i, (t, _)) in sent.iter().enumerate() {
            let within: i64 = sent[i..]
                .iter()
                .take_while(|(u, _)| *u - *t < Duration::seconds(60))
                .map(|(_, n)| n)
                .sum();
            assert!(
                within <= WINDOW_OPS,
                "{within} operations within 60 s of {t}"
            );
        }
        let total: i64 = sent.iter().map(|(_, n)| n).sum();
        // Ten minutes at 490 a window of 62 to 63 s: about 4,700.
        assert!(total >= 4_400, "{total} operations in ten minutes");
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
