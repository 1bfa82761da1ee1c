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
//! and counts as one request per operation toward the per-minute budget; at most one batch
//! request starts per 1.6 s window across all instances ([`limiter::claim_batch`]), inside
//! QuickBooks' 40 a minute.

use crate::host::{Host, KvError};
use crate::jobs::Job;
use crate::jobs::order::{self, BatchOutcome, Staged, StagedCreate};
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
/// An empty answer means no batch could be sent now (fewer than [`MIN_BATCH`] orders, or this
/// window's batch request is taken): the caller runs the entries one by one as before.
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
    let mut slot = match limiter::admit(host)? {
        Ok(slot) => slot,
        Err(wait) => {
            return Ok(orders
                .iter()
                .map(|(i, _)| (*i, RunResult::Waiting(wait.clone())))
                .collect());
        }
    };
    let result = match limiter::claim_batch(host) {
        Ok(true) => match upstream::upstreams(host) {
            Ok(up) => run_claimed(host, &up, &orders, &mut slot),
            // The single path files the configuration failure on each record.
            Err(_) => Ok(Vec::new()),
        },
        Ok(false) => Ok(Vec::new()),
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
) -> Result<Vec<(usize, RunResult)>, KvError> {
    let mut results = Vec::new();
    let mut staged: Vec<Held1> = Vec::new();
    for (index, w) in orders {
        let key = store::entity_lease_key(Entity::Order, &w.id);
        let Some(guard) = store::try_acquire(host, &key, store::ENTITY_LEASE_MS)? else {
            results.push((*index, RunResult::Busy));
            continue;
        };
        let held = Held::new(guard, store::ENTITY_LEASE_MS, host.now());
        let step = {
            let mut leased = LeasedHost::new(host, held.clone());
            let mut slotted = SlotHost::new(&mut leased, slot);
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
    let mut sending: Vec<(Held1, BatchCreate, String)> = Vec::new();
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
            Ok(()) => {
                let bid = quickbooks::batch_bid(sending.len());
                sending.push((
                    h,
                    BatchCreate {
                        bid,
                        entity: "Invoice".into(),
                        body,
                    },
                    rid,
                ));
            }
            Err(f) => {
                let r = file(host, &h.held, &mut h.job, Err(f), slot);
                results.push((h.index, r));
                lease::release(host, &h.held)?;
            }
        }
    }
    if sending.is_empty() {
        return Ok(results);
    }
    // A lease lost while the others were staged: that order is left to whoever took it over
    // (its planned requestid makes that run look before it writes).
    let mut kept = Vec::new();
    for (h, item, rid) in sending {
        let ok = h.held.borrow_mut().ensure(host).is_ok();
        if ok {
            kept.push((h, item, rid));
        } else {
            results.push((h.index, RunResult::Busy));
            lease::release(host, &h.held)?;
        }
    }
    let items: Vec<BatchCreate> = kept
        .iter()
        .enumerate()
        .map(|(k, (_, item, _))| BatchCreate {
            bid: quickbooks::batch_bid(k),
            ..item.clone()
        })
        .collect();
    if items.is_empty() {
        return Ok(results);
    }
    let rids: Vec<&str> = kept.iter().map(|(_, _, r)| r.as_str()).collect();
    let batch_rid = quickbooks::batch_request_id(&rids);
    let answer = {
        let mut slotted = SlotHost::new(host, slot);
        up.qbo_batch(&mut slotted, &items, &batch_rid)
    };
    for (k, (h, _, _)) in kept.into_iter().enumerate() {
        let Held1 {
            index,
            held,
            mut job,
            staged,
        } = h;
        let outcome = match &answer {
            Ok(answers) => match answers.get(&items[k].bid) {
                Some(Ok(v)) => BatchOutcome::Created(v.clone()),
                Some(Err(e)) => BatchOutcome::Fault(upstream::QboFailure {
                    failure: e.failure.clone(),
                    fault: e.fault.clone(),
                }),
                None => BatchOutcome::Unknown,
            },
            Err(e) => BatchOutcome::Failed(e.failure.clone()),
        };
        let done = {
            let mut leased = LeasedHost::new(host, held.clone());
            let mut slotted = SlotHost::new(&mut leased, slot);
            order::complete(&mut slotted, up, &mut job, staged, outcome)
        };
        let r = file(host, &held, &mut job, done, slot);
        results.push((index, r));
        lease::release(host, &held)?;
    }
    Ok(results)
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
