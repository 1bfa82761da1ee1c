//! The connector's key-value layout, built only from operations Spin's store supports.
//!
//! Rules that shape it:
//! - No cursor paging (Spin rejects it), so nothing is ever found by listing keys.
//! - A compare-and-swap from "absent" is an upsert on Spin's SQLite store, so keys that are
//!   compare-and-swapped are created with `increment(key, 0)` first (atomic on every host)
//!   and only ever hold 8-byte counters. JSON values are written by the holder of the
//!   entity's lease, or are append-only slots whose numbers come from `increment`.
//!
//! Layout:
//! - `rec/{entity}/{id}`: the [`SyncRecord`] (source of truth), written under `lease/{entity}/{id}`.
//! - `log/{name}/n` + `log/{name}/{i}`: append-only logs (slot numbers from `increment`):
//!   `records` (one slot per record, for newest-first listing), `parked` (records waiting for
//!   re-authorization).
//! - `due/{minute}/n`, `due/{minute}/{i}`, `due/{minute}/done` and `due/cursor`: work that
//!   becomes due in a given minute, so `retry-due` reads only the minutes that have come.
//! - `count/{state}`: records per state, adjusted on every transition.
//!
//! Bounded growth without listing keys: a due entry is deleted once it is marked handled, a
//! minute's counters once the cursor moves past it, a parked slot once it is resumed. What
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

fn set_json<T: Serialize>(host: &mut dyn Host, key: &str, value: &T) -> Result<(), KvError> {
    let bytes =
        serde_json::to_vec(value).map_err(|e| KvError(format!("cannot encode `{key}`: {e}")))?;
    host.kv_set(key, &bytes)
}

/// A held lease; release it with [`release`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseGuard {
    key: String,
    value: [u8; 8],
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
    let nonce = Lease::decode(&guard.value)
        .ok()
        .flatten()
        .map_or(1, |l| l.nonce);
    let value = Lease::encode(host.now().timestamp_millis() + ttl_ms, nonce);
    match host.kv_cas(&guard.key, &guard.value, &value)? {
        CasOutcome::Swapped => {
            guard.value = value;
            Ok(true)
        }
        CasOutcome::Conflict(_) => Ok(false),
    }
}

/// Tries once to take the lease at `key` for `ttl_ms`. `None` when someone else holds it.
pub fn try_acquire(
    host: &mut dyn Host,
    key: &str,
    ttl_ms: i64,
) -> Result<Option<LeaseGuard>, KvError> {
    let now = host.now();
    // Creates the key (as a free lease) atomically if it does not exist yet.
    let current = counter(host, key)?.to_le_bytes();
    if !crate::models::token::lease_is_free(&current, now) {
        return Ok(None);
    }
    let mut nonce = [0u8; 2];
    host.random_bytes(&mut nonce);
    let value = Lease::encode(
        now.timestamp_millis() + ttl_ms,
        u16::from_le_bytes(nonce) | 1,
    );
    match host.kv_cas(key, &current, &value)? {
        CasOutcome::Swapped => Ok(Some(LeaseGuard {
            key: key.to_string(),
            value,
        })),
        CasOutcome::Conflict(_) => Ok(None),
    }
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

/// Gives a lease back (only if it is still ours).
pub fn release(host: &mut dyn Host, guard: LeaseGuard) -> Result<(), KvError> {
    host.kv_cas(&guard.key, &guard.value, &Lease::FREE)
        .map(|_| ())
}

/// The lease key of an entity.
pub fn entity_lease_key(entity: Entity, id: &str) -> String {
    format!("lease/{entity}/{id}")
}

fn record_key(entity: Entity, id: &str) -> String {
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
    if previous.is_none() {
        append(
            host,
            "log/records",
            &EntityRef {
                entity: record.entity,
                id: record.id.clone(),
            },
        )?;
    }
    set_json(host, &record_key(record.entity, &record.id), record)?;
    if changed {
        if let Some(p) = previous {
            host.kv_increment(&format!("count/{}", p.as_str()), -1)?;
        }
        host.kv_increment(&format!("count/{}", record.state.as_str()), 1)?;
    }
    Ok(())
}

/// Record counts per state.
pub fn counts(host: &mut dyn Host) -> Result<Vec<(State, i64)>, KvError> {
    let states = [
        State::Pending,
        State::Retrying,
        State::Posted,
        State::Failed,
        State::NeedsReauth,
        State::Skipped,
    ];
    states
        .into_iter()
        .map(|s| {
            Ok((
                s,
                read_counter(host, &format!("count/{}", s.as_str()))?.max(0),
            ))
        })
        .collect()
}

fn decode_i64(bytes: &[u8]) -> i64 {
    <[u8; 8]>::try_from(bytes)
        .map(i64::from_le_bytes)
        .unwrap_or(0)
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
    read_counter(host, &format!("{log}/n"))
}

/// Reads slot `i` of `log` (`None` if its writer died before writing it).
pub fn log_entry<T: for<'de> Deserialize<'de>>(
    host: &mut dyn Host,
    log: &str,
    i: i64,
) -> Result<Option<T>, KvError> {
    get_json(host, &format!("{log}/{i}"))
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
pub fn due_entries(
    host: &mut dyn Host,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Due>, KvError> {
    let now_minute = minute(now);
    let mut stored = counter(host, "due/cursor")?;
    let start = if stored == 0 {
        now_minute - FIRST_LOOKBACK_MINUTES
    } else {
        stored
    };
    let mut out = Vec::new();
    let mut contiguous = true;
    let mut m = start;
    while m <= now_minute && out.len() < limit {
        let log = format!("due/{m}");
        let n = log_len(host, &log)?;
        let done = read_counter(host, &format!("{log}/done"))?;
        let mut blocked = false;
        for i in (done + 1)..=n {
            if out.len() >= limit {
                break;
            }
            match log_entry::<DueEntry>(host, &log, i)? {
                // Not yet due (only in the current minute): later slots may be, so keep looking.
                Some(e) if e.at > now => blocked = true,
                Some(entry) => out.push(Due {
                    minute: m,
                    slot: i,
                    entry,
                    markable: !blocked,
                }),
                // Its writer is between taking the slot and filling it: look again later.
                None if m >= now_minute - 2 => blocked = true,
                // A writer died between taking the slot and filling it: nothing to do there.
                None if !blocked => mark_due_done(host, m, i)?,
                None => {}
            }
        }
        contiguous &= n == done && m < now_minute;
        if contiguous {
            // Every minute up to this one is finished: never read them again.
            if let CasOutcome::Swapped =
                host.kv_cas("due/cursor", &stored.to_le_bytes(), &(m + 1).to_le_bytes())?
            {
                stored = m + 1;
                if n > 0 {
                    // Its entries went as they were marked; its counters go now.
                    host.kv_delete(&format!("{log}/n"))?;
                    host.kv_delete(&format!("{log}/done"))?;
                }
            } else {
                contiguous = false;
            }
        }
        m += 1;
    }
    Ok(out)
}

fn read_counter(host: &mut dyn Host, key: &str) -> Result<i64, KvError> {
    Ok(host.kv_get(key)?.map(|b| decode_i64(&b)).unwrap_or(0))
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
        if let CasOutcome::Swapped = host.kv_cas(&key, &done.to_le_bytes(), &i.to_le_bytes())? {
            for slot in (done + 1)..=i {
                host.kv_delete(&format!("due/{m}/{slot}"))?;
            }
            return Ok(());
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
        if let CasOutcome::Swapped =
            host.kv_cas("log/parked/done", &done.to_le_bytes(), &i.to_le_bytes())?
        {
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
