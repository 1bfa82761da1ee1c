use super::*;
use crate::host::LogLevel;
use crate::http::{HttpRequest, HttpResponse, TransportError};
use crate::testing::{Counted, FakeHost};

/// A host that keeps data the way Spin's Redis store does: counters as decimal text
/// (`INCRBY`), and a swap that lost its race reported as done. `rival` is a value another
/// instance writes to `key` just before our next swap of it.
struct RedisLike {
    inner: FakeHost,
    rival: Option<(String, Vec<u8>)>,
}

impl Host for RedisLike {
    fn now(&self) -> DateTime<Utc> {
        self.inner.now()
    }
    fn random_bytes(&mut self, buf: &mut [u8]) {
        self.inner.random_bytes(buf)
    }
    fn config(&mut self, name: &str) -> Option<String> {
        self.inner.config(name)
    }
    fn http(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        self.inner.http(request)
    }
    fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.kv_get(key)
    }
    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.inner.kv_set(key, value)
    }
    fn kv_delete(&mut self, key: &str) -> Result<(), KvError> {
        self.inner.kv_delete(key)
    }
    fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        let current = match self.inner.kv.get(key) {
            None => 0,
            Some(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or_else(|| KvError("ERR value is not an integer".into()))?,
        };
        let sum = current + delta;
        self.inner
            .kv
            .insert(key.into(), sum.to_string().into_bytes());
        Ok(sum)
    }
    fn kv_cas(&mut self, key: &str, expected: &[u8], new: &[u8]) -> Result<CasOutcome, KvError> {
        let current = self.inner.kv.get(key).cloned();
        if current.as_deref() != Some(expected) {
            return Ok(CasOutcome::Conflict(current));
        }
        if let Some((k, v)) = self.rival.take_if(|(k, _)| k == key) {
            // The rival's write lands between our read and our swap; ours is dropped, and
            // reported as done.
            self.inner.kv.insert(k, v);
            return Ok(CasOutcome::Swapped);
        }
        self.inner.kv.insert(key.into(), new.to_vec());
        Ok(CasOutcome::Swapped)
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.inner.sleep_ms(ms)
    }
    fn log(&mut self, level: LogLevel, message: &str) {
        self.inner.log(level, message)
    }
}

fn redis_like() -> RedisLike {
    RedisLike {
        inner: FakeHost::new(DateTime::from_timestamp(1_750_000_000, 0).unwrap()),
        rival: None,
    }
}

fn count_of(h: &mut dyn Host, state: State) -> i64 {
    counts(h)
        .unwrap()
        .into_iter()
        .find(|(s, _)| *s == state)
        .unwrap()
        .1
}

/// Saves a new record in `state` as a job does (`pending` first, then its outcome).
fn saved(h: &mut FakeHost, id: &str, state: State) -> SyncRecord {
    let mut rec = SyncRecord::new(Entity::Order, id, h.now());
    save_record(h, &rec, None).unwrap();
    rec.state = state;
    save_record(h, &rec, Some(State::Pending)).unwrap();
    rec
}

#[test]
fn a_recount_repairs_counts_a_crash_between_record_and_counters_left_wrong() {
    let mut h = FakeHost::new(DateTime::from_timestamp(1_750_000_000, 0).unwrap());
    saved(&mut h, "1", State::Posted);
    let mut two = saved(&mut h, "2", State::Retrying);
    // An instance saved order 2 as posted and died before adjusting the counters; another
    // one listed order 3 twice (it died after taking the first listing slot).
    two.state = State::Posted;
    set_json(&mut h, &record_key(Entity::Order, "2"), &two).unwrap();
    let three = SyncRecord::new(Entity::Order, "3", h.now());
    let slot = EntityRef {
        entity: Entity::Order,
        id: "3".into(),
    };
    append(&mut h, "log/records", &slot).unwrap();
    save_record(&mut h, &three, None).unwrap();
    assert_eq!(count_of(&mut h, State::Posted), 1);
    assert_eq!(count_of(&mut h, State::Retrying), 1);
    assert_eq!(count_of(&mut h, State::Pending), 2, "order 3, listed twice");

    let off = vec![
        (State::Pending, -1),
        (State::Retrying, -1),
        (State::Posted, 1),
    ];
    // Found, but not applied until a second count confirms it.
    assert_eq!(recount(&mut h).unwrap(), Recount::Unconfirmed(off.clone()));
    assert_eq!(count_of(&mut h, State::Posted), 1);
    h.advance(chrono::Duration::seconds(RECOUNT_CONFIRM_AFTER_S - 1));
    assert_eq!(recount(&mut h).unwrap(), Recount::NotDue);
    h.advance(chrono::Duration::seconds(1));
    assert_eq!(recount(&mut h).unwrap(), Recount::Done(off));
    assert_eq!(
        h.kv_get(UNCONFIRMED).unwrap(),
        None,
        "nothing left to confirm"
    );
    assert_eq!(count_of(&mut h, State::Posted), 2);
    assert_eq!(count_of(&mut h, State::Retrying), 0);
    assert_eq!(count_of(&mut h, State::Pending), 1, "order 3, counted once");
    // Not again before RECOUNT_EVERY_S; then again, with nothing to correct.
    h.advance(chrono::Duration::seconds(RECOUNT_EVERY_S - 1));
    assert_eq!(recount(&mut h).unwrap(), Recount::NotDue);
    h.advance(chrono::Duration::seconds(1));
    assert_eq!(recount(&mut h).unwrap(), Recount::Done(vec![]));
}

#[test]
fn a_recount_that_a_save_straddles_leaves_the_right_counts_right() {
    let mut h = FakeHost::new(DateTime::from_timestamp(1_750_000_000, 0).unwrap());
    saved(&mut h, "1", State::Posted);
    let mut two = saved(&mut h, "2", State::Pending);
    // A worker posts order 2: its counts move before the recount begins, its record is
    // written after the recount ends (the counts were right all along).
    two.state = State::Posted;
    let record_write = save_record_later(&mut h, &two, Some(State::Pending)).unwrap();
    assert_eq!(
        recount(&mut h).unwrap(),
        Recount::Unconfirmed(vec![(State::Pending, 1), (State::Posted, -1)])
    );
    write_together(&mut h, record_write).unwrap();
    assert_eq!(count_of(&mut h, State::Posted), 2);
    assert_eq!(count_of(&mut h, State::Pending), 0);
    // The confirming count finds nothing off, and forgets the first finding.
    h.advance(chrono::Duration::seconds(RECOUNT_CONFIRM_AFTER_S));
    assert_eq!(recount(&mut h).unwrap(), Recount::Done(vec![]));
    assert_eq!(h.kv_get(UNCONFIRMED).unwrap(), None);
    assert_eq!(count_of(&mut h, State::Posted), 2);
    assert_eq!(count_of(&mut h, State::Pending), 0);
    // And the next is due a full period later.
    h.advance(chrono::Duration::seconds(RECOUNT_EVERY_S - 1));
    assert_eq!(recount(&mut h).unwrap(), Recount::NotDue);
}

#[test]
fn a_recount_that_a_save_overlaps_applies_nothing_and_counts_again_on_the_next_call() {
    let mut h = FakeHost::new(DateTime::from_timestamp(1_750_000_000, 0).unwrap());
    saved(&mut h, "1", State::Retrying);
    saved(&mut h, "2", State::Retrying);
    // While the recount reads order 2, another worker posts order 1 (record, then counts):
    // the recount saw order 1 as `retrying`, and its counters moved.
    let mut once = true;
    h.after_get("rec/order/2", move |h| {
        if !std::mem::take(&mut once) {
            return;
        }
        let mut one = load_record(h, Entity::Order, "1").unwrap().unwrap();
        one.state = State::Posted;
        save_record(h, &one, Some(State::Retrying)).unwrap();
    });
    assert_eq!(recount(&mut h).unwrap(), Recount::Busy);
    assert_eq!(count_of(&mut h, State::Posted), 1);
    assert_eq!(count_of(&mut h, State::Retrying), 1);
    assert_eq!(
        recount(&mut h).unwrap(),
        Recount::Done(vec![]),
        "right as they are"
    );
}

#[test]
fn counters_decode_in_both_host_encodings() {
    for v in [
        0i64,
        1,
        7,
        12_345_678,
        29_500_000,
        -3,
        1 << 56,
        i64::MAX >> 8,
    ] {
        assert_eq!(
            decode_counter(&v.to_le_bytes()),
            Some(v),
            "{v} little-endian"
        );
        assert_eq!(
            decode_counter(v.to_string().as_bytes()),
            Some(v),
            "{v} as text"
        );
    }
    assert_eq!(decode_counter(b"{\"json\":1}"), None);
}

#[test]
fn leases_work_where_counters_are_decimal_text_and_increment_still_works_after() {
    let mut h = redis_like();
    let guard = try_acquire(&mut h, "lease/x", 1000)
        .unwrap()
        .expect("free lease taken");
    assert!(
        try_acquire(&mut h, "lease/x", 1000).unwrap().is_none(),
        "held"
    );
    let stored = h.inner.kv["lease/x"].clone();
    assert!(
        stored.iter().all(u8::is_ascii_digit),
        "stored as text: {stored:?}"
    );
    assert!(
        h.kv_increment("lease/x", 0).is_ok(),
        "still a counter for INCRBY"
    );
    release(&mut h, guard).unwrap();
    assert_eq!(h.inner.kv["lease/x"], b"0");
    assert!(try_acquire(&mut h, "lease/x", 1000).unwrap().is_some());
}

#[test]
fn a_lease_swap_that_lost_the_race_but_was_reported_done_is_not_taken() {
    let mut h = redis_like();
    h.kv_increment("lease/x", 0).unwrap();
    let rival = Lease {
        expires_at_ms: h.now().timestamp_millis() + 60_000,
        nonce: 0x4243,
    }
    .to_i64();
    h.rival = Some(("lease/x".into(), rival.to_string().into_bytes()));
    assert_eq!(try_acquire(&mut h, "lease/x", 1000).unwrap(), None);
    assert_eq!(
        read_counter(&mut h, "lease/x").unwrap(),
        rival,
        "the rival holds it"
    );
}

#[test]
fn due_entries_logs_and_counts_work_where_counters_are_decimal_text() {
    let mut h = redis_like();
    let now = h.now();
    let at = now - chrono::Duration::minutes(3);
    for id in ["1", "2"] {
        schedule(&mut h, &DueEntry::retry(Entity::Order, id, at)).unwrap();
    }
    let due = due_entries(&mut h, now, 10).unwrap();
    assert_eq!(due.len(), 2);
    for d in &due {
        mark_due_done(&mut h, d.minute, d.slot).unwrap();
    }
    assert!(due_entries(&mut h, now, 10).unwrap().is_empty(), "all done");
    // A finished minute's log is deleted with its entries (the store stays bounded).
    assert_eq!(log_len(&mut h, &format!("due/{}", minute(at))).unwrap(), 0);
    h.kv_increment("count/posted", 3).unwrap();
    let posted = counts(&mut h)
        .unwrap()
        .into_iter()
        .find(|(s, _)| *s == State::Posted)
        .unwrap();
    assert_eq!(posted.1, 3);
}

/// The free value as the key's encoding writes it.
fn free_value(text: bool) -> Vec<u8> {
    if text {
        b"0".to_vec()
    } else {
        0i64.to_le_bytes().to_vec()
    }
}

#[test]
fn a_reused_slot_is_taken_held_given_back_and_taken_again_in_both_encodings() {
    let mut redis = redis_like();
    let mut plain = FakeHost::new(DateTime::from_timestamp(1_750_000_000, 0).unwrap());
    for (h, text) in [(&mut redis as &mut dyn Host, true), (&mut plain, false)] {
        // Absent: taken as `try_acquire` takes it (which creates the key in the host's encoding).
        let first = try_acquire_reused(h, "slot/0", 10_000)
            .unwrap()
            .expect("an absent slot is taken");
        assert!(
            try_acquire_reused(h, "slot/0", 10_000).unwrap().is_none(),
            "held (text: {text})"
        );
        let taken_at = h.now();
        release_renewed(h, first, taken_at, 10_000).unwrap();
        assert_eq!(
            h.kv_get("slot/0").unwrap().unwrap(),
            free_value(text),
            "given back as the free value in the key's encoding (text: {text})"
        );
        // Taken again from the free value, and still a counter the host can increment.
        let again = try_acquire_reused(h, "slot/0", 10_000)
            .unwrap()
            .expect("a given-back slot is taken again");
        assert_eq!(is_text(&h.kv_get("slot/0").unwrap().unwrap()), text);
        assert!(h.kv_increment("slot/0", 0).is_ok());
        // Left to expire (its holder died): taken by the next one once it has.
        drop(again);
        assert!(try_acquire_reused(h, "slot/0", 10_000).unwrap().is_none());
        h.sleep_ms(10_001);
        assert!(
            try_acquire_reused(h, "slot/0", 10_000).unwrap().is_some(),
            "an expired slot is taken (text: {text})"
        );
    }
}

#[test]
fn a_reused_slot_swap_that_lost_the_race_but_was_reported_done_is_not_taken() {
    let mut h = redis_like();
    let guard = try_acquire_reused(&mut h, "slot/0", 10_000)
        .unwrap()
        .unwrap();
    let at = h.now();
    release_renewed(&mut h, guard, at, 10_000).unwrap();
    let rival = Lease {
        expires_at_ms: h.now().timestamp_millis() + 60_000,
        nonce: 0x4243,
    }
    .to_i64();
    h.rival = Some(("slot/0".into(), rival.to_string().into_bytes()));
    assert_eq!(try_acquire_reused(&mut h, "slot/0", 10_000).unwrap(), None);
    assert_eq!(read_counter(&mut h, "slot/0").unwrap(), rival);
}

#[test]
fn a_lease_near_or_past_its_end_is_given_back_only_if_still_ours() {
    let mut redis = redis_like();
    let mut plain = FakeHost::new(DateTime::from_timestamp(1_750_000_000, 0).unwrap());
    for (h, text) in [(&mut redis as &mut dyn Host, true), (&mut plain, false)] {
        let start = h.now();
        let ours = try_acquire(h, "lease/x", 10_000).unwrap().unwrap();
        // Expired and taken by another instance before we give it back: the swap leaves
        // theirs alone.
        h.sleep_ms(11_000);
        let theirs = try_acquire(h, "lease/x", 10_000).unwrap().expect("expired");
        release_renewed(h, ours, start, 10_000).unwrap();
        assert!(
            try_acquire(h, "lease/x", 10_000).unwrap().is_none(),
            "the other holder keeps it (text: {text})"
        );
        // Within the margin of its end, a lease still ours is given back by the swap.
        let at = h.now();
        h.sleep_ms(10_000 - RELEASE_MARGIN_MS as u64 + 1);
        release_renewed(h, theirs, at, 10_000).unwrap();
        assert_eq!(h.kv_get("lease/x").unwrap().unwrap(), free_value(text));
    }
}

#[test]
fn a_swap_of_a_little_endian_counter_is_trusted_without_reading_it_back() {
    let mut plain = FakeHost::new(DateTime::from_timestamp(1_750_000_000, 0).unwrap());
    let mut h = Counted::new(&mut plain);
    let mut lease = try_acquire(&mut h, "lease/x", 10_000).unwrap().unwrap();
    assert_eq!(h.take(), ["increment", "cas"], "created, then swapped");
    assert!(renew(&mut h, &mut lease, 10_000).unwrap());
    assert_eq!(h.take(), ["cas"]);
    let at = h.now();
    release_renewed(&mut h, lease, at, 10_000).unwrap();
    assert_eq!(h.take(), ["set"], "given back with one write");
    assert!(
        try_acquire_reused(&mut h, "lease/x", 10_000)
            .unwrap()
            .is_some()
    );
    assert_eq!(h.take(), ["cas"], "taken from the free value");

    // Where counters are text, every swap is read back (a lost one may be reported as done).
    let mut redis = redis_like();
    let mut r = Counted::new(&mut redis);
    let mut lease = try_acquire(&mut r, "lease/x", 10_000).unwrap().unwrap();
    assert_eq!(r.take(), ["increment", "cas", "cas", "get"]);
    assert!(renew(&mut r, &mut lease, 10_000).unwrap());
    assert_eq!(r.take(), ["cas", "cas", "get"]);
    let at = r.now();
    release_renewed(&mut r, lease, at, 10_000).unwrap();
    assert!(
        try_acquire_reused(&mut r, "lease/x", 10_000)
            .unwrap()
            .is_some()
    );
    assert_eq!(r.take(), ["set", "cas", "cas", "get"]);
}
