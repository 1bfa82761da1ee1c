//! Bulk work: the durable queue the backfill and the sweep fill, and the paced slices that
//! drain it through the same job as a webhook.
//!
//! - **Queue.** `log/bulk` is an append-only log (numbers from `increment`, like every log in
//!   [`crate::sync::store`]); each slot is one listed page's worth of entities to sync (a
//!   [`Batch`]). `bulk/cursor` says how far the drain got (slot and position in it). A batch
//!   carries the key of the page it came from, so a page appended just before a crash is
//!   recognised and not appended twice.
//! - **Slices.** [`slice`] does bounded work under the lease `lease/bulk` (one slice at a time
//!   across instances, renewed as it goes): it drains queued entities one job at a time while
//!   the pacing budget allows ([`crate::sync::pace`]), and when the queue is empty it lists the
//!   next page of the sweep or the backfill. When a second's QuickBooks budget is used it
//!   sleeps (through the host) until the next second, as long as that is within the slice;
//!   longer waits (a 429's Retry-After, BigCommerce's window) end the slice with a note. A slice runs after `POST /admin/backfill`
//!   answers and after every `POST /admin/retry-due`.
//! - **Same job.** Each queued entity runs through [`run::sync`] with a synthetic event
//!   (`ml/backfill` or `ml/sweep`), so it is recorded, deduplicated, retried and audited exactly
//!   like a webhook; a queued order whose event the record has seen is not run again.
//!
//! The host passed in is expected to count QuickBooks calls ([`crate::sync::pace::Paced`]),
//! as the router's hosts do.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::host::{Host, KvError, LogLevel};
use crate::jobs::run::{self, RunResult, Trigger};
use crate::jobs::{backfill, sweep};
use crate::sync::connection;
use crate::sync::pace;
use crate::sync::record::{Entity, State, SyncRecord};
use crate::sync::store::{self, EventRef};

const LOG: &str = "log/bulk";
const CURSOR_KEY: &str = "bulk/cursor";
const LEASE_KEY: &str = "lease/bulk";
/// How long the slice lease lasts without renewal (it is renewed before every step).
const LEASE_TTL_MS: i64 = 30_000;
/// How long one slice works before it returns (the next retry-due starts the next one).
pub const SLICE_MS: i64 = 45_000;
/// A QuickBooks pacing wait at most this long (the next second's budget) is slept through
/// inside the slice; a longer one ends the slice.
const SHORT_WAIT_MS: i64 = 2_000;

/// Where a queued entity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Backfill,
    Sweep,
}

impl Source {
    /// The scope of the synthetic event the job sees.
    pub fn scope(self) -> &'static str {
        match self {
            Source::Backfill => "ml/backfill",
            Source::Sweep => "ml/sweep",
        }
    }
}

/// One entity to sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub id: u64,
    /// BigCommerce's `date_modified` when listed (Unix seconds): part of the sweep's event, so
    /// a later change is a new event and the same change twice is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<i64>,
}

/// One slot of the queue: the entities one listed page queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub source: Source,
    /// The backfill run or sweep run that queued it.
    pub run: String,
    pub entity: Entity,
    /// Identifies the listed page (a page appended before a crash is not appended again).
    pub page: String,
    pub items: Vec<Item>,
}

impl Batch {
    /// The synthetic event for item `item`.
    pub fn event(&self, item: &Item) -> EventRef {
        EventRef {
            scope: self.source.scope().to_string(),
            hash: match (self.source, item.modified) {
                (Source::Sweep, Some(m)) => format!("modified-{m}"),
                _ => self.run.clone(),
            },
            created_at: None,
        }
    }
}

/// How far the drain got: the next item is `items[index]` of slot `slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub slot: i64,
    pub index: usize,
}

impl Default for Cursor {
    fn default() -> Self {
        Cursor { slot: 1, index: 0 }
    }
}

fn load_cursor(host: &mut dyn Host) -> Result<Cursor, KvError> {
    Ok(store::cache_get(host, CURSOR_KEY)?.unwrap_or_default())
}

/// Appends `batch` unless the newest slot already holds its page; returns its slot.
pub fn enqueue(host: &mut dyn Host, batch: &Batch) -> Result<i64, KvError> {
    let n = store::log_len(host, LOG)?;
    if n > 0
        && let Some(last) = store::log_entry::<Batch>(host, LOG, n)?
        && last.page == batch.page
        && last.run == batch.run
    {
        return Ok(n);
    }
    store::append(host, LOG, batch)
}

/// Entities queued and not drained yet (an upper bound: cancelled runs' entries count too).
pub fn queued(host: &mut dyn Host) -> Result<u64, KvError> {
    let cursor = load_cursor(host)?;
    let n = store::log_len(host, LOG)?;
    let mut total = 0u64;
    for slot in cursor.slot..=n {
        if let Some(b) = store::log_entry::<Batch>(host, LOG, slot)? {
            let skip = if slot == cursor.slot { cursor.index } else { 0 };
            total += b.items.len().saturating_sub(skip) as u64;
        }
    }
    Ok(total)
}

/// Whether the entity's record needs a sync for a change made at `modified`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// No record, or one last finished before the change: queue it.
    Stale,
    /// Finished after the change.
    UpToDate,
    /// Being synced or waiting for a retry: it picks up the change by itself.
    InProgress,
}

/// Compares a record with a change BigCommerce reports at `modified` (unknown = stale): with
/// the `date_modified` of the order its last run worked from when known, else with when the
/// record was saved.
pub fn freshness(record: Option<&SyncRecord>, modified: Option<DateTime<Utc>>) -> Freshness {
    let Some(rec) = record else {
        return Freshness::Stale;
    };
    match rec.state {
        State::Pending | State::Retrying | State::NeedsReauth => Freshness::InProgress,
        State::Posted | State::Skipped | State::Failed => match modified {
            Some(m) if rec.source_modified.unwrap_or(rec.updated_at) >= m => Freshness::UpToDate,
            _ => Freshness::Stale,
        },
    }
}

/// The slice lease is the shared [`store`] lease (`lease/bulk`), renewed as the slice goes: a
/// dead slice blocks the next one for at most [`LEASE_TTL_MS`].
type SliceLease = store::LeaseGuard;

/// What one slice did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SliceReport {
    /// Another slice holds the lease.
    pub busy: bool,
    /// Jobs run.
    pub ran: usize,
    /// Pages listed (sweep and backfill).
    pub pages: usize,
    /// Why the slice stopped early, when it waits for pacing or re-authorization.
    pub waiting: Option<String>,
}

/// Whether a slice has anything to do (cheap: a few reads, no lease).
pub fn has_work(host: &mut dyn Host, now: DateTime<Utc>) -> Result<bool, KvError> {
    if queued_any(host)? {
        return Ok(true);
    }
    Ok(backfill::is_running(host)? || sweep::is_due(host, now)?)
}

fn queued_any(host: &mut dyn Host) -> Result<bool, KvError> {
    let cursor = load_cursor(host)?;
    let n = store::log_len(host, LOG)?;
    if n > cursor.slot {
        return Ok(true);
    }
    if n < cursor.slot {
        return Ok(false);
    }
    Ok(store::log_entry::<Batch>(host, LOG, n)?.is_some_and(|b| b.items.len() > cursor.index))
}

/// Runs one slice of at most `budget_ms`. Returns at once when another slice is running.
pub fn slice(host: &mut dyn Host, budget_ms: i64) -> Result<SliceReport, KvError> {
    let start = host.now();
    if !has_work(host, start)? {
        return Ok(SliceReport::default());
    }
    let Some(mut lease) = store::try_acquire(host, LEASE_KEY, LEASE_TTL_MS)? else {
        return Ok(SliceReport {
            busy: true,
            ..SliceReport::default()
        });
    };
    let result = slice_locked(host, &mut lease, start + Duration::milliseconds(budget_ms));
    store::release(host, lease)?;
    result
}

enum Step {
    /// Did something; go on.
    Progress,
    /// Nothing left for now.
    Idle,
    /// Must wait for pacing.
    Paced(pace::Wait),
    /// Must wait (re-authorization).
    Wait(String),
}

/// What to do about a pacing wait inside a slice.
enum Pause {
    /// Slept through it (the lease renewed first): go on.
    Slept,
    /// Too long, or past the slice's end: stop with a note.
    Stop(String),
    /// The lease was lost: stop.
    LostLease,
}

/// Sleeps through a short QuickBooks wait that ends before `deadline`; anything else stops
/// the slice.
fn pause(
    host: &mut dyn Host,
    lease: &mut SliceLease,
    wait: &pace::Wait,
    deadline: DateTime<Utc>,
) -> Result<Pause, KvError> {
    let now = host.now();
    let until = wait.until();
    let short = matches!(
        wait,
        pace::Wait::QuickBooks { .. } | pace::Wait::QuickBooksThrottled { .. }
    ) && until <= deadline
        && until - now <= Duration::milliseconds(SHORT_WAIT_MS);
    if !short {
        return Ok(Pause::Stop(wait.describe()));
    }
    if !store::renew(host, lease, LEASE_TTL_MS)? {
        return Ok(Pause::LostLease);
    }
    let ms = (until - now).num_milliseconds().max(1);
    host.sleep_ms(u64::try_from(ms).unwrap_or(1));
    Ok(Pause::Slept)
}

fn slice_locked(
    host: &mut dyn Host,
    lease: &mut SliceLease,
    deadline: DateTime<Utc>,
) -> Result<SliceReport, KvError> {
    let mut report = SliceReport::default();
    sweep::initialize(host)?;
    loop {
        if host.now() >= deadline || !store::renew(host, lease, LEASE_TTL_MS)? {
            break;
        }
        let wait = match drain_one(host, &mut report)? {
            Step::Progress => continue,
            Step::Paced(wait) => Some(wait),
            Step::Wait(why) => {
                backfill::note_waiting(host, Some(&why))?;
                report.waiting = Some(why);
                break;
            }
            // The queue is empty: list what comes next.
            Step::Idle => pace::paused(host)?,
        };
        if let Some(wait) = wait {
            match pause(host, lease, &wait, deadline)? {
                Pause::Slept => continue,
                Pause::LostLease => break,
                Pause::Stop(why) => {
                    backfill::note_waiting(host, Some(&why))?;
                    report.waiting = Some(why);
                    break;
                }
            }
        }
        match sweep::step(host)? {
            Listing::Listed => {
                report.pages += 1;
                continue;
            }
            Listing::Nothing => {}
        }
        match backfill::step(host)? {
            Listing::Listed => {
                report.pages += 1;
                continue;
            }
            Listing::Nothing => break,
        }
    }
    Ok(report)
}

/// The outcome of a listing step (sweep or backfill).
pub enum Listing {
    /// A page was listed (and its entities queued).
    Listed,
    /// Nothing to list now.
    Nothing,
}

fn drain_one(host: &mut dyn Host, report: &mut SliceReport) -> Result<Step, KvError> {
    let mut cursor = load_cursor(host)?;
    let n = store::log_len(host, LOG)?;
    loop {
        if cursor.slot > n {
            return Ok(Step::Idle);
        }
        let Some(batch) = store::log_entry::<Batch>(host, LOG, cursor.slot)? else {
            // A writer died between taking the slot and filling it (or is filling it now:
            // the lease makes this writer us, so it died).
            cursor = Cursor {
                slot: cursor.slot + 1,
                index: 0,
            };
            store::cache_set(host, CURSOR_KEY, &cursor)?;
            continue;
        };
        let Some(item) = batch.items.get(cursor.index).cloned() else {
            cursor = Cursor {
                slot: cursor.slot + 1,
                index: 0,
            };
            store::cache_set(host, CURSOR_KEY, &cursor)?;
            continue;
        };
        if batch.source == Source::Backfill && !backfill::accepts(host, &batch.run)? {
            // A cancelled (or replaced) backfill: its remaining entries are dropped.
            cursor.index += 1;
            store::cache_set(host, CURSOR_KEY, &cursor)?;
            continue;
        }
        if let Some(wait) = pace::check(host)? {
            return Ok(Step::Paced(wait));
        }
        if connection::state(host)?.needs_reauth {
            return Ok(Step::Wait(
                "QuickBooks needs re-authorization: the queue goes on once it is reconnected \
                 (GET /oauth/quickbooks/connect)"
                    .into(),
            ));
        }
        let event = batch.event(&item);
        let id = item.id.to_string();
        let result = run_queued(host, batch.entity, &id, event).inspect_err(|e| {
            host.log(
                LogLevel::Warn,
                &format!("bulk sync of {} {id} could not run: {e}", batch.entity),
            );
        })?;
        report.ran += 1;
        match batch.source {
            Source::Backfill => {
                backfill::record_result(host, &batch.run, cursor, item.id, &result)?
            }
            Source::Sweep => {}
        }
        cursor.index += 1;
        store::cache_set(host, CURSOR_KEY, &cursor)?;
        return Ok(Step::Progress);
    }
}

/// Runs one queued entity through the webhook job. When its record already has this event
/// but is still `pending` (the slice that ran it died mid-job), the job is run as due: its
/// lease is free, so nobody else is working on it.
pub fn run_queued(
    host: &mut dyn Host,
    entity: Entity,
    id: &str,
    event: EventRef,
) -> Result<RunResult, KvError> {
    match run::sync_paced(host, entity, id, Trigger::Event(event))? {
        RunResult::NothingToDo(State::Pending) => run::sync_paced(host, entity, id, Trigger::Due),
        other => Ok(other),
    }
}

/// Whether a run result means the entity reached a final state.
pub fn settled(result: &RunResult) -> Option<State> {
    match result {
        RunResult::Ran(s) | RunResult::NothingToDo(s)
            if matches!(s, State::Posted | State::Failed | State::Skipped) =>
        {
            Some(*s)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_record_finished_after_the_change_is_up_to_date_and_one_in_flight_is_left_alone() {
        let change = t("2026-03-01T10:00:00Z");
        assert_eq!(freshness(None, Some(change)), Freshness::Stale);
        let mut rec = SyncRecord::new(Entity::Order, "1", t("2026-03-01T09:00:00Z"));
        rec.posted("5", "0", None, t("2026-03-01T09:00:00Z"));
        assert_eq!(freshness(Some(&rec), Some(change)), Freshness::Stale);
        rec.posted("5", "1", None, t("2026-03-01T10:00:01Z"));
        assert_eq!(freshness(Some(&rec), Some(change)), Freshness::UpToDate);
        assert_eq!(freshness(Some(&rec), None), Freshness::Stale);
        rec.state = State::Retrying;
        assert_eq!(freshness(Some(&rec), Some(change)), Freshness::InProgress);
    }

    #[test]
    fn the_same_sweep_change_is_one_event_and_a_later_change_another() {
        let batch = Batch {
            source: Source::Sweep,
            run: "s1".into(),
            entity: Entity::Order,
            page: "p".into(),
            items: vec![],
        };
        let a = batch.event(&Item {
            id: 1,
            modified: Some(100),
        });
        let b = batch.event(&Item {
            id: 1,
            modified: Some(100),
        });
        let c = batch.event(&Item {
            id: 1,
            modified: Some(160),
        });
        assert_eq!(a.key(), b.key());
        assert_ne!(a.key(), c.key());
        assert_eq!(a.scope, "ml/sweep");
    }
}
