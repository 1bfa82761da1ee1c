//! Batch posting: the invoices of several waiting orders created in one QuickBooks batch
//! request (issue 17).
//!
//! [`run_batch`] takes orders from the head of the wait queue. Each is run under its own
//! entity lease as far as its invoice's create ([`order::stage`]); an order whose plan is not a
//! plain first create (an update, a void, a re-create, a write planned by an earlier run) runs
//! to its end there, as the single path runs it. The staged invoices then go out together:
//! every one's `requestid` is saved on its record before the batch leaves (the same `requestid`
//! a single create carries), and the batch carries one `requestid` of its own. Each answer is
//! filed as a single create's would be ([`order::complete`]):
//!
//! - an entity: the invoice is posted, and the order's payments and refunds follow;
//! - a per-item fault: classified as the same fault of a single write (a duplicate DocNumber is
//!   looked up by DocNumber and marker, as after a single create's 6140);
//! - an item missing from the answer: its outcome is unknown, so the single create runs, which
//!   looks the invoice up by DocNumber and marker (its `requestid` is planned) before it writes;
//! - a batch that failed as a whole (transport, 5xx, 429): every order fails with that failure
//!   and retries; the retry finds the planned `requestid` and looks up before it writes.
//!
//! Limits: the batch holds one QuickBooks slot for its whole run (its requests are sequential)
//! and counts as one operation per item in QuickBooks' minute; every batch request takes one of
//! 38 batch tickets shared by all instances, which frees 62 s after its request left
//! ([`limiter::claim_batch`], [`limiter::stamp_batch`]), inside QuickBooks' 40 a minute. So
//! the drainers send their batches back to back when the minute's room frees, not one per
//! fixed spacing.
//!
//! Leases: every wait in a batch run (for room in QuickBooks' minute, for a batch ticket)
//! renews the leases of every order the batch holds ([`SlotHost::renewing`]); a batch request
//! waits for its room first ([`SlotHost::reserve_ahead`]), then proves each order's lease, then
//! leaves at once, so no order's lease can lapse between its proof and the request.

use serde_json::Value;

use crate::host::{Host, KvError};
use crate::jobs::Job;
use crate::jobs::order::{self, BatchOutcome, Completed, Staged, StagedCreate, StagedPayments};
use crate::jobs::run::{self, RunResult};
use crate::models::quickbooks::{self, BatchCreate, MAX_BATCH_ITEMS};
use crate::sync::connection;
use crate::sync::lease::{self, Held, LeaseError, LeasedHost, SharedLease};
use crate::sync::limiter::{self, SlotHost, Waiting};
use crate::sync::record::{Entity, State, SyncRecord};
use crate::sync::store;
use crate::sync::upstream::{self, Upstreams};

/// Fewest orders worth a batch request.
pub const MIN_BATCH: usize = 2;

/// An order staged for the batch, with its lease and record.
struct Held1 {
    index: usize,
    held: SharedLease,
    job: Job,
    staged: StagedCreate,
}

/// Runs the waiting orders `entries` (at most [`MAX_BATCH_ITEMS`] are taken) with their
/// invoices created in one batch request. Gives each handled entry's result by its index in
/// `entries`; an entry not in the answer (not an order, beyond the first 30) was not touched.
/// An empty answer means no batch could be sent now (fewer than [`MIN_BATCH`] orders, or no
/// batch ticket is free): the caller runs the entries one by one as before.
pub fn run_batch(
    host: &mut dyn Host,
    entries: &[Waiting],
) -> Result<Vec<(usize, RunResult)>, KvError> {
    let orders: Vec<(usize, &Waiting)> = entries
        .iter()
        .enumerate()
        .filter(|(_, w)| w.entity == Entity::Order)
        .take(MAX_BATCH_ITEMS)
        .collect();
    if orders.len() < MIN_BATCH {
        return Ok(Vec::new());
    }
    // Room in QuickBooks' minute for the invoices (the payments look for theirs when they go).
    let ops = i64::try_from(orders.len()).unwrap_or(i64::MAX);
    let mut slot = match limiter::admit_batch(host, ops)? {
        Ok(slot) => slot,
        Err(wait) => {
            return Ok(orders
                .iter()
                .map(|(i, _)| (*i, RunResult::Waiting(wait.clone())))
                .collect());
        }
    };
    let result = match limiter::claim_batch(host) {
        Ok(Some(ticket)) => match upstream::upstreams(host) {
            Ok(up) => run_claimed(host, &up, &orders, &mut slot, ticket),
            // The single path files the configuration failure on each record.
            Err(_) => Ok(Vec::new()),
        },
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(e),
    };
    let released = limiter::release(host, slot);
    let out = result?;
    released?;
    Ok(out)
}

fn run_claimed(
    host: &mut dyn Host,
    up: &Upstreams,
    orders: &[(usize, &Waiting)],
    slot: &mut limiter::Slot,
    mut ticket: limiter::BatchTicket,
) -> Result<Vec<(usize, RunResult)>, KvError> {
    let mut results = Vec::new();
    let mut staged: Vec<Held1> = Vec::new();
    for (index, w) in orders {
        let key = store::entity_lease_key(Entity::Order, &w.id);
        // A waiting order has run before: its lease key holds the free value.
        let Some(guard) = store::try_acquire_reused(host, &key, store::ENTITY_LEASE_MS)? else {
            results.push((*index, RunResult::Busy));
            continue;
        };
        let held = Held::new(guard, store::ENTITY_LEASE_MS, host.now());
        let step = {
            // Its waits renew the leases of the orders staged before it too.
            let mut leased = LeasedHost::new(host, held.clone());
            let mut slotted =
                SlotHost::new(&mut leased, slot).renewing(staged.iter().map(|h| h.held.clone()));
            stage_one(&mut slotted, up, &w.id, &held)
        };
        match step {
            Ok(Step::Ended(r)) => {
                lease::release(host, &held)?;
                results.push((*index, r));
            }
            Ok(Step::Staged(b)) => {
                let (job, s) = *b;
                staged.push(Held1 {
                    index: *index,
                    held,
                    job,
                    staged: s,
                });
            }
            Err(LeaseError::Lost(_)) => {
                lease::release(host, &held)?;
                results.push((*index, RunResult::Busy));
            }
            Err(LeaseError::Kv(e)) => {
                lease::release(host, &held)?;
                release_all(host, &staged);
                return Err(e);
            }
        }
    }
    if staged.is_empty() {
        return Ok(results);
    }
    // Every invoice's requestid is on its record before the batch leaves.
    let mut sending: Vec<(Held1, (Value, String))> = Vec::new();
    for mut h in staged {
        let (body, rid) = {
            let (b, r) = h.staged.invoice(up);
            (b.clone(), r)
        };
        let planned = {
            let mut leased = LeasedHost::new(host, h.held.clone());
            order::plan_staged(&mut leased, &mut h.job, &rid)
        };
        match planned {
            Ok(()) => sending.push((h, (body, rid))),
            Err(f) => {
                let r = file(host, &h.held, &mut h.job, Err(f), slot);
                results.push((h.index, r));
                lease::release(host, &h.held)?;
            }
        }
    }
    // Room in the window first (waiting for it renews the orders' leases), then the proof
    // that every lease is still ours, then the request: nothing waits between proof and send.
    if !sending.is_empty() {
        let leases = sending.iter().map(|(h, _)| h.held.clone());
        SlotHost::new(host, slot)
            .renewing(leases)
            .reserve_ahead(sending.len() as i64);
    }
    let (kept, lost) = still_held(host, sending)?;
    results.extend(lost);
    if kept.is_empty() {
        return Ok(results);
    }
    let (items, rids): (Vec<BatchCreate>, Vec<String>) = kept
        .iter()
        .enumerate()
        .map(|(k, (_, (body, rid)))| {
            let item = BatchCreate {
                bid: quickbooks::batch_bid(k),
                entity: "Invoice".into(),
                body: body.clone(),
            };
            (item, rid.clone())
        })
        .unzip();
    let outcomes = send(host, up, slot, &mut ticket, items, &rids);
    let mut paying = Vec::new();
    for ((h, _), outcome) in kept.into_iter().zip(outcomes) {
        let Held1 {
            index,
            held,
            mut job,
            staged,
        } = h;
        let done = {
            let mut leased = LeasedHost::new(host, held.clone());
            let mut slotted = SlotHost::new(&mut leased, slot);
            order::complete(&mut slotted, up, &mut job, staged, outcome)
        };
        match done {
            Completed::Finished(done) => {
                let r = file(host, &held, &mut job, done, slot);
                results.push((index, r));
                lease::release(host, &held)?;
            }
            Completed::Payments(p) => paying.push((Paying { index, held, job }, p)),
        }
    }
    results.extend(post_payments(host, up, slot, paying)?);
    Ok(results)
}

/// An order whose payments are staged: its lease and record.
struct Paying {
    index: usize,
    held: SharedLease,
    job: Job,
}

/// The payments of the orders whose invoices the batch created: in one batch request of their
/// own (as many orders as fit in [`MAX_BATCH_ITEMS`] operations) on a ticket of its own; the
/// rest, or all of them when fewer than [`MIN_BATCH`] or no ticket and budget come free within
/// [`PAYMENT_TICKET_TRIES`] seconds, one by one with their planned `requestid`s.
fn post_payments(
    host: &mut dyn Host,
    up: &Upstreams,
    slot: &mut limiter::Slot,
    paying: Vec<(Paying, Box<StagedPayments>)>,
) -> Result<Vec<(usize, RunResult)>, KvError> {
    let mut results = Vec::new();
    let mut fit = 0;
    let mut ops = 0;
    for (_, p) in &paying {
        if ops + p.payments.len() > MAX_BATCH_ITEMS {
            break;
        }
        ops += p.payments.len();
        fit += 1;
    }
    // Waiting for a batch ticket and for room renews the orders' leases; the proof that each
    // is still ours comes after, right before the request.
    let ticket = if ops >= MIN_BATCH {
        let leases = paying.iter().map(|(p, _)| p.held.clone());
        let mut slotted = SlotHost::new(host, slot).renewing(leases);
        let ticket = limiter::claim_next_batch(&mut slotted, PAYMENT_TICKET_TRIES, ops as i64)?;
        if ticket.is_some() {
            slotted.reserve_ahead(ops as i64);
        }
        ticket
    } else {
        None
    };
    let mut rest = paying;
    let singles = rest.split_off(if ticket.is_some() { fit } else { 0 });
    let (kept, lost) = still_held(host, rest)?;
    results.extend(lost);
    let mut items = Vec::new();
    let mut rids = Vec::new();
    for (_, p) in &kept {
        for s in &p.payments {
            items.push(BatchCreate {
                bid: quickbooks::batch_bid(items.len()),
                entity: "Payment".into(),
                body: s.body.clone(),
            });
            rids.push(s.rid.clone());
        }
    }
    let mut outcomes = match ticket {
        Some(mut ticket) if !items.is_empty() => send(host, up, slot, &mut ticket, items, &rids),
        _ => Vec::new(),
    }
    .into_iter();
    let with_outcomes = kept.into_iter().map(|(o, p)| {
        let n = p.payments.len();
        (o, p, outcomes.by_ref().take(n).collect::<Vec<_>>())
    });
    let alone = singles.into_iter().map(|(o, p)| {
        let n = p.payments.len();
        (o, p, (0..n).map(|_| BatchOutcome::NotSent).collect())
    });
    for (o, p, outcome) in with_outcomes.collect::<Vec<_>>().into_iter().chain(alone) {
        let Paying {
            index,
            held,
            mut job,
        } = o;
        let done = {
            let mut leased = LeasedHost::new(host, held.clone());
            let mut slotted = SlotHost::new(&mut leased, slot);
            order::complete_payments(&mut slotted, up, &mut job, *p, outcome)
        };
        let r = file(host, &held, &mut job, done, slot);
        results.push((index, r));
        lease::release(host, &held)?;
    }
    Ok(results)
}

/// Seconds a payment batch looks for a ticket and the budget (the invoice batch before it may
/// have spent the second's) before its payments go one by one.
const PAYMENT_TICKET_TRIES: u32 = 8;

/// Splits staged orders into those whose lease is still held and, as [`RunResult::Busy`],
/// those whose lease was lost meanwhile (released here: the worker that took the order over
/// runs it, and its planned `requestid`s make that run look before it writes).
#[allow(clippy::type_complexity)]
fn still_held<H: HeldOrder, T>(
    host: &mut dyn Host,
    staged: Vec<(H, T)>,
) -> Result<(Vec<(H, T)>, Vec<(usize, RunResult)>), KvError> {
    let mut kept = Vec::new();
    let mut lost = Vec::new();
    for (h, t) in staged {
        if h.held().borrow_mut().ensure(host).is_ok() {
            kept.push((h, t));
        } else {
            lost.push((h.index(), RunResult::Busy));
            lease::release(host, h.held())?;
        }
    }
    Ok((kept, lost))
}

/// A staged order's entry index and lease.
trait HeldOrder {
    fn index(&self) -> usize;
    fn held(&self) -> &SharedLease;
}

impl HeldOrder for Held1 {
    fn index(&self) -> usize {
        self.index
    }
    fn held(&self) -> &SharedLease {
        &self.held
    }
}

impl HeldOrder for Paying {
    fn index(&self) -> usize {
        self.index
    }
    fn held(&self) -> &SharedLease {
        &self.held
    }
}

/// Sends one batch request of `items` (their `bId`s set, `rids` their items' own request ids)
/// on `ticket`, and says what it did to each item, in order. A ticket lost meanwhile (or a
/// store that fails to stamp it) sends nothing: every item is written on its own
/// ([`BatchOutcome::NotSent`]).
fn send(
    host: &mut dyn Host,
    up: &Upstreams,
    slot: &mut limiter::Slot,
    ticket: &mut limiter::BatchTicket,
    items: Vec<BatchCreate>,
    rids: &[String],
) -> Vec<BatchOutcome> {
    if !matches!(limiter::stamp_batch(host, ticket), Ok(true)) {
        return items.iter().map(|_| BatchOutcome::NotSent).collect();
    }
    let ids: Vec<&str> = rids.iter().map(String::as_str).collect();
    let batch_rid = quickbooks::batch_request_id(&ids);
    let answer = {
        let mut slotted = SlotHost::new(host, slot);
        up.qbo_batch(&mut slotted, &items, &batch_rid)
    };
    items
        .iter()
        .map(|item| match &answer {
            Ok(answers) => match answers.get(&item.bid) {
                Some(Ok(v)) => BatchOutcome::Created(v.clone()),
                Some(Err(e)) => BatchOutcome::Fault(upstream::QboFailure {
                    failure: e.failure.clone(),
                    fault: e.fault.clone(),
                }),
                None => BatchOutcome::Unknown,
            },
            Err(e) => BatchOutcome::Failed(e.failure.clone()),
        })
        .collect()
}

/// What staging one order did.
enum Step {
    Ended(RunResult),
    Staged(Box<(Job, StagedCreate)>),
}

/// Loads the record and runs it as a due run (the wait queue's runs are) as far as the batch.
fn stage_one(
    host: &mut dyn Host,
    up: &Upstreams,
    id: &str,
    held: &SharedLease,
) -> Result<Step, LeaseError> {
    let now = host.now();
    let loaded = store::load_record(host, Entity::Order, id)?;
    let previous = loaded.as_ref().map(|r| r.state);
    let mut rec = loaded.unwrap_or_else(|| SyncRecord::new(Entity::Order, id, now));
    let reauthorized = !connection::state(host)?.needs_reauth;
    let orphaned = previous.is_some() && rec.state == State::Pending;
    if !rec.is_due(now, reauthorized) && !orphaned {
        return Ok(Step::Ended(RunResult::NothingToDo(rec.state)));
    }
    if rec.state == State::NeedsReauth {
        rec.reauthorized(now);
    }
    store::save_record(host, &rec, previous)?;
    let mut job = Job {
        saved_state: Some(rec.state),
        rec,
        lease: Some(held.clone()),
        due: true,
    };
    match order::stage(host, up, &mut job) {
        Staged::Finished(outcome) => {
            run::finish(host, &mut job, outcome)?;
            Ok(Step::Ended(RunResult::Ran(job.rec.state)))
        }
        Staged::Create(s) => Ok(Step::Staged(Box::new((job, *s)))),
    }
}

/// Files a staged order's outcome on its record (under its lease).
fn file(
    host: &mut dyn Host,
    held: &SharedLease,
    job: &mut Job,
    outcome: Result<crate::jobs::Done, crate::sync::failure::Failure>,
    slot: &mut limiter::Slot,
) -> RunResult {
    let mut leased = LeasedHost::new(host, held.clone());
    let mut slotted = SlotHost::new(&mut leased, slot);
    match run::finish(&mut slotted, job, outcome) {
        Ok(()) => RunResult::Ran(job.rec.state),
        // Lost its lease (the worker that took over files it) or the store failed (the queue
        // entry stays and runs again).
        Err(_) => RunResult::Busy,
    }
}

/// Gives back the leases of staged orders when the run stops early (their records keep what
/// was saved; their queue entries stay, so they run again).
fn release_all(host: &mut dyn Host, staged: &[Held1]) {
    for h in staged {
        let _ = lease::release(host, &h.held);
    }
}
