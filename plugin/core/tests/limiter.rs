//! The QuickBooks limiter seen from the order job: work beyond QuickBooks' capacity waits in
//! the wait queue, in arrival order, before anything is read, and without using attempts.

mod common;

use common::*;
use ml_core::host::Host;
use ml_core::jobs::run;
use ml_core::sync::limiter;
use ml_core::sync::record::State;
use ml_core::sync::store;

fn order_reads(w: &World) -> Vec<u64> {
    let mut ids = Vec::new();
    for r in w.requests() {
        if let Some(rest) = r.split("/v2/orders/").nth(1) {
            let id: u64 = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}

#[test]
fn orders_beyond_quickbooks_capacity_wait_in_arrival_order_with_no_read_and_no_attempt_used() {
    let mut w = World::new();
    let ids = [305u64, 301, 304, 302, 303];
    for id in ids {
        w.put_order(id, order_json(id, &plain_shape(id)));
    }
    let held = hold_every_slot(&mut w);
    w.clear_log();
    for (n, id) in ids.iter().enumerate() {
        let resp = w.deliver("store/order/created", *id, &hash(n as u32 + 1));
        assert_eq!(resp.status, 200);
    }
    assert_eq!(
        w.requests(),
        Vec::<String>::new(),
        "waiting work reads nothing from BigCommerce and calls nothing in QuickBooks"
    );
    for id in ids {
        let rec = w.record(id);
        assert_eq!(rec.state, State::Pending);
        assert_eq!(rec.attempts, 0);
        assert!(rec.last_error.is_none());
        let waiting = rec.audit.iter().find(|a| a.step == "waiting").unwrap();
        assert!(
            waiting.detail["reason"]
                .as_str()
                .unwrap()
                .contains("waiting for QuickBooks capacity"),
            "{waiting:?}"
        );
    }
    // Capacity frees: the scheduler runs the queue, oldest first, as capacity allows.
    for slot in held {
        store::release(&mut w.host.inner, slot).unwrap();
    }
    for _ in 0..30 {
        w.advance(1);
        w.retry_due();
        if w.qbo.borrow().invoice_creates_accepted == ids.len() {
            break;
        }
    }
    assert_eq!(w.qbo.borrow().invoice_creates_accepted, ids.len());
    assert_eq!(order_reads(&w), ids, "orders were read in arrival order");
    for id in ids {
        let rec = w.record(id);
        assert_eq!(rec.state, State::Posted);
        assert_eq!(rec.attempts, 1, "the wait used no attempt");
        assert!(!rec.audit.iter().any(|a| a.step == "attempt_failed"));
    }
    assert!(limiter::queue_is_empty(&mut w.host.inner).unwrap());
}

#[test]
fn while_work_waits_a_new_webhook_queues_behind_it_and_a_finished_job_runs_the_queue() {
    let mut w = World::new();
    for id in [401u64, 402, 403] {
        w.put_order(id, order_json(id, &plain_shape(id)));
    }
    let mut held = hold_every_slot(&mut w);
    w.deliver("store/order/created", 401, &hash(1));
    w.deliver("store/order/created", 402, &hash(2));
    assert_eq!(w.record(401).state, State::Pending);
    // One slot frees; a new webhook still queues behind the two waiting orders, and its
    // worker, its own job done (queued), runs the queue from the head.
    store::release(&mut w.host.inner, held.pop().unwrap()).unwrap();
    w.advance(1);
    w.clear_log();
    w.deliver("store/order/created", 403, &hash(3));
    assert_eq!(order_reads(&w), [401, 402, 403]);
    for id in [401, 402, 403] {
        assert_eq!(w.record(id).state, State::Posted);
    }
    for slot in held {
        store::release(&mut w.host.inner, slot).unwrap();
    }
}

#[test]
fn a_second_overspent_by_many_jobs_at_once_does_not_strand_the_queue() {
    let mut w = World::new();
    for id in [501u64, 502, 503, 504] {
        w.put_order(id, order_json(id, &plain_shape(id)));
    }
    let held = hold_every_slot(&mut w);
    for (n, id) in [501u64, 502, 503].into_iter().enumerate() {
        w.deliver("store/order/created", id, &hash(n as u32 + 1));
    }
    for slot in held {
        store::release(&mut w.host.inner, slot).unwrap();
    }
    // The jobs that held the slots made 30 QuickBooks calls in this one second: the budget
    // is owed for the next few seconds, longer than a drainer used to wait.
    let second = w.now().timestamp();
    w.host
        .inner
        .kv_increment(&format!("pace/qbo/{second}"), 30)
        .unwrap();
    // The next webhook queues behind the others; its worker's drain sleeps through the owed
    // seconds and runs the whole queue, with no retry-due to come back for it.
    w.deliver("store/order/created", 504, &hash(4));
    for id in [501, 502, 503, 504] {
        assert_eq!(w.record(id).state, State::Posted, "order {id}");
    }
    assert!(limiter::queue_is_empty(&mut w.host.inner).unwrap());
}

#[test]
fn a_writer_that_died_holding_the_head_of_the_queue_does_not_wedge_it_for_the_work_behind() {
    let mut w = World::new();
    let ids: Vec<u64> = (601..=660).collect();
    for id in &ids {
        w.put_order(*id, order_json(*id, &plain_shape(*id)));
    }
    let held = hold_every_slot(&mut w);
    // A worker took the first position and died before writing it.
    w.host.inner.kv_increment("wait/qbo/n", 1).unwrap();
    // More than a drain pass's worth of orders queue behind it.
    for (n, id) in ids.iter().enumerate() {
        w.deliver("store/order/created", *id, &hash(n as u32 + 1));
    }
    for slot in held {
        store::release(&mut w.host.inner, slot).unwrap();
    }
    // The scheduler's retry-due calls (each drains once, without waiting).
    for _ in 0..20 {
        w.advance(15);
        w.retry_due();
    }
    for id in &ids {
        assert_eq!(w.record(*id).state, State::Posted, "order {id}");
    }
    assert!(
        limiter::queue_is_empty(&mut w.host.inner).unwrap(),
        "the dead writer's position was passed"
    );
}

#[test]
fn a_drainer_that_keeps_handling_work_goes_on_past_its_budget() {
    let mut w = World::new();
    // One order more than a batch request carries: the last runs on its own after the batch.
    let ids: Vec<u64> = (701..=731).collect();
    for id in &ids {
        w.put_order(*id, order_json(*id, &plain_shape(*id)));
    }
    let held = hold_every_slot(&mut w);
    for (n, id) in ids.iter().enumerate() {
        w.deliver("store/order/created", *id, &hash(n as u32 + 1));
    }
    for slot in held {
        store::release(&mut w.host.inner, slot).unwrap();
    }
    // The second's budget is spent for 4 s, and again for 3 s after the batch's second: the
    // last order can go only 8 s from now, past the drainer's 5 s budget, but less than 5 s
    // after the batch.
    let second = w.now().timestamp();
    for s in (second..second + 4).chain(second + 5..second + 8) {
        w.host
            .inner
            .kv_increment(&format!("pace/qbo/{s}"), 30)
            .unwrap();
    }
    let report = run::drain_waiting(&mut w.host, 5_000, 0).unwrap();
    assert!(
        report.emptied,
        "the drainer stayed until the queue was empty"
    );
    for id in ids {
        assert_eq!(w.record(id).state, State::Posted, "order {id}");
    }
}

#[test]
fn a_drainer_batches_its_own_lane_of_the_queue_and_skips_orders_another_is_running() {
    let mut w = World::new();
    let ids: Vec<u64> = (801..=890).collect();
    for id in &ids {
        w.put_order(*id, order_json(*id, &plain_shape(*id)));
    }
    let held = hold_every_slot(&mut w);
    for (n, id) in ids.iter().enumerate() {
        w.deliver("store/order/created", *id, &hash(n as u32 + 1));
    }
    for slot in held {
        store::release(&mut w.host.inner, slot).unwrap();
    }
    // Another drainer is staging the queue's second batch's worth (it holds their leases).
    let running: Vec<_> = ids[30..60]
        .iter()
        .map(|id| {
            store::try_acquire(&mut w.host.inner, &format!("lease/order/{id}"), 60_000)
                .unwrap()
                .unwrap()
        })
        .collect();
    w.clear_log();
    // Drainer lane 1's part of the head is the second batch's worth: as it is held, this
    // drainer takes the next free orders, and then the first batch's worth.
    let report = run::drain_waiting(&mut w.host, 5_000, 1).unwrap();
    assert!(
        !report.emptied,
        "the orders another drainer holds stay queued"
    );
    let reads = order_reads(&w);
    assert_eq!(
        reads[..30],
        ids[60..90],
        "lane 1's batch: the free orders past the held ones"
    );
    assert_eq!(reads[30..60], ids[..30], "then the head's first batch");
    assert!(
        reads.iter().all(|id| !ids[30..60].contains(id)),
        "no order another drainer runs is read or tried"
    );
    for lease in running {
        store::release(&mut w.host.inner, lease).unwrap();
    }
    run::drain_waiting(&mut w.host, 5_000, 0).unwrap();
    for id in ids {
        assert_eq!(w.record(id).state, State::Posted, "order {id}");
    }
    assert!(limiter::queue_is_empty(&mut w.host.inner).unwrap());
}
