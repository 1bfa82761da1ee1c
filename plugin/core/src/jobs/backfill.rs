//! The backfill (CONTRACT §8): importing every order created in a date window, for a store
//! that had orders before the connector was installed.
//!
//! `POST /admin/backfill` files a run ([`start`]); slices ([`crate::jobs::bulk::slice`]) then
//! list `/v2/orders` for the window one page at a time — keyset paging (`min_id`, ascending
//! id), so orders archived meanwhile cannot shift a page and hide another — and queue every
//! eligible order that is not already in QuickBooks. The queue is drained through the same job
//! as a webhook, paced. Progress is saved after every page and every job, so a restart
//! resumes from the last finished page; `DELETE /admin/backfill` cancels ([`cancel`]).
//!
//! Eligibility follows CONTRACT §7: status 0 (Incomplete) is never invoiced; 5 (Cancelled) and
//! 6 (Declined) only matter when something was posted already; an order archived before it was
//! invoiced has nothing to post.
//!
//! KV: `backfill/control` (the run and its window; written by the admin routes under
//! `lease/backfill-admin`) and `backfill/run/{run}` (its progress; written by the slice holding
//! `lease/bulk`, and once by [`start`] before any slice can see the run).

use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::host::{Host, KvError};
use crate::jobs::bulk::{self, Batch, Cursor, Freshness, Item, Listing, Source};
use crate::jobs::run::{self, RunResult, Trigger};
use crate::models::bigcommerce::{self, OrderListQuery, OrderSort, OrderSummary, PAGE_LIMIT};
use crate::sync::failure::{self, Failure, Retryability};
use crate::sync::pace;
use crate::sync::record::{Entity, State};
use crate::sync::store;
use crate::sync::upstream;

const CONTROL_KEY: &str = "backfill/control";
const ADMIN_LEASE: &str = "lease/backfill-admin";

fn progress_key(run: &str) -> String {
    format!("backfill/run/{run}")
}

/// The run an operator started, and whether they cancelled it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    pub run: String,
    pub since: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl Control {
    /// The end of the window as listed: `until`, else the moment the run started (orders
    /// created after that arrive by webhook).
    pub fn listed_until(&self) -> DateTime<Utc> {
        self.until.unwrap_or(self.started_at)
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Done,
    Cancelled,
    Failed,
}

impl RunState {
    fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Done => "done",
            RunState::Cancelled => "cancelled",
            RunState::Failed => "failed",
        }
    }
}

/// A run's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub state: RunState,
    pub pages_done: u64,
    pub orders_seen: u64,
    pub orders_queued: u64,
    pub orders_already_synced: u64,
    pub orders_posted: u64,
    /// Orders with nothing to invoice (status 0, or 5/6/archived with nothing posted).
    #[serde(default)]
    pub orders_skipped: u64,
    /// Orders whose job ended `failed` (their records say why).
    #[serde(default)]
    pub orders_failed: u64,
    /// Queued orders that ran but wait for a retry or re-authorization.
    #[serde(default)]
    pub unsettled: Vec<u64>,
    /// Keyset cursor: the next page lists ids from here.
    #[serde(default)]
    pub next_min_id: Option<u64>,
    #[serde(default)]
    pub listing_done: bool,
    /// The last queue position counted (a job re-run after a crash is not counted twice).
    #[serde(default)]
    pub counted: Option<Cursor>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub error: Option<String>,
    /// Why it is not moving right now (pacing, re-authorization), if so.
    #[serde(default)]
    pub waiting: Option<String>,
}

impl Progress {
    fn new(now: DateTime<Utc>) -> Progress {
        Progress {
            state: RunState::Running,
            pages_done: 0,
            orders_seen: 0,
            orders_queued: 0,
            orders_already_synced: 0,
            orders_posted: 0,
            orders_skipped: 0,
            orders_failed: 0,
            unsettled: Vec::new(),
            next_min_id: None,
            listing_done: false,
            counted: None,
            updated_at: now,
            finished_at: None,
            error: None,
            waiting: None,
        }
    }
}

fn load_control(host: &mut dyn Host) -> Result<Option<Control>, KvError> {
    store::cache_get(host, CONTROL_KEY)
}

fn load_progress(host: &mut dyn Host, run: &str) -> Result<Option<Progress>, KvError> {
    store::cache_get(host, &progress_key(run))
}

fn save_progress(host: &mut dyn Host, run: &str, p: &Progress) -> Result<(), KvError> {
    store::cache_set(host, &progress_key(run), p)
}

/// The current run and its progress, when one was ever started.
pub fn current(host: &mut dyn Host) -> Result<Option<(Control, Progress)>, KvError> {
    let Some(control) = load_control(host)? else {
        return Ok(None);
    };
    let progress =
        load_progress(host, &control.run)?.unwrap_or_else(|| Progress::new(control.started_at));
    Ok(Some((control, progress)))
}

/// Whether a run is in progress (cancelled runs count until a slice has wound them up).
pub fn is_running(host: &mut dyn Host) -> Result<bool, KvError> {
    Ok(current(host)?.is_some_and(|(_, p)| p.state == RunState::Running))
}

/// Whether queued entries of `run` should still run (not cancelled, not replaced).
pub fn accepts(host: &mut dyn Host, run: &str) -> Result<bool, KvError> {
    Ok(load_control(host)?.is_some_and(|c| c.run == run && c.cancelled_at.is_none()))
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The backfill object of `GET /admin/backfill` (CONTRACT §8), plus extensions.
pub fn view(host: &mut dyn Host) -> Result<Value, KvError> {
    let Some((control, p)) = current(host)? else {
        return Ok(json!({
            "state": "idle", "since": null, "until": null, "pages_done": 0, "orders_seen": 0,
            "orders_queued": 0, "orders_already_synced": 0, "orders_posted": 0, "orders_skipped": 0,
            "orders_failed": 0, "orders_waiting": 0, "started_at": null, "updated_at": null,
            "finished_at": null, "error": null, "waiting": null,
        }));
    };
    let state = if p.state == RunState::Running && control.cancelled_at.is_some() {
        RunState::Cancelled
    } else {
        p.state
    };
    let finished_at = p.finished_at.or(if state == RunState::Cancelled {
        control.cancelled_at
    } else {
        None
    });
    Ok(json!({
        "state": state.as_str(),
        "run": control.run,
        "since": rfc3339(control.since),
        "until": control.until.map(rfc3339),
        "pages_done": p.pages_done,
        "orders_seen": p.orders_seen,
        "orders_queued": p.orders_queued,
        "orders_already_synced": p.orders_already_synced,
        "orders_posted": p.orders_posted,
        "orders_skipped": p.orders_skipped,
        "orders_failed": p.orders_failed,
        "orders_waiting": p.unsettled.len(),
        "started_at": rfc3339(control.started_at),
        "updated_at": rfc3339(p.updated_at),
        "finished_at": finished_at.map(rfc3339),
        "error": p.error,
        "waiting": if state == RunState::Running { p.waiting.clone() } else { None },
    }))
}

/// Why a backfill cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    BadRequest(String),
    #[error(
        "a backfill is already running (since {since}); watch it with GET /admin/backfill or cancel it with DELETE /admin/backfill"
    )]
    Running { since: String },
    #[error("another backfill request is being handled right now; try again in a moment")]
    Busy,
    #[error("{0}")]
    Storage(#[from] KvError),
}

/// Reads a date: RFC 3339 (`2026-01-01T00:00:00Z`) or a plain date (`2026-01-01`, midnight UTC;
/// as `until`, the end of that day).
pub fn parse_date(field: &str, text: &str, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    if let Ok(day) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let start = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        return Ok(if end_of_day {
            start + Duration::days(1) - Duration::seconds(1)
        } else {
            start
        });
    }
    Err(format!(
        "`{field}` is `{text}`, which is not a date: write it as 2026-01-01 or 2026-01-01T00:00:00Z"
    ))
}

/// The window of a `POST /admin/backfill` body (`{"since": …, "until": … | null}`).
pub fn parse_window(
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, Option<DateTime<Utc>>), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the body is not JSON ({e}): send {{\"since\": \"2026-01-01T00:00:00Z\", \"until\": null}}"
        )
    })?;
    let since = match v.get("since") {
        Some(Value::String(s)) => parse_date("since", s, false)?,
        Some(Value::Null) | None => {
            return Err(
                "`since` is missing: send {\"since\": \"2026-01-01T00:00:00Z\", \"until\": null}"
                    .into(),
            );
        }
        Some(other) => return Err(format!("`since` must be a date string, not {other}")),
    };
    let until = match v.get("until") {
        Some(Value::String(s)) => Some(parse_date("until", s, true)?),
        Some(Value::Null) | None => None,
        Some(other) => {
            return Err(format!(
                "`until` must be a date string or null, not {other}"
            ));
        }
    };
    if let Some(u) = until
        && since > u
    {
        return Err(format!(
            "`since` ({}) is after `until` ({}): swap them or widen the window",
            rfc3339(since),
            rfc3339(u)
        ));
    }
    if since > now {
        return Err(format!(
            "`since` ({}) is in the future: orders from then on arrive by webhook",
            rfc3339(since)
        ));
    }
    Ok((since, until))
}

/// Files a new run for the window. 409-worthy when one is running.
pub fn start(
    host: &mut dyn Host,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> Result<Value, StartError> {
    let lease = store::acquire(host, ADMIN_LEASE, 10_000, 2_000)?.ok_or(StartError::Busy)?;
    let result = start_locked(host, since, until);
    store::release(host, lease)?;
    result
}

fn start_locked(
    host: &mut dyn Host,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> Result<Value, StartError> {
    if let Some((control, p)) = current(host)?
        && p.state == RunState::Running
        && control.cancelled_at.is_none()
    {
        return Err(StartError::Running {
            since: rfc3339(control.since),
        });
    }
    let now = host.now();
    let mut nonce = [0u8; 4];
    host.random_bytes(&mut nonce);
    let run = format!("bf-{}-{}", now.timestamp_millis(), hex::encode(nonce));
    // Progress first: a slice that sees the control record always finds its progress.
    save_progress(host, &run, &Progress::new(now))?;
    let control = Control {
        run,
        since,
        until,
        started_at: now,
        cancelled_at: None,
    };
    store::cache_set(host, CONTROL_KEY, &control)?;
    Ok(view(host)?)
}

/// Cancels the running backfill (queued orders of it are dropped; posted ones stay posted).
/// `None` when nothing is running.
pub fn cancel(host: &mut dyn Host) -> Result<Option<Value>, StartError> {
    let lease = store::acquire(host, ADMIN_LEASE, 10_000, 2_000)?.ok_or(StartError::Busy)?;
    let result = cancel_locked(host);
    store::release(host, lease)?;
    result
}

fn cancel_locked(host: &mut dyn Host) -> Result<Option<Value>, StartError> {
    let Some((mut control, p)) = current(host)? else {
        return Ok(None);
    };
    if p.state != RunState::Running || control.cancelled_at.is_some() {
        return Ok(None);
    }
    control.cancelled_at = Some(host.now());
    store::cache_set(host, CONTROL_KEY, &control)?;
    Ok(Some(view(host)?))
}

/// Notes (or clears) why the running backfill waits.
pub fn note_waiting(host: &mut dyn Host, why: Option<&str>) -> Result<(), KvError> {
    let Some((control, mut p)) = current(host)? else {
        return Ok(());
    };
    if p.state != RunState::Running || p.waiting.as_deref() == why {
        return Ok(());
    }
    p.waiting = why.map(str::to_string);
    p.updated_at = host.now();
    save_progress(host, &control.run, &p)
}

/// Counts the outcome of one queued order of `run` (at queue position `at`).
pub fn record_result(
    host: &mut dyn Host,
    run: &str,
    at: Cursor,
    id: u64,
    result: &RunResult,
) -> Result<(), KvError> {
    let Some(mut p) = load_progress(host, run)? else {
        return Ok(());
    };
    if p.counted
        .is_some_and(|c| (c.slot, c.index) >= (at.slot, at.index))
    {
        return Ok(());
    }
    p.counted = Some(at);
    match bulk::settled(result) {
        Some(State::Posted) => p.orders_posted += 1,
        Some(State::Failed) => p.orders_failed += 1,
        Some(_) => p.orders_skipped += 1,
        None => {
            if !p.unsettled.contains(&id) {
                p.unsettled.push(id);
            }
        }
    }
    p.waiting = None;
    p.updated_at = host.now();
    save_progress(host, run, &p)
}

/// Lists the next page of the running backfill, or winds it up. Called when the queue is
/// empty, by the slice holding the bulk lease.
pub fn step(host: &mut dyn Host) -> Result<Listing, KvError> {
    let Some((control, mut p)) = current(host)? else {
        return Ok(Listing::Nothing);
    };
    if p.state != RunState::Running {
        return Ok(Listing::Nothing);
    }
    let now = host.now();
    if control.cancelled_at.is_some() {
        p.state = RunState::Cancelled;
        p.finished_at = control.cancelled_at.or(Some(now));
        p.waiting = None;
        p.updated_at = now;
        save_progress(host, &control.run, &p)?;
        return Ok(Listing::Nothing);
    }
    if p.listing_done {
        settle(host, &control, &mut p)?;
        return Ok(Listing::Nothing);
    }
    match list_page(host, &control, &mut p) {
        Ok(()) => {
            p.error = None;
            p.updated_at = host.now();
            save_progress(host, &control.run, &p)?;
            Ok(Listing::Listed)
        }
        Err(f) => {
            let now = host.now();
            if let Retryability::Retryable { min_delay } = f.retryable {
                let wait = min_delay
                    .and_then(|d| Duration::from_std(d).ok())
                    .unwrap_or(Duration::seconds(30));
                pace::pause_bigcommerce(host, now + wait)?;
                p.error = Some(format!(
                    "listing orders failed, retrying shortly: {}",
                    failure::explain(&f)
                ));
            } else {
                p.state = RunState::Failed;
                p.finished_at = Some(now);
                p.error = Some(format!(
                    "listing orders failed: {} Start the backfill again once it is fixed.",
                    failure::explain(&f)
                ));
            }
            p.updated_at = now;
            save_progress(host, &control.run, &p)?;
            Ok(Listing::Nothing)
        }
    }
}

fn list_page(host: &mut dyn Host, control: &Control, p: &mut Progress) -> Result<(), Failure> {
    let storage = |e: KvError| Failure::storage(&e.to_string());
    let up = upstream::upstreams(host)?;
    let query = OrderListQuery {
        min_id: p.next_min_id,
        min_date_created: Some(control.since),
        max_date_created: Some(control.listed_until()),
        sort: OrderSort::IdAsc,
        ..OrderListQuery::default()
    };
    let request = bigcommerce::orders_page(
        &up.bc.api_base,
        &up.bc.store_hash,
        &up.bc.access_token,
        &query,
    );
    let resp = up.bc_send(host, &request)?;
    let rows = bigcommerce::parse_order_list(&resp).map_err(|e| {
        Failure::unreadable(
            failure::Service::BigCommerce,
            &format!("an order list ({e})"),
        )
    })?;
    let mut items = Vec::new();
    for row in &rows {
        p.orders_seen += 1;
        let record =
            store::load_record(host, Entity::Order, &row.id.to_string()).map_err(storage)?;
        let posted = record.as_ref().is_some_and(|r| r.qbo_id.is_some());
        if !eligibility(row, posted) {
            p.orders_skipped += 1;
            continue;
        }
        match bulk::freshness(record.as_ref(), row.date_modified) {
            Freshness::UpToDate => p.orders_already_synced += 1,
            Freshness::Stale | Freshness::InProgress => items.push(Item {
                id: row.id.0,
                modified: None,
            }),
        }
    }
    if !items.is_empty() {
        p.orders_queued += items.len() as u64;
        bulk::enqueue(
            host,
            &Batch {
                source: Source::Backfill,
                run: control.run.clone(),
                entity: Entity::Order,
                page: format!("from-{}", p.next_min_id.unwrap_or(0)),
                items,
            },
        )
        .map_err(storage)?;
    }
    p.pages_done += 1;
    if let Some(last) = rows.iter().map(|r| r.id.0).max() {
        p.next_min_id = Some(last + 1);
    }
    if rows.len() < PAGE_LIMIT as usize {
        p.listing_done = true;
    }
    Ok(())
}

/// Whether a listed order is one to invoice (CONTRACT §7), given whether anything was posted
/// for it already.
pub fn eligibility(row: &OrderSummary, posted: bool) -> bool {
    if row.status_id == 0 {
        return false;
    }
    if posted {
        return true;
    }
    !(row.is_deleted || matches!(row.status_id, 5 | 6))
}

/// Every order is listed and drained: count the ones that were waiting, finish when none is.
fn settle(host: &mut dyn Host, control: &Control, p: &mut Progress) -> Result<(), KvError> {
    let mut still = Vec::new();
    for id in std::mem::take(&mut p.unsettled) {
        let key = id.to_string();
        let mut state = store::load_record(host, Entity::Order, &key)?.map(|r| r.state);
        if state == Some(State::Pending) {
            // Left pending by a worker that died: run it now (a live worker keeps it busy).
            if let RunResult::Ran(s) = run::sync_paced(host, Entity::Order, &key, Trigger::Due)? {
                state = Some(s);
            }
        }
        match state {
            Some(State::Posted) => p.orders_posted += 1,
            Some(State::Failed) => p.orders_failed += 1,
            Some(State::Skipped) => p.orders_skipped += 1,
            _ => still.push(id),
        }
    }
    let now = host.now();
    if still.is_empty() {
        p.state = RunState::Done;
        p.finished_at = Some(now);
        p.waiting = None;
    } else {
        p.waiting = Some(format!(
            "{} order(s) wait for a retry or for QuickBooks re-authorization; see GET /admin/records?status=retrying",
            still.len()
        ));
    }
    p.unsettled = still;
    p.updated_at = now;
    save_progress(host, &control.run, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_window_is_two_dates_in_order_and_not_in_the_future() {
        let now = t("2026-03-10T12:00:00Z");
        assert_eq!(
            parse_window(br#"{"since": "2026-01-01", "until": "2026-02-28"}"#, now),
            Ok((t("2026-01-01T00:00:00Z"), Some(t("2026-02-28T23:59:59Z"))))
        );
        assert_eq!(
            parse_window(br#"{"since": "2026-01-01T00:00:00Z", "until": null}"#, now),
            Ok((t("2026-01-01T00:00:00Z"), None))
        );
        let swapped =
            parse_window(br#"{"since": "2026-02-01", "until": "2026-01-01"}"#, now).unwrap_err();
        assert!(swapped.contains("after `until`"), "{swapped}");
        let garbled = parse_window(br#"{"since": "January"}"#, now).unwrap_err();
        assert!(garbled.contains("not a date"), "{garbled}");
        assert!(parse_window(br#"{}"#, now).unwrap_err().contains("missing"));
        assert!(parse_window(b"nope", now).unwrap_err().contains("not JSON"));
        assert!(
            parse_window(br#"{"since": "2026-04-01"}"#, now)
                .unwrap_err()
                .contains("future")
        );
    }

    #[test]
    fn incomplete_orders_are_never_eligible_and_cancelled_ones_only_once_posted() {
        let row = |status_id, is_deleted| OrderSummary {
            status_id,
            is_deleted,
            ..OrderSummary::default()
        };
        assert!(!eligibility(&row(0, false), false));
        assert!(!eligibility(&row(0, false), true));
        assert!(eligibility(&row(11, false), false));
        assert!(!eligibility(&row(5, false), false));
        assert!(!eligibility(&row(6, false), false));
        assert!(eligibility(&row(5, false), true));
        assert!(!eligibility(&row(11, true), false));
        assert!(eligibility(&row(4, false), false));
    }
}
