//! What one order costs: upstream calls and key-value round trips (CONTRACT §7: an unpaid
//! order of a linked customer is one BigCommerce read and one QuickBooks write).

mod common;

use common::*;
use ml_core::host::Host;
use ml_core::jobs::run::{self, Trigger};
use ml_core::sync::record::{Entity, State};
use ml_core::sync::resolve;
use ml_core::sync::store::{self, EventRef};
use ml_sim::bigcommerce::generate;
use serde_json::{Value, json};

/// The contract's group rule: orders of group 2 go on the Wholesale class.
const GROUP_MAPPING: &str = r#"{"version": 1, "invoice": {"default_item": "BigCommerce Sales",
  "rules": [{"match": {"customer_group_id": 2}, "class": "Wholesale"}],
  "shipping": {"item": "Shipping Income"}, "tax": {"mode": "line", "item": "Sales Tax Collected"}}}"#;

/// Order `id` of the registered buyer of order `first`.
fn order_for(w: &World, first: u64, id: u64) -> Value {
    let base = w.bc.borrow().orders[&first].clone();
    let mut o = order_json(id, &plain_shape(1));
    o["customer_id"] = base["customer_id"].clone();
    o["billing_address"] = base["billing_address"].clone();
    o
}

/// A world whose BigCommerce knows order 101's buyer (group 2), with the group mapping.
fn group_world() -> (World, u64) {
    let mut w = World::new();
    w.set_config("mapping", GROUP_MAPPING);
    let g = generate(101, &plain_shape(1));
    let mut customer = g.customer.expect("a registered buyer");
    customer["customer_group_id"] = json!(2);
    let cid = customer["id"].as_u64().unwrap();
    w.bc.borrow_mut().customers.insert(cid, customer);
    w.put_order(101, g.order);
    (w, cid)
}

fn customer_reads(w: &World) -> usize {
    w.count("/v3/customers")
}

/// Item queries for `name` sent to QuickBooks (answered or not).
fn item_queries(w: &World, name: &str) -> usize {
    w.requests()
        .iter()
        .filter_map(|r| r.split("query=").nth(1))
        .filter_map(|q| {
            form_urlencoded::parse(format!("q={q}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        })
        .filter(|s| s.contains("FROM Item") && s.contains(&format!("'{name}'")))
        .count()
}

#[test]
fn a_returning_customers_order_trusts_the_stored_group_and_reads_only_the_order() {
    let (mut w, _) = group_world();
    w.deliver("store/order/created", 101, &hash(1));
    assert_eq!(w.record(101).state, State::Posted);
    assert_eq!(
        customer_reads(&w),
        1,
        "the first order reads the group once"
    );

    let o = order_for(&w, 101, 102);
    w.put_order(102, o);
    w.advance(5);
    w.clear_log();
    w.deliver("store/order/created", 102, &hash(2));
    assert_eq!(w.record(102).state, State::Posted);
    assert_eq!(customer_reads(&w), 0, "{:#?}", w.requests());
    assert_eq!(w.count("bc.test"), 1, "one BigCommerce read: the order");
    assert_eq!(w.count("POST /invoice?"), 1);
    assert_eq!(w.count("qbo.test"), 1, "one QuickBooks call: the invoice");
    let inv = w.qbo.borrow().invoices.values().last().cloned().unwrap();
    assert!(
        inv.to_string().contains("ClassRef"),
        "the group rule still applies: {inv}"
    );
}

#[test]
fn a_customer_webhook_stores_the_group_so_the_first_order_needs_no_customer_read() {
    let (mut w, cid) = group_world();
    let ev = EventRef {
        scope: "store/customer/updated".into(),
        hash: hash(9),
        created_at: None,
    };
    run::sync(
        &mut w.host,
        Entity::Customer,
        &cid.to_string(),
        Trigger::Event(ev),
    )
    .unwrap();
    assert_eq!(customer_reads(&w), 1, "the customer job reads its customer");
    w.clear_log();
    w.deliver("store/order/created", 101, &hash(1));
    assert_eq!(w.record(101).state, State::Posted);
    assert_eq!(customer_reads(&w), 0, "{:#?}", w.requests());

    // The group changes in BigCommerce; its webhook updates what orders use.
    w.bc.borrow_mut().customers.get_mut(&cid).unwrap()["customer_group_id"] = json!(1);
    let ev = EventRef {
        scope: "store/customer/updated".into(),
        hash: hash(10),
        created_at: None,
    };
    w.advance(5);
    run::sync(
        &mut w.host,
        Entity::Customer,
        &cid.to_string(),
        Trigger::Event(ev),
    )
    .unwrap();
    let cached: store::CustomerGroup =
        store::cache_get(&mut w.host, &store::customer_group_key(cid))
            .unwrap()
            .unwrap();
    assert_eq!(cached.group, 1);
}

#[test]
fn a_job_that_finds_a_name_being_looked_up_waits_for_that_answer_instead_of_querying_it_too() {
    let mut w = World::new();
    w.put_order(101, order_json(101, &plain_shape(1)));
    // Another worker is looking up the default item right now: it holds the name's marker…
    let key = resolve::cache_key(REALM, "item", "BigCommerce Sales");
    let marker = format!("lease/{key}");
    store::try_acquire(&mut w.host, &marker, 20_000)
        .unwrap()
        .expect("the other worker's marker");
    // …and answers a moment later (its answer lands in the cache while this job waits).
    let mut answered = false;
    let k = key.clone();
    w.host.inner.on_sleep(move |h| {
        if !answered && !h.kv.contains_key(&k) {
            answered = true;
            h.kv_set(&k, br#"{"id":"77","name":"BigCommerce Sales"}"#)
                .unwrap();
        }
    });
    w.deliver("store/order/created", 101, &hash(1));
    assert_eq!(w.record(101).state, State::Posted, "{:?}", w.steps(101));
    assert_eq!(
        item_queries(&w, "BigCommerce Sales"),
        0,
        "never queried twice"
    );
    let inv = w.qbo.borrow().invoices.values().next().cloned().unwrap();
    assert_eq!(
        inv["Line"][0]["SalesItemLineDetail"]["ItemRef"]["value"], "77",
        "{inv}"
    );
    // Every other name was looked up once, by this job.
    assert_eq!(item_queries(&w, "Shipping Income"), 1);
}

#[test]
fn a_name_whose_look_up_was_throttled_is_not_looked_up_again_by_everyone() {
    let mut w = World::new();
    for id in [101, 102, 103] {
        w.put_order(id, order_json(id, &plain_shape(id)));
    }
    // The first look-up of the default item is answered 429.
    w.qbo.borrow_mut().faults.push_back((
        "BigCommerce%20Sales".into(),
        Fault::Status(
            429,
            json!({"fault": {"error": [{"message": "ThrottleExceeded", "code": "003001"}], "type": "SERVICE"}}),
        ),
    ));
    w.deliver("store/order/created", 101, &hash(1));
    assert_eq!(w.record(101).state, State::Retrying);
    // While that marker stands, the other orders wait for it, then retry later: none of them
    // repeats the look-up QuickBooks just throttled.
    w.deliver("store/order/created", 102, &hash(2));
    w.deliver("store/order/created", 103, &hash(3));
    assert_eq!(
        item_queries(&w, "BigCommerce Sales"),
        1,
        "{:#?}",
        w.requests()
    );
    // 102 and 103 either waited for the marker and retry later, or were queued by the limiter's
    // pause after the 429 (`sync::limiter`): neither posted nor failed.
    for id in [102, 103] {
        assert!(
            matches!(w.record(id).state, State::Retrying | State::Pending),
            "{:?}",
            w.record(id).state
        );
    }
    // Later every order posts, with one more look-up in all.
    for _ in 0..6 {
        w.advance(60);
        w.retry_due();
    }
    for id in [101, 102, 103] {
        assert_eq!(
            w.record(id).state,
            State::Posted,
            "order {id}: {:?}",
            w.steps(id)
        );
    }
    assert_eq!(item_queries(&w, "BigCommerce Sales"), 2);
}

#[test]
fn a_returning_customers_unpaid_order_costs_at_most_12_key_value_round_trips() {
    let mut w = World::new();
    w.put_order(101, order_json(101, &plain_shape(1)));
    w.deliver("store/order/created", 101, &hash(1));
    let o = order_for(&w, 101, 102);
    w.put_order(102, o);
    w.advance(5);
    w.clear_log();
    w.deliver("store/order/created", 102, &hash(2));
    assert_eq!(w.record(102).state, State::Posted);
    // The record read back above is the test's, not the job's.
    w.host.kv_ops.pop();
    // The shared QuickBooks limiter's keys (`pace/` counters, `limit/` slots and pauses,
    // `wait/` queue) are counted apart: they are what keeps a burst inside QuickBooks' limits.
    // A read or write of many keys at once is one round trip, counted where its first key
    // belongs.
    let limiter =
        |k: &str| k.starts_with("pace/") || k.starts_with("limit/") || k.starts_with("wait/");
    let limiter_ops = w
        .host
        .kv_ops
        .iter()
        .filter(|(_, k)| !k.starts_with("pace/") && limiter(k))
        .count();
    assert!(
        limiter_ops <= 5,
        "{limiter_ops} limiter round trips: {:#?}",
        w.host.kv_ops
    );
    let ops: Vec<String> = w
        .host
        .kv_ops
        .iter()
        .filter(|(_, k)| !limiter(k))
        .map(|(op, k)| format!("{op} {k}"))
        .collect();
    // 23 before the record and admission's keys, and the mapping's, were read ahead in one
    // round trip each (`wasi:keyvalue/batch`'s `get-many`); 17 while a lease swapped in as a
    // little-endian counter was still read back; 16 while `pending` was counted; 14 while a
    // new record's listing slot and the record, and the slot and the lease given back, were
    // written one by one (`set-many`).
    assert!(ops.len() <= 12, "{} round trips: {ops:#?}", ops.len());
    let written_together = |a: &str, b: &str| {
        w.host
            .kv_ops
            .iter()
            .any(|(op, k)| *op == "set_many" && k.contains(a) && k.contains(b))
    };
    assert!(
        written_together("log/records/", "rec/order/102"),
        "{ops:#?}"
    );
    assert!(
        written_together("limit/qbo/slot/", "lease/order/102"),
        "{:#?}",
        w.host.kv_ops
    );
    let reads_of = |key: &str| {
        ops.iter()
            .filter(|o| {
                o.strip_prefix("get ").is_some_and(|k| k.starts_with(key))
                    || o.strip_prefix("get_many ")
                        .is_some_and(|ks| ks.split(',').any(|k| k.starts_with(key)))
            })
            .count()
    };
    // Nothing is read twice in one job.
    for once in [
        "rec/order/102",
        "config/mapping",
        "cred/qbo/tokens",
        "link/customer/",
    ] {
        assert_eq!(reads_of(once), 1, "{once}: {ops:#?}");
    }
    // What mapping reads is one round trip: the mapping, the credentials, the realm's
    // cached names and company facts (tax mode `auto`), the customer's link.
    let mapping_reads: Vec<&String> = ops
        .iter()
        .filter(|o| o.starts_with("get_many config/mapping"))
        .collect();
    assert_eq!(mapping_reads.len(), 1, "{ops:#?}");
    for key in ["cred/qbo/tokens", "/names", "/company", "link/customer/"] {
        assert!(mapping_reads[0].contains(key), "{key}: {ops:#?}");
    }
    for single in ["/names", "/company", "cred/qbo/"] {
        assert!(
            !ops.iter()
                .any(|o| o.starts_with("get ") && o.contains(single)),
            "{single} read on its own: {ops:#?}"
        );
    }
}

#[test]
fn a_retried_invoice_write_reuses_the_order_its_failed_run_read() {
    let mut w = World::new();
    w.put_order(101, order_json(101, &plain_shape(1)));
    w.qbo
        .borrow_mut()
        .faults
        .push_back(("POST /invoice?".into(), Fault::ServerError));
    w.deliver("store/order/created", 101, &hash(1));
    assert_eq!(w.record(101).state, State::Retrying);
    assert_eq!(w.count("bc.test"), 1);
    for _ in 0..4 {
        w.advance(60);
        w.retry_due();
    }
    assert_eq!(w.record(101).state, State::Posted, "{:?}", w.steps(101));
    assert_eq!(
        w.count("bc.test"),
        1,
        "the retry read nothing from BigCommerce"
    );
    assert_eq!(w.count("POST /invoice?"), 2);
    assert_eq!(w.qbo.borrow().invoice_creates_accepted, 1);
    assert!(
        w.kv_keys_containing("consignments")
            .iter()
            .all(|k| !k.starts_with("keep/")),
        "the kept order is dropped once posted"
    );
}

#[test]
fn an_order_changed_while_its_write_waits_for_a_retry_is_read_again() {
    let mut w = World::new();
    w.put_order(101, order_json(101, &plain_shape(1)));
    w.qbo
        .borrow_mut()
        .faults
        .push_back(("POST /invoice?".into(), Fault::ServerError));
    w.deliver("store/order/created", 101, &hash(1));
    assert_eq!(w.record(101).state, State::Retrying);
    // The shopper's order changes; its webhook arrives while the record waits.
    w.edit_order(101, |o| o["customer_message"] = json!("ring twice"));
    w.advance(5);
    w.deliver("store/order/updated", 101, &hash(2));
    for _ in 0..4 {
        w.advance(60);
        w.retry_due();
    }
    assert_eq!(w.record(101).state, State::Posted, "{:?}", w.steps(101));
    assert_eq!(w.count("bc.test"), 2, "the retry read the changed order");
    let inv = w.qbo.borrow().invoices.values().next().cloned().unwrap();
    assert!(inv.to_string().contains("ring twice"), "{inv}");
}

#[test]
fn checking_forty_webhooks_guard_entries_costs_a_handful_of_key_value_round_trips() {
    let mut w = World::new();
    w.put_order(101, order_json(101, &plain_shape(1)));
    w.deliver("store/order/created", 101, &hash(1));
    for id in 102..=141 {
        let o = order_for(&w, 101, id);
        w.put_order(id, o);
        w.deliver("store/order/created", id, &hash(id as u32));
        assert_eq!(w.record(id).state, State::Posted);
    }
    // The guard entries come due 30 s after their webhooks; the scheduler finds every order
    // handled by its own worker.
    w.advance(45);
    w.retry_due();
    w.clear_log();
    w.advance(1);
    w.retry_due();
    let before = w.host.kv_ops.len();
    assert!(before < 40, "the quiet call is cheap: {:#?}", w.host.kv_ops);
    w.clear_log();
    // Same again with the 41 guards filed anew (a second event per order), all due now.
    for id in 101..=141 {
        w.deliver("store/order/updated", id, &hash(1000 + id as u32));
    }
    w.advance(45);
    w.clear_log();
    w.retry_due();
    let due_ops: Vec<String> = w
        .host
        .kv_ops
        .iter()
        .filter(|(_, k)| k.starts_with("due/") || k.starts_with("rec/") || k.starts_with("cred/"))
        .map(|(op, k)| format!("{op} {k}"))
        .collect();
    // The cursor, the minutes' ends, the entries, the records, the connection's state, the
    // done marks and their deletes: no round trip per entry.
    assert!(
        due_ops.len() <= 16,
        "{} round trips: {due_ops:#?}",
        due_ops.len()
    );
    assert!(
        !due_ops.iter().any(|o| o.starts_with("get rec/")),
        "records are read together: {due_ops:#?}"
    );
    // Every entry was marked done and deleted: a later call reads none of them.
    let left = w
        .host
        .inner
        .kv
        .keys()
        .filter(|k| {
            k.starts_with("due/")
                && k.matches('/').count() == 2
                && !k.ends_with("/n")
                && !k.ends_with("/done")
        })
        .count();
    assert_eq!(left, 0);
}
