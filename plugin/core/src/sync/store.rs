//! The connector's key-value layout, built only from operations Spin's store supports.
//!
//! Rules that shape it:
//! - No cursor paging (Spin rejects it), so nothing is ever found by listing keys.
//! - A compare-and-swap from "absent" is an upsert on Spin's SQLite store, so keys that are
//!   compare-and-swapped are created with `increment(key, 0)` first (atomic on every host)
//!   and only ever hold counters. JSON values are written by the holder of the
//!   entity's lease, or are append-only slots whose numbers come from `increment`.
//! - Hosts store counters differently: 8-byte little-endian (SQLite, ours and Spin's) or
//!   decimal text (Redis, where `increment` is `INCRBY`). So a counter is read with
//!   [`decode_counter`], which takes both, and swapped with [`cas_counter`], which writes
//!   the encoding the key already has (an `increment` after it must still work).
//! - Spin's Redis store can report a swap that lost the race as done (its `WATCH`ed
//!   transaction is aborted, but the abort is not reported), so a lease taken or renewed by
//!   swap on a key that holds decimal text is read back before it is trusted. A swap of a
//!   little-endian counter is trusted as reported: the stores that keep counters so (Spin's
//!   SQLite store and ours) swap only where the key still holds the expected value, and
//!   report a swap that found another value as not done.
//!
//! Layout:
//! - `rec/{entity}/{id}`: the [`SyncRecord`] (source of truth), written under `lease/{entity}/{id}`.
//! - `log/{name}/n` + `log/{name}/{i}`: append-only logs (slot numbers from `increment`):
//!   `records` (one slot per record, for newest-first listing), `parked` (records waiting for
//!   re-authorization).
//! - `due/{minute}/n`, `due/{minute}/{i}`, `due/{minute}/done` and `due/cursor`: work that
//!   becomes due in a given minute, so `retry-due` reads only the minutes that have come.
//! - `keep/order/{id}` (+ `/changed`): the order a run read before it failed retryably, for
//!   its retry (`jobs::order`), and the sweep's note that BigCommerce changed it since.
//! - `cache/bc/customer-group/{id}`: a registered customer's group ([`CustomerGroup`]).
//! - `wait/qbo/n`, `wait/qbo/{i}`, `wait/qbo/done`: work waiting for QuickBooks capacity, in
//!   arrival order (`sync::limiter`); `limit/qbo/slot/{0..8}` and `limit/qbo/drainer/{0..8}`:
//!   the limiter's leases; `limit/qbo/pause_until`, `limit/qbo/slow_until`: after a 429.
//! - `count/{state}`: records per state but `pending`, adjusted on every transition and
//!   repaired from the records by [`recount`] (`count/recounted_at`: when it last ran or is
//!   next due; `count/unconfirmed`: what it found off, until a second count confirms it);
//!   `count/unlisted`: the slots of `log/records` that list no record of their own, kept by
//!   [`recount`]. `pending` is what is left: every record is listed before it is first saved,
//!   so a new record costs no counter, and leaving `pending` costs one.
//!
//! Bounded growth without listing keys: a due entry is deleted once it is marked handled, a
//! minute's counters once the cursor moves past it, a parked slot once it is resumed, a waiting slot once it is run. What
//! stays is per entity (its record, its lease, its listing slot, a customer's link) or fixed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::books::mapping::MappingConfig;
use crate::host::{CasOutcome, Host, KvError};
use crate::models::token::Lease;
use crate::settings;
use crate::sync::failure::Failure;
use crate::sync::record::{Entity, State, SyncRecord};

/// How long an entity lease lasts if its holder dies. Its holder renews it between steps
/// (`sync::lease`), so it only has to outlive one step: one upstream request
/// ([`crate::http::UPSTREAM_DEADLINE_MS`]) or one bounded wait. Short, so a dead worker's
/// event is picked up well within a minute (CONTRACT §5).
pub const ENTITY_LEASE_MS: i64 = 20_000;

/// KV key of the mapping set with `PUT /admin/mapping`.
pub const MAPPING_KEY: &str = "config/mapping";

/// The mapping in force (stored by `PUT /admin/mapping`, else the `mapping` variable, else the default).
pub fn mapping_config(host: &mut dyn Host) -> Result<MappingConfig, Failure> {
    let stored = host
        .kv_get(MAPPING_KEY)
        .map_err(|e| Failure::storage(&e.to_string()))?;
    let bytes = match stored {
        Some(b) => b,
        None => match settings::optional(host, "mapping") {
            Some(text) => text.into_bytes(),
            None => return Ok(MappingConfig::default()),
        },
    };
    MappingConfig::parse(&bytes).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        Failure::mapping(&format!(
            "the mapping is invalid: {}; fix it with PUT /admin/mapping",
            list.join("; ")
        ))
    })
}

fn counter(host: &mut dyn Host, key: &str) -> Result<i64, KvError> {
    host.kv_increment(key, 0)
}

fn get_json<T: for<'de> Deserialize<'de>>(
    host: &mut dyn Host,
    key: &str,
) -> Result<Option<T>, KvError> {
    match host.kv_get(key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| KvError(format!("stored value at `{key}` is corrupt: {e}"))),
    }
}

pub(crate) fn set_json<T: Serialize>(
    host: &mut dyn Host,
    key: &str,
    value: &T,
) -> Result<(), KvError> {
    host.kv_set(key, &encode(key, value)?)
}

/// `value` as the JSON stored at `key`.
fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, KvError> {
    serde_json::to_vec(value).map_err(|e| KvError(format!("cannot encode `{key}`: {e}")))
}

/// A held lease; release it with [`release`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseGuard {
    key: String,
    value: i64,
    /// The host keeps this counter as decimal text (Redis) rather than 8-byte little-endian.
    text: bool,
}

impl LeaseGuard {
    /// The lease's KV key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Extends a held lease to `ttl_ms` from now. `false` when the key no longer holds this
/// holder's value (the lease expired and someone else took it): the holder must stop.
pub fn renew(host: &mut dyn Host, guard: &mut LeaseGuard, ttl_ms: i64) -> Result<bool, KvError> {
    let nonce = Lease::from_i64(guard.value).map_or(1, |l| l.nonce);
    let value = Lease {
        expires_at_ms: host.now().timestamp_millis() + ttl_ms,
        nonce,
    }
    .to_i64();
    // Like `try_acquire`: ours only if it reads back as ours where the key is text (see the
    // module docs: a host may report a lost swap as done).
    let Some(text) = swap_counter(host, &guard.key, guard.value, value)? else {
        return Ok(false);
    };
    if text && read_counter(host, &guard.key)? != value {
        return Ok(false);
    }
    guard.value = value;
    Ok(true)
}

/// Tries once to take the lease at `key` for `ttl_ms`. `None` when someone else holds it.
pub fn try_acquire(
    host: &mut dyn Host,
    key: &str,
    ttl_ms: i64,
) -> Result<Option<LeaseGuard>, KvError> {
    let now = host.now();
    // Creates the key (as a free lease) atomically if it does not exist yet.
    let current = counter(host, key)?;
    if !crate::models::token::lease_is_free(&current.to_le_bytes(), now) {
        return Ok(None);
    }
    let value = new_lease(host, now, ttl_ms);
    match swap_counter(host, key, current, value)? {
        None => Ok(None),
        Some(text) => taken(host, key, value, text),
    }
}

/// [`try_acquire`] for a lease key that is taken over and over (the limiter's slots): it
/// normally exists and holds the free value its last holder left, so the first swap is from
/// that, without the read that creates the key. A key that is absent is taken as
/// [`try_acquire`] takes it.
pub fn try_acquire_reused(
    host: &mut dyn Host,
    key: &str,
    ttl_ms: i64,
) -> Result<Option<LeaseGuard>, KvError> {
    let now = host.now();
    let value = new_lease(host, now, ttl_ms);
    let text = match host.kv_cas(key, &0i64.to_le_bytes(), &value.to_le_bytes())? {
        CasOutcome::Swapped => false,
        CasOutcome::Conflict(None) => return try_acquire(host, key, ttl_ms),
        CasOutcome::Conflict(Some(stored)) => {
            let Some(current) = decode_counter(&stored) else {
                return Ok(None);
            };
            if !crate::models::token::lease_is_free(&current.to_le_bytes(), now) {
                return Ok(None);
            }
            // Free (given back, or expired): swapped in the encoding the key holds.
            let text = is_text(&stored);
            if host.kv_cas(key, &stored, &encode_counter(value, text))? != CasOutcome::Swapped {
                return Ok(None);
            }
            text
        }
    };
    taken(host, key, value, text)
}

/// A new lease value: expiry and random bits, so no two holders' values are alike.
fn new_lease(host: &mut dyn Host, now: DateTime<Utc>, ttl_ms: i64) -> i64 {
    let mut nonce = [0u8; 2];
    host.random_bytes(&mut nonce);
    Lease {
        expires_at_ms: now.timestamp_millis() + ttl_ms,
        nonce: u16::from_le_bytes(nonce) | 1,
    }
    .to_i64()
}

/// Whether a stored counter is decimal text (Redis) rather than 8-byte little-endian (see
/// [`decode_counter`]).
fn is_text(stored: &[u8]) -> bool {
    stored.len() != 8 || stored[7].is_ascii_digit()
}

/// `value` as a counter in either host encoding: decimal text, or 8-byte little-endian.
fn encode_counter(value: i64, text: bool) -> Vec<u8> {
    if text {
        value.to_string().into_bytes()
    } else {
        value.to_le_bytes().to_vec()
    }
}

/// The lease just swapped in at `key`, in the encoding `text` says. Where the key is decimal
/// text it is ours only if it reads back as ours (see the module docs: a host may report a
/// lost swap as done); the value carries random bits, so another holder's value differs.
fn taken(
    host: &mut dyn Host,
    key: &str,
    value: i64,
    text: bool,
) -> Result<Option<LeaseGuard>, KvError> {
    if text && read_counter(host, key)? != value {
        return Ok(None);
    }
    Ok(Some(LeaseGuard {
        key: key.to_string(),
        value,
        text,
    }))
}

/// Takes the lease, waiting up to `wait_ms` for the current holder.
pub fn acquire(
    host: &mut dyn Host,
    key: &str,
    ttl_ms: i64,
    wait_ms: u64,
) -> Result<Option<LeaseGuard>, KvError> {
    let mut waited = 0;
    let mut step = 10;
    loop {
        if let Some(g) = try_acquire(host, key, ttl_ms)? {
            return Ok(Some(g));
        }
        if waited >= wait_ms {
            return Ok(None);
        }
        host.sleep_ms(step);
        waited += step;
        step = (step * 2).min(200);
    }
}

/// Whether the lease at `key` is free now (a look only: nothing is taken).
pub fn lease_free(host: &mut dyn Host, key: &str) -> Result<bool, KvError> {
    let now = host.now();
    let current = read_counter(host, key)?;
    Ok(crate::models::token::lease_is_free(
        &current.to_le_bytes(),
        now,
    ))
}

/// Gives a lease back (only if it is still ours).
pub fn release(host: &mut dyn Host, guard: LeaseGuard) -> Result<(), KvError> {
    cas_counter(host, &guard.key, guard.value, 0).map(|_| ())
}

/// What a lease must have left, when its holder gives it back with a plain write, for that
/// write to land while the lease is certainly still the holder's.
pub const RELEASE_MARGIN_MS: i64 = 3_000;

/// Gives back a lease last renewed (or taken) at `renewed_at` for `ttl_ms`. While at least
/// [`RELEASE_MARGIN_MS`] of it is left it is certainly still ours (nobody takes an unexpired
/// lease), so one plain write of the free value gives it back; an older one is given back by
/// [`release`]'s swap, which leaves a lease someone else took alone.
pub fn release_renewed(
    host: &mut dyn Host,
    guard: LeaseGuard,
    renewed_at: DateTime<Utc>,
    ttl_ms: i64,
) -> Result<(), KvError> {
    let free = release_later(host, guard, renewed_at, ttl_ms)?;
    write_together(host, free)
}

/// A plain write still to make: a key and its value (see [`write_together`]).
pub type Write = (String, Vec<u8>);

/// [`release_renewed`], except that the plain write is handed back instead of made, so that
/// a job's last writes go in one round trip ([`write_together`]). The caller makes it at
/// once: it is safe only while the lease is certainly still ours. An older lease is given
/// back here, by swap, and `None` is returned.
pub fn release_later(
    host: &mut dyn Host,
    guard: LeaseGuard,
    renewed_at: DateTime<Utc>,
    ttl_ms: i64,
) -> Result<Option<Write>, KvError> {
    let age = (host.now() - renewed_at).num_milliseconds();
    if !(0..ttl_ms - RELEASE_MARGIN_MS).contains(&age) {
        return release(host, guard).map(|()| None);
    }
    let free = encode_counter(0, guard.text);
    Ok(Some((guard.key, free)))
}

/// Makes the writes [`save_record_later`] and [`release_later`] handed back, in their order,
/// in one round trip.
pub fn write_together(
    host: &mut dyn Host,
    writes: impl IntoIterator<Item = Write>,
) -> Result<(), KvError> {
    let writes: Vec<Write> = writes.into_iter().collect();
    let entries: Vec<(&str, &[u8])> = writes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    match entries.as_slice() {
        [] => Ok(()),
        [(k, v)] => host.kv_set(k, v),
        _ => host.kv_set_many(&entries),
    }
}

/// The lease key of an entity.
pub fn entity_lease_key(entity: Entity, id: &str) -> String {
    format!("lease/{entity}/{id}")
}

/// Where an entity's sync record lives.
pub fn record_key(entity: Entity, id: &str) -> String {
    format!("rec/{entity}/{id}")
}

/// Reads a record.
pub fn load_record(
    host: &mut dyn Host,
    entity: Entity,
    id: &str,
) -> Result<Option<SyncRecord>, KvError> {
    get_json(host, &record_key(entity, id))
}

/// Reads many records in one round trip (`wasi:keyvalue/batch`'s `get-many`), by record key
/// ([`record_key`]); a record that is absent or does not decode reads as `None`.
pub fn load_records(
    host: &mut dyn Host,
    which: &[(Entity, &str)],
) -> Result<std::collections::HashMap<String, Option<SyncRecord>>, KvError> {
    let keys: Vec<String> = which.iter().map(|(e, id)| record_key(*e, id)).collect();
    if keys.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let values = host.kv_get_many(&refs)?;
    Ok(keys
        .into_iter()
        .zip(values)
        .map(|(key, value)| {
            let record = value.and_then(|bytes| serde_json::from_slice(&bytes).ok());
            (key, record)
        })
        .collect())
}

/// Writes a record (caller holds its lease), keeping the per-state counts and logs in step.
/// `previous` is the state it had when loaded (`None` for a new record).
///
/// Whatever makes the record findable again is filed *before* the record itself: its due
/// entry (`retrying`), its parked slot (`needs_reauth`), its listing slot (new records). A
/// crash in between then leaves an extra entry (harmless: handling one is idempotent), never
/// a `retrying` record no one will run.
pub fn save_record(
    host: &mut dyn Host,
    record: &SyncRecord,
    previous: Option<State>,
) -> Result<(), KvError> {
    let writes = save_record_later(host, record, previous)?;
    write_together(host, writes)
}

/// [`save_record`], except that its plain writes (a new record's listing slot, then the
/// record) are handed back instead of made, for the caller to make at once with others of
/// its own ([`write_together`]), while it still holds the record's lease. The counts are
/// adjusted before the record is written.
pub fn save_record_later(
    host: &mut dyn Host,
    record: &SyncRecord,
    previous: Option<State>,
) -> Result<Vec<Write>, KvError> {
    let changed = previous != Some(record.state);
    match record.state {
        // Every new retry time needs its own entry, also when rescheduled within `retrying`.
        State::Retrying => {
            if let Some(at) = record.next_attempt_at {
                schedule(host, &DueEntry::retry(record.entity, &record.id, at))?;
            }
        }
        State::NeedsReauth if changed => {
            append(
                host,
                "log/parked",
                &EntityRef {
                    entity: record.entity,
                    id: record.id.clone(),
                },
            )?;
        }
        _ => {}
    }
    let mut writes = Vec::with_capacity(2);
    if previous.is_none() {
        // A new record: its listing slot goes with the record, first (where a host writes
        // them one by one, as where it writes them at once, the record is never saved
        // unlisted).
        let listed = EntityRef {
            entity: record.entity,
            id: record.id.clone(),
        };
        let n = host.kv_increment(&log_len_key("log/records"), 1)?;
        let slot = format!("log/records/{n}");
        let bytes = encode(&slot, &listed)?;
        writes.push((slot, bytes));
    }
    let key = record_key(record.entity, &record.id);
    let bytes = encode(&key, record)?;
    writes.push((key, bytes));
    if changed {
        if let Some(key) = previous.and_then(count_key) {
            host.kv_increment(&key, -1)?;
        }
        if let Some(key) = count_key(record.state) {
            host.kv_increment(&key, 1)?;
        }
    }
    Ok(writes)
}

/// The counter of records in `state`; `None` for `pending`, which is derived (see [`counts`]).
fn count_key(state: State) -> Option<String> {
    (state != State::Pending).then(|| format!("count/{}", state.as_str()))
}

const STATES: [State; 6] = [
    State::Pending,
    State::Retrying,
    State::Posted,
    State::Failed,
    State::NeedsReauth,
    State::Skipped,
];

/// Slots of `log/records` that list no record of their own (see [`recount`]).
const UNLISTED: &str = "count/unlisted";

/// What the counts are made of, read in one round trip: the length of `log/records`, the
/// slots that list no record ([`UNLISTED`]), and the counter of every state but `pending`
/// (in [`STATES`] order, `pending` first, as 0).
fn count_inputs(host: &mut dyn Host) -> Result<(i64, i64, [i64; STATES.len()]), KvError> {
    let mut keys = vec![log_len_key("log/records"), UNLISTED.to_string()];
    keys.extend(STATES.iter().filter_map(|s| count_key(*s)));
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let values: Vec<i64> = host
        .kv_get_many(&refs)?
        .into_iter()
        .map(|v| v.as_deref().and_then(decode_counter).unwrap_or(0))
        .collect();
    let mut by_state = [0i64; STATES.len()];
    by_state[1..].copy_from_slice(&values[2..]);
    Ok((values[0], values[1], by_state))
}

/// `pending`: the records listed, less the slots that list none, less every other state's.
fn derived_pending(listed: i64, unlisted: i64, by_state: &[i64; STATES.len()]) -> i64 {
    listed - unlisted - by_state[1..].iter().sum::<i64>()
}

/// Record counts per state (one round trip).
pub fn counts(host: &mut dyn Host) -> Result<Vec<(State, i64)>, KvError> {
    let (listed, unlisted, mut by_state) = count_inputs(host)?;
    by_state[0] = derived_pending(listed, unlisted, &by_state);
    Ok(STATES
        .into_iter()
        .zip(by_state)
        .map(|(s, n)| (s, n.max(0)))
        .collect())
}

/// How often [`recount`] recounts the records (seconds).
pub const RECOUNT_EVERY_S: i64 = 600;
/// How long after a recount found the counts off it counts again to confirm it (seconds):
/// longer than any save can be in flight (it renews its entity lease, [`ENTITY_LEASE_MS`],
/// just before it moves the counts).
pub const RECOUNT_CONFIRM_AFTER_S: i64 = 60;
/// Most listing slots one recount reads; with more records the counts are only adjusted.
pub const RECOUNT_MAX_SLOTS: i64 = 10_000;
/// Listing slots (and records) read per round trip while recounting.
const RECOUNT_CHUNK: i64 = 500;
const RECOUNTED_AT: &str = "count/recounted_at";
/// What the last recount found off, still to be confirmed ([`Unconfirmed`]); written only by
/// the recount that holds the turn (`count/recounted_at`).
const UNCONFIRMED: &str = "count/unconfirmed";

/// What [`recount`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recount {
    /// Not due yet, or another instance is recounting.
    NotDue,
    /// More records than [`RECOUNT_MAX_SLOTS`]: left as they are.
    TooMany,
    /// A record changed state while it counted: tried again on the next call.
    Busy,
    /// The counts were found off (state, correction) for the first time: nothing is applied
    /// yet, a save may have been in flight; they are counted again in
    /// [`RECOUNT_CONFIRM_AFTER_S`].
    Unconfirmed(Vec<(State, i64)>),
    /// Recounted; the corrections applied (state, delta), empty when the counts were right.
    Done(Vec<(State, i64)>),
}

/// Corrections a recount found, kept until the next one confirms them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Unconfirmed {
    /// When they were found (Unix seconds).
    found_at: i64,
    /// Per state (`pending` included, as the counts change), nonzero only.
    states: Vec<(State, i64)>,
    /// The correction of `count/unlisted`.
    unlisted: i64,
}

/// Repairs `count/{state}` and `count/unlisted` from the records themselves, at most every
/// [`RECOUNT_EVERY_S`].
///
/// A save adjusts up to two counters and then writes the record: no host makes that atomic,
/// and an instance dying in between (or two workers saving one record after a lease expired)
/// leaves a count off by one; one dying between listing a new record and saving it leaves a
/// slot that lists nothing, or lists the record a second time when it runs again, which
/// `pending` would count. No ordering of those writes lets a later save tell whether the
/// counters were adjusted, so the counts are recounted instead: every record listed in
/// `log/records` (each once), read while the counters and the log stand still (else nothing
/// is applied and the next call counts again).
///
/// A save whose counters moved before the count began and whose record is written after it
/// ended looks exactly like one that died in between, so a difference is applied only once
/// a second count, at least [`RECOUNT_CONFIRM_AFTER_S`] later (when every save then in
/// flight has landed), finds the same one; a difference that went away needed no repair.
/// The correction is applied with `increment`, so a save that lands meanwhile keeps its own
/// adjustment.
///
/// Both the first finding and the applied corrections are reported per state as the counts
/// change, `pending`'s included.
pub fn recount(host: &mut dyn Host) -> Result<Recount, KvError> {
    let now = host.now().timestamp();
    let last = counter(host, RECOUNTED_AT)?;
    if now - last < RECOUNT_EVERY_S || !cas_counter(host, RECOUNTED_AT, last, now)? {
        return Ok(Recount::NotDue);
    }
    let before = count_inputs(host)?;
    let (n, unlisted, counted) = before;
    if n > RECOUNT_MAX_SLOTS {
        return Ok(Recount::TooMany);
    }
    let mut seen = std::collections::HashSet::new();
    let mut tally = [0i64; STATES.len()];
    for first in (1..=n).step_by(RECOUNT_CHUNK as usize) {
        let end = (first + RECOUNT_CHUNK - 1).min(n);
        let listed: Vec<EntityRef> = log_entries::<EntityRef>(host, "log/records", first, end)?
            .into_iter()
            .flatten()
            .filter(|r| seen.insert((r.entity, r.id.clone())))
            .collect();
        let which: Vec<(Entity, &str)> = listed.iter().map(|r| (r.entity, r.id.as_str())).collect();
        for rec in load_records(host, &which)?.into_values().flatten() {
            if let Some(k) = STATES.iter().position(|s| *s == rec.state) {
                tally[k] += 1;
            }
        }
    }
    if count_inputs(host)? != before {
        // Give the turn back, so that the next call counts again.
        cas_counter(host, RECOUNTED_AT, now, last)?;
        return Ok(Recount::Busy);
    }
    let mut found = Unconfirmed {
        found_at: now,
        states: Vec::new(),
        unlisted: (n - tally.iter().sum::<i64>()) - unlisted,
    };
    let pending = tally[0] - derived_pending(n, unlisted, &counted);
    found
        .states
        .extend((pending != 0).then_some((State::Pending, pending)));
    for (k, s) in STATES.iter().enumerate().skip(1) {
        let delta = tally[k] - counted[k];
        if delta != 0 {
            found.states.push((*s, delta));
        }
    }
    // (One that does not decode is as good as none: it is only ever a first finding.)
    let earlier: Option<Unconfirmed> = host
        .kv_get(UNCONFIRMED)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    if found.states.is_empty() && found.unlisted == 0 {
        if earlier.is_some() {
            host.kv_delete(UNCONFIRMED)?;
        }
        return Ok(Recount::Done(Vec::new()));
    }
    let same = earlier
        .as_ref()
        .filter(|e| (&e.states, e.unlisted) == (&found.states, found.unlisted));
    if same.is_none_or(|e| now - e.found_at < RECOUNT_CONFIRM_AFTER_S) {
        if same.is_none() {
            set_json(host, UNCONFIRMED, &found)?;
        }
        // Count again once every save now in flight has landed.
        cas_counter(
            host,
            RECOUNTED_AT,
            now,
            now - RECOUNT_EVERY_S + RECOUNT_CONFIRM_AFTER_S,
        )?;
        return Ok(Recount::Unconfirmed(found.states));
    }
    for (s, delta) in found.states.iter().filter(|(s, _)| *s != State::Pending) {
        host.kv_increment(&format!("count/{}", s.as_str()), *delta)?;
    }
    if found.unlisted != 0 {
        host.kv_increment(UNLISTED, found.unlisted)?;
    }
    host.kv_delete(UNCONFIRMED)?;
    Ok(Recount::Done(found.states))
}

/// Reads a stored counter in either host encoding: 8-byte little-endian, or decimal text.
///
/// The two never look alike for the values the connector stores: eight bytes of decimal text
/// end in a digit, while a little-endian counter's last byte is its most significant one, which
/// is below `'0'` (0x30) for every value under about 3.4 * 10^18 and 0xFF for negative ones.
pub fn decode_counter(bytes: &[u8]) -> Option<i64> {
    match <[u8; 8]>::try_from(bytes) {
        Ok(le) if !is_text(&le) => Some(i64::from_le_bytes(le)),
        _ => std::str::from_utf8(bytes).ok()?.trim().parse().ok(),
    }
}

/// Swaps the counter at `key` from `expected` to `new`, in whichever encoding the key holds
/// (little-endian first; decimal text when that is what the host keeps). `false` when the key
/// holds another value.
pub fn cas_counter(
    host: &mut dyn Host,
    key: &str,
    expected: i64,
    new: i64,
) -> Result<bool, KvError> {
    swap_counter(host, key, expected, new).map(|swapped| swapped.is_some())
}

/// [`cas_counter`], saying in which encoding it swapped: `Some(true)` decimal text,
/// `Some(false)` little-endian, `None` not swapped.
fn swap_counter(
    host: &mut dyn Host,
    key: &str,
    expected: i64,
    new: i64,
) -> Result<Option<bool>, KvError> {
    match host.kv_cas(key, &expected.to_le_bytes(), &new.to_le_bytes())? {
        CasOutcome::Swapped => Ok(Some(false)),
        CasOutcome::Conflict(Some(text)) if text == expected.to_string().as_bytes() => {
            match host.kv_cas(key, &text, new.to_string().as_bytes())? {
                CasOutcome::Swapped => Ok(Some(true)),
                CasOutcome::Conflict(_) => Ok(None),
            }
        }
        CasOutcome::Conflict(_) => Ok(None),
    }
}

/// Names an entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRef {
    pub entity: Entity,
    pub id: String,
}

/// Appends to an append-only log; returns the slot number (1-based).
pub fn append<T: Serialize>(host: &mut dyn Host, log: &str, value: &T) -> Result<i64, KvError> {
    let n = host.kv_increment(&format!("{log}/n"), 1)?;
    set_json(host, &format!("{log}/{n}"), value)?;
    Ok(n)
}

/// The number of slots ever appended to `log`.
pub fn log_len(host: &mut dyn Host, log: &str) -> Result<i64, KvError> {
    read_counter(host, &log_len_key(log))
}

/// Where `log`'s length is counted.
pub fn log_len_key(log: &str) -> String {
    format!("{log}/n")
}

/// Reads slot `i` of `log` (`None` if its writer died before writing it).
pub fn log_entry<T: for<'de> Deserialize<'de>>(
    host: &mut dyn Host,
    log: &str,
    i: i64,
) -> Result<Option<T>, KvError> {
    get_json(host, &format!("{log}/{i}"))
}

/// Reads slots `first..=last` of `log` in one round trip, in order (`None` for a slot whose
/// writer died before writing it, or that was deleted).
pub fn log_entries<T: for<'de> Deserialize<'de>>(
    host: &mut dyn Host,
    log: &str,
    first: i64,
    last: i64,
) -> Result<Vec<Option<T>>, KvError> {
    let keys: Vec<String> = (first..=last).map(|i| format!("{log}/{i}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let values = host.kv_get_many(&refs)?;
    keys.iter()
        .zip(values)
        .map(|(key, value)| match value {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| KvError(format!("stored value at `{key}` is corrupt: {e}"))),
        })
        .collect()
}

/// Something to look at once its time has come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueEntry {
    pub entity: Entity,
    pub id: String,
    /// When it becomes due (entries are filed under this time's minute).
    pub at: DateTime<Utc>,
    /// The webhook this entry guards (crash after acknowledgement), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventRef>,
}

/// The parts of a webhook the audit trail keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef {
    pub scope: String,
    pub hash: String,
    /// The event's `created_at` (Unix seconds), part of what tells events apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
}

impl EventRef {
    /// The key duplicates share (see [`crate::sync::record::event_key`]).
    pub fn key(&self) -> String {
        crate::sync::record::event_key(&self.scope, &self.hash, self.created_at)
    }
}

impl DueEntry {
    pub fn retry(entity: Entity, id: &str, at: DateTime<Utc>) -> Self {
        DueEntry {
            entity,
            id: id.to_string(),
            at,
            event: None,
        }
    }
}

fn minute(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

/// Files `entry` under the minute it becomes due — or under the current minute when that time
/// has already passed: `retry-due` never reads a minute again once it has moved past it.
pub fn schedule(host: &mut dyn Host, entry: &DueEntry) -> Result<(), KvError> {
    let m = minute(entry.at).max(minute(host.now()));
    append(host, &format!("due/{m}"), entry).map(|_| ())
}

/// How far back `retry-due` looks the first time it runs.
const FIRST_LOOKBACK_MINUTES: i64 = 24 * 60;

/// An entry that has come due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub minute: i64,
    pub slot: i64,
    pub entry: DueEntry,
    /// Whether handling it lets the minute's done mark move past it (every earlier slot of the
    /// minute is due too). Entries behind a not-yet-due one are handled but looked at again.
    pub markable: bool,
}

/// Entries whose time has come, oldest minute first, at most `limit`.
///
/// Processing is at-least-once: an entry is marked done only after it was handled, so a
/// crash in between means it is looked at again (harmless: the work itself is idempotent).
///
/// Round trips: the cursor; the ends (length and done mark) of up to [`MINUTES_PER_READ`]
/// minutes at once; a minute's entries [`ENTRIES_PER_READ`] at a time; and, when minutes were
/// finished, one swap of the cursor and one delete of their counters.
pub fn due_entries(
    host: &mut dyn Host,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Due>, KvError> {
    let now_minute = minute(now);
    let stored = counter(host, "due/cursor")?;
    let start = if stored == 0 {
        now_minute - FIRST_LOOKBACK_MINUTES
    } else {
        stored
    };
    let mut out = Vec::new();
    // Every minute before `finished_to` is finished: nothing in it is left to handle.
    let mut finished_to = start;
    // Their counters, deleted once the cursor has moved past them.
    let mut spent = Vec::new();
    let mut m = start;
    'minutes: while m <= now_minute && out.len() < limit {
        let last_minute = (m + MINUTES_PER_READ - 1).min(now_minute);
        for (n, done) in minute_ends(host, m, last_minute)? {
            if out.len() >= limit {
                break 'minutes;
            }
            let log = format!("due/{m}");
            let mut blocked = false;
            // Whether an entry of this minute before the current slot is in `out`: handed to
            // the caller, not handled yet, so no done mark may move past it here.
            let mut collected = false;
            let mut i = done + 1;
            while i <= n && out.len() < limit {
                let last = n.min(i + ENTRIES_PER_READ - 1);
                for entry in log_entries::<DueEntry>(host, &log, i, last)? {
                    if out.len() >= limit {
                        break;
                    }
                    match entry {
                        // Not yet due (only in the current minute): later slots may be, so keep
                        // looking.
                        Some(e) if e.at > now => blocked = true,
                        Some(entry) => {
                            collected = true;
                            out.push(Due {
                                minute: m,
                                slot: i,
                                entry,
                                markable: !blocked,
                            })
                        }
                        // Its writer is between taking the slot and filling it: look again later.
                        None if m >= now_minute - 2 => blocked = true,
                        // A writer died between taking the slot and filling it: nothing to do
                        // there. Marked done only when every slot before it is done already (a
                        // mark covers the slots before it too); otherwise the mark of a later
                        // entry, or the next call, moves past it once the entries before it are
                        // handled.
                        None if !blocked && !collected => mark_due_done(host, m, i)?,
                        None => {}
                    }
                    i += 1;
                }
            }
            if finished_to == m && n == done && m < now_minute {
                finished_to = m + 1;
                if n > 0 {
                    spent.push(m);
                }
            }
            m += 1;
        }
    }
    // Every minute up to `finished_to` is finished: never read them again.
    if finished_to > start
        && cas_counter(host, "due/cursor", stored, finished_to)?
        && !spent.is_empty()
    {
        // Their entries went as they were marked; their counters go now.
        let keys: Vec<String> = spent.iter().flat_map(|&m| minute_counters(m)).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        host.kv_delete_many(&refs)?;
    }
    Ok(out)
}

/// How many minutes' ends [`due_entries`] reads in one round trip.
const MINUTES_PER_READ: i64 = 60;
/// How many of a minute's entries [`due_entries`] reads in one round trip.
const ENTRIES_PER_READ: i64 = 250;

/// The keys of minute `m`'s length and done mark.
fn minute_counters(m: i64) -> [String; 2] {
    [log_len_key(&format!("due/{m}")), format!("due/{m}/done")]
}

/// The length and the done mark of every minute from `first` to `last`, in one round trip.
fn minute_ends(host: &mut dyn Host, first: i64, last: i64) -> Result<Vec<(i64, i64)>, KvError> {
    let keys: Vec<String> = (first..=last).flat_map(minute_counters).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let values = host.kv_get_many(&refs)?;
    let counter = |v: &Option<Vec<u8>>| v.as_deref().and_then(decode_counter).unwrap_or(0);
    Ok(values
        .chunks(2)
        .map(|pair| (counter(&pair[0]), pair.get(1).map_or(0, counter)))
        .collect())
}

fn read_counter(host: &mut dyn Host, key: &str) -> Result<i64, KvError> {
    Ok(host
        .kv_get(key)?
        .and_then(|b| decode_counter(&b))
        .unwrap_or(0))
}

/// Marks entry `i` of minute `m` (and everything before it) as handled, and deletes the
/// entries it marks: nothing reads a slot at or below a minute's done mark again.
pub fn mark_due_done(host: &mut dyn Host, m: i64, i: i64) -> Result<(), KvError> {
    if read_counter(host, "due/cursor")? > m {
        // Another call finished the minute (and deleted its counters) meanwhile.
        return Ok(());
    }
    let key = format!("due/{m}/done");
    loop {
        let done = counter(host, &key)?;
        if done >= i {
            return Ok(());
        }
        if cas_counter(host, &key, done, i)? {
            let slots: Vec<String> = ((done + 1)..=i)
                .map(|slot| format!("due/{m}/{slot}"))
                .collect();
            let refs: Vec<&str> = slots.iter().map(String::as_str).collect();
            return host.kv_delete_many(&refs);
        }
    }
}

/// Parked records not yet resumed, at most `limit`, with their slot numbers.
pub fn parked_entries(host: &mut dyn Host, limit: usize) -> Result<Vec<(i64, EntityRef)>, KvError> {
    let n = log_len(host, "log/parked")?;
    let done = read_counter(host, "log/parked/done")?;
    let mut out = Vec::new();
    for i in (done + 1)..=n {
        if out.len() >= limit {
            break;
        }
        if let Some(e) = log_entry::<EntityRef>(host, "log/parked", i)? {
            out.push((i, e));
        }
    }
    Ok(out)
}

/// Marks parked slots up to `i` as resumed, and deletes them.
pub fn mark_parked_done(host: &mut dyn Host, i: i64) -> Result<(), KvError> {
    loop {
        let done = counter(host, "log/parked/done")?;
        if done >= i {
            return Ok(());
        }
        if cas_counter(host, "log/parked/done", done, i)? {
            for slot in (done + 1)..=i {
                host.kv_delete(&format!("log/parked/{slot}"))?;
            }
            return Ok(());
        }
    }
}

/// Appends to a log that keeps only its newest `keep` slots: appending slot `n` deletes slot
/// `n − keep` (whose value is handed to `evict` first, to delete what it names). For logs
/// read only near their head (pending OAuth states).
pub fn append_bounded<T: Serialize + for<'de> Deserialize<'de>>(
    host: &mut dyn Host,
    log: &str,
    value: &T,
    keep: i64,
    evict: &mut dyn FnMut(&mut dyn Host, T) -> Result<(), KvError>,
) -> Result<i64, KvError> {
    let n = append(host, log, value)?;
    let old = n - keep;
    if old >= 1 {
        let key = format!("{log}/{old}");
        if let Some(v) = get_json::<T>(host, &key).ok().flatten() {
            evict(host, v)?;
        }
        host.kv_delete(&key)?;
    }
    Ok(n)
}

/// Newest records first, filtered, reading at most `max_scan` log slots.
pub fn list_records(
    host: &mut dyn Host,
    entity: Option<Entity>,
    state: Option<State>,
    limit: usize,
    max_scan: usize,
) -> Result<(Vec<Value>, bool), KvError> {
    let n = log_len(host, "log/records")?;
    let mut out = Vec::new();
    let mut scanned = 0;
    let mut i = n;
    while i >= 1 && out.len() < limit {
        if scanned >= max_scan {
            return Ok((out, true));
        }
        scanned += 1;
        if let Some(r) = log_entry::<EntityRef>(host, "log/records", i)?
            && entity.is_none_or(|e| e == r.entity)
            && let Some(rec) = load_record(host, r.entity, &r.id)?
            && state.is_none_or(|s| s == rec.state)
        {
            out.push(rec.summary());
        }
        i -= 1;
    }
    Ok((out, false))
}

/// Where a BigCommerce customer's group is kept (see [`CustomerGroup`]).
pub fn customer_group_key(bc_customer_id: u64) -> String {
    format!("cache/bc/customer-group/{bc_customer_id}")
}

/// A registered customer's BigCommerce group, as last read from BigCommerce: by the customer
/// job (every customer webhook and every customer the sweep finds changed) or by an order
/// job that needed it and had none. Orders of a returning customer trust it instead of
/// reading the customer again (CONTRACT §7: one BigCommerce read per order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerGroup {
    pub group: u64,
    /// When it was read from BigCommerce.
    pub at: DateTime<Utc>,
}

/// Reads a cached JSON value.
pub fn cache_get<T: for<'de> Deserialize<'de>>(
    host: &mut dyn Host,
    key: &str,
) -> Result<Option<T>, KvError> {
    get_json(host, key)
}

/// Writes a cached JSON value.
pub fn cache_set<T: Serialize>(host: &mut dyn Host, key: &str, value: &T) -> Result<(), KvError> {
    set_json(host, key, value)
}

#[cfg(test)]
mod tests;
