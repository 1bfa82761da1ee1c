//! Batch posting (issue 17): orders waiting for QuickBooks capacity have their invoices created
//! in one batch request, each exactly once — after a lost batch answer, an item left out of the
//! answer, or an item's own fault too.

mod common;

use common::*;
use ml_core::sync::record::{Entity, State};
use ml_core::sync::store::{self, LeaseGuard};
use ml_core::sync::{limiter, pace};
use serde_json::Value;

/// Delivers the orders while every QuickBooks slot is held, so they all wait in the queue.
fn queue_orders(w: &mut World, ids: &[u64]) -> Vec<LeaseGuard> {
    for id in ids {
        w.put_order(*id, order_json(*id, &plain_shape(*id)));
    }
    let held = hold_every_slot(w);
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(
            w.deliver("store/order/created", *id, &hash(n as u32 + 1))
                .status,
            200
        );
    }
    held
}

fn free(w: &mut World, held: Vec<LeaseGuard>) {
    for slot in held {
        store::release(&mut w.host.inner, slot).unwrap();
    }
}

/// Invoices in the QuickBooks model per DocNumber.
fn invoices_per_doc_number(w: &World) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for inv in w.qbo.borrow().invoices.values() {
        let d = inv["DocNumber"].as_str().unwrap_or_default().to_string();
        *out.entry(d).or_insert(0) += 1;
    }
    out
}

fn settle(w: &mut World, ids: &[u64]) {
    for _ in 0..120 {
        w.advance(5);
        w.retry_due();
        if ids.iter().all(|id| w.record(*id).state != State::Retrying)
            && ids.iter().all(|id| w.record(*id).state != State::Pending)
        {
            break;
        }
    }
}

#[test]
fn waiting_orders_get_their_invoices_in_one_batch_request_each_exactly_once() {
    let mut w = World::new();
    let ids: Vec<u64> = (501..=512).collect();
    let held = queue_orders(&mut w, &ids);
    free(&mut w, held);
    w.advance(1);
    w.clear_log();
    w.retry_due();
    eprintln!("STEPS {:?}\nREQ {:#?}", w.steps(502), w.requests());
    assert_eq!(w.count("/invoice?"), 0, "no invoice was posted one by one");
    assert_eq!(w.qbo.borrow().batch_sizes, vec![ids.len()]);
    assert_eq!(w.qbo.borrow().invoice_creates_accepted, ids.len());
    for (doc, n) in invoices_per_doc_number(&w) {
        assert_eq!(n, 1, "{doc}");
    }
    for id in &ids {
        let rec = w.record(*id);
        assert_eq!(rec.state, State::Posted, "order {id}");
        assert_eq!(rec.attempts, 1);
        let inv = w.qbo.borrow().invoices[rec.qbo_id.as_deref().unwrap()].clone();
        assert_eq!(inv["DocNumber"], Value::from(id.to_string()));
        let steps: Vec<String> = rec.audit.iter().map(|a| a.step.clone()).collect();
        let planned = steps.iter().position(|s| s == "write_planned");
        let created = steps.iter().position(|s| s == "document_created");
        assert!(
            planned.is_some() && planned < created,
            "the requestid was on record before the batch left: {steps:?}"
        );
    }
    assert!(limiter::queue_is_empty(&mut w.host.inner).unwrap());
}

#[test]
fn a_batch_that_waits_a_minute_for_room_keeps_its_orders_leases_and_posts_each_once() {
    use std::cell::Cell;
    use std::rc::Rc;
    let mut w = World::new();
    let ids: Vec<u64> = (521..=532).collect();
    let held = queue_orders(&mut w, &ids);
    // Another instance fills QuickBooks' minute after the batch was admitted, while it stages
    // its last order: the batch must wait about a minute for room.
    let filled_at = Rc::new(Cell::new(None));
    let f = filled_at.clone();
    w.host.inner.after_get("rec/order/532", move |h| {
        if f.get().is_none() {
            f.set(Some(h.now));
            pace::reserve(h, pace::WINDOW_OPS, None).unwrap();
        }
    });
    // Meanwhile a worker elsewhere keeps trying to take the batch's first order.
    let taken = Rc::new(Cell::new(0));
    let t = taken.clone();
    let f = filled_at.clone();
    w.host.inner.on_sleep(move |h| {
        if f.get().is_some() {
            let key = store::entity_lease_key(Entity::Order, "521");
            if let Some(g) = store::try_acquire(h, &key, store::ENTITY_LEASE_MS).unwrap() {
                t.set(t.get() + 1);
                store::release(h, g).unwrap();
            }
        }
    });
    free(&mut w, held);
    w.advance(1);
    // The minute is nearly full already: the batch is admitted (its 12 fit) but has too little
    // room to send without a look at the window.
    pace::reserve(&mut w.host.inner, pace::WINDOW_OPS - 70, None).unwrap();
    w.clear_log();
    w.retry_due();
    let filled_at = filled_at
        .get()
        .expect("the window was filled during staging");
    let sent = w.sent_times("/batch");
    assert_eq!(sent.len(), 1, "{:?}", w.requests());
    let waited = (sent[0] - filled_at).num_seconds();
    assert!(
        waited >= 55,
        "the batch waited for room in the window: {waited} s"
    );
    assert_eq!(
        taken.get(),
        0,
        "no other worker could take an order's lease while its batch waited"
    );
    assert_eq!(w.qbo.borrow().batch_sizes, vec![ids.len()]);
    assert_eq!(w.qbo.borrow().invoice_creates_accepted, ids.len());
    for id in &ids {
        let rec = w.record(*id);
        assert_eq!(rec.state, State::Posted, "order {id}");
        assert_eq!(rec.attempts, 1, "order {id}");
    }
}

#[test]
fn a_lost_batch_answer_retries_each_order_with_a_lookup_and_makes_no_second_invoice() {
    let mut w = World::new();
    let ids: Vec<u64> = (601..=606).collect();
    let held = queue_orders(&mut w, &ids);
    // QuickBooks creates every invoice of the batch, but its answer never arrives.
    w.qbo
        .borrow_mut()
        .faults
        .push_back(("POST /batch?".into(), Fault::CommitThenTimeout));
    free(&mut w, held);
    w.advance(1);
    w.retry_due();
    assert_eq!(w.qbo.borrow().batch_sizes, vec![ids.len()]);
    for id in &ids {
        assert_eq!(w.record(*id).state, State::Retrying, "order {id}");
    }
    settle(&mut w, &ids);
    assert_eq!(
        w.qbo.borrow().invoice_creates_accepted,
        ids.len(),
        "no second invoice"
    );
    for (doc, n) in invoices_per_doc_number(&w) {
        assert_eq!(n, 1, "{doc}");
    }
    for id in &ids {
        let rec = w.record(*id);
        assert_eq!(rec.state, State::Posted, "order {id}");
        assert!(
            rec.audit.iter().any(|a| a.step == "found_existing"),
            "order {id} was looked up by DocNumber and marker"
        );
    }
}

#[test]
fn an_item_left_out_of_the_answer_is_looked_up_before_it_is_written_again() {
    let mut w = World::new();
    let ids: Vec<u64> = (701..=704).collect();
    let held = queue_orders(&mut w, &ids);
    w.qbo
        .borrow_mut()
        .batch_unanswered
        .insert("703".to_string());
    free(&mut w, held);
    w.advance(1);
    w.retry_due();
    assert_eq!(w.qbo.borrow().batch_sizes, vec![ids.len()]);
    assert_eq!(w.qbo.borrow().invoice_creates_accepted, ids.len());
    for (doc, n) in invoices_per_doc_number(&w) {
        assert_eq!(n, 1, "{doc}");
    }
    let rec = w.record(703);
    assert_eq!(rec.state, State::Posted);
    assert!(rec.audit.iter().any(|a| a.step == "found_existing"));
    for id in [701, 702, 704] {
        assert_eq!(w.record(id).state, State::Posted);
    }
}

#[test]
fn an_items_own_fault_fails_only_its_order_as_the_single_write_would() {
    let mut w = World::new();
    let ids: Vec<u64> = (801..=805).collect();
    let held = queue_orders(&mut w, &ids);
    w.qbo.borrow_mut().batch_item_faults.insert(
        "802".to_string(),
        fault_body(
            "6000",
            "A business validation error has occurred",
            "ValidationFault",
        ),
    );
    free(&mut w, held);
    w.advance(1);
    w.retry_due();
    assert_eq!(w.qbo.borrow().batch_sizes, vec![ids.len()]);
    let rec = w.record(802);
    assert_eq!(rec.state, State::Failed, "a validation fault needs a human");
    assert!(
        rec.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("6000")
            || rec
                .last_error
                .as_deref()
                .unwrap_or_default()
                .contains("validation"),
        "{:?}",
        rec.last_error
    );
    for id in [801, 803, 804, 805] {
        assert_eq!(w.record(id).state, State::Posted, "order {id}");
    }
    assert_eq!(w.qbo.borrow().invoice_creates_accepted, ids.len() - 1);
}

/// Delivers paid orders (captured at checkout) while every slot is held, as [`queue_orders`].
fn queue_paid_orders(w: &mut World, ids: &[u64]) -> Vec<LeaseGuard> {
    for id in ids {
        let paid = ml_sim::bigcommerce::generate_paid(
            *id,
            &plain_shape(*id),
            ml_sim::bigcommerce::Payment::Captured,
        );
        w.put_order(*id, paid.order);
    }
    let held = hold_every_slot(w);
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(
            w.deliver("store/order/created", *id, &hash(n as u32 + 1))
                .status,
            200
        );
    }
    held
}

/// The payments in the QuickBooks model linked to each invoice id.
fn payments_per_invoice(w: &World) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for p in w.qbo.borrow().payments.values() {
        let inv = p
            .pointer("/Line/0/LinkedTxn/0/TxnId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        *out.entry(inv).or_insert(0) += 1;
    }
    out
}

#[test]
fn paid_orders_get_their_payments_in_the_next_batch_request_each_exactly_once() {
    let mut w = World::new();
    let ids: Vec<u64> = (901..=912).collect();
    let held = queue_paid_orders(&mut w, &ids);
    free(&mut w, held);
    w.advance(1);
    w.clear_log();
    w.retry_due();
    assert_eq!(w.count("/invoice?"), 0, "no invoice was posted one by one");
    assert_eq!(w.count("/payment?"), 0, "no payment was posted one by one");
    assert_eq!(
        w.qbo.borrow().batch_sizes,
        vec![ids.len(), ids.len()],
        "the invoices in one batch request, their payments in the next"
    );
    assert_eq!(w.qbo.borrow().payment_creates_accepted, ids.len());
    let per_invoice = payments_per_invoice(&w);
    for id in &ids {
        let rec = w.record(*id);
        assert_eq!(rec.state, State::Posted, "order {id}");
        assert_eq!(rec.attempts, 1);
        let invoice = rec.qbo_id.clone().unwrap();
        assert_eq!(
            per_invoice.get(&invoice),
            Some(&1),
            "order {id}: one payment"
        );
        let payment_planned = rec
            .audit
            .iter()
            .position(|a| a.step == "write_planned" && a.detail["source"] == "gateway");
        let payment_created = rec
            .audit
            .iter()
            .position(|a| a.step == "document_created" && a.detail["type"] == "Payment");
        assert!(
            payment_planned.is_some() && payment_planned < payment_created,
            "order {id}: the payment's requestid was on record before its batch left"
        );
    }
    assert!(limiter::queue_is_empty(&mut w.host.inner).unwrap());
}

#[test]
fn payments_left_out_of_the_batch_answer_are_looked_up_and_not_posted_twice() {
    let mut w = World::new();
    let ids: Vec<u64> = (921..=926).collect();
    let held = queue_paid_orders(&mut w, &ids);
    for id in &ids {
        w.qbo
            .borrow_mut()
            .batch_unanswered
            .insert(format!("pay-{id}"));
    }
    free(&mut w, held);
    w.advance(1);
    w.retry_due();
    assert_eq!(w.qbo.borrow().batch_sizes, vec![ids.len(), ids.len()]);
    assert_eq!(
        w.qbo.borrow().payment_creates_accepted,
        ids.len(),
        "no second payment"
    );
    for id in &ids {
        let rec = w.record(*id);
        assert_eq!(rec.state, State::Posted, "order {id}");
        assert!(
            rec.audit.iter().any(|a| a.step == "document_adopted"),
            "order {id}: its payment was found in QuickBooks by its marker"
        );
    }
}

#[test]
fn a_payments_own_fault_fails_only_its_order_and_the_others_are_posted() {
    let mut w = World::new();
    let ids: Vec<u64> = (931..=934).collect();
    let held = queue_paid_orders(&mut w, &ids);
    w.qbo.borrow_mut().batch_item_faults.insert(
        "pay-932".to_string(),
        fault_body(
            "6000",
            "A business validation error has occurred",
            "ValidationFault",
        ),
    );
    free(&mut w, held);
    w.advance(1);
    w.retry_due();
    assert_eq!(w.qbo.borrow().batch_sizes, vec![ids.len(), ids.len()]);
    let rec = w.record(932);
    assert_eq!(rec.state, State::Failed, "a validation fault needs a human");
    assert!(rec.qbo_id.is_some(), "its invoice is posted and recorded");
    assert!(
        rec.pending.contains_key("gateway"),
        "its payment's requestid stays planned, so a replay looks before it writes"
    );
    for id in [931, 933, 934] {
        assert_eq!(w.record(id).state, State::Posted, "order {id}");
    }
    assert_eq!(w.qbo.borrow().payment_creates_accepted, ids.len() - 1);
}

#[test]
fn a_guard_entry_leaves_a_queued_order_to_the_queue_so_the_queue_batches_it_in_order() {
    let mut w = World::new();
    let ids: Vec<u64> = (941..=946).collect();
    let held = queue_orders(&mut w, &ids);
    // The webhooks' guard entries come due (30 s) while the orders still wait in the queue.
    w.advance(31);
    free(&mut w, held);
    w.clear_log();
    w.retry_due();
    assert_eq!(
        w.count("/invoice?"),
        0,
        "no guard entry ran its order on its own, ahead of the queue"
    );
    assert_eq!(w.qbo.borrow().batch_sizes, vec![ids.len()]);
    for id in &ids {
        assert_eq!(w.record(*id).state, State::Posted, "order {id}");
    }
    // The guards filed again find the orders posted: nothing more is written.
    w.advance(120);
    w.retry_due();
    assert_eq!(w.qbo.borrow().invoice_creates_accepted, ids.len());
}
