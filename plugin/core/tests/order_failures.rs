//! The order job when something fails: BigCommerce 404 and 429, QuickBooks 429, 500, 401 and
//! `invalid_grant`, a create whose answer is lost, a worker that holds the order, amounts that
//! cannot add up, endless line pages: each ends with one invoice or a failure naming its
//! reason, never a duplicate. Driven as `order_job.rs` is (see `common`).

mod common;

use common::*;
use ml_core::sync::connection;
use ml_core::sync::record::State;
use serde_json::{Value, json};

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
fn one_retry_due_after_reauthorization_resumes_more_parked_orders_than_one_second_can_carry() {
    // Found by the e2e credentials test: the resumption ran out of this second's QuickBooks
    // budget after one order, queued that one and left the rest parked until the next tick.
    let mut w = world_with_order();
    let ids: Vec<u64> = (0..12).map(|i| ORDER + i).collect();
    for &id in &ids[1..] {
        let o = same_customer_order(&w, id);
        w.put_order(id, o);
    }
    w.qbo.borrow_mut().revoke_refresh_tokens();
    for &id in &ids {
        w.deliver("store/order/created", id, &hash(id as u32));
        assert_eq!(w.record(id).state, State::NeedsReauth, "order {id}");
    }

    let fresh = "GH44operatorReauthorized0004";
    w.qbo.borrow_mut().valid_refresh.insert(fresh.into());
    w.set_config("qbo_refresh_token", fresh);
    w.advance(60);
    // The route, with the drain that follows its answer (as the adapter runs it).
    let resp = w.admin("POST", "/admin/retry-due");
    assert_eq!(resp.status, 200);
    for &id in &ids {
        let rec = w.record(id);
        assert_eq!(
            rec.state,
            State::Posted,
            "order {id}: {:?}",
            rec.audit.iter().map(|a| &a.step).collect::<Vec<_>>()
        );
    }
    assert_eq!(accepted_invoices(&w), ids.len());
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
