//! The KV store stays bounded on Spin's KV (no key listing): consumed due entries, resumed
//! parked slots and unused OAuth states are deleted as the connector goes, so a long run adds
//! a fixed number of keys per order and nothing per minute, retry or event.

mod common;

use std::collections::BTreeMap;

use common::*;
use ml_core::http::Request;
use ml_core::sync::record::State;

/// What kind of key this is: its path with every number replaced by `#` (and OAuth state
/// hashes by `*`).
fn kind(key: &str) -> String {
    key.split('/')
        .map(|part| {
            if !part.is_empty() && part.chars().all(|c| c.is_ascii_digit() || c == '-') {
                "#".to_string()
            } else if part.len() >= 32 && part.chars().all(|c| c.is_ascii_hexdigit()) {
                "*".to_string()
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn kinds(w: &World) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for k in w.host.inner.kv.keys() {
        *out.entry(kind(k)).or_default() += 1;
    }
    out
}

/// Runs `orders` orders (ids from `first`) through webhooks and scheduler ticks: every fifth
/// one fails once first (a QuickBooks 500, retried), every third one is updated once after it
/// posted, and the scheduler ticks every 15 s, as the harness does.
fn run_orders(w: &mut World, first: u64, orders: u64) {
    for id in first..first + orders {
        let mut shape = plain_shape(id);
        shape.guest = id % 4 == 0;
        w.put_order(id, order_json(id, &shape));
        if id % 5 == 0 {
            w.qbo
                .borrow_mut()
                .faults
                .push_back(("POST /invoice?".into(), Fault::ServerError));
        }
        w.deliver("store/order/created", id, &hash(id as u32));
        if id % 3 == 0 {
            w.advance(5);
            w.edit_order(id, |o| {
                o["customer_message"] = serde_json::json!("gift wrap please")
            });
            w.deliver("store/order/updated", id, &hash(1_000_000 + id as u32));
        }
        w.advance(15);
        w.retry_due();
    }
    // Let every retry and guard entry come due and be handled.
    for _ in 0..12 {
        w.advance(15);
        w.retry_due();
    }
    for id in first..first + orders {
        assert_eq!(
            w.record(id).state,
            State::Posted,
            "order {id}: {:?}",
            w.steps(id)
        );
    }
}

#[test]
fn keys_per_order_stay_constant_over_five_hundred_orders() {
    let mut w = World::new();
    run_orders(&mut w, 1, 100);
    let after_100 = kinds(&w);
    let total_100: usize = after_100.values().sum();
    run_orders(&mut w, 101, 400);
    let after_500 = kinds(&w);
    let total_500: usize = after_500.values().sum();

    // QuickBooks' window keeps a mark per second that had requests, in a ring of 128 keys.
    let marks = "pace/qbo/mark/#";
    assert!(
        after_500.get(marks).copied().unwrap_or(0) <= 128,
        "{after_500:#?}"
    );
    // Only per-order keys grew, each by exactly one per order.
    let mut grew = BTreeMap::new();
    for (k, n) in after_500.iter().filter(|(k, _)| *k != marks) {
        let before = after_100.get(k).copied().unwrap_or(0);
        if *n != before {
            grew.insert(k.clone(), n - before);
        }
    }
    let expected: BTreeMap<String, usize> = [
        ("lease/order/#".to_string(), 400),
        ("log/records/#".to_string(), 400),
        ("rec/order/#".to_string(), 400),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        grew, expected,
        "keys that grew from 100 to 500 orders (before: {after_100:#?}, after: {after_500:#?})"
    );
    let per_order = (total_500 - total_100) / 400;
    println!(
        "KV keys: {total_100} after 100 orders, {total_500} after 500 ({per_order} per order)"
    );
    assert_eq!(per_order, 3);
    assert!(
        after_500.get("due/#/#").copied().unwrap_or(0) <= 2,
        "consumed due entries are deleted: {after_500:#?}"
    );
}

#[test]
fn unused_connect_links_do_not_pile_up() {
    let mut w = World::new();
    w.set_config(
        "qbo_redirect_uri",
        "https://connector.example/oauth/quickbooks/callback",
    );
    for _ in 0..200 {
        let resp = w.request(Request {
            method: "GET".into(),
            path_and_query: "/oauth/quickbooks/connect".into(),
            headers: vec![("authorization".into(), format!("Bearer {ADMIN_TOKEN}"))],
            body: Vec::new(),
        });
        assert_eq!(resp.status, 302);
        w.advance(60);
    }
    let states = w
        .host
        .inner
        .kv
        .keys()
        .filter(|k| k.starts_with("oauth/state/"))
        .count();
    assert!(
        states <= 20,
        "at most 20 connect links are kept, found {states}"
    );
    let all = w.host.inner.kv.len();
    assert!(
        all <= 60,
        "{all} keys after 200 connect links: {:#?}",
        kinds(&w)
    );
}
