//! The order job's store facts (CONTRACT §11): the invoice is dated in the store's time zone,
//! from `store_timezone` or the store's own setting (read once, then cached); a zone that does
//! not parse fails the order naming what to set.

mod common;

use common::*;
use ml_core::sync::record::State;

/// An order created at 03:30 UTC on 15 March 2025: 20:30 on the 14th in California.
fn evening_order(w: &mut World, id: u64) {
    let mut o = order_json(id, &plain_shape(3));
    o["date_created"] = serde_json::json!("Sat, 15 Mar 2025 03:30:00 +0000");
    w.put_order(id, o);
}

fn txn_date(w: &World) -> String {
    let qbo = w.qbo.borrow();
    let inv = qbo.invoices.values().next().expect("an invoice");
    inv["TxnDate"].as_str().unwrap_or_default().to_string()
}

#[test]
fn the_store_timezone_variable_dates_an_evening_order_in_california_on_its_own_day() {
    let mut w = World::new();
    w.set_config("store_timezone", "America/Los_Angeles");
    evening_order(&mut w, 301);
    w.deliver("store/order/created", 301, &hash(1));
    assert_eq!(w.record(301).state, State::Posted);
    assert_eq!(txn_date(&w), "2025-03-14");
    assert_eq!(
        w.bc.borrow().store_reads,
        0,
        "the variable wins: no store read"
    );
}

#[test]
fn without_the_variable_the_stores_own_zone_is_read_once_and_cached() {
    let mut w = World::new();
    w.set_config("store_timezone", "");
    w.bc.borrow_mut().store_timezone = "America/Los_Angeles".into();
    evening_order(&mut w, 302);
    evening_order(&mut w, 303);
    w.deliver("store/order/created", 302, &hash(1));
    w.deliver("store/order/created", 303, &hash(2));
    assert_eq!(w.record(302).state, State::Posted);
    assert_eq!(w.record(303).state, State::Posted);
    assert_eq!(txn_date(&w), "2025-03-14");
    assert_eq!(w.bc.borrow().store_reads, 1, "read once for both orders");
}

#[test]
fn a_zone_that_does_not_parse_fails_the_order_naming_it_and_posts_nothing() {
    let mut w = World::new();
    w.set_config("store_timezone", "Pacific Standard Time");
    evening_order(&mut w, 304);
    w.deliver("store/order/created", 304, &hash(1));
    let rec = w.record(304);
    assert_eq!(rec.state, State::Failed);
    let err = serde_json::to_string(&rec.last_error).unwrap();
    assert!(err.contains("Pacific Standard Time"), "{err}");
    assert!(err.contains("store_timezone"), "{err}");
    assert!(w.qbo.borrow().invoices.is_empty(), "nothing posted");

    // The store's own setting, when unusable, says the same.
    let mut w = World::new();
    w.set_config("store_timezone", "");
    w.bc.borrow_mut().store_timezone = "Mars/Olympus".into();
    evening_order(&mut w, 305);
    w.deliver("store/order/created", 305, &hash(1));
    let rec = w.record(305);
    assert_eq!(rec.state, State::Failed);
    let err = serde_json::to_string(&rec.last_error).unwrap();
    assert!(
        err.contains("Mars/Olympus") && err.contains("store_timezone"),
        "{err}"
    );
}
