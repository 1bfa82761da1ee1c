//! The QuickBooks limiter: every instance sharing one key-value store stays, together, inside
//! what QuickBooks allows one company (10 requests in flight, 500 a minute), with headroom.
//!
//! - **In flight.** A job that talks to QuickBooks first takes one of [`SLOTS`] (8) slot keys
//!   (`limit/qbo/slot/{i}`, leases like the entity leases: a short TTL, renewed while the job
//!   makes requests, given back when it ends). A job's QuickBooks calls are sequential, so 8
//!   slots mean at most 8 requests in flight; a crashed holder's slot frees itself within
//!   [`SLOT_TTL_MS`].
//! - **Per minute.** A job starts only while the current second has counted fewer than
//!   [`PER_SECOND`] (8) QuickBooks requests (QuickBooks allows 10 a second) and QuickBooks'
//!   sliding minute has room for it ([`crate::sync::pace::window_ops`]); every request it then
//!   makes is reserved in that window before it is sent ([`SlotHost`]), and waits for room when
//!   another job took it first. Any 62 s so hold at most [`pace::WINDOW_OPS`] (490) operations,
//!   a batch's items one by one.
//! - **A 429 anyway** (another app on the same company): no job starts for its Retry-After
//!   (60 s when it names none, and never longer: the throttled job itself waits out a longer
//!   one in its retry), and for [`SLOW_FOR_S`] after it the budget drops to
//!   [`SLOW_PER_SECOND`] a second.
//! - **Waiting.** Work beyond the limit is appended to the wait queue (`wait/qbo`, a log in
//!   arrival order) before anything is read from BigCommerce, and its record notes
//!   `waiting for QuickBooks capacity` (no failure, no attempt used). While the queue is not
//!   empty, new work queues behind it. [`crate::jobs::run::drain_waiting`] runs the queue's
//!   head as capacity frees: after every webhook job and after every retry-due, several
//!   drainers at once, each position marked handled on its own ([`mark_handled`]; the done
//!   mark moves only past handled positions). A drainer skips work whose lease looks held
//!   ([`without_held`]) and batches its own lane of the head first ([`Drainer::lane`]).
//! - **Batch requests.** Each takes one of [`BATCH_TICKETS`] (38) tickets, which frees
//!   [`BATCH_TICKET_MS`] (62 s) after its request left: at most 38 batch requests in any 62 s
//!   (QuickBooks allows 40 a minute), sent as fast as the minute's room frees.
//!
//! Sans-IO: time comes from the host, waiting is the caller's business.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::host::{Host, KvError, LogLevel};
use crate::http::{HttpRequest, HttpResponse, TransportError};
use crate::sync::lease::SharedLease;
use crate::sync::pace;
use crate::sync::record::Entity;
use crate::sync::store::{self, EventRef, LeaseGuard};

/// Jobs that may talk to QuickBooks at once, across every instance (QuickBooks allows 10
/// requests in flight per company).
pub const SLOTS: usize = 8;
/// How long a slot outlives its holder's last sign of life.
pub const SLOT_TTL_MS: i64 = 20_000;
/// The QuickBooks requests a second may count before no further job starts in it (QuickBooks
/// allows 10 a second).
pub const PER_SECOND: i64 = 8;
/// The budget a second for a while after QuickBooks answered 429.
pub const SLOW_PER_SECOND: i64 = 3;
/// The window's limit for a while after QuickBooks answered 429 (3 a second).
pub const SLOW_WINDOW_OPS: i64 = SLOW_PER_SECOND * 60;
// What the jobs running beside one may still reserve: a job admitted with more room than this
// sends that much without a look at the window.
const _: () = assert!(
    pace::IN_FLIGHT_OPS
        == SLOTS as i64 * pace::QBO_COST_PER_JOB
            + crate::models::quickbooks::MAX_BATCH_ITEMS as i64
);
/// The longest a request waits for room in the window (it frees within [`pace::WINDOW_S`]); past
/// it the request goes anyway, and a 429 is handled as any other.
const MAX_ROOM_WAIT_MS: u64 = 65_000;
/// How long the budget stays low after a 429.
pub const SLOW_FOR_S: i64 = 300;

const SLOW_KEY: &str = "limit/qbo/slow_until";
const PAUSE_KEY: &str = "limit/qbo/pause_until";
const QUEUE: &str = "wait/qbo";
const QUEUE_DONE: &str = "wait/qbo/done";

fn slot_key(i: usize) -> String {
    format!("limit/qbo/slot/{i}")
}

fn slot_keys() -> Vec<String> {
    (0..SLOTS).map(slot_key).collect()
}

/// Why a job may not start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// Every slot is taken: the jobs holding them drain the queue when they end.
    Slots,
    /// The second's budget is used: it frees at `until`.
    Budget { until: DateTime<Utc> },
    /// QuickBooks answered 429: nothing starts before `until`.
    Throttled { until: DateTime<Utc> },
    /// Earlier work is waiting: this work queues behind it.
    Queue,
}

impl Wait {
    /// What the record's audit trail says.
    pub fn describe(&self) -> String {
        match self {
            Wait::Slots => format!(
                "waiting for QuickBooks capacity: {SLOTS} jobs are talking to QuickBooks \
                 (it allows 10 requests at once per company)"
            ),
            Wait::Budget { .. } => format!(
                "waiting for QuickBooks capacity: this second's {PER_SECOND} requests or this \
                 minute's {} operations are used (QuickBooks allows 10 requests a second and \
                 500 a minute per company)",
                pace::WINDOW_OPS
            ),
            Wait::Throttled { until } => format!(
                "waiting for QuickBooks capacity: QuickBooks answered 429 (too many requests); \
                 going on at {until}"
            ),
            Wait::Queue => "waiting for QuickBooks capacity: earlier work is queued".into(),
        }
    }

    /// When it is worth trying again in this instance (`None`: leave it to others).
    pub fn retry_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Wait::Budget { until } | Wait::Throttled { until } => Some(*until),
            Wait::Slots | Wait::Queue => None,
        }
    }
}

/// A slot held by a running job.
#[derive(Debug)]
pub struct Slot {
    guard: LeaseGuard,
    renewed_at: DateTime<Utc>,
    /// Its renewal found it taken by another job (this one stalled past its TTL).
    lost: bool,
    /// How the job's requests are paced: `None` with pacing off.
    window: Option<Window>,
}

/// A paced job's share of QuickBooks' sliding minute.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// The operations the window may hold.
    limit: i64,
    /// What the job may still send without a look at the window (room it saw at admission
    /// beyond what the jobs beside it may take).
    unchecked: i64,
    /// Operations reserved ahead of the request that carries them ([`SlotHost::reserve_ahead`]).
    prepaid: i64,
}

impl Slot {
    fn renew_if_aging(&mut self, host: &mut dyn Host) {
        let now = host.now();
        if self.lost || (now - self.renewed_at).num_milliseconds() < SLOT_TTL_MS / 4 {
            return;
        }
        match store::renew(host, &mut self.guard, SLOT_TTL_MS) {
            Ok(true) => self.renewed_at = now,
            // Lost (this job stalled past the TTL): the job goes on; one more job may be
            // talking to QuickBooks for a moment, within the headroom below 10.
            Ok(false) => {
                self.lost = true;
                host.log(
                    LogLevel::Warn,
                    &format!("QuickBooks slot `{}` expired while held", self.guard.key()),
                );
            }
            Err(e) => host.log(LogLevel::Warn, &format!("QuickBooks slot not renewed: {e}")),
        }
    }
}

/// The budgets now: a second's requests and the window's operations (lower for
/// [`SLOW_FOR_S`] after QuickBooks answered 429).
fn budgets(host: &mut dyn Host, now: DateTime<Utc>) -> Result<(i64, i64), KvError> {
    let slow = host
        .kv_get(SLOW_KEY)?
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse::<i64>().ok())
        .is_some_and(|until| until > now.timestamp());
    Ok(if slow {
        (SLOW_PER_SECOND, SLOW_WINDOW_OPS)
    } else {
        (PER_SECOND, pace::WINDOW_OPS)
    })
}

/// The current second's budget of requests (lower for a while after a 429).
pub fn per_second(host: &mut dyn Host, now: DateTime<Utc>) -> Result<i64, KvError> {
    Ok(budgets(host, now)?.0)
}

/// QuickBooks answered 429 asking for `wait`: no job starts for that long (at most
/// [`MAX_PAUSE`]: the job that was throttled keeps the whole wait in its own retry), and the
/// budget stays low for [`SLOW_FOR_S`].
pub fn throttled(host: &mut dyn Host, now: DateTime<Utc>, wait: Duration) -> Result<(), KvError> {
    let until = now + wait.min(MAX_PAUSE);
    let later = pace::pause_until(host, PAUSE_KEY)?.is_some_and(|t| t >= until);
    if !later {
        host.kv_set(PAUSE_KEY, until.to_rfc3339().as_bytes())?;
    }
    host.kv_set(
        SLOW_KEY,
        (now.timestamp() + SLOW_FOR_S).to_string().as_bytes(),
    )
}

/// The longest every job waits after one 429 (QuickBooks says to wait 60 s).
pub const MAX_PAUSE: Duration = Duration::seconds(60);

/// Whether a job may talk to QuickBooks now: a slot to hold while it does, or why not.
/// A single job needs room for its own requests and a batch's: when the minute is nearly
/// full, the room that frees goes to batch requests (many orders each) first.
pub fn admit(host: &mut dyn Host) -> Result<Result<Slot, Wait>, KvError> {
    admit_with(
        host,
        pace::QBO_COST_PER_JOB + crate::models::quickbooks::MAX_BATCH_ITEMS as i64,
        0,
    )
}

/// [`admit`] for a batch request of `ops` operations. It is admitted once the window has room
/// for them, or will have within [`BATCH_STAGE_AHEAD_S`] seconds (what was reserved more than
/// a window ago by then leaves it): it stages its orders (reads them from BigCommerce, maps
/// and plans them) meanwhile, and its request waits for the room
/// ([`SlotHost::reserve_ahead`]). So the room a batch's request takes is used the moment it
/// frees, not after the batch's staging.
pub fn admit_batch(host: &mut dyn Host, ops: i64) -> Result<Result<Slot, Wait>, KvError> {
    admit_with(host, ops, BATCH_STAGE_AHEAD_S)
}

/// How far ahead a batch's room may be when it is admitted (its staging takes about this long).
pub const BATCH_STAGE_AHEAD_S: i64 = 2;

fn admit_with(host: &mut dyn Host, ops: i64, ahead_s: i64) -> Result<Result<Slot, Wait>, KvError> {
    let now = host.now();
    if let Some(until) = pace::pause_until(host, PAUSE_KEY)?
        && until > now
    {
        return Ok(Err(Wait::Throttled { until }));
    }
    if !pace::pacing_on(host) {
        return Ok(try_slot(host, None)?.ok_or(Wait::Slots));
    }
    let budget = Wait::Budget {
        until: pace::next_second(now),
    };
    let (per_second, limit) = budgets(host, now)?;
    if pace::requests_in_second(host, now)? >= per_second {
        return Ok(Err(budget));
    }
    let room = limit - pace::window_ops(host, now)?;
    if room < ops && (ahead_s == 0 || limit - pace::window_ops_ahead(host, now, ahead_s)? < ops) {
        return Ok(Err(budget));
    }
    let window = Window {
        limit,
        // A single job may send a few requests on the room it saw (the jobs beside it take at
        // most `IN_FLIGHT_OPS`). A batch checks every reservation: the drainers admit several
        // batches at once, each of many operations, and the room each saw is the others' too.
        unchecked: if ahead_s == 0 {
            room - pace::IN_FLIGHT_OPS
        } else {
            0
        },
        prepaid: 0,
    };
    Ok(try_slot(host, Some(window))?.ok_or(Wait::Slots))
}

/// The keys admitting a job reads (the wait queue's ends, the pause and slow marks, the slots,
/// and with pacing on the window's first keys), for a caller that reads them ahead
/// ([`crate::host::Prefetched`]).
pub fn admission_keys(host: &mut dyn Host, now: DateTime<Utc>) -> Vec<String> {
    let mut keys = vec![
        store::log_len_key(QUEUE),
        QUEUE_DONE.to_string(),
        PAUSE_KEY.to_string(),
        SLOW_KEY.to_string(),
    ];
    keys.extend(slot_keys());
    if pace::pacing_on(host) {
        keys.extend(pace::look_keys(now));
    }
    keys
}

/// Takes a slot that looks free (all of them read in one round trip, which a job's admission
/// reads ahead with its other keys, see [`admission_keys`]), starting at a random one; `None`
/// at once when none looks free (a slot freed since the look is found by the next one).
fn try_slot(host: &mut dyn Host, window: Option<Window>) -> Result<Option<Slot>, KvError> {
    let now = host.now();
    let free = slots_looking_free(host)?;
    let mut start = [0u8; 1];
    host.random_bytes(&mut start);
    for k in 0..free.len() {
        let key = slot_key(free[(usize::from(start[0]) + k) % free.len()]);
        if let Some(guard) = store::try_acquire_reused(host, &key, SLOT_TTL_MS)? {
            return Ok(Some(Slot {
                guard,
                renewed_at: now,
                lost: false,
                window,
            }));
        }
    }
    Ok(None)
}

/// Most workers draining the wait queue at once, across every instance (each runs one job at
/// a time; more would only hold instances open waiting for the same capacity).
pub const DRAINERS: usize = 8;
const DRAINER_TRIES: usize = 3;

/// A drainer's lease, and its lane: which part of the queue's head it batches first, so
/// drainers that look at once each form a batch of their own.
pub struct Drainer {
    pub guard: LeaseGuard,
    pub lane: usize,
}

/// Takes one of the [`DRAINERS`] drainer leases for `ttl_ms`, if one is free.
pub fn take_drainer(host: &mut dyn Host, ttl_ms: i64) -> Result<Option<Drainer>, KvError> {
    let mut start = [0u8; 1];
    host.random_bytes(&mut start);
    // Three tries: three held leases mean drainers are at work (each try is a write, and every
    // job's end asks for one).
    for k in 0..DRAINER_TRIES {
        let lane = (usize::from(start[0]) + k) % DRAINERS;
        let key = format!("limit/qbo/drainer/{lane}");
        // Taken over and over: the key holds the free value its last holder left (a read to
        // see it held, not the write that would create it).
        if let Some(guard) = store::try_acquire_reused(host, &key, ttl_ms)? {
            return Ok(Some(Drainer { guard, lane }));
        }
    }
    Ok(None)
}

/// A slot for work its caller already paced (bulk work checks the second and the minute itself
/// and runs one job at a time): waits up to `wait_ms` for one.
pub fn admit_paced(host: &mut dyn Host, wait_ms: u64) -> Result<Result<Slot, Wait>, KvError> {
    let window = if pace::pacing_on(host) {
        let now = host.now();
        Some(Window {
            limit: budgets(host, now)?.1,
            unchecked: 0,
            prepaid: 0,
        })
    } else {
        None
    };
    let mut waited = 0;
    loop {
        if let Some(slot) = try_slot(host, window)? {
            return Ok(Ok(slot));
        }
        if waited >= wait_ms {
            return Ok(Err(Wait::Slots));
        }
        host.sleep_ms(50);
        waited += 50;
    }
}

/// Batch requests that may leave within any [`BATCH_TICKET_MS`], across every instance
/// (QuickBooks allows 40 batch requests a minute per company): each request takes one of these
/// tickets (`limit/qbo/batch/ticket/{i}`, leases that are never given back), and a ticket frees
/// [`BATCH_TICKET_MS`] after its request left. So a burst may send its batches back to back, as
/// fast as the minute's room allows, not one per fixed spacing.
pub const BATCH_TICKETS: usize = 38;
/// How long a ticket stays taken after its request leaves: QuickBooks' minute and the margins
/// of [`pace::WINDOW_S`] (the second's grain, a request's way to QuickBooks).
pub const BATCH_TICKET_MS: i64 = pace::WINDOW_S * 1_000;
/// How long after its claim a ticket still covers a request that has not left: a request that
/// leaves later stamps its ticket again first ([`stamp_batch`]).
const BATCH_TICKET_SLACK_MS: i64 = 3_000;

fn batch_ticket_keys() -> Vec<String> {
    (0..BATCH_TICKETS)
        .map(|i| format!("limit/qbo/batch/ticket/{i}"))
        .collect()
}

/// A batch request's ticket: while it is taken, until [`BATCH_TICKET_MS`] after the request
/// left, no other batch request uses it.
#[derive(Debug)]
pub struct BatchTicket {
    guard: store::LeaseGuard,
    /// The ticket stays taken at least until then (ms since the epoch).
    taken_until_ms: i64,
}

/// Takes a batch ticket that looks free (all of them read in one round trip), starting at a
/// random one: `None` when none is free (the caller posts one document per request instead,
/// or waits).
pub fn claim_batch(host: &mut dyn Host) -> Result<Option<BatchTicket>, KvError> {
    let keys = batch_ticket_keys();
    let free = leases_looking_free(host, &keys)?;
    let mut start = [0u8; 1];
    host.random_bytes(&mut start);
    let ttl_ms = BATCH_TICKET_MS + BATCH_TICKET_SLACK_MS;
    for k in 0..free.len() {
        let key = &keys[free[(usize::from(start[0]) + k) % free.len()]];
        let now = host.now().timestamp_millis();
        if let Some(guard) = store::try_acquire_reused(host, key, ttl_ms)? {
            return Ok(Some(BatchTicket {
                guard,
                taken_until_ms: now + ttl_ms,
            }));
        }
    }
    Ok(None)
}

/// Right before the batch request leaves: keeps `ticket` taken until [`BATCH_TICKET_MS`] from
/// now (no round trip while its claim still covers that). `false`: the ticket was lost (its
/// request waited past the claim's whole term and another took it), and the request must not
/// leave on it.
pub fn stamp_batch(host: &mut dyn Host, ticket: &mut BatchTicket) -> Result<bool, KvError> {
    let needed = host.now().timestamp_millis() + BATCH_TICKET_MS;
    if needed <= ticket.taken_until_ms {
        return Ok(true);
    }
    if !store::renew(host, &mut ticket.guard, BATCH_TICKET_MS)? {
        return Ok(false);
    }
    ticket.taken_until_ms = needed;
    Ok(true)
}

/// Claims a batch ticket for a batch of `ops` operations that follows one already sent (the
/// payments after their invoices): looks once a second, up to `tries` times, and claims a
/// ticket in the first second whose budget is not spent and whose window has room for the
/// batch; `None` when none came free.
pub fn claim_next_batch(
    host: &mut dyn Host,
    tries: u32,
    ops: i64,
) -> Result<Option<BatchTicket>, KvError> {
    let pacing = pace::pacing_on(host);
    for k in 0..tries {
        if k > 0 {
            let now = host.now();
            host.sleep_ms(ms_until(now, pace::next_second(now)));
        }
        let now = host.now();
        let spent = pacing && {
            let (per_second, limit) = budgets(host, now)?;
            pace::requests_in_second(host, now)? >= per_second
                || pace::window_ops(host, now)? + ops > limit
        };
        if !spent && let Some(ticket) = claim_batch(host)? {
            return Ok(Some(ticket));
        }
    }
    Ok(None)
}

/// Gives a slot back.
pub fn release(host: &mut dyn Host, slot: Slot) -> Result<(), KvError> {
    let free = release_later(host, slot)?;
    store::write_together(host, free)
}

/// [`release`], handing back the plain write that gives the slot back instead of making it
/// (`store::release_later`): the caller makes it at once, with the others it has.
pub fn release_later(host: &mut dyn Host, slot: Slot) -> Result<Option<store::Write>, KvError> {
    if slot.lost {
        return Ok(None);
    }
    store::release_later(host, slot.guard, slot.renewed_at, SLOT_TTL_MS)
}

/// One piece of waiting work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub entity: Entity,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventRef>,
    pub since: DateTime<Utc>,
}

/// Puts work at the back of the wait queue.
pub fn enqueue(host: &mut dyn Host, waiting: &Waiting) -> Result<(), KvError> {
    store::append(host, QUEUE, waiting).map(|_| ())
}

/// What a queue position holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queued {
    /// Work waiting to run.
    Work(Waiting),
    /// Handled (run, or found done): the done mark moves past it.
    Handled,
    /// Nothing yet: its writer took the position and has not written it (a moment, normally;
    /// for good if it died in between: then the webhook's guard entry runs its work).
    Unwritten,
}

/// A position as stored: the work, or the mark a drainer leaves once it is handled.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Stored {
    Handled { handled: bool },
    Work(Waiting),
}

fn done_mark(host: &mut dyn Host) -> Result<i64, KvError> {
    Ok(host
        .kv_get(QUEUE_DONE)?
        .and_then(|b| store::decode_counter(&b))
        .unwrap_or(0))
}

/// The queue's length and its done mark, read in one round trip.
fn queue_ends(host: &mut dyn Host) -> Result<(i64, i64), KvError> {
    let (n, done) = stored_ends(host)?;
    Ok((n.unwrap_or(0), done.unwrap_or(0)))
}

/// The queue's length and its done mark as stored (`None`: absent), in one round trip.
fn stored_ends(host: &mut dyn Host) -> Result<(Option<i64>, Option<i64>), KvError> {
    let len = store::log_len_key(QUEUE);
    let counter = |v: &Option<Vec<u8>>| v.as_deref().and_then(store::decode_counter);
    match host.kv_get_many(&[&len, QUEUE_DONE])?.as_slice() {
        [n, done] => Ok((counter(n), counter(done))),
        other => Err(KvError(format!(
            "the store answered {} values for 2 keys",
            other.len()
        ))),
    }
}

/// Whether work is waiting (cheap: two keys, read in one round trip).
pub fn queue_is_empty(host: &mut dyn Host) -> Result<bool, KvError> {
    let (n, done) = queue_ends(host)?;
    Ok(n <= done)
}

/// The oldest positions past the done mark, at most `limit`, with what each holds (two
/// round trips: the queue's ends, then the positions).
pub fn queue_head(host: &mut dyn Host, limit: usize) -> Result<Vec<(i64, Queued)>, KvError> {
    let (n, done) = queue_ends(host)?;
    let last = n.min(done.saturating_add(i64::try_from(limit).unwrap_or(i64::MAX)));
    if last <= done {
        return Ok(Vec::new());
    }
    let stored = store::log_entries::<Stored>(host, QUEUE, done + 1, last)?;
    // A position found empty was deleted by a drainer that moved the done mark past it, or
    // its writer has not written it yet: one more read of the mark tells them apart.
    let mut mark = None;
    let mut out = Vec::new();
    for (i, s) in (done + 1..=last).zip(stored) {
        let queued = match s {
            Some(s) => queued(Some(s), i, 0),
            None => {
                let m = match mark {
                    Some(m) => m,
                    None => *mark.insert(done_mark(host)?),
                };
                queued(None, i, m)
            }
        };
        out.push((i, queued));
    }
    Ok(out)
}

/// `head` without the work whose entity lease looks held (its holder, a worker or another
/// drainer, runs it): every lease read in one round trip, so several drainers each find work
/// of their own past what the others are running, instead of trying the same leases in turn.
pub fn without_held(
    host: &mut dyn Host,
    head: Vec<(i64, Queued)>,
) -> Result<Vec<(i64, Queued)>, KvError> {
    let keys: Vec<String> = head
        .iter()
        .filter_map(|(_, q)| match q {
            Queued::Work(w) => Some(store::entity_lease_key(w.entity, &w.id)),
            _ => None,
        })
        .collect();
    if keys.is_empty() {
        return Ok(head);
    }
    let free = leases_looking_free(host, &keys)?;
    let mut k = 0;
    Ok(head
        .into_iter()
        .filter(|(_, q)| {
            if !matches!(q, Queued::Work(_)) {
                return true;
            }
            k += 1;
            free.binary_search(&(k - 1)).is_ok()
        })
        .collect())
}

/// What queue position `i` holds now.
pub fn position(host: &mut dyn Host, i: i64) -> Result<Queued, KvError> {
    Ok(match store::log_entry::<Stored>(host, QUEUE, i)? {
        Some(s) => queued(Some(s), i, 0),
        None => queued(None, i, done_mark(host)?),
    })
}

/// What position `i` holds, given what is stored there and (for an empty position) the done
/// mark read after it.
fn queued(stored: Option<Stored>, i: i64, done: i64) -> Queued {
    match stored {
        Some(Stored::Work(w)) => Queued::Work(w),
        Some(Stored::Handled { .. }) => Queued::Handled,
        // Deleted meanwhile: another drainer moved the done mark past it.
        None if done >= i => Queued::Handled,
        None => Queued::Unwritten,
    }
}

/// How long the head position may stay unwritten before it counts as a dead writer's (its
/// writer fills it within milliseconds; the webhook's guard entry runs a dead one's work).
pub const UNWRITTEN_GRACE_MS: i64 = 3_000;
const HEAD_UNWRITTEN_KEY: &str = "wait/qbo/head_unwritten";

/// Whether position `pos`, the head of the queue and found unwritten, has been so for
/// [`UNWRITTEN_GRACE_MS`]: the first drainer to see it notes when (one key, shared by every
/// instance and overwritten for the next head), and a drainer that sees it still unwritten
/// after the grace may mark it handled. Only the head needs this: it is where the done mark
/// stops (a dead writer's position behind it becomes the head in its turn).
pub fn head_unwritten_too_long(host: &mut dyn Host, pos: i64) -> Result<bool, KvError> {
    let now = host.now().timestamp_millis();
    let seen = host
        .kv_get(HEAD_UNWRITTEN_KEY)?
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let (p, at) = s.split_once(' ')?;
            Some((p.parse::<i64>().ok()?, at.parse::<i64>().ok()?))
        });
    match seen {
        Some((p, at)) if p == pos => Ok(now - at >= UNWRITTEN_GRACE_MS),
        _ => {
            host.kv_set(HEAD_UNWRITTEN_KEY, format!("{pos} {now}").as_bytes())?;
            Ok(false)
        }
    }
}

/// Marks position `i` handled, and moves the done mark past every handled position at the
/// head, deleting them. Positions are handled in any order (several drainers run the queue at
/// once); the mark only ever passes handled ones, so no waiting work is skipped.
///
/// Each look reads the queue's ends, then the positions past the mark (up to
/// [`MARK_SCAN`]), in two round trips, and moves the mark past all the handled ones at the
/// head with one swap (the mark only grows, so a swap from the value read means nobody moved
/// it meanwhile, and the positions read as handled are still there), then deletes them at once.
pub fn mark_handled(host: &mut dyn Host, i: i64) -> Result<(), KvError> {
    store::set_json(
        host,
        &format!("{QUEUE}/{i}"),
        &Stored::Handled { handled: true },
    )?;
    // Each drainer writes its mark before it looks at the head, so whichever looks last sees
    // every mark written before it, and the done mark never stops short for good.
    let mut first = true;
    loop {
        let (n, done) = queue_ends_for_swap(host)?;
        if std::mem::take(&mut first) && done >= i {
            // Another drainer handled it too and the mark passed it (deleting it) before this
            // mark was written: nothing would ever delete this one.
            host.kv_delete(&format!("{QUEUE}/{i}"))?;
            return Ok(());
        }
        if done >= n {
            return Ok(());
        }
        let last = n.min(done + MARK_SCAN);
        let stored = store::log_entries::<Stored>(host, QUEUE, done + 1, last)?;
        let handled = stored
            .iter()
            .take_while(|s| matches!(s, Some(Stored::Handled { .. })))
            .count();
        let to = done + handled as i64;
        if handled == 0 {
            match stored.first() {
                // Deleted by whoever moved the mark past it: look again.
                Some(None) if done_mark(host)? > done => continue,
                // Not handled yet, or not written yet: its handler looks after its own mark.
                _ => return Ok(()),
            }
        }
        if !store::cas_counter(host, QUEUE_DONE, done, to)? {
            // Another drainer moved the mark: look again from where it is.
            continue;
        }
        let keys: Vec<String> = (done + 1..=to).map(|p| format!("{QUEUE}/{p}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        host.kv_delete_many(&refs)?;
        if to < last || last == n {
            // The head stops at work not handled (or not written) yet, or at the queue's end
            // as it was read (work queued since is marked, and looked at, by its handler).
            return Ok(());
        }
    }
}

/// Most positions past the done mark one look of [`mark_handled`] reads.
const MARK_SCAN: i64 = 32;

/// The queue's length and its done mark in one round trip, the mark created (as 0) if it does
/// not exist yet, so that a swap has a value to swap from.
fn queue_ends_for_swap(host: &mut dyn Host) -> Result<(i64, i64), KvError> {
    let (n, done) = stored_ends(host)?;
    let done = match done {
        Some(done) => done,
        None => host.kv_increment(QUEUE_DONE, 0)?,
    };
    Ok((n.unwrap_or(0), done))
}

/// Whether a slot looks free now (a look only: one round trip, nothing taken).
pub fn slot_free(host: &mut dyn Host) -> Result<bool, KvError> {
    Ok(!slots_looking_free(host)?.is_empty())
}

/// The slots that look free now (never taken, given back, or expired), read in one round trip.
fn slots_looking_free(host: &mut dyn Host) -> Result<Vec<usize>, KvError> {
    leases_looking_free(host, &slot_keys())
}

/// Which of the leases at `keys` look free (absent, given back or expired), read in one round
/// trip: their indexes in `keys`.
fn leases_looking_free(host: &mut dyn Host, keys: &[String]) -> Result<Vec<usize>, KvError> {
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let now = host.now();
    Ok(host
        .kv_get_many(&refs)?
        .into_iter()
        .enumerate()
        .filter(|(_, value)| match value {
            None => true,
            Some(bytes) => store::decode_counter(bytes).is_some_and(|current| {
                crate::models::token::lease_is_free(&current.to_le_bytes(), now)
            }),
        })
        .map(|(i, _)| i)
        .collect())
}

/// The host a job runs on while it holds a slot: requests and waits keep the slot alive, and
/// waits keep alive the leases of the orders a batch carries ([`SlotHost::renewing`]).
pub struct SlotHost<'h> {
    inner: &'h mut dyn Host,
    slot: &'h mut Slot,
    renewing: Vec<SharedLease>,
}

impl<'h> SlotHost<'h> {
    pub fn new(inner: &'h mut dyn Host, slot: &'h mut Slot) -> Self {
        SlotHost {
            inner,
            slot,
            renewing: Vec::new(),
        }
    }

    /// Renews the slot and the leases it keeps alive where they are aging: before every request
    /// (a batch stages its orders one after the other, each with a request of its own, so the
    /// first staged must not lapse while the last are) and after every wait.
    fn renew_if_aging(&mut self) {
        self.slot.renew_if_aging(self.inner);
        for held in &self.renewing {
            held.borrow_mut().renew_if_aging(self.inner);
        }
    }

    /// Also renews `leases` while it waits and before each request: a batch request runs on the
    /// bare host (it carries many orders, each under its own lease), so no
    /// [`crate::sync::lease::LeasedHost`] does.
    pub fn renewing(mut self, leases: impl IntoIterator<Item = SharedLease>) -> Self {
        self.renewing.extend(leases);
        self
    }

    /// Reserves `ops` operations now, for a request that goes out a moment later (waiting,
    /// renewing the slot and the leases, while the window is full): a batch waits for its room
    /// before it proves its orders' leases, so it leaves right after the proof, never after a
    /// long wait. The request then spends this reservation instead of making its own.
    pub fn reserve_ahead(&mut self, ops: i64) {
        self.reserve_ops(ops);
        if let Some(w) = self.slot.window.as_mut() {
            w.prepaid += ops;
        }
    }

    /// Reserves a QuickBooks request's operations in the window before it is sent (or spends
    /// what [`Self::reserve_ahead`] reserved for it).
    fn reserve(&mut self, request: &HttpRequest) {
        let (Some(window), Some(ops)) = (self.slot.window.as_mut(), pace::qbo_operations(request))
        else {
            return;
        };
        if ops <= window.prepaid {
            window.prepaid -= ops;
            return;
        }
        self.reserve_ops(ops);
    }

    /// Reserves `ops` operations in the window; while it is full, waits (keeping the slot) for
    /// the room to free and reserves again.
    fn reserve_ops(&mut self, ops: i64) {
        let Some(window) = self.slot.window else {
            return;
        };
        if ops <= window.unchecked {
            if let Some(w) = self.slot.window.as_mut() {
                w.unchecked -= ops;
            }
            if let Err(e) = pace::reserve(self.inner, ops, None) {
                self.inner.log(
                    LogLevel::Warn,
                    &format!("QuickBooks request not counted: {e}"),
                );
            }
            return;
        }
        // A look first (nothing reserved), then the reservation, which looks again: a
        // reservation that finds no room still counts, so it is made only when room was seen.
        let mut waited = 0;
        loop {
            let now = self.inner.now();
            let seen = match pace::window_ops(self.inner, now) {
                Ok(used) => used + ops <= window.limit,
                Err(_) => true,
            };
            if seen {
                match pace::reserve(self.inner, ops, Some(window.limit)) {
                    Ok(true) => return,
                    // Another job took the room at the same moment.
                    Ok(false) => {}
                    Err(e) => {
                        self.inner.log(
                            LogLevel::Warn,
                            &format!("QuickBooks request not counted: {e}"),
                        );
                        return;
                    }
                }
            }
            if waited >= MAX_ROOM_WAIT_MS {
                self.inner.log(
                    LogLevel::Warn,
                    "QuickBooks' minute still looks full after 65 s; sending anyway",
                );
                return;
            }
            // Room frees as seconds leave the window: look again as the next one starts.
            let pause = ms_until(now, pace::next_second(now));
            self.sleep_ms(pause);
            waited += pause;
        }
    }
}

impl Host for SlotHost<'_> {
    crate::host::pass_through_to_inner!();

    fn http(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        self.renew_if_aging();
        self.reserve(request);
        self.inner.http(request)
    }

    fn sleep_ms(&mut self, ms: u64) {
        self.inner.sleep_ms(ms);
        self.renew_if_aging();
    }
}

/// How long after `now` a wait that ends at `until` is, at least a millisecond.
pub fn ms_until(now: DateTime<Utc>, until: DateTime<Utc>) -> u64 {
    u64::try_from((until - now).num_milliseconds().max(1)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;
    use crate::sync::pace::Paced;
    use crate::testing::{Counted, FakeHost};

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-02T10:00:05Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn host() -> FakeHost {
        let mut h = FakeHost::new(t0());
        h.set_config("qbo_api_base", "https://qbo.test");
        h.route("https://qbo.test/v3/company/1/query", |_| {
            Ok(HttpResponse::new(200, "{}"))
        });
        h.route("https://qbo.test/v3/company/1/invoice", |_| {
            let mut r = HttpResponse::new(429, "");
            r.headers = vec![("Retry-After".into(), "86400".into())];
            Ok(r)
        });
        h
    }

    fn qbo_call(h: &mut dyn Host, path: &str) {
        let mut p = Paced::new(h);
        p.http(&HttpRequest::new(
            Method::Get,
            format!("https://qbo.test/v3/company/1/{path}"),
        ))
        .unwrap();
    }

    fn take(h: &mut FakeHost) -> Slot {
        admit(h).unwrap().expect("a slot is free")
    }

    #[test]
    fn pacing_off_drops_the_budget_but_keeps_the_slots_and_an_unknown_value_keeps_it_on() {
        let mut store = host();
        let second = store.now().timestamp();
        store
            .kv_increment(&format!("pace/qbo/{second}"), 100)
            .unwrap();
        assert!(matches!(admit(&mut store), Ok(Err(Wait::Budget { .. }))));
        store.set_config("qbo_pacing", "sometimes");
        assert!(
            matches!(admit(&mut store), Ok(Err(Wait::Budget { .. }))),
            "an unknown value keeps pacing on"
        );
        store.set_config("qbo_pacing", "off");
        let mut held = Vec::new();
        for _ in 0..SLOTS {
            held.push(take(&mut store));
        }
        assert!(
            matches!(admit(&mut store), Ok(Err(Wait::Slots))),
            "the slots still bound requests in flight"
        );
        release(&mut store, held.pop().unwrap()).unwrap();
        assert!(admit(&mut store).unwrap().is_ok());
    }

    #[test]
    fn a_following_batch_takes_a_ticket_at_once_and_gives_up_when_every_ticket_is_taken() {
        let mut store = host();
        let first = claim_batch(&mut store).unwrap().expect("a free ticket");
        let start = store.now();
        let second = claim_next_batch(&mut store, 3, 30).unwrap();
        assert!(second.is_some(), "a free ticket is taken at once");
        assert_eq!(store.now(), start, "no wait while a ticket is free");
        assert_ne!(first.guard.key(), second.unwrap().guard.key());
        // Every ticket taken (by this instance or another): the follower looks once a second
        // for its tries, then gives up.
        while claim_batch(&mut store).unwrap().is_some() {}
        assert!(claim_next_batch(&mut store, 2, 30).unwrap().is_none());
        assert_eq!((store.now() - start).num_milliseconds(), 1_000);
        // The first ticket frees its term after its claim, not before.
        store.advance(Duration::milliseconds(
            BATCH_TICKET_MS + BATCH_TICKET_SLACK_MS - 1_001,
        ));
        assert!(claim_batch(&mut store).unwrap().is_none());
        store.advance(Duration::milliseconds(1));
        assert!(claim_batch(&mut store).unwrap().is_some());
    }

    #[test]
    fn batch_requests_across_instances_stay_below_forty_in_any_minute_however_late_they_leave() {
        let mut store = host();
        let mut leaving: Vec<(i64, BatchTicket)> = Vec::new();
        let mut sent = Vec::new();
        let mut not_sent = 0;
        // Two instances asking every 100 ms for five minutes; each request leaves 0 to 9.9 s
        // after its claim (staging, waiting for room).
        for step in 0..3_000i64 {
            for k in 0..2 {
                if let Some(ticket) = claim_batch(&mut store).unwrap() {
                    leaving.push((step + (step * 7 + k * 31) % 100, ticket));
                }
            }
            let (due, later): (Vec<_>, Vec<_>) = leaving.drain(..).partition(|(at, _)| *at <= step);
            leaving = later;
            for (_, mut ticket) in due {
                if stamp_batch(&mut store, &mut ticket).unwrap() {
                    sent.push(step);
                } else {
                    not_sent += 1;
                }
            }
            store.advance(Duration::milliseconds(100));
        }
        sent.sort_unstable();
        for (i, first) in sent.iter().enumerate() {
            let within = sent[i..].iter().take_while(|s| **s < first + 600).count();
            assert!(
                within <= BATCH_TICKETS,
                "{within} batch requests within 60 s from step {first}"
            );
        }
        assert_eq!(not_sent, 0, "no request waits past its ticket's term here");
        // Each ticket leaves a request about every 62 s and a little.
        assert!(sent.len() >= 4 * BATCH_TICKETS, "{} sent", sent.len());
        let keys = store
            .kv
            .keys()
            .filter(|k| k.starts_with("limit/qbo/batch/"))
            .count();
        assert_eq!(
            keys, BATCH_TICKETS,
            "the tickets are all the keys batching keeps"
        );
    }

    #[test]
    fn a_ticket_whose_request_waited_past_its_term_is_not_sent_on() {
        let mut store = host();
        let mut late = claim_batch(&mut store).unwrap().unwrap();
        // Its request waits past the claim's whole term; another caller takes the ticket.
        store.advance(Duration::milliseconds(
            BATCH_TICKET_MS + BATCH_TICKET_SLACK_MS,
        ));
        let mut taken = Vec::new();
        while let Some(t) = claim_batch(&mut store).unwrap() {
            taken.push(t);
        }
        assert!(taken.iter().any(|t| t.guard.key() == late.guard.key()));
        assert!(!stamp_batch(&mut store, &mut late).unwrap());
        // A request that leaves within the slack needs no round trip; a later one stamps its
        // ticket to 62 s after it leaves.
        let mut ticket = taken.pop().unwrap();
        let mut counted = Counted::new(&mut store);
        assert!(stamp_batch(&mut counted, &mut ticket).unwrap());
        assert!(counted.take().is_empty());
        store.advance(Duration::milliseconds(BATCH_TICKET_SLACK_MS + 1));
        assert!(stamp_batch(&mut store, &mut ticket).unwrap());
        assert_eq!(
            ticket.taken_until_ms,
            store.now().timestamp_millis() + BATCH_TICKET_MS
        );
    }

    #[test]
    fn two_instances_on_one_store_share_eight_slots_and_a_released_slot_is_taken_again() {
        // The limiter keeps nothing in memory: two instances are two callers on one store.
        let mut store = host();
        let a: Vec<Slot> = (0..5).map(|_| take(&mut store)).collect();
        let mut b: Vec<Slot> = (0..3).map(|_| take(&mut store)).collect();
        assert_eq!(admit(&mut store).unwrap().unwrap_err(), Wait::Slots);
        assert_eq!(admit(&mut store).unwrap().unwrap_err().retry_at(), None);
        release(&mut store, b.pop().unwrap()).unwrap();
        let again = take(&mut store);
        assert_eq!(admit(&mut store).unwrap().unwrap_err(), Wait::Slots);
        let keys: std::collections::BTreeSet<String> = a
            .iter()
            .chain(b.iter())
            .chain(std::iter::once(&again))
            .map(|s| s.guard.key().to_string())
            .collect();
        assert_eq!(keys.len(), SLOTS, "every holder has its own slot: {keys:?}");
    }

    #[test]
    fn a_crashed_holders_slot_frees_itself_after_its_ttl_and_a_live_holder_keeps_its_own() {
        let mut store = host();
        // Instance A takes 7 slots and dies holding them.
        let crashed: Vec<Slot> = (0..7).map(|_| take(&mut store)).collect();
        drop(crashed);
        // Instance B's job holds the 8th and keeps making requests.
        let mut live = take(&mut store);
        assert_eq!(admit(&mut store).unwrap().unwrap_err(), Wait::Slots);
        for _ in 0..4 {
            store.advance(Duration::milliseconds(SLOT_TTL_MS / 3));
            let mut job = SlotHost::new(&mut store, &mut live);
            qbo_call(&mut job, "query");
        }
        // 26 s later: the dead instance's slots are free again, the live job's is not.
        let taken: Vec<Slot> = (0..7).map(|_| take(&mut store)).collect();
        assert_eq!(taken.len(), 7);
        assert_eq!(admit(&mut store).unwrap().unwrap_err(), Wait::Slots);
    }

    #[test]
    fn a_used_second_holds_new_jobs_until_the_next_and_a_429_pauses_them_then_slows_the_budget() {
        let mut h = host();
        for _ in 0..PER_SECOND {
            pace::reserve(&mut h, 1, None).unwrap();
        }
        let wait = admit(&mut h).unwrap().unwrap_err();
        assert_eq!(
            wait,
            Wait::Budget {
                until: t0() + Duration::seconds(1)
            }
        );
        assert!(wait.describe().contains("waiting for QuickBooks capacity"));
        h.advance(Duration::seconds(1));
        let slot = take(&mut h);
        release(&mut h, slot).unwrap();

        // A 429 asking for a day: every job waits a minute (the throttled job keeps the day).
        qbo_call(&mut h, "invoice");
        let now = h.now();
        assert_eq!(
            admit(&mut h).unwrap().unwrap_err(),
            Wait::Throttled {
                until: now + MAX_PAUSE
            }
        );
        h.advance(MAX_PAUSE);
        let now = h.now();
        assert_eq!(per_second(&mut h, now).unwrap(), SLOW_PER_SECOND);
        for _ in 0..SLOW_PER_SECOND {
            pace::reserve(&mut h, 1, None).unwrap();
        }
        assert!(matches!(
            admit(&mut h).unwrap().unwrap_err(),
            Wait::Budget { .. }
        ));
        h.advance(Duration::seconds(SLOW_FOR_S));
        let now = h.now();
        assert_eq!(per_second(&mut h, now).unwrap(), PER_SECOND);
    }

    #[test]
    fn a_full_minute_holds_new_jobs_and_a_job_whose_room_was_taken_waits_for_it_keeping_its_slot() {
        let mut h = host();
        // Other jobs sent 450 operations this second: room for a single job (its own
        // requests and a batch's, which it leaves to batches when the minute is nearly full).
        assert!(pace::reserve(&mut h, 450, Some(pace::WINDOW_OPS)).unwrap());
        let mut slot = take(&mut h);
        // Another instance takes the last 40 before this job sends anything.
        assert!(pace::reserve(&mut h, 40, Some(pace::WINDOW_OPS)).unwrap());
        h.advance(Duration::seconds(1));
        let wait = admit(&mut h).unwrap().unwrap_err();
        assert_eq!(
            wait,
            Wait::Budget {
                until: t0() + Duration::seconds(2)
            }
        );
        assert!(
            wait.describe().contains("490 operations"),
            "{}",
            wait.describe()
        );
        // The job's request waits, its slot kept alive, until the burst has left the window.
        let before = h.now();
        let sent = h.calls_to("/v3/company/1/query");
        {
            let mut job = SlotHost::new(&mut h, &mut slot);
            qbo_call(&mut job, "query");
        }
        assert_eq!(h.calls_to("/v3/company/1/query"), sent + 1);
        let waited = (h.now() - before).num_seconds();
        assert!((60..=64).contains(&waited), "waited {waited} s");
        assert!(
            !store::lease_free(&mut h, slot.guard.key()).unwrap(),
            "the slot was kept"
        );
        release(&mut h, slot).unwrap();
        assert!(admit(&mut h).unwrap().is_ok());
    }

    #[test]
    fn a_batch_is_admitted_two_seconds_before_its_room_frees_and_its_request_takes_the_room_as_it_frees()
     {
        let mut h = host();
        // A burst filled the window at t0; every second since was looked at (and marked).
        assert!(pace::reserve(&mut h, 480, Some(pace::WINDOW_OPS)).unwrap());
        for _ in 0..59 {
            h.advance(Duration::seconds(1));
            let now = h.now();
            pace::window_ops(&mut h, now).unwrap();
        }
        // At t0 + 59 the burst leaves the window only in three seconds: no batch yet.
        assert!(matches!(
            admit_batch(&mut h, 20).unwrap().unwrap_err(),
            Wait::Budget { .. }
        ));
        // At t0 + 60 it leaves in two: a batch is admitted (it stages its orders meanwhile), a
        // single job is not.
        h.advance(Duration::seconds(1));
        assert!(matches!(
            admit(&mut h).unwrap().unwrap_err(),
            Wait::Budget { .. }
        ));
        let mut slot = admit_batch(&mut h, 20).unwrap().expect("admitted ahead");
        // Its request waits for the room and takes it as the burst's second leaves the window.
        SlotHost::new(&mut h, &mut slot).reserve_ahead(20);
        assert_eq!(h.now(), t0() + Duration::seconds(pace::WINDOW_S));
        let now = h.now();
        assert_eq!(pace::window_ops(&mut h, now).unwrap(), 20);
        release(&mut h, slot).unwrap();
    }

    #[test]
    fn batches_admitted_at_once_on_the_same_room_reserve_no_more_than_the_window_holds() {
        let mut h = host();
        // Room for five batches of 30: eight drainers admit a batch each at once.
        assert!(pace::reserve(&mut h, pace::WINDOW_OPS - 150, Some(pace::WINDOW_OPS)).unwrap());
        let mut slots: Vec<Slot> = (0..SLOTS)
            .map(|_| {
                admit_batch(&mut h, 30)
                    .unwrap()
                    .expect("admitted on the room it saw")
            })
            .collect();
        // Their requests reserve in turn: the first five take the room, the next waits for
        // the reservation at t0 to leave the window.
        for (k, slot) in slots.iter_mut().take(6).enumerate() {
            SlotHost::new(&mut h, slot).reserve_ahead(30);
            let now = h.now();
            assert!(
                pace::window_ops(&mut h, now).unwrap() <= pace::WINDOW_OPS,
                "batch {k} overfilled the window"
            );
            let waited = now > t0();
            assert_eq!(waited, k == 5, "batch {k} waited: {waited}");
        }
        for slot in slots {
            release(&mut h, slot).unwrap();
        }
    }

    #[test]
    fn the_wait_queue_hands_out_entries_in_arrival_order_and_the_done_mark_passes_only_handled_ones()
     {
        let mut h = host();
        for id in ["7", "3", "9"] {
            enqueue(
                &mut h,
                &Waiting {
                    entity: Entity::Order,
                    id: id.into(),
                    event: None,
                    since: t0(),
                },
            )
            .unwrap();
        }
        assert!(!queue_is_empty(&mut h).unwrap());
        let ids: Vec<String> = queue_head(&mut h, 10)
            .unwrap()
            .into_iter()
            .map(|(_, q)| match q {
                Queued::Work(w) => w.id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, ["7", "3", "9"]);
        // The second is handled first (another drainer runs the first): the mark waits.
        mark_handled(&mut h, 2).unwrap();
        let head = queue_head(&mut h, 10).unwrap();
        assert_eq!(head.len(), 3);
        assert_eq!(head[1], (2, Queued::Handled));
        mark_handled(&mut h, 1).unwrap();
        let head = queue_head(&mut h, 10).unwrap();
        assert_eq!(head.len(), 1);
        assert!(matches!(&head[0], (3, Queued::Work(w)) if w.id == "9"));
        assert!(!h.kv.contains_key("wait/qbo/1") && !h.kv.contains_key("wait/qbo/2"));
        mark_handled(&mut h, 3).unwrap();
        assert!(queue_is_empty(&mut h).unwrap());
        // A second drainer that handled the first entry too marks it after the mark passed it:
        // its mark is removed again, not left behind for good.
        mark_handled(&mut h, 1).unwrap();
        assert!(
            !h.kv
                .keys()
                .any(|k| k.starts_with("wait/qbo/") && k[9..].parse::<i64>().is_ok()),
            "{:?}",
            h.kv.keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_position_taken_but_not_yet_written_reads_as_unwritten_and_holds_the_done_mark() {
        let mut h = host();
        // A writer took position 1 and has not written it yet; position 2 is complete.
        h.kv_increment("wait/qbo/n", 1).unwrap();
        let w = Waiting {
            entity: Entity::Order,
            id: "5".into(),
            event: None,
            since: t0(),
        };
        enqueue(&mut h, &w).unwrap();
        let head = queue_head(&mut h, 10).unwrap();
        assert_eq!(head, vec![(1, Queued::Unwritten), (2, Queued::Work(w))]);
        mark_handled(&mut h, 2).unwrap();
        assert!(
            !queue_is_empty(&mut h).unwrap(),
            "the unwritten position holds the mark"
        );
        mark_handled(&mut h, 1).unwrap();
        assert!(queue_is_empty(&mut h).unwrap());
    }

    #[test]
    fn the_slots_are_read_in_one_round_trip_and_none_is_swapped_while_all_are_held() {
        let mut h = host();
        h.set_config("qbo_pacing", "off");
        let held: Vec<Slot> = (0..SLOTS).map(|_| take(&mut h)).collect();
        let mut c = Counted::new(&mut h);
        assert!(!slot_free(&mut c).unwrap());
        assert_eq!(c.take(), ["get_many"]);
        assert_eq!(admit(&mut c).unwrap().unwrap_err(), Wait::Slots);
        assert_eq!(c.take(), ["get", "get_many"], "the pause, then the slots");
        // A job reads them ahead with its other keys: its admission then costs nothing more.
        let now = c.now();
        let keys = admission_keys(&mut c, now);
        {
            let mut ahead = crate::host::Prefetched::new(&mut c, &keys);
            assert_eq!(admit(&mut ahead).unwrap().unwrap_err(), Wait::Slots);
        }
        assert_eq!(c.take(), ["get_many"], "the read ahead only");
        // One given back: the next admission swaps that one, and only that one.
        let mut held = held;
        release(&mut h, held.pop().unwrap()).unwrap();
        let mut c = Counted::new(&mut h);
        let slot = admit(&mut c).unwrap().expect("the free slot");
        assert_eq!(c.take(), ["get", "get_many", "cas"]);
        drop((held, slot));
    }

    #[test]
    fn the_last_handled_position_moves_the_mark_past_all_handled_ones_in_one_swap() {
        let mut h = host();
        for id in 1..=40 {
            let w = Waiting {
                entity: Entity::Order,
                id: id.to_string(),
                event: None,
                since: t0(),
            };
            enqueue(&mut h, &w).unwrap();
        }
        // Handled out of order: the mark waits for the first.
        for i in 2..=40 {
            mark_handled(&mut h, i).unwrap();
        }
        assert_eq!(done_mark(&mut h).unwrap(), 0);
        let mut c = Counted::new(&mut h);
        mark_handled(&mut c, 1).unwrap();
        assert_eq!(
            c.take(),
            [
                "set",
                "get_many",
                "get_many",
                "cas",
                "delete_many", // 1..=32
                "get_many",
                "get_many",
                "cas",
                "delete_many", // 33..=40
            ]
        );
        assert_eq!(done_mark(&mut h).unwrap(), 40);
        assert!(queue_is_empty(&mut h).unwrap());
        assert!(
            !h.kv
                .keys()
                .any(|k| k.starts_with("wait/qbo/") && k[9..].parse::<i64>().is_ok()),
            "every handled position is deleted: {:?}",
            h.kv.keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_free_slot_is_seen_without_taking_it() {
        let mut h = host();
        let held: Vec<Slot> = (0..SLOTS - 1).map(|_| take(&mut h)).collect();
        assert!(slot_free(&mut h).unwrap());
        let last = take(&mut h);
        assert!(!slot_free(&mut h).unwrap());
        release(&mut h, last).unwrap();
        assert!(slot_free(&mut h).unwrap());
        drop(held);
    }
}
