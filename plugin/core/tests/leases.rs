//! Leases and crashes: a job keeps its entity lease only while it renews it, writes nothing once
//! it has lost it, and a worker that dies blocks nobody for long (CONTRACT §5). Driven through
//! the app's entry points on the simulated clock, with host wrappers that stall or kill a
//! worker at a chosen step.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use chrono::{DateTime, Utc};
use common::*;
use ml_core::host::{CasOutcome, Host, KvError, LogLevel};
use ml_core::http::{HttpRequest, HttpResponse, TransportError};
use ml_core::jobs::run;
use ml_core::routes::router;
use ml_core::sync::record::State;
use serde_json::json;

const ORDER: u64 = 101;

fn world_with_order() -> World {
    let mut w = World::new();
    w.put_order(ORDER, order_json(ORDER, &plain_shape(1)));
    w
}

fn is(needle: &str, req: &HttpRequest) -> bool {
    match needle.split_once(' ') {
        Some((m, rest)) => req.method.as_str() == m && req.url.contains(rest),
        None => req.url.contains(needle),
    }
}

type Hook = Box<dyn FnMut(&mut Recorder, &HttpRequest)>;

/// A worker's view of the host: after each request matching `needle` is answered, `hook` runs
/// on the shared host — what the rest of the world does while this worker is stalled in that
/// request. With `crash`, the worker dies (panics) at the first matching request instead, before
/// it is sent.
struct Worker<'a> {
    inner: &'a mut Recorder,
    needle: &'static str,
    hook: Option<Hook>,
    crash: bool,
    /// After a KV write to a key containing `.0` whose value contains `.1` succeeds, every
    /// later write fails: the host died right after that write.
    die_after_write: Option<(&'static str, &'static str)>,
    /// After an increment of this key succeeds, every later write fails.
    die_after_increment: Option<&'static str>,
    dead: bool,
}

impl<'a> Worker<'a> {
    fn new(inner: &'a mut Recorder) -> Self {
        Worker {
            inner,
            needle: "",
            hook: None,
            crash: false,
            die_after_write: None,
            die_after_increment: None,
            dead: false,
        }
    }

    fn on(
        mut self,
        needle: &'static str,
        hook: impl FnMut(&mut Recorder, &HttpRequest) + 'static,
    ) -> Self {
        self.needle = needle;
        self.hook = Some(Box::new(hook));
        self
    }

    fn crash_at(mut self, needle: &'static str) -> Self {
        self.needle = needle;
        self.crash = true;
        self
    }

    fn die_after_writing(mut self, key: &'static str, containing: &'static str) -> Self {
        self.die_after_write = Some((key, containing));
        self
    }

    fn die_after_incrementing(mut self, key: &'static str) -> Self {
        self.die_after_increment = Some(key);
        self
    }

    fn write(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), KvError> {
        if self.dead {
            return Err(KvError("the host died".into()));
        }
        if let (Some((k, needle)), Some(v)) = (self.die_after_write, value)
            && key.contains(k)
            && String::from_utf8_lossy(v).contains(needle)
        {
            self.dead = true;
        }
        Ok(())
    }
}

impl Host for Worker<'_> {
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
        if self.crash && is(self.needle, request) {
            panic!("the worker dies at {}", request.url);
        }
        let resp = self.inner.http(request);
        if is(self.needle, request)
            && let Some(hook) = self.hook.as_mut()
        {
            hook(self.inner, request);
        }
        resp
    }
    fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.inner.kv_get(key)
    }
    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        if self.dead {
            return Err(KvError("the host died".into()));
        }
        self.inner.kv_set(key, value)?;
        self.write(key, Some(value))
    }
    fn kv_delete(&mut self, key: &str) -> Result<(), KvError> {
        self.write(key, None)?;
        self.inner.kv_delete(key)
    }
    fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.write(key, None)?;
        let sum = self.inner.kv_increment(key, delta)?;
        if self.die_after_increment == Some(key) {
            self.dead = true;
        }
        Ok(sum)
    }
    fn kv_cas(&mut self, key: &str, expected: &[u8], new: &[u8]) -> Result<CasOutcome, KvError> {
        self.write(key, None)?;
        self.inner.kv_cas(key, expected, new)
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.inner.sleep_ms(ms)
    }
    fn log(&mut self, level: LogLevel, message: &str) {
        self.inner.log(level, message)
    }
}

/// Delivers an order webhook through `host` and runs its work there, as the adapter does.
fn deliver_via(host: &mut dyn Host, order_id: u64, hash: &str) -> HttpResponse {
    let req = webhook_request("store/order/created", order_id, hash, WEBHOOK_SECRET);
    let (resp, work) = router::handle(&req, host);
    if let Some(work) = work {
        router::run(work, host);
    }
    resp
}

fn invoices(w: &World) -> Vec<serde_json::Value> {
    w.qbo.borrow().invoices.values().cloned().collect()
}

#[test]
fn a_worker_that_stalls_past_its_lease_writes_nothing_and_the_newer_record_stands() {
    let mut w = world_with_order();
    let bc = w.bc.clone();
    // Worker 1 reads the order, then stalls for two minutes (a paused VM, a GC pause, a host
    // under load) before it goes on. Meanwhile the order changes in BigCommerce, and the
    // scheduler finds worker 1's record pending with its lease expired: worker 2 posts the
    // current order.
    let mut stalled_once = false;
    let worker = Worker::new(&mut w.host).on("GET bc.test", move |h, _| {
        if stalled_once {
            return;
        }
        stalled_once = true;
        bc.borrow_mut().orders.get_mut(&ORDER).unwrap()["customer_message"] =
            json!("changed while worker 1 stalled");
        h.inner.advance(chrono::Duration::seconds(130));
        let report = run::retry_due(h).expect("retry-due");
        assert_eq!(report.posted, 1, "worker 2 posts the order: {report:?}");
    });
    let mut worker = worker;
    let resp = deliver_via(&mut worker, ORDER, &hash(1));
    assert_eq!(resp.status, 200);

    let all = invoices(&w);
    assert_eq!(all.len(), 1, "one invoice, never a second: {all:#?}");
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted);
    assert_eq!(
        rec.qbo_id.as_deref(),
        all[0]["Id"].as_str(),
        "the record keeps worker 2's invoice"
    );
    let creates = w.count("POST /invoice?");
    assert_eq!(creates, 1, "worker 1 sent no write after losing its lease");
}

#[test]
fn a_job_longer_than_the_lease_keeps_it_by_renewing_between_steps() {
    let mut w = world_with_order();
    // Every upstream answer takes 15 s (each within the upstream timeout): the whole job takes
    // far longer than the lease's TTL, and a scheduler tick in the middle of it must find the
    // order busy rather than run it a second time.
    let mut calls = 0;
    let mut worker = Worker::new(&mut w.host).on("http://", move |h, _| {
        calls += 1;
        h.inner.advance(chrono::Duration::seconds(15));
        if calls == 4 {
            let report = run::retry_due(h).expect("retry-due");
            assert_eq!(
                report.ran, 0,
                "the running job is not run twice: {report:?}"
            );
        }
    });
    deliver_via(&mut worker, ORDER, &hash(1));
    assert_eq!(w.record(ORDER).state, State::Posted);
    assert_eq!(invoices(&w).len(), 1);
    assert_eq!(w.count("POST /invoice?"), 1);
}

#[test]
fn an_event_accepted_just_before_a_crash_is_posted_within_sixty_seconds_of_the_host_running_again()
{
    let mut w = world_with_order();
    // The worker dies in the middle of the job, holding the order's lease (never released).
    let mut worker = Worker::new(&mut w.host).crash_at("POST /invoice?");
    let crashed = catch_unwind(AssertUnwindSafe(|| {
        deliver_via(&mut worker, ORDER, &hash(1))
    }));
    assert!(crashed.is_err(), "the worker died");
    assert_eq!(invoices(&w).len(), 0);

    // The host runs again at once; its scheduler ticks every 15 s.
    let restarted = w.now();
    let mut posted_at = None;
    for _ in 0..=20 {
        w.retry_due();
        if w.record(ORDER).state == State::Posted {
            posted_at = Some(w.now());
            break;
        }
        w.advance(15);
    }
    let posted_at = posted_at.expect("posted at all");
    assert!(
        posted_at - restarted <= chrono::Duration::seconds(60),
        "posted {} s after the restart",
        (posted_at - restarted).num_seconds()
    );
    assert_eq!(invoices(&w).len(), 1);
}

#[test]
fn a_crash_right_after_saving_a_retrying_record_still_leaves_its_retry_filed() {
    let mut w = world_with_order();
    // A validation fault fails the order; its guard entry is consumed by a scheduler tick.
    w.qbo.borrow_mut().faults.push_back((
        "POST /invoice?".into(),
        Fault::Status(
            400,
            fault_body("6000", "A business validation error", "ValidationFault"),
        ),
    ));
    w.deliver("store/order/created", ORDER, &hash(1));
    assert_eq!(w.record(ORDER).state, State::Failed);
    w.advance(60);
    w.retry_due();

    // The operator replays it; QuickBooks answers 500 (retryable), and the host dies right
    // after the record is saved as `retrying`.
    w.qbo
        .borrow_mut()
        .faults
        .push_back(("POST /invoice?".into(), Fault::ServerError));
    let mut worker =
        Worker::new(&mut w.host).die_after_writing("rec/order/101", "\"state\":\"retrying\"");
    let _ = run::sync(
        &mut worker,
        ml_core::sync::record::Entity::Order,
        "101",
        run::Trigger::Replay,
    );
    assert!(worker.dead, "the host died after the record write");
    assert_eq!(w.record(ORDER).state, State::Retrying);

    // After the restart the scheduler still runs it.
    for _ in 0..20 {
        w.advance(60);
        w.retry_due();
        if w.record(ORDER).state == State::Posted {
            break;
        }
    }
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted, "audit: {:?}", w.steps(ORDER));
    assert_eq!(invoices(&w).len(), 1);
}

#[test]
fn a_hole_in_a_due_minute_leaves_the_entries_before_it_on_file_until_they_are_handled() {
    let mut w = world_with_order();
    // The webhook's worker dies as it fetches the order: the record stays `pending`, and only
    // its guard entry (due 30 s later) can run it again.
    let mut worker = Worker::new(&mut w.host).crash_at("GET bc.test");
    let crashed = catch_unwind(AssertUnwindSafe(|| {
        deliver_via(&mut worker, ORDER, &hash(1))
    }));
    assert!(crashed.is_err(), "the worker died");
    assert_eq!(w.record(ORDER).state, State::Pending);
    // Another writer took the next slot of the guard's minute and died before filling it.
    let guard_minute = (w.now() + chrono::Duration::seconds(30))
        .timestamp()
        .div_euclid(60);
    w.host
        .kv_increment(&format!("due/{guard_minute}/n"), 1)
        .unwrap();

    // Minutes later a scheduler tick collects the guard, skips the hole, and dies running the
    // order (before it is handled, nothing may mark the guard done).
    w.advance(5 * 60);
    let mut tick = Worker::new(&mut w.host).crash_at("GET bc.test");
    let crashed = catch_unwind(AssertUnwindSafe(|| run::retry_due(&mut tick)));
    assert!(crashed.is_err(), "the tick died");
    assert_eq!(w.record(ORDER).state, State::Pending);

    // The next ticks still find the order (once the dead tick's lease has expired).
    for _ in 0..4 {
        w.advance(15);
        w.retry_due();
    }
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted, "audit: {:?}", w.steps(ORDER));
    assert_eq!(invoices(&w).len(), 1);
    // And the minute is finished: its hole is marked done once the guard before it is.
    w.advance(60);
    w.retry_due();
    assert!(
        w.kv_keys_containing("\"id\":\"101\"")
            .iter()
            .all(|k| !k.starts_with("due/")),
        "no due entry left over: {:?}",
        w.kv_keys_containing("\"id\":\"101\"")
    );
}

#[test]
fn a_replay_whose_worker_dies_mid_job_is_run_by_the_scheduler() {
    let mut w = world_with_order();
    // A validation fault fails the order; its guard entry is consumed by a scheduler tick.
    w.qbo.borrow_mut().faults.push_back((
        "POST /invoice?".into(),
        Fault::Status(
            400,
            fault_body("6000", "A business validation error", "ValidationFault"),
        ),
    ));
    w.deliver("store/order/created", ORDER, &hash(1));
    assert_eq!(w.record(ORDER).state, State::Failed);
    w.advance(60);
    w.retry_due();

    // The operator replays it; the worker dies before its write, leaving the record `pending`.
    let mut worker = Worker::new(&mut w.host).crash_at("POST /invoice?");
    let crashed = catch_unwind(AssertUnwindSafe(|| {
        run::sync(
            &mut worker,
            ml_core::sync::record::Entity::Order,
            "101",
            run::Trigger::Replay,
        )
    }));
    assert!(crashed.is_err(), "the worker died");
    assert_eq!(w.record(ORDER).state, State::Pending);

    // Nobody replays it again: the scheduler finishes it.
    for _ in 0..4 {
        w.advance(15);
        w.retry_due();
    }
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted, "audit: {:?}", w.steps(ORDER));
    assert_eq!(invoices(&w).len(), 1);
}

#[test]
fn status_counts_left_wrong_by_a_crash_between_counting_a_record_and_saving_it_are_repaired() {
    let mut w = world_with_order();
    // The host dies right after the counts move to posted, before the record is saved so.
    let mut worker = Worker::new(&mut w.host).die_after_incrementing("count/posted");
    deliver_via(&mut worker, ORDER, &hash(1));
    assert!(worker.dead, "the host died after counting");
    assert_eq!(w.record(ORDER).state, State::Pending);
    let count = |w: &mut World, state: State| {
        ml_core::sync::store::counts(&mut w.host)
            .unwrap()
            .into_iter()
            .find(|(s, _)| *s == state)
            .unwrap()
            .1
    };
    assert_eq!(
        (count(&mut w, State::Pending), count(&mut w, State::Posted)),
        (0, 1),
        "the counts moved, the record did not"
    );

    // The scheduler's next tick runs the order again (its guard entry has come) and recounts
    // (the first one, then every ten minutes): the job counts it posted a second time, and the
    // recount finds the extra one; a tick a minute later counts again, confirms it and takes
    // it off.
    w.advance(60);
    w.retry_due();
    assert_eq!(w.record(ORDER).state, State::Posted);
    assert_eq!(
        count(&mut w, State::Posted),
        2,
        "not repaired on the first finding"
    );
    w.advance(ml_core::sync::store::RECOUNT_CONFIRM_AFTER_S);
    w.retry_due();
    assert_eq!(
        (count(&mut w, State::Pending), count(&mut w, State::Posted)),
        (0, 1)
    );
}
