//! Deterministic tests of the order job, driven through the app's public entry points
//! (`router::handle` + `router::run`, `jobs::run::retry_due`, the admin routes) on a simulated clock,
//! against in-memory models of BigCommerce and QuickBooks Online (see `common`).

mod common;

use common::*;
use ml_core::sync::record::State;
use serde_json::{Value, json};

#[test]
fn a_created_order_posts_one_invoice_after_storing_the_rotated_token_sealed() {
    let mut w = world_with_order();
    let resp = w.deliver("store/order/created", ORDER, &hash(1));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));

    // Exactly the planned requests: one order read, one refresh, the company's tax settings
    // (tax mode `auto`; once per realm), name and customer resolution (no tax item: a US
    // company with automated sales tax takes the tax as an override), one customer create,
    // one invoice create.
    let reqs = w.requests();
    assert_eq!(
        labels(&w),
        [
            "bc order",
            "token",
            "query Preferences",
            "read companyinfo",
            "query Item",
            "query Item",
            "query Customer",
            "query Customer",
            "write customer",
            "write invoice"
        ],
        "{reqs:#?}"
    );
    assert!(
        reqs[0].starts_with(&format!(
            "GET {BC_BASE}/stores/{STORE_HASH}/v2/orders/{ORDER}?"
        )),
        "{}",
        reqs[0]
    );
    assert!(
        reqs[0].contains("include=consignments.line_items"),
        "{}",
        reqs[0]
    );
    assert!(
        reqs[0].contains("consignment_structure=object"),
        "{}",
        reqs[0]
    );
    assert_eq!(
        reqs[1],
        format!("POST {OAUTH_BASE}/oauth2/v1/tokens/bearer")
    );
    let create = reqs.last().unwrap();
    assert!(
        create.starts_with(&format!("POST {QBO_BASE}/v3/company/{REALM}/invoice?")),
        "{create}"
    );
    let rid = requestid_of(create);
    assert!(!rid.is_empty() && rid.len() <= 50, "requestid `{rid}`");

    // The record.
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted);
    let qbo_id = rec.qbo_id.clone().expect("qbo_id");
    assert_eq!(rec.qbo_sync_token.as_deref(), Some("0"));
    assert_eq!(rec.attempts, 1);
    assert_eq!(rec.last_error, None);
    let steps: Vec<&str> = rec.audit.iter().map(|a| a.step.as_str()).collect();
    assert_eq!(
        steps,
        [
            "received",
            "fetched",
            "mapped",
            "write_planned",
            "document_created",
            "posted"
        ]
    );
    assert_eq!(rec.audit[0].detail["scope"], json!("store/order/created"));
    assert_eq!(rec.audit[0].detail["hash"], json!(hash(1)));
    assert!(
        rec.audit[0].detail["created_at"].is_i64(),
        "the event time is on record"
    );
    assert_eq!(rec.audit[4].detail["qbo_id"], json!(qbo_id));
    assert_eq!(rec.audit[4].detail["requestid"], json!(rid));

    // What QuickBooks holds.
    {
        let q = w.qbo.borrow();
        assert_eq!(q.invoice_creates_accepted, 1);
        assert_eq!(q.customers.len(), 1);
        let inv = &q.invoices[&qbo_id];
        assert_eq!(inv["DocNumber"], json!(ORDER.to_string()));
        assert_eq!(inv["CustomerRef"]["value"], q.customers[0]["Id"]);
        assert!(
            inv["PrivateNote"]
                .as_str()
                .unwrap()
                .contains(&ORDER.to_string())
        );
    }

    // The rotated refresh token is in KV, sealed; no credential is in KV in plain text.
    let tokens = w.stored_tokens().expect("tokens stored");
    assert_eq!(
        tokens["refresh_token"],
        json!(w.qbo.borrow().latest_refresh())
    );
    let rotated = w.qbo.borrow().latest_refresh();
    for secret in [
        BOOTSTRAP_RT,
        rotated.as_str(),
        "AT0001accessTokenValue9",
        CLIENT_SECRET,
        BC_TOKEN,
        WEBHOOK_SECRET,
    ] {
        assert_eq!(
            w.kv_keys_containing(secret),
            Vec::<String>::new(),
            "plain-text credential in KV"
        );
    }
    // Order: token response → sealed token written → only then the invoice create.
    let ev = &w.host.events;
    let token_at = ev
        .iter()
        .position(|e| matches!(e, Event::Http(r) if r.contains("oauth.test")))
        .unwrap();
    let create_at = ev
        .iter()
        .position(|e| matches!(e, Event::Http(r) if r.contains("/invoice?")))
        .unwrap();
    let stored_at = ev
        .iter()
        .enumerate()
        .skip(token_at)
        .find(|(_, e)| **e == Event::KvWrite(TOKENS_KEY.into()))
        .map(|(i, _)| i)
        .expect("rotated token stored after the refresh");
    assert!(
        stored_at < create_at,
        "token stored at event {stored_at}, invoice created at {create_at}"
    );
    assert!(
        !ev[token_at + 1..stored_at]
            .iter()
            .any(|e| matches!(e, Event::Http(_))),
        "nothing was sent between the refresh and storing its rotated token"
    );

    // Steady state: a second order for the same customer costs one read and one write.
    let second = same_customer_order(&w, 102);
    w.put_order(102, second);
    w.advance(5);
    w.clear_log();
    let resp = w.deliver("store/order/created", 102, &hash(2));
    assert_eq!(resp.status, 200);
    assert_eq!(
        labels(&w),
        ["bc order", "write invoice"],
        "{:#?}",
        w.requests()
    );
    assert_eq!(w.record(102).state, State::Posted);
    assert_eq!(accepted_invoices(&w), 2);
    assert_eq!(
        w.qbo.borrow().customers.len(),
        1,
        "the customer link is reused"
    );
}

#[test]
fn duplicate_delivery_posts_one_invoice_and_unchanged_content_writes_nothing() {
    let mut w = world_with_order();
    w.deliver("store/order/created", ORDER, &hash(1));
    assert_eq!(w.record(ORDER).state, State::Posted);

    // The same delivery again: acknowledged, nothing fetched, nothing written.
    w.clear_log();
    let resp = w.deliver("store/order/created", ORDER, &hash(1));
    assert_eq!(resp.status, 200);
    assert_eq!(w.requests(), Vec::<String>::new());
    assert_eq!(
        w.steps(ORDER),
        [
            "received",
            "fetched",
            "mapped",
            "write_planned",
            "document_created",
            "posted"
        ]
    );

    // A different event, same order content: one read, no QuickBooks call at all.
    w.advance(10);
    w.clear_log();
    let resp = w.deliver("store/order/updated", ORDER, &hash(2));
    assert_eq!(resp.status, 200);
    assert_eq!(labels(&w), ["bc order"], "{:#?}", w.requests());
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted);
    let steps: Vec<&str> = rec.audit.iter().map(|a| a.step.as_str()).collect();
    assert_eq!(&steps[6..], ["received", "fetched", "mapped", "unchanged"]);
    assert_eq!(accepted_invoices(&w), 1);
    assert_eq!(w.qbo.borrow().invoice_updates_accepted, 0);
}

#[test]
fn an_updated_order_sparse_updates_the_same_invoice_and_recovers_from_a_stale_sync_token() {
    let mut w = world_with_order();
    w.deliver("store/order/created", ORDER, &hash(1));
    let qbo_id = w.record(ORDER).qbo_id.unwrap();

    w.edit_order(ORDER, |o| {
        o["customer_message"] = json!("Please leave at the back door")
    });
    w.advance(30);
    w.clear_log();
    w.deliver("store/order/updated", ORDER, &hash(2));
    assert_eq!(
        labels(&w),
        ["bc order", "write invoice"],
        "{:#?}",
        w.requests()
    );
    let update = &w.host.inner.requests[1];
    let body: Value = serde_json::from_slice(&update.body).unwrap();
    assert_eq!(body["Id"], json!(qbo_id));
    assert_eq!(body["SyncToken"], json!("0"));
    assert_eq!(body["sparse"], json!(true));
    assert_eq!(
        body["CustomerMemo"]["value"],
        json!("Please leave at the back door")
    );
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted);
    assert_eq!(rec.qbo_id.as_deref(), Some(qbo_id.as_str()));
    assert_eq!(rec.qbo_sync_token.as_deref(), Some("1"));
    assert_eq!(accepted_invoices(&w), 1, "no second invoice");
    assert_eq!(w.qbo.borrow().invoice_updates_accepted, 1);

    // Someone edits the invoice in QuickBooks: the next update meets 5010, re-reads, retries.
    w.qbo.borrow_mut().edit_in_quickbooks(&qbo_id);
    w.edit_order(ORDER, |o| o["customer_message"] = json!("Ring twice"));
    w.advance(30);
    w.clear_log();
    w.deliver("store/order/updated", ORDER, &hash(3));
    assert_eq!(
        labels(&w),
        ["bc order", "write invoice", "read invoice", "write invoice"],
        "{:#?}",
        w.requests()
    );
    let retried: Value = serde_json::from_slice(&w.host.inner.requests[3].body).unwrap();
    assert_eq!(
        retried["SyncToken"],
        json!("2"),
        "the retry uses the SyncToken just read"
    );
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted);
    assert_eq!(rec.qbo_sync_token.as_deref(), Some("3"));
    assert!(rec.audit.iter().any(|a| a.step == "stale_sync_token"));
    assert_eq!(accepted_invoices(&w), 1);
    assert_eq!(
        w.qbo.borrow().invoices[&qbo_id]["CustomerMemo"]["value"],
        json!("Ring twice")
    );
}

#[test]
fn an_incomplete_order_is_skipped_until_a_later_event_completes_it() {
    let mut w = world_with_order();
    w.edit_order(ORDER, |o| {
        o["status_id"] = json!(0);
        o["status"] = json!("Incomplete");
    });
    w.deliver("store/order/created", ORDER, &hash(1));
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Skipped);
    assert!(
        rec.reason.as_deref().unwrap().contains("status 0"),
        "{:?}",
        rec.reason
    );
    assert_eq!(labels(&w), ["bc order"], "nothing asked of QuickBooks");

    w.edit_order(ORDER, |o| {
        o["status_id"] = json!(11);
        o["status"] = json!("Awaiting Fulfillment");
    });
    w.advance(120);
    w.deliver("store/order/statusUpdated", ORDER, &hash(2));
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted);
    assert_eq!(accepted_invoices(&w), 1);
    let steps: Vec<&str> = rec.audit.iter().map(|a| a.step.as_str()).collect();
    assert_eq!(
        steps,
        [
            "received",
            "fetched",
            "skipped",
            "received",
            "fetched",
            "mapped",
            "write_planned",
            "document_created",
            "posted"
        ]
    );
}

#[test]
fn an_unknown_item_name_fails_with_what_to_do() {
    let mut w = world_with_order();
    w.qbo
        .borrow_mut()
        .unknown_names
        .insert("Shipping Income".into());
    w.deliver("store/order/created", ORDER, &hash(1));
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Failed);
    assert_eq!(rec.reason.as_deref(), Some("mapping"));
    let err = rec.last_error.unwrap();
    assert!(
        err.contains(
            "Item 'Shipping Income' not found in QuickBooks: create it or change the mapping"
        ),
        "{err}"
    );
    assert_eq!(matching(&w, "POST /invoice?"), Vec::<String>::new());
    assert_eq!(
        w.qbo.borrow().customers.len(),
        0,
        "no customer created for an order that cannot map"
    );
}

#[test]
fn replay_of_an_order_whose_invoice_was_deleted_in_quickbooks_recreates_it_once() {
    let mut w = world_with_order();
    w.deliver("store/order/created", ORDER, &hash(1));
    let old = w.record(ORDER).qbo_id.unwrap();
    let first_rid = requestid_of(&matching(&w, "POST /invoice?")[0]);
    w.qbo.borrow_mut().invoices.remove(&old);

    w.advance(60);
    w.clear_log();
    let resp = w.admin("POST", &format!("/admin/replay/order/{ORDER}"));
    assert_eq!(resp.status, 200);
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted);
    let new = rec.qbo_id.clone().unwrap();
    assert_ne!(new, old);
    let recreating = rec
        .audit
        .iter()
        .find(|a| a.step == "recreating")
        .expect("the audit says it was recreated");
    assert_eq!(recreating.detail["deleted_qbo_id"], json!(old));
    let creates = matching(&w, "POST /invoice?");
    assert_eq!(creates.len(), 1);
    assert_ne!(
        requestid_of(&creates[0]),
        first_rid,
        "a new requestid, or QuickBooks would replay the old answer"
    );
    assert_eq!(accepted_invoices(&w), 2);
    assert_eq!(w.qbo.borrow().invoices.len(), 1);

    // Replaying again only re-checks.
    w.clear_log();
    w.admin("POST", &format!("/admin/replay/order/{ORDER}"));
    assert_eq!(accepted_invoices(&w), 2);
    assert_eq!(w.record(ORDER).qbo_id.as_deref(), Some(new.as_str()));
}

#[test]
fn a_display_name_taken_in_quickbooks_gets_the_next_candidate_and_never_fails() {
    let mut w = world_with_order();
    let order = w.bc.borrow().orders[&ORDER].clone();
    let b = &order["billing_address"];
    let s = |k: &str| b[k].as_str().unwrap_or_default().to_string();
    let candidates = ml_core::books::customer::display_name_candidates(
        &s("first_name"),
        &s("last_name"),
        &s("company"),
        &s("email"),
        order["customer_id"].as_u64(),
    );
    assert!(candidates.len() >= 2, "{candidates:?}");
    w.qbo.borrow_mut().customers.push(json!({"Id": "7", "SyncToken": "0", "DisplayName": candidates[0],
                                              "PrimaryEmailAddr": {"Address": "someone.else@example.net"}}));
    w.deliver("store/order/created", ORDER, &hash(1));
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted, "{:?}", rec.last_error);
    let q = w.qbo.borrow();
    assert_eq!(q.customers.len(), 2);
    assert_eq!(q.customers[1]["DisplayName"], json!(candidates[1]));
    let inv = q.invoices.values().next().unwrap();
    assert_eq!(inv["CustomerRef"]["value"], q.customers[1]["Id"]);
    assert_ne!(
        inv["CustomerRef"]["value"],
        json!("7"),
        "not the other person's customer"
    );
}

/// Invoice total as QuickBooks computes it from the lines the connector sent.
fn invoice_total(inv: &Value) -> rust_decimal::Decimal {
    use rust_decimal::Decimal;
    let amount = |l: &Value| -> Decimal {
        match &l["Amount"] {
            Value::String(s) => s.parse().unwrap(),
            Value::Number(n) => n.to_string().parse().unwrap(),
            other => panic!("Amount {other}"),
        }
    };
    let mut total = Decimal::ZERO;
    for l in inv["Line"].as_array().unwrap() {
        match l["DetailType"].as_str().unwrap() {
            "SalesItemLineDetail" => total += amount(l),
            "DiscountLineDetail" => total -= amount(l),
            _ => {}
        }
    }
    if let Some(t) = inv.pointer("/TxnTaxDetail/TotalTax") {
        total += match t {
            Value::String(s) => s.parse::<Decimal>().unwrap(),
            n => n.to_string().parse::<Decimal>().unwrap(),
        };
    }
    total
}

#[test]
fn generated_order_shapes_each_post_one_invoice_that_totals_to_the_cent() {
    let mut w = World::new();
    let shapes = ml_sim::bigcommerce::shapes(16, 11);
    for (n, shape) in shapes.iter().enumerate() {
        let id = 7000 + n as u64;
        w.put_order(id, order_json(id, shape));
        w.deliver("store/order/created", id, &hash(1000 + n as u32));
        let rec = w.record(id);
        assert_eq!(
            rec.state,
            State::Posted,
            "order {id} {shape:?}: {:?}",
            rec.last_error
        );
        let q = w.qbo.borrow();
        let inv = &q.invoices[rec.qbo_id.as_deref().unwrap()];
        let expected: rust_decimal::Decimal = w.bc.borrow().orders[&id]["total_inc_tax"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            invoice_total(inv),
            expected.round_dp(2),
            "order {id} {shape:?}"
        );
        assert_eq!(inv["DocNumber"], json!(id.to_string()));
        drop(q);
        w.advance(1);
    }
    assert_eq!(accepted_invoices(&w), 16);
    assert_eq!(w.count("oauth.test"), 1, "one refresh for the whole run");
}

#[test]
fn a_backslash_in_the_shoppers_name_or_email_still_posts_the_order() {
    for guest in [false, true] {
        let mut w = World::new();
        let mut shape = plain_shape(3);
        shape.guest = guest;
        let mut order = order_json(ORDER, &shape);
        order["billing_address"]["first_name"] = json!("Jo\\hn");
        order["billing_address"]["last_name"] = json!("O\\Brien");
        order["billing_address"]["company"] = json!("");
        order["billing_address"]["email"] = json!("jo\\hn@example.com");
        w.put_order(ORDER, order);
        w.deliver("store/order/created", ORDER, &hash(1));
        let rec = w.record(ORDER);
        assert_eq!(
            rec.state,
            State::Posted,
            "guest {guest}: {:?}",
            rec.last_error
        );
        assert_eq!(accepted_invoices(&w), 1);
    }
}
