//! Running jobs: one entity's job under its lease, with its record loaded, dispatched to the
//! entity's job and its outcome filed — and the scheduler entry points (`retry-due`, replay).
//!
//! A job never trusts the event: it re-reads the current order/customer and reconciles.
//! Every step lands in the record's audit trail; every failure is classified into retry
//! later, needs a human, or needs re-authorization.

use crate::host::{Host, KvError, LogLevel, Prefetched};
use crate::jobs::{Done, Job, batch, customer, order};
use crate::models::quickbooks::MAX_BATCH_ITEMS;
use crate::settings::{self, RetrySettings};
use crate::sync::connection::{self, Vault};
use crate::sync::failure::Failure;
use crate::sync::lease::{self, Held, LeaseError, LeasedHost, SharedLease};
use crate::sync::limiter::{self, SlotHost};
use crate::sync::record::{Entity, State, SyncRecord};
use crate::sync::store::{self, DueEntry, EventRef};
use crate::sync::upstream;

/// How long a webhook's worker waits for another worker on the same entity.
const LEASE_WAIT_MS: u64 = 10_000;

/// Why a job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A webhook arrived (or its guard entry came due after a crash).
    Event(EventRef),
    /// The scheduler found the record due.
    Due,
    /// An operator asked for it (`POST /admin/replay/...`).
    Replay,
}

/// What a job run did, for `retry-due`/replay reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunResult {
    /// Ran; the record is now in this state.
    Ran(State),
    /// Nothing to do (duplicate event, not due).
    NothingToDo(State),
    /// Another worker holds the entity; it will be retried.
    Busy,
    /// QuickBooks has no capacity now (see [`limiter`]): the work waits in the wait queue.
    Waiting(limiter::Wait),
}

/// Runs the entity's job now (waiting briefly for its lease).
pub fn sync(
    host: &mut dyn Host,
    entity: Entity,
    id: &str,
    trigger: Trigger,
) -> Result<RunResult, KvError> {
    sync_with_wait(host, entity, id, trigger, LEASE_WAIT_MS)
}

/// How a job gets QuickBooks capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// The limiter decides (queue, the second's budget and the minute's room, slot).
    Limited,
    /// The caller paced it already (bulk work): a slot only, waited for briefly.
    Paced,
}

/// How long paced (bulk) work waits for a QuickBooks slot before it queues like a webhook.
const PACED_SLOT_WAIT_MS: u64 = 2_000;

/// [`sync`] for bulk work, which paces itself ([`crate::sync::pace::check`]): it takes a
/// QuickBooks slot like any job but neither queues behind webhooks nor checks the budget again.
pub fn sync_paced(
    host: &mut dyn Host,
    entity: Entity,
    id: &str,
    trigger: Trigger,
) -> Result<RunResult, KvError> {
    sync_admitted(host, entity, id, trigger, LEASE_WAIT_MS, Admission::Paced)
}

fn sync_with_wait(
    host: &mut dyn Host,
    entity: Entity,
    id: &str,
    trigger: Trigger,
    wait_ms: u64,
) -> Result<RunResult, KvError> {
    sync_admitted(host, entity, id, trigger, wait_ms, Admission::Limited)
}

fn sync_admitted(
    host: &mut dyn Host,
    entity: Entity,
    id: &str,
    trigger: Trigger,
    wait_ms: u64,
    admission: Admission,
) -> Result<RunResult, KvError> {
    let key = store::entity_lease_key(entity, id);
    // The scheduler's runs (the wait queue's, retries) are of entities that have run before:
    // their lease key holds the free value its last holder left.
    let guard = if trigger == Trigger::Due && wait_ms == 0 {
        store::try_acquire_reused(host, &key, store::ENTITY_LEASE_MS)?
    } else {
        store::acquire(host, &key, store::ENTITY_LEASE_MS, wait_ms)?
    };
    let Some(guard) = guard else {
        return Ok(RunResult::Busy);
    };
    let held = Held::new(guard, store::ENTITY_LEASE_MS, host.now());
    // The job's last plain writes, made together in one round trip: the record's last save,
    // then the free values that give back its QuickBooks slot and its lease.
    let mut closing = Vec::new();
    let result = {
        // Every upstream request of the job renews the lease first (and refuses to leave
        // once it is lost); saving the record checks it too.
        let mut leased = LeasedHost::new(host, held.clone());
        sync_locked(
            &mut leased,
            entity,
            id,
            trigger,
            &held,
            admission,
            &mut closing,
        )
    };
    let lease_free = lease::release_later(host, &held).map(|w| closing.extend(w));
    let given_back = store::write_together(host, closing);
    lease_free?;
    given_back?;
    match result {
        Err(LeaseError::Lost(_)) => {
            host.log(
                LogLevel::Warn,
                &format!(
                    "{entity} {id}: this run outlived its lease and stopped without saving; the \
                     worker that took over finishes it"
                ),
            );
            Ok(RunResult::Busy)
        }
        Err(LeaseError::Kv(e)) => Err(e),
        Ok(r) => Ok(r),
    }
}

fn sync_locked(
    host: &mut dyn Host,
    entity: Entity,
    id: &str,
    trigger: Trigger,
    held: &SharedLease,
    admission: Admission,
    closing: &mut Vec<store::Write>,
) -> Result<RunResult, LeaseError> {
    let now = host.now();
    // The record and what admission reads, in one round trip.
    let mut ahead = vec![store::record_key(entity, id)];
    ahead.extend(limiter::admission_keys(host, now));
    let host: &mut dyn Host = &mut Prefetched::new(host, &ahead);
    let loaded = store::load_record(host, entity, id)?;
    let previous = loaded.as_ref().map(|r| r.state);
    let mut rec = loaded.unwrap_or_else(|| SyncRecord::new(entity, id, now));
    match &trigger {
        Trigger::Event(ev) => {
            if !rec.received(&ev.scope, &ev.hash, ev.created_at, now) && previous.is_some() {
                return Ok(RunResult::NothingToDo(rec.state));
            }
            // A record waiting out a rate limit keeps its schedule; a parked one waits for
            // re-authorization. Either way the event is on record and the next run fetches
            // the current state, which includes it.
            if matches!(rec.state, State::Retrying | State::NeedsReauth) {
                store::save_record(host, &rec, previous)?;
                return Ok(RunResult::NothingToDo(rec.state));
            }
        }
        Trigger::Due => {
            let reauthorized = !connection::state(host)?.needs_reauth;
            // A `pending` record whose lease we just took has no live worker (it died after
            // the acknowledgement): run it now rather than wait for it to look stale.
            let orphaned = previous.is_some() && rec.state == State::Pending;
            if !rec.is_due(now, reauthorized) && !orphaned {
                return Ok(RunResult::NothingToDo(rec.state));
            }
            if rec.state == State::NeedsReauth {
                rec.reauthorized(now);
            }
        }
        Trigger::Replay => {
            // A replay runs in its request: if this worker dies mid-job the record stays
            // `pending`, so it gets a guard entry (filed before the record) as a webhook does.
            store::schedule(
                host,
                &DueEntry::retry(entity, id, now + chrono::Duration::seconds(GUARD_DELAY_S)),
            )?;
            rec.replay_requested(now);
        }
    }
    // QuickBooks capacity, before anything is read from BigCommerce: new work queues behind
    // work already waiting; the queue's own runs (`Trigger::Due`) compete for a slot.
    // An operator's replay runs now (a slot still bounds requests in flight): it is one job,
    // asked for by a person waiting for its answer.
    let admitted = if admission == Admission::Paced || trigger == Trigger::Replay {
        limiter::admit_paced(host, PACED_SLOT_WAIT_MS)?
    } else if trigger != Trigger::Due && !limiter::queue_is_empty(host)? {
        Err(limiter::Wait::Queue)
    } else {
        limiter::admit(host)?
    };
    let mut slot = match admitted {
        Ok(slot) => slot,
        Err(wait) => {
            if trigger != Trigger::Due {
                // Filed in arrival order; no failure, no attempt used. (A due run that must
                // wait keeps its place in its own queue.)
                rec.note(
                    "waiting",
                    serde_json::json!({ "reason": wait.describe() }),
                    now,
                );
                store::save_record(host, &rec, previous)?;
                limiter::enqueue(
                    host,
                    &limiter::Waiting {
                        entity,
                        id: id.to_string(),
                        event: match &trigger {
                            Trigger::Event(ev) => Some(ev.clone()),
                            _ => None,
                        },
                        since: now,
                    },
                )?;
            }
            return Ok(RunResult::Waiting(wait));
        }
    };
    let result = run_admitted(host, rec, previous, &trigger, held, &mut slot, closing);
    let released = limiter::release_later(host, slot).map(|w| closing.extend(w));
    let state = result?;
    released?;
    Ok(RunResult::Ran(state))
}

fn run_admitted(
    host: &mut dyn Host,
    rec: SyncRecord,
    previous: Option<State>,
    trigger: &Trigger,
    held: &SharedLease,
    slot: &mut limiter::Slot,
    closing: &mut Vec<store::Write>,
) -> Result<State, LeaseError> {
    let entity = rec.entity;
    store::save_record(host, &rec, previous)?;
    let mut job = Job {
        saved_state: Some(rec.state),
        rec,
        lease: Some(held.clone()),
        due: *trigger == Trigger::Due,
    };
    let replay = *trigger == Trigger::Replay;
    let outcome = {
        let mut slotted = SlotHost::new(host, slot);
        let host: &mut dyn Host = &mut slotted;
        match upstream::upstreams(host) {
            Err(f) => Err(f),
            Ok(up) => match entity {
                Entity::Order => order::run(host, &up, &mut job, replay),
                Entity::Customer => customer::run(host, &up, &mut job.rec, replay),
            },
        }
    };
    // The record's last write goes with the writes that give back the slot and the lease.
    file_outcome(host, &mut job, outcome);
    closing.extend(job.save_later(host)?);
    Ok(job.rec.state)
}

/// Files a run's outcome on its record (posted, unchanged, skipped, or a classified failure
/// scheduled for its retry) and saves it.
pub(crate) fn finish(
    host: &mut dyn Host,
    job: &mut Job,
    outcome: Result<Done, Failure>,
) -> Result<(), LeaseError> {
    file_outcome(host, job, outcome);
    job.save(host)
}

/// Files a run's outcome on its record, unsaved.
fn file_outcome(host: &mut dyn Host, job: &mut Job, outcome: Result<Done, Failure>) {
    let now = host.now();
    match outcome {
        Ok(Done::Posted {
            qbo_id,
            sync_token,
            requestid,
            digest,
        }) => {
            job.rec.content_digest = Some(digest);
            job.rec
                .posted(&qbo_id, &sync_token, requestid.as_deref(), now);
        }
        Ok(Done::Unchanged) => {
            let qbo_id = job.rec.qbo_id.clone().unwrap_or_default();
            let token = job.rec.qbo_sync_token.clone().unwrap_or_default();
            job.rec.posted(&qbo_id, &token, None, now);
            if let Some(last) = job.rec.audit.last_mut() {
                last.step = "unchanged".into();
            }
        }
        Ok(Done::Skipped(reason)) => job.rec.skipped(&reason, now),
        Err(failure) => {
            let retry = RetrySettings::read(host).unwrap_or(RetrySettings {
                base_seconds: settings::DEFAULT_RETRY_BASE_SECONDS,
                max_attempts: settings::DEFAULT_MAX_ATTEMPTS,
            });
            let mut jitter = [0u8; 4];
            host.random_bytes(&mut jitter);
            job.rec.attempt_failed(
                &failure,
                now,
                retry.max_attempts,
                retry.base_seconds,
                u32::from_le_bytes(jitter),
            );
            host.log(
                LogLevel::Warn,
                &format!(
                    "{} {}: {}",
                    job.rec.entity,
                    job.rec.id,
                    job.rec.last_error.clone().unwrap_or_default()
                ),
            );
        }
    }
}

/// What `POST /admin/retry-due` did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RetryReport {
    pub examined: usize,
    pub ran: usize,
    pub posted: usize,
    pub retrying: usize,
    pub failed: usize,
    pub needs_reauth: usize,
    pub skipped: usize,
    pub busy: usize,
    pub resumed_after_reauth: usize,
    /// Records left waiting for QuickBooks capacity (they keep their place).
    pub waiting: usize,
}

impl RetryReport {
    fn count(&mut self, r: &RunResult) {
        match r {
            RunResult::Ran(s) => {
                self.ran += 1;
                match s {
                    State::Posted => self.posted += 1,
                    State::Retrying => self.retrying += 1,
                    State::Failed => self.failed += 1,
                    State::NeedsReauth => self.needs_reauth += 1,
                    State::Skipped => self.skipped += 1,
                    State::Pending => {}
                }
            }
            RunResult::Busy => self.busy += 1,
            RunResult::Waiting(_) => self.waiting += 1,
            RunResult::NothingToDo(_) => {}
        }
    }
}

/// Most records one `retry-due` call runs.
pub const RETRY_BATCH: usize = 50;
/// Most due entries one call looks at (most are cheap checks of records already handled).
const DUE_SCAN: usize = 1_000;

/// Runs every due record (bounded), oldest first; then, when QuickBooks is authorized,
/// resumes records parked for re-authorization.
pub fn retry_due(host: &mut dyn Host) -> Result<RetryReport, KvError> {
    let mut report = RetryReport::default();
    let now = host.now();
    readopt_bootstrap(host);
    let entries = store::due_entries(host, now, DUE_SCAN)?;
    let reauthorized = !connection::state(host)?.needs_reauth;
    // Most entries are webhooks' guards whose own worker handled the event: their records
    // are read in one round trip, and looking at them is all there is to do.
    let guarded: Vec<(Entity, &str)> = entries
        .iter()
        .filter(|d| d.entry.event.is_some())
        .map(|d| (d.entry.entity, d.entry.id.as_str()))
        .collect();
    let records = store::load_records(host, &guarded)?;
    // Minutes with an entry whose worker is still running: that entry stays on file, so the
    // minute's done mark cannot move past it (the entries behind it still run now).
    let mut held_back = std::collections::BTreeSet::new();
    // How far each minute's done mark moves, once every entry up to there is handled.
    let mut marks = std::collections::BTreeMap::new();
    for due in entries {
        if report.ran >= RETRY_BATCH {
            break;
        }
        report.examined += 1;
        let trigger = match due.entry.event.clone() {
            Some(ev) => Trigger::Event(ev),
            None => Trigger::Due,
        };
        let queued_by_job = matches!(trigger, Trigger::Event(_));
        let known = records
            .get(&store::record_key(due.entry.entity, &due.entry.id))
            .cloned()
            .flatten();
        let result = run_due_entry(host, &due.entry, trigger, known, reauthorized)?;
        report.count(&result);
        if matches!(result, RunResult::Waiting(_)) {
            // No QuickBooks capacity: this entry and everything behind it wait for the next
            // call (they keep their places). The entry also joins the wait queue, so the drain
            // after this call's response runs it as soon as capacity frees (an event's job has
            // queued itself already).
            if !queued_by_job {
                queue_due_run(host, due.entry.entity, &due.entry.id)?;
            }
            break;
        }
        if result == RunResult::Busy {
            // Its worker is still running; look at it again on the next call.
            held_back.insert(due.minute);
            continue;
        }
        if due.markable && !held_back.contains(&due.minute) {
            marks.insert(due.minute, due.slot);
        }
    }
    for (minute, slot) in marks {
        store::mark_due_done(host, minute, slot)?;
    }
    if !connection::state(host)?.needs_reauth {
        let mut markable = true;
        let parked = store::parked_entries(host, RETRY_BATCH)?;
        for (i, (slot, r)) in parked.iter().enumerate() {
            report.examined += 1;
            let result = sync_with_wait(host, r.entity, &r.id, Trigger::Due, 0)?;
            if matches!(result, RunResult::Waiting(_)) {
                report.count(&result);
                // No capacity left now: this record and every parked one behind it join the
                // wait queue in order, so the drain after the response resumes them all (their
                // parked entries stay until a later call finds them posted).
                for (_, r) in &parked[i..] {
                    queue_due_run(host, r.entity, &r.id)?;
                }
                break;
            }
            if result == RunResult::Busy {
                report.busy += 1;
                markable = false;
                continue;
            }
            if matches!(result, RunResult::Ran(_)) {
                report.resumed_after_reauth += 1;
            }
            report.count(&result);
            if result == RunResult::Ran(State::NeedsReauth) {
                // Still not authorized after all: stop resuming; a later call tries again.
                break;
            }
            if markable {
                store::mark_parked_done(host, *slot)?;
            }
        }
    }
    // Work waiting for QuickBooks capacity, as far as capacity goes now (no sleeping here).
    let drained = drain_waiting(host, 0, 0)?;
    report.examined += drained.handled;
    report.ran += drained.ran;
    // Now and then, the status counts are checked against the records (see `store::recount`).
    match store::recount(host) {
        Ok(store::Recount::Done(fixed)) if !fixed.is_empty() => host.log(
            LogLevel::Warn,
            &format!("status counts were off and are repaired (state, correction): {fixed:?}"),
        ),
        Ok(store::Recount::Unconfirmed(off)) => host.log(
            LogLevel::Info,
            &format!(
                "status counts look off (state, correction): {off:?}; counted again in {} s \
                 before anything is repaired (a save may have been in flight)",
                store::RECOUNT_CONFIRM_AFTER_S
            ),
        ),
        Ok(_) => {}
        Err(e) => host.log(
            LogLevel::Warn,
            &format!("status counts could not be recounted (tried again later): {e}"),
        ),
    }
    Ok(report)
}

/// While re-authorization is needed, a newly configured `qbo_refresh_token` is the operator
/// re-authorizing out of band: adopting it (with a refresh) clears `needs_reauth`, so parked
/// records resume on this very call.
fn readopt_bootstrap(host: &mut dyn Host) {
    let parked = connection::state(host)
        .map(|s| s.needs_reauth)
        .unwrap_or(false);
    if parked && let Ok(up) = upstream::upstreams(host) {
        let _ = connection::access(
            host,
            &Vault {
                keyring: &up.keyring,
            },
            &up.qbo,
            false,
        );
    }
}

/// Runs one due entry. `known` is the entry's record as read a moment ago (for an event's
/// guard, read with the others of its call): it decides only whether there is anything to do,
/// since whatever runs reads the record again under its lease.
fn run_due_entry(
    host: &mut dyn Host,
    entry: &DueEntry,
    trigger: Trigger,
    known: Option<SyncRecord>,
    reauthorized: bool,
) -> Result<RunResult, KvError> {
    if let Trigger::Event(ev) = &trigger {
        // The event's own worker usually handled it already: then this is only a check.
        if let Some(rec) = known
            && rec.has_seen(&ev.key())
        {
            let now = host.now();
            // Still `pending` (its worker may have died mid-job): `Trigger::Due` runs it if the
            // lease is free, and reports busy if the worker is alive.
            if !rec.is_due(now, reauthorized) && rec.state != State::Pending {
                return Ok(RunResult::NothingToDo(rec.state));
            }
            // Its job filed it in the wait queue, and the queue is still being worked: it runs
            // there in arrival order (a guard that ran it now would overtake the orders ahead
            // of it and take it out of a batch). The guard looks again later, at twice the
            // time it has waited so far; once the queue is empty it runs it.
            if let Some(since) = queued_since(&rec)
                && !limiter::queue_is_empty(host)?
            {
                let waited = (now - since).num_seconds();
                let again = now + chrono::Duration::seconds(waited.max(GUARD_DELAY_S));
                store::schedule(
                    host,
                    &DueEntry {
                        at: again,
                        ..entry.clone()
                    },
                )?;
                return Ok(RunResult::NothingToDo(rec.state));
            }
            return sync_with_wait(host, entry.entity, &entry.id, Trigger::Due, 0);
        }
    }
    sync_with_wait(host, entry.entity, &entry.id, trigger, 0)
}

/// When a `pending` record's job filed it in the wait queue (its last step is `waiting`).
fn queued_since(rec: &SyncRecord) -> Option<chrono::DateTime<chrono::Utc>> {
    let last = rec.audit.last()?;
    (rec.state == State::Pending && last.step == "waiting").then_some(last.at)
}

/// How long after a job starts its guard entry comes due (the scheduler runs the job then if
/// its worker died).
const GUARD_DELAY_S: i64 = 30;

/// Files the guard entry for a webhook: if the worker dies after the acknowledgement, the
/// scheduler finds the event 30 s later.
pub fn accept_event(
    host: &mut dyn Host,
    entity: Entity,
    id: &str,
    event: EventRef,
) -> Result<(), KvError> {
    let at = host.now() + chrono::Duration::seconds(GUARD_DELAY_S);
    store::schedule(
        host,
        &DueEntry {
            entity,
            id: id.to_string(),
            at,
            event: Some(event),
        },
    )
}

/// Puts a scheduled run that found no QuickBooks capacity in the wait queue (its due or parked
/// entry stays too: whichever runs second finds nothing to do).
fn queue_due_run(host: &mut dyn Host, entity: Entity, id: &str) -> Result<(), KvError> {
    let since = host.now();
    limiter::enqueue(
        host,
        &limiter::Waiting {
            entity,
            id: id.to_string(),
            event: None,
            since,
        },
    )
}

/// What [`drain_waiting`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// Queue entries handled (run, or found already done).
    pub handled: usize,
    /// Jobs that ran.
    pub ran: usize,
    /// Whether the queue is empty now.
    pub emptied: bool,
}

impl DrainReport {
    /// Counts a queue entry as handled by `result` (run, or found done) and marks its
    /// position handled.
    fn handled_entry(
        &mut self,
        host: &mut dyn Host,
        pos: i64,
        result: &RunResult,
    ) -> Result<(), KvError> {
        if matches!(result, RunResult::Ran(_)) {
            self.ran += 1;
        }
        self.handled += 1;
        limiter::mark_handled(host, pos)
    }
}

/// Most queue positions one drain pass looks at: a batch request's worth for each drainer.
const HEAD_SCAN: usize = limiter::DRAINERS * MAX_BATCH_ITEMS;
/// Most entries one drain pass runs one by one (as many as one batch request carries).
const DRAIN_SCAN: usize = MAX_BATCH_ITEMS;
/// Most queue entries one drain handles (capacity stops it long before, in practice).
const DRAIN_MAX: usize = 500;
/// How often a drainer looks again while no slot is free or every entry it sees is busy.
const DRAIN_POLL_MS: i64 = 150;
/// How long a drainer looks for a free slot before it leaves the queue to the slots' holders.
const SLOT_POLL_MS: i64 = 2_000;
/// How far past its budget a drainer that keeps handling work may go on.
pub const DRAIN_EXTENDS_MS: i64 = 45_000;

/// Runs work waiting for QuickBooks capacity, oldest first, while capacity lasts, until the
/// queue is empty or `budget_ms` has passed since it last handled something (and never more
/// than [`DRAIN_EXTENDS_MS`] past its budget): a drainer that is using the capacity as it frees
/// keeps at it rather than leaving a gap until the next retry-due.
///
/// Several drainers (on every instance) run the queue at once: an entry whose lease looks held
/// is left to its holder (a worker running it, or another drainer), seen in one read of the
/// head's leases, and each drainer batches its own `lane` of the head first
/// ([`limiter::Drainer::lane`]; retry-due's pass is lane 0), so drainers that wake in the same
/// second send one full batch each. An entry stays in the queue until someone has handled it.
/// With nothing runnable in sight, the drainer looks again shortly; with no slot free, it looks
/// for one for up to 2 s and then leaves the queue to the slots' holders (each drains when its
/// job ends); it sleeps through waits for QuickBooks' second or minute, and stops when a wait
/// (a 429's pause) ends after its budget does, or its budget is spent (counted from the last
/// work it handled).
pub fn drain_waiting(
    host: &mut dyn Host,
    budget_ms: i64,
    lane: usize,
) -> Result<DrainReport, KvError> {
    let poll = chrono::Duration::milliseconds(DRAIN_POLL_MS);
    let budget = chrono::Duration::milliseconds(budget_ms);
    let mut deadline = host.now() + budget;
    let last_deadline = deadline + chrono::Duration::milliseconds(DRAIN_EXTENDS_MS);
    let mut report = DrainReport::default();
    loop {
        let head = limiter::queue_head(host, HEAD_SCAN)?;
        if head.is_empty() {
            report.emptied = true;
            return Ok(report);
        }
        let first = head[0].0;
        let head = limiter::without_held(host, head)?;
        let mut progressed = false;
        let mut wait: Option<limiter::Wait> = None;
        // Several orders waiting: their invoices go out in one batch request (issue 17).
        let singles = match drain_batch(host, first, &head, lane, &mut report)? {
            Some(step) => {
                progressed = step.progressed;
                wait = step.wait;
                if report.handled >= DRAIN_MAX {
                    return Ok(report);
                }
                Vec::new()
            }
            None => head.into_iter().take(DRAIN_SCAN).collect(),
        };
        // Once this drainer has run something, the work in the rest of its look at the head is
        // old news: other drainers may have handled it meanwhile, which one read shows (running
        // it again would take the lease and load the record only to find it done).
        let mut stale = false;
        for (pos, queued) in singles {
            let queued = match queued {
                limiter::Queued::Work(_) if stale => limiter::position(host, pos)?,
                seen => seen,
            };
            let w = match queued {
                limiter::Queued::Work(w) => w,
                limiter::Queued::Handled => continue,
                // Its writer is on its way, or died: at the head (where it holds the done
                // mark back), it is counted dead after a grace every drainer shares.
                limiter::Queued::Unwritten => {
                    if pos == first && limiter::head_unwritten_too_long(host, pos)? {
                        limiter::mark_handled(host, pos)?;
                        progressed = true;
                    }
                    continue;
                }
            };
            match sync_with_wait(host, w.entity, &w.id, Trigger::Due, 0)? {
                RunResult::Waiting(no_capacity) => {
                    // No capacity for this one means none for the next either.
                    wait = Some(no_capacity);
                    break;
                }
                // Its holder runs it (or another drainer tries it): on to the next.
                RunResult::Busy => {}
                other => {
                    report.handled_entry(host, pos, &other)?;
                    progressed = true;
                    stale = true;
                    if report.handled >= DRAIN_MAX {
                        return Ok(report);
                    }
                }
            }
        }
        if progressed {
            deadline = deadline.max((host.now() + budget).min(last_deadline));
            if wait.is_none() {
                continue;
            }
        }
        let now = host.now();
        let until = match &wait {
            Some(limiter::Wait::Slots) => {
                // Look again once a slot frees (a few reads a poll, nothing taken). Every
                // slot's holder drains when its job ends, so a short look covers the moment
                // in which a holder finishes while this drainer is on its way out.
                let give_up = deadline.min(now + chrono::Duration::milliseconds(SLOT_POLL_MS));
                loop {
                    let now = host.now();
                    if now + poll > give_up {
                        return Ok(report);
                    }
                    host.sleep_ms(DRAIN_POLL_MS.unsigned_abs());
                    if limiter::slot_free(host)? {
                        break;
                    }
                }
                continue;
            }
            Some(w) => w.retry_at().unwrap_or(now + poll),
            None => now + poll,
        };
        // A busy second can owe several more (8 jobs' calls at once): the drainer sleeps
        // through whatever wait ends within its budget. Leaving earlier stranded the queue
        // when every drainer left at once, with nobody to come back before the next retry-due.
        if until > deadline {
            return Ok(report);
        }
        host.sleep_ms(limiter::ms_until(now, until));
    }
}

/// What a batch did in one drain pass.
struct BatchStep {
    /// Some entry was handled.
    progressed: bool,
    /// QuickBooks had no capacity for it.
    wait: Option<limiter::Wait>,
}

/// Hands the orders waiting in `head` (at least [`batch::MIN_BATCH`], at most one batch
/// request's worth) to [`batch::run_batch`], and marks each one it handled. `None`: no batch
/// now (too few orders, or no batch ticket free); the drain runs them one by one. Entries the
/// batch found busy or could not run stay queued, as in the single path.
///
/// The orders are taken from the drainer's `lane` of the head on (a batch's worth of
/// positions per lane, counted from the queue's `first` position, wrapping around), so drainers
/// that look at once form different batches rather than each a few orders of the same one.
fn drain_batch(
    host: &mut dyn Host,
    first: i64,
    head: &[(i64, limiter::Queued)],
    lane: usize,
    report: &mut DrainReport,
) -> Result<Option<BatchStep>, KvError> {
    let lane_first = first + i64::try_from(lane * MAX_BATCH_ITEMS).unwrap_or(i64::MAX);
    let lane_start = head.iter().position(|(pos, _)| *pos >= lane_first);
    let (before, from_lane) = head.split_at(lane_start.unwrap_or(0));
    let (positions, waiting): (Vec<i64>, Vec<limiter::Waiting>) = from_lane
        .iter()
        .chain(before)
        .filter_map(|(pos, queued)| match queued {
            limiter::Queued::Work(w) if w.entity == Entity::Order => Some((*pos, w.clone())),
            _ => None,
        })
        .take(MAX_BATCH_ITEMS)
        .unzip();
    if waiting.len() < batch::MIN_BATCH {
        return Ok(None);
    }
    let results = batch::run_batch(host, &waiting)?;
    if results.is_empty() {
        return Ok(None);
    }
    let mut step = BatchStep {
        progressed: false,
        wait: None,
    };
    for (i, result) in results {
        match result {
            RunResult::Waiting(no_capacity) => step.wait = Some(no_capacity),
            RunResult::Busy => {}
            other => {
                report.handled_entry(host, positions[i], &other)?;
                step.progressed = true;
            }
        }
    }
    Ok(Some(step))
}
