//! Deterministic tests of the order job, driven through the app's public entry points
//! (`router::handle` + `router::run`, `jobs::run::retry_due`, the admin routes) on a simulated clock,
//! against in-memory models of BigCommerce and QuickBooks Online (see `common`).

mod common;

use common::*;
use ml_core::http::Request;
use ml_core::sync::connection;
use ml_core::sync::record::State;
use serde_json::{Value, json};

const ORDER: u64 = 101;

/// Labels a request by what it is for, so sequences read like the job's plan.
fn label(req: &str) -> String {
    if req.contains("bc.test") {
        return "bc order".into();
    }
    if req.contains("oauth.test") {
        return "token".into();
    }
    if let Some(q) = req.split("query=").nth(1) {
        let stmt: String = form_urlencoded::parse(format!("q={q}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let entity = stmt.split_whitespace().nth(3).unwrap_or("?").to_string();
        return format!("query {entity}");
    }
    let path = req.split("/v3/company/").nth(1).unwrap_or(req);
    let path = path.split('?').next().unwrap_or(path);
    let entity = path.split('/').nth(1).unwrap_or("?");
    let method = req.split(' ').next().unwrap_or("?");
    match (method, path.split('/').count()) {
        ("POST", _) => format!("write {entity}"),
        (_, 3) => format!("read {entity}"),
        _ => format!("{method} {entity}"),
    }
}

fn labels(w: &World) -> Vec<String> {
    w.requests().iter().map(|r| label(r)).collect()
}

fn requestid_of(req: &str) -> String {
    req.split("requestid=")
        .nth(1)
        .unwrap_or_default()
        .split('&')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Requests matching `needle`, as `"METHOD url"`.
fn matching(w: &World, needle: &str) -> Vec<String> {
    let (method, rest) = needle.split_once(' ').unwrap_or(("", needle));
    w.requests()
        .into_iter()
        .filter(|r| r.starts_with(method) && r.contains(rest))
        .collect()
}

fn world_with_order() -> World {
    let mut w = World::new();
    w.put_order(ORDER, order_json(ORDER, &plain_shape(1)));
    w
}

/// An order for the same BigCommerce customer as `ORDER`.
fn same_customer_order(w: &World, id: u64) -> Value {
    let first = w.bc.borrow().orders[&ORDER].clone();
    let mut o = order_json(id, &plain_shape(1));
    o["customer_id"] = first["customer_id"].clone();
    o["billing_address"] = first["billing_address"].clone();
    o
}

fn accepted_invoices(w: &World) -> usize {
    w.qbo.borrow().invoice_creates_accepted
}

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
fn a_bigcommerce_404_fails_as_not_found_and_is_never_retried() {
    let mut w = World::new();
    w.deliver("store/order/created", 404, &hash(1));
    let rec = w.record(404);
    assert_eq!(rec.state, State::Failed);
    assert_eq!(rec.reason.as_deref(), Some("not_found"));
    assert_eq!(rec.next_attempt_at, None);
    assert!(
        rec.last_error.as_deref().unwrap().contains("What to do"),
        "{:?}",
        rec.last_error
    );
    assert_eq!(labels(&w), ["bc order"]);
    let steps: Vec<&str> = rec.audit.iter().map(|a| a.step.as_str()).collect();
    assert_eq!(steps, ["received", "attempt_failed"]);
    assert_eq!(rec.audit[1].detail["status"], json!(404));
    assert_eq!(rec.audit[1].detail["retryable"], json!(false));

    for _ in 0..3 {
        w.advance(3600);
        w.retry_due();
    }
    assert_eq!(w.count("bc.test"), 1, "a 404 is not retried");
    assert_eq!(w.record(404).state, State::Failed);
}

#[test]
fn a_bigcommerce_429_waits_for_the_reset_time_then_posts_once() {
    let mut w = world_with_order();
    let mut limited = ml_core::http::HttpResponse::json(
        429,
        &json!({"status": 429, "title": "Too many requests"}),
    );
    limited
        .headers
        .push(("X-Rate-Limit-Time-Reset-Ms".into(), "15000".into()));
    w.host.inner.once("bc.test", Ok(limited));
    w.deliver("store/order/created", ORDER, &hash(1));
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Retrying);
    assert_eq!(rec.reason.as_deref(), Some("rate_limited"));
    let next = rec.next_attempt_at.expect("next_attempt_at");
    assert!(
        next >= t0() + chrono::Duration::seconds(15),
        "next attempt at {next}"
    );
    assert_eq!(labels(&w), ["bc order"]);

    // Before the reset: nothing happens.
    w.advance(10);
    w.clear_log();
    w.retry_due();
    assert_eq!(w.requests(), Vec::<String>::new());
    assert_eq!(w.record(ORDER).state, State::Retrying);

    // After it (the scheduler ticks again 15 s later): posted, once.
    w.advance(15);
    w.retry_due();
    let rec = w.record(ORDER);
    assert_eq!(
        rec.state,
        State::Posted,
        "audit: {:?}",
        rec.audit.iter().map(|a| &a.step).collect::<Vec<_>>()
    );
    assert_eq!(accepted_invoices(&w), 1);
    assert_eq!(w.count("bc.test"), 1);
}

#[test]
fn a_bigcommerce_429_posts_once_when_the_scheduler_first_looks_after_the_reset() {
    // The same scenario without an early scheduler tick.
    let mut w = world_with_order();
    let mut limited = ml_core::http::HttpResponse::json(429, &json!({"status": 429}));
    limited
        .headers
        .push(("X-Rate-Limit-Time-Reset-Ms".into(), "15000".into()));
    w.host.inner.once("bc.test", Ok(limited));
    w.deliver("store/order/created", ORDER, &hash(1));
    assert_eq!(w.record(ORDER).state, State::Retrying);
    w.advance(25);
    let report = w.retry_due();
    let rec = w.record(ORDER);
    assert_eq!(
        rec.state,
        State::Posted,
        "report {report:?}, record {rec:#?}"
    );
    assert_eq!(accepted_invoices(&w), 1);
    assert_eq!(w.count("bc.test"), 2);
}

#[test]
fn a_bigcommerce_429_posts_once_when_the_next_scheduler_tick_is_past_every_entry_of_the_minute() {
    // One tick before the reset time, one past every entry of the minute.
    let mut w = world_with_order();
    let mut limited = ml_core::http::HttpResponse::json(429, &json!({"status": 429}));
    limited
        .headers
        .push(("X-Rate-Limit-Time-Reset-Ms".into(), "15000".into()));
    w.host.inner.once("bc.test", Ok(limited));
    w.deliver("store/order/created", ORDER, &hash(1));
    assert!(w.record(ORDER).next_attempt_at.unwrap() >= t0() + chrono::Duration::seconds(15));
    w.advance(10);
    w.clear_log();
    let report = w.retry_due();
    assert_eq!(report.ran, 0);
    assert_eq!(
        w.requests(),
        Vec::<String>::new(),
        "nothing before the reset time"
    );
    w.advance(30);
    w.retry_due();
    assert_eq!(w.record(ORDER).state, State::Posted);
    assert_eq!(accepted_invoices(&w), 1);
    assert_eq!(w.count("bc.test"), 1);
    // Later ticks find nothing left to do.
    w.advance(120);
    w.clear_log();
    w.retry_due();
    assert_eq!(w.requests(), Vec::<String>::new());
}

#[test]
fn a_quickbooks_429_with_a_huge_retry_after_waits_a_day_frees_the_order_and_blocks_no_other() {
    let mut w = world_with_order();
    w.put_order(202, order_json(202, &plain_shape(2)));
    let mut throttled = ml_core::http::HttpResponse::json(
        429,
        &fault_body("003001", "ThrottleExceeded", "ServiceFault"),
    );
    throttled
        .headers
        .push(("Retry-After".into(), "99999999999999".into()));
    w.host.inner.once("POST /invoice?", Ok(throttled));
    w.deliver("store/order/created", ORDER, &hash(1));
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Retrying, "audit: {:?}", w.steps(ORDER));
    assert_eq!(rec.reason.as_deref(), Some("rate_limited"));
    assert_eq!(
        rec.next_attempt_at,
        Some(t0() + chrono::Duration::hours(24)),
        "Retry-After is capped at a day"
    );
    let lease = w.host.inner.kv[&format!("lease/order/{ORDER}")].clone();
    assert!(
        ml_core::models::token::lease_is_free(&lease, w.now()),
        "the order's lease was released"
    );

    // Another order goes through, and the scheduler handles both guard entries.
    w.deliver("store/order/created", 202, &hash(2));
    w.advance(60);
    let report = w.retry_due();
    assert_eq!(report.busy, 0, "{report:?}");
    assert_eq!(w.record(202).state, State::Posted);
    assert_eq!(w.record(ORDER).state, State::Retrying);

    // A day later the throttled order posts, once.
    w.advance(24 * 3600);
    w.retry_due();
    assert_eq!(w.record(ORDER).state, State::Posted);
    assert_eq!(accepted_invoices(&w), 2);
}

#[test]
fn quickbooks_500s_twice_then_success_posts_one_invoice_with_each_failure_audited() {
    let mut w = world_with_order();
    for _ in 0..2 {
        w.qbo
            .borrow_mut()
            .faults
            .push_back(("POST /invoice?".into(), Fault::ServerError));
    }
    w.deliver("store/order/created", ORDER, &hash(1));
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Retrying);
    assert_eq!(rec.attempts, 1);
    assert_eq!(rec.reason.as_deref(), Some("server_error"));

    w.advance(60);
    w.retry_due();
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Retrying);
    assert_eq!(rec.attempts, 2);

    w.advance(120);
    w.retry_due();
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted);
    let failed: Vec<&Value> = rec
        .audit
        .iter()
        .filter(|a| a.step == "attempt_failed")
        .map(|a| &a.detail)
        .collect();
    assert_eq!(failed.len(), 2);
    for f in &failed {
        assert_eq!(f["status"], json!(500));
        assert_eq!(f["retryable"], json!(true));
        assert_eq!(f["intuit_tid"], json!("tid-500-test"));
    }
    let creates = matching(&w, "POST /invoice?");
    assert_eq!(creates.len(), 3);
    let rids: Vec<String> = creates.iter().map(|c| requestid_of(c)).collect();
    assert!(
        rids.iter().all(|r| *r == rids[0]),
        "every attempt reuses one requestid: {rids:?}"
    );
    assert_eq!(accepted_invoices(&w), 1);
    assert_eq!(w.qbo.borrow().invoices.len(), 1);
}

#[test]
fn permanent_500s_fail_after_max_attempts_and_replay_posts_once_after_the_fault_clears() {
    let mut w = world_with_order();
    w.set_config("max_attempts", "3");
    w.qbo.borrow_mut().permanent = Some(("POST /invoice?".into(), Fault::ServerError));
    w.deliver("store/order/created", ORDER, &hash(1));
    for _ in 0..10 {
        if w.record(ORDER).state != State::Retrying {
            break;
        }
        w.advance(600);
        w.retry_due();
    }
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Failed);
    assert_eq!(rec.attempts, 3);
    assert_eq!(rec.next_attempt_at, None);
    assert!(
        rec.last_error
            .as_deref()
            .unwrap()
            .contains("gave up after 3 attempts"),
        "{:?}",
        rec.last_error
    );
    assert_eq!(
        rec.audit
            .iter()
            .filter(|a| a.step == "attempt_failed")
            .count(),
        3
    );
    assert_eq!(matching(&w, "POST /invoice?").len(), 3);
    assert_eq!(accepted_invoices(&w), 0);

    // Nothing more happens on its own.
    w.advance(3600);
    w.retry_due();
    assert_eq!(matching(&w, "POST /invoice?").len(), 3);

    w.qbo.borrow_mut().permanent = None;
    let resp = w.admin("POST", &format!("/admin/replay/order/{ORDER}"));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let body: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body["state"], json!("posted"));
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted);
    assert!(rec.audit.iter().any(|a| a.step == "replay_requested"));
    assert_eq!(accepted_invoices(&w), 1);

    // A second replay re-checks QuickBooks and never creates.
    w.clear_log();
    w.admin("POST", &format!("/admin/replay/order/{ORDER}"));
    assert_eq!(accepted_invoices(&w), 1);
    assert_eq!(w.qbo.borrow().invoices.len(), 1);
    assert!(
        labels(&w).contains(&"read invoice".to_string()),
        "{:#?}",
        w.requests()
    );
}

#[test]
fn invalid_grant_parks_the_order_until_a_new_bootstrap_token_is_configured() {
    let mut w = world_with_order();
    w.qbo.borrow_mut().revoke_refresh_tokens();
    w.deliver("store/order/created", ORDER, &hash(1));
    let rec = w.record(ORDER);
    assert_eq!(
        rec.state,
        State::NeedsReauth,
        "last_error: {:?}",
        rec.last_error
    );
    assert_eq!(rec.next_attempt_at, None);
    assert!(
        rec.last_error
            .as_deref()
            .unwrap()
            .contains("/oauth/quickbooks/connect"),
        "{:?}",
        rec.last_error
    );
    assert!(connection::state(&mut w.host).unwrap().needs_reauth);
    assert_eq!(labels(&w), ["bc order", "token"]);

    // Not retried in a loop while authorization is missing.
    w.advance(60);
    w.clear_log();
    w.retry_due();
    assert_eq!(w.requests(), Vec::<String>::new());
    assert_eq!(w.record(ORDER).state, State::NeedsReauth);

    // The operator sets a new bootstrap token: the next retry-due resumes and posts.
    let fresh = "CD22operatorReauthorized0002";
    w.qbo.borrow_mut().valid_refresh.insert(fresh.into());
    w.set_config("qbo_refresh_token", fresh);
    w.advance(60);
    w.retry_due();
    let rec = w.record(ORDER);
    assert_eq!(
        rec.state,
        State::Posted,
        "audit: {:?}",
        rec.audit.iter().map(|a| &a.step).collect::<Vec<_>>()
    );
    assert!(!connection::state(&mut w.host).unwrap().needs_reauth);
    assert_eq!(accepted_invoices(&w), 1);
    assert_eq!(w.kv_keys_containing(fresh), Vec::<String>::new());
}

#[test]
fn a_parked_order_posts_on_replay_after_a_new_bootstrap_token() {
    let mut w = world_with_order();
    w.qbo.borrow_mut().revoke_refresh_tokens();
    w.deliver("store/order/created", ORDER, &hash(1));
    assert_eq!(w.record(ORDER).state, State::NeedsReauth);
    assert_eq!(w.record(ORDER).reason.as_deref(), Some("needs_reauth"));

    // Still revoked: a later event does not hammer the token endpoint.
    w.advance(60);
    w.clear_log();
    w.edit_order(ORDER, |o| {
        o["customer_message"] = json!("changed while parked")
    });
    w.deliver("store/order/updated", ORDER, &hash(2));
    assert_eq!(w.count("oauth.test"), 0, "{:#?}", w.requests());
    assert_eq!(w.record(ORDER).state, State::NeedsReauth);

    let fresh = "EF33operatorReauthorized0003";
    w.qbo.borrow_mut().valid_refresh.insert(fresh.into());
    w.set_config("qbo_refresh_token", fresh);
    let resp = w.admin("POST", &format!("/admin/replay/order/{ORDER}"));
    assert_eq!(resp.status, 200);
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted, "{:?}", rec.last_error);
    assert!(!connection::state(&mut w.host).unwrap().needs_reauth);
    assert_eq!(accepted_invoices(&w), 1);
    let q = w.qbo.borrow();
    let inv = q.invoices.values().next().unwrap();
    assert_eq!(
        inv["CustomerMemo"]["value"],
        json!("changed while parked"),
        "the current order content is posted"
    );
}

#[test]
fn a_quickbooks_401_on_the_invoice_create_refreshes_once_and_retries_once() {
    let mut w = world_with_order();
    w.deliver("store/order/created", ORDER, &hash(1));
    let second = same_customer_order(&w, 102);
    w.put_order(102, second);
    w.qbo.borrow_mut().expire_access_tokens();
    w.advance(60);
    w.clear_log();
    w.deliver("store/order/created", 102, &hash(2));
    assert_eq!(
        labels(&w),
        ["bc order", "write invoice", "token", "write invoice"],
        "{:#?}",
        w.requests()
    );
    let creates = matching(&w, "POST /invoice?");
    assert_eq!(requestid_of(&creates[0]), requestid_of(&creates[1]));
    let rec = w.record(102);
    assert_eq!(rec.state, State::Posted);
    assert_eq!(
        rec.audit
            .iter()
            .filter(|a| a.step == "attempt_failed")
            .count(),
        0
    );
    assert_eq!(w.qbo.borrow().refreshes, 2);
    assert_eq!(accepted_invoices(&w), 2);
}

#[test]
fn a_create_whose_answer_is_lost_is_found_on_retry_and_never_duplicated() {
    let mut w = world_with_order();
    w.qbo
        .borrow_mut()
        .faults
        .push_back(("POST /invoice?".into(), Fault::CommitThenTimeout));
    w.deliver("store/order/created", ORDER, &hash(1));
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Retrying);
    assert_eq!(rec.reason.as_deref(), Some("transport"));
    let rid = rec
        .requestid
        .clone()
        .expect("the requestid of the unconfirmed write is kept");
    assert_eq!(requestid_of(&matching(&w, "POST /invoice?")[0]), rid);
    assert_eq!(accepted_invoices(&w), 1, "QuickBooks did create it");

    w.advance(60);
    w.retry_due();
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted);
    let q = w.qbo.borrow();
    assert_eq!(
        q.invoice_creates_accepted, 1,
        "exactly one invoice-create was accepted"
    );
    assert_eq!(q.invoices.len(), 1);
    let (only_id, _) = q.invoices.iter().next().unwrap();
    assert_eq!(rec.qbo_id.as_deref(), Some(only_id.as_str()));
    // Either path is fine: found by DocNumber + marker, or the same requestid replayed.
    let found = rec.audit.iter().any(|a| a.step == "found_existing");
    let replayed = q.invoice_creates_replayed == 1;
    assert!(
        found || replayed,
        "neither found_existing nor a requestid replay"
    );
    for c in matching(&w, "POST /invoice?") {
        assert_eq!(requestid_of(&c), rid);
    }
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
fn preview_shows_the_invoice_and_posts_nothing() {
    let mut w = world_with_order();
    // Connected already, so the preview needs no token refresh either.
    w.deliver("store/order/created", ORDER, &hash(1));
    assert_eq!(w.record(ORDER).state, State::Posted);
    w.put_order(ORDER + 1, order_json(ORDER + 1, &plain_shape(3)));
    w.clear_log();
    let resp = w.admin("GET", &format!("/admin/preview/order/{}", ORDER + 1));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let body: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body["posted"], json!(false));
    assert_eq!(body["invoice"]["DocNumber"], json!((ORDER + 1).to_string()));
    assert!(!body["invoice"]["Line"].as_array().unwrap().is_empty());
    let matched = body["customer"]["matched_by"].as_str().unwrap().to_string();
    assert!(
        ["created", "link", "email", "name"].contains(&matched.as_str()),
        "{matched}"
    );
    let posts: Vec<String> = w
        .requests()
        .into_iter()
        .filter(|r| !r.starts_with("GET "))
        .collect();
    assert_eq!(
        posts,
        Vec::<String>::new(),
        "a preview sends no POST at all"
    );
    assert_eq!(
        w.qbo.borrow().customers.len(),
        1,
        "no customer created by a preview"
    );
    assert_eq!(accepted_invoices(&w), 1, "only the order delivered before");
    let rec = w.admin("GET", &format!("/admin/records/order/{}", ORDER + 1));
    assert_eq!(rec.status, 404, "a preview leaves no sync record");
}

#[test]
fn the_record_lists_the_invoice_document_and_the_preview_lists_what_an_order_would_get() {
    let mut w = world_with_order();
    w.deliver("store/order/created", ORDER, &hash(1));
    let rec = w.record(ORDER);
    assert_eq!(rec.documents.len(), 1, "{:?}", rec.documents);
    let inv = &rec.documents[0];
    assert_eq!(inv.kind, ml_core::books::documents::DocKind::Invoice);
    assert_eq!(Some(&inv.qbo_id), rec.qbo_id.as_ref());
    assert_eq!(inv.source, "order");
    assert_eq!(inv.doc_number.as_deref(), Some(ORDER.to_string().as_str()));
    let order = w.bc.borrow().orders[&ORDER].clone();
    let total: rust_decimal::Decimal = order["total_inc_tax"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        inv.total.map(|t| t.amount()),
        Some(total.round_dp(2)),
        "the document carries the invoice total"
    );
    let created = rec
        .audit
        .iter()
        .find(|a| a.step == "document_created")
        .expect("the create is audited");
    assert_eq!(created.detail["qbo_id"], json!(inv.qbo_id));
    assert_eq!(created.detail["type"], json!("Invoice"));

    // The preview of the posted order lists the posted invoice and plans nothing new.
    let resp = w.admin("GET", &format!("/admin/preview/order/{ORDER}"));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let body: Value = serde_json::from_slice(&resp.body).unwrap();
    let actions: Vec<(String, String)> = body["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["type"].as_str().unwrap_or_default().to_string(),
                d["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("Invoice".to_string(), "posted".to_string()),
            ("Invoice".to_string(), "update_if_changed".to_string())
        ]
    );
    // A new order's preview plans its invoice.
    w.put_order(ORDER + 1, order_json(ORDER + 1, &plain_shape(3)));
    let resp = w.admin("GET", &format!("/admin/preview/order/{}", ORDER + 1));
    let body: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body["documents"][0]["action"], json!("create"));
    assert_eq!(body["documents"][0]["source"], json!("order"));
    assert_eq!(
        body["documents"][0]["doc_number"],
        json!((ORDER + 1).to_string())
    );
}

#[test]
fn preview_before_any_connection_only_refreshes_the_token() {
    let mut w = world_with_order();
    let resp = w.admin("GET", &format!("/admin/preview/order/{ORDER}"));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let posts: Vec<String> = w
        .requests()
        .into_iter()
        .filter(|r| !r.starts_with("GET "))
        .collect();
    assert_eq!(
        posts,
        [format!("POST {OAUTH_BASE}/oauth2/v1/tokens/bearer")]
    );
    assert_eq!(accepted_invoices(&w), 0);
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

fn records_in_kv(w: &World) -> usize {
    w.host
        .inner
        .kv
        .keys()
        .filter(|k| k.starts_with("rec/"))
        .count()
}

#[test]
fn webhook_intake_refuses_bad_deliveries_with_the_right_status() {
    let mut w = world_with_order();

    let resp = w.request(webhook_request(
        "store/order/created",
        ORDER,
        &hash(1),
        "wrong-secret",
    ));
    assert_eq!(resp.status, 401);
    let mut no_secret = webhook_request("store/order/created", ORDER, &hash(1), "x");
    no_secret
        .headers
        .retain(|(k, _)| k != "x-ml-webhook-secret");
    assert_eq!(w.request(no_secret).status, 401);

    let mut malformed = webhook_request("store/order/created", ORDER, &hash(1), WEBHOOK_SECRET);
    malformed.body = b"{not json".to_vec();
    let resp = w.request(malformed);
    assert_eq!(resp.status, 400);
    let err: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(err["error"], json!("bad_request"));
    let mut no_scope = webhook_request("store/order/created", ORDER, &hash(1), WEBHOOK_SECRET);
    no_scope.body =
        serde_json::to_vec(&json!({"data": {"type": "order", "id": 1}, "hash": "ab"})).unwrap();
    assert_eq!(w.request(no_scope).status, 400);

    let mut huge = webhook_request("store/order/created", ORDER, &hash(1), WEBHOOK_SECRET);
    huge.body = vec![b' '; 64 * 1024 + 1];
    assert_eq!(w.request(huge).status, 413);

    assert_eq!(w.requests(), Vec::<String>::new());
    assert_eq!(records_in_kv(&w), 0);
    assert!(
        w.host.events.is_empty(),
        "refused deliveries write nothing: {:?}",
        w.host.events
    );
}

#[test]
fn an_ignored_scope_is_acknowledged_with_no_work() {
    let mut w = world_with_order();
    let mut req = webhook_request("store/product/updated", 77, &hash(1), WEBHOOK_SECRET);
    req.body = serde_json::to_vec(
        &json!({"scope": "store/product/updated", "data": {"type": "product", "id": 77},
                                          "hash": hash(1), "store_id": "1001"}),
    )
    .unwrap();
    let (resp, work) = ml_core::routes::router::handle(&req, &mut w.host);
    assert_eq!(resp.status, 200);
    assert_eq!(work, None);
    let body: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body["status"], json!("ignored"));
    assert!(w.host.events.is_empty());
}

#[test]
fn a_missing_variable_is_a_clear_error_naming_it() {
    let mut w = world_with_order();
    w.host.inner.config.remove("bigcommerce_webhook_secret");
    let resp = w.deliver("store/order/created", ORDER, &hash(1));
    assert_eq!(resp.status, 500);
    let err: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(err["error"], json!("configuration"));
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("bigcommerce_webhook_secret"),
        "{err}"
    );
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("SPIN_VARIABLE_BIGCOMMERCE_WEBHOOK_SECRET"),
        "{err}"
    );

    // A variable the job needs: the record says which one.
    w.set_config("bigcommerce_webhook_secret", WEBHOOK_SECRET);
    w.host.inner.config.remove("qbo_client_id");
    let resp = w.deliver("store/order/created", ORDER, &hash(1));
    assert_eq!(resp.status, 200);
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Failed);
    assert!(
        rec.last_error.as_deref().unwrap().contains("qbo_client_id"),
        "{:?}",
        rec.last_error
    );
    assert_eq!(w.requests(), Vec::<String>::new());
}

#[test]
fn admin_routes_refuse_requests_without_the_admin_token() {
    let mut w = world_with_order();
    let resp = w.request(Request {
        method: "POST".into(),
        path_and_query: format!("/admin/replay/order/{ORDER}"),
        headers: vec![("authorization".into(), "Bearer not-the-token".into())],
        body: Vec::new(),
    });
    assert_eq!(resp.status, 401);
    assert_eq!(w.requests(), Vec::<String>::new());
}

#[test]
fn an_order_changed_while_a_lost_create_is_retried_ends_with_the_current_content() {
    let mut w = world_with_order();
    w.qbo
        .borrow_mut()
        .faults
        .push_back(("POST /invoice?".into(), Fault::CommitThenTimeout));
    w.deliver("store/order/created", ORDER, &hash(1));
    assert_eq!(w.record(ORDER).state, State::Retrying);

    w.edit_order(ORDER, |o| {
        o["customer_message"] = json!("Changed before the retry");
        o["date_modified"] = json!("Thu, 26 Nov 2026 15:00:30 +0000");
    });
    // The retry only finishes the write it lost: it reuses the order its run read, finds the
    // invoice QuickBooks made and reads nothing from BigCommerce.
    w.advance(60);
    w.clear_log();
    w.retry_due();
    assert_eq!(w.record(ORDER).state, State::Posted);
    assert_eq!(w.count("bc.test"), 0, "{:#?}", w.requests());
    assert_eq!(w.qbo.borrow().invoices.len(), 1, "still one invoice");
    // Had the change's webhook been lost, the sweep would see the record as older than the
    // change (it compares with the order the run worked from, not with when it was saved)…
    let edited = chrono::DateTime::parse_from_rfc2822("Thu, 26 Nov 2026 15:00:30 +0000")
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert_eq!(
        ml_core::jobs::bulk::freshness(Some(&w.record(ORDER)), Some(edited)),
        ml_core::jobs::bulk::Freshness::Stale
    );
    // …and the change reaches QuickBooks through the order's own webhook.
    w.advance(5);
    w.deliver("store/order/updated", ORDER, &hash(2));
    let q = w.qbo.borrow();
    assert_eq!(q.invoices.len(), 1, "still one invoice");
    let inv = q.invoices.values().next().unwrap();
    assert_eq!(
        inv["CustomerMemo"]["value"],
        json!("Changed before the retry"),
        "QuickBooks has the current order"
    );
}

#[test]
fn a_delivery_while_another_worker_holds_the_order_is_finished_by_retry_due() {
    let mut w = world_with_order();
    // Another instance holds the order's lease for two minutes.
    let held = ml_core::models::token::Lease::encode(t0().timestamp_millis() + 120_000, 0x55);
    w.host
        .inner
        .kv
        .insert(format!("lease/order/{ORDER}"), held.to_vec());
    let resp = w.deliver("store/order/created", ORDER, &hash(1));
    assert_eq!(
        resp.status, 200,
        "the event is acknowledged: its guard entry is durable"
    );
    assert_eq!(
        w.requests(),
        Vec::<String>::new(),
        "nothing fetched without the lease"
    );
    let rec = w.admin("GET", &format!("/admin/records/order/{ORDER}"));
    assert_eq!(rec.status, 404);

    // The holder died; after its lease expires the guard entry brings the order in.
    w.advance(180);
    w.retry_due();
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted);
    assert_eq!(rec.audit[0].detail["hash"], json!(hash(1)));
    assert_eq!(accepted_invoices(&w), 1);
}

#[test]
fn retry_due_runs_the_entries_behind_one_whose_worker_is_still_running() {
    let mut w = world_with_order();
    w.put_order(202, order_json(202, &plain_shape(2)));
    // Another instance works on ORDER for ten minutes (renewing its lease all along).
    let held = ml_core::models::token::Lease::encode(t0().timestamp_millis() + 600_000, 0x55);
    w.host
        .inner
        .kv
        .insert(format!("lease/order/{ORDER}"), held.to_vec());
    w.deliver("store/order/created", ORDER, &hash(1));
    // Order 202 fails once; its retry is filed behind ORDER's guard entry.
    w.qbo
        .borrow_mut()
        .faults
        .push_back(("POST /invoice?".into(), Fault::ServerError));
    w.deliver("store/order/created", 202, &hash(2));
    assert_eq!(w.record(202).state, State::Retrying);

    w.advance(60);
    let report = w.retry_due();
    assert_eq!(report.busy, 1, "{report:?}");
    assert_eq!(
        w.record(202).state,
        State::Posted,
        "not held up by the busy entry ahead of it: {report:?}"
    );

    // ORDER's entry stayed on file: once the other instance is gone, it runs.
    w.advance(600);
    w.retry_due();
    assert_eq!(w.record(ORDER).state, State::Posted);
    assert_eq!(accepted_invoices(&w), 2);
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

#[test]
fn non_canonical_ids_in_admin_routes_are_refused_with_400_and_make_no_second_record() {
    let mut w = world_with_order();
    w.deliver("store/order/created", ORDER, &hash(1));
    assert_eq!(w.record(ORDER).state, State::Posted);
    for id in ["0101", "00101", "0", "000", "99999999999999999999999"] {
        for (method, path) in [
            ("POST", format!("/admin/replay/order/{id}")),
            ("GET", format!("/admin/records/order/{id}")),
            ("GET", format!("/admin/preview/order/{id}")),
            ("POST", format!("/admin/replay/customer/{id}")),
        ] {
            let resp = w.admin(method, &path);
            assert_eq!(resp.status, 400, "{method} {path}");
            let body: Value = serde_json::from_slice(&resp.body).unwrap();
            assert_eq!(body["error"], "bad_request");
            assert!(body["message"].as_str().unwrap().contains("id"), "{body}");
        }
    }
    let resp = w.admin("POST", "/admin/replay/order/0101");
    let body: Value = serde_json::from_slice(&resp.body).unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("use 101"),
        "says which id to use: {body}"
    );
    assert_eq!(records_in_kv(&w), 1, "no second record for order 101");
    assert_eq!(accepted_invoices(&w), 1);
}

#[test]
fn secrets_with_a_trailing_newline_from_a_mounted_file_still_work() {
    let mut w = World::new();
    w.put_order(ORDER, order_json(ORDER, &plain_shape(1)));
    for name in [
        "admin_token",
        "bigcommerce_webhook_secret",
        "bigcommerce_access_token",
        "qbo_client_secret",
        "qbo_refresh_token",
        "encryption_key",
    ] {
        let value = w.host.inner.config[name].clone();
        w.set_config(name, &format!("{value}\n"));
    }
    let resp = w.deliver("store/order/created", ORDER, &hash(1));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted, "{:?}", rec.last_error);
    assert_eq!(accepted_invoices(&w), 1);
}

#[test]
fn amounts_too_large_to_add_up_fail_the_order_with_a_reason_instead_of_panicking() {
    for huge in [
        "79228162514264337593543950335",
        "1e27",
        "-79228162514264337593543950335",
    ] {
        let mut w = World::new();
        let mut order = order_json(ORDER, &plain_shape(1));
        order["subtotal_ex_tax"] = json!(huge);
        order["total_ex_tax"] = json!(huge);
        order["total_inc_tax"] = json!(huge);
        order["consignments"]["shipping"][0]["line_items"][0]["total_ex_tax"] = json!(huge);
        order["consignments"]["shipping"][0]["line_items"][1]["total_ex_tax"] = json!(huge);
        w.put_order(ORDER, order);
        let resp = w.deliver("store/order/created", ORDER, &hash(1));
        assert_eq!(resp.status, 200);
        let rec = w.record(ORDER);
        assert_eq!(rec.state, State::Failed, "{huge}: {:?}", w.steps(ORDER));
        let why = rec.last_error.clone().unwrap_or_default();
        assert!(why.contains("too large"), "{huge}: {why}");
        assert_eq!(accepted_invoices(&w), 0);
        let lease = w.host.inner.kv[&format!("lease/order/{ORDER}")].clone();
        assert!(ml_core::models::token::lease_is_free(&lease, w.now()));
    }
}

#[test]
fn an_order_whose_line_pages_never_end_fails_after_a_bounded_number_of_pages() {
    let mut w = World::new();
    let mut order = order_json(ORDER, &plain_shape(1));
    let line = order["consignments"]["shipping"][0]["line_items"][0].clone();
    // An older store: no consignments, so the lines are a paged resource.
    order.as_object_mut().unwrap().remove("consignments");
    w.put_order(ORDER, order);
    let page: Vec<Value> = (0..250)
        .map(|i| {
            let mut l = line.clone();
            l["id"] = json!(i + 1);
            l
        })
        .collect();
    w.host.inner.route("/v2/orders/101/products", move |_| {
        Ok(ml_core::http::HttpResponse::json(200, &json!(page)))
    });
    w.deliver("store/order/created", ORDER, &hash(1));
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Failed, "{:?}", w.steps(ORDER));
    assert!(
        rec.last_error.as_deref().unwrap().contains("line items"),
        "{:?}",
        rec.last_error
    );
    assert_eq!(w.count("/v2/orders/101/products"), 40);
    assert_eq!(accepted_invoices(&w), 0);
}
