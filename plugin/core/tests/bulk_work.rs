//! Backfill, sweep and pacing on a simulated clock: the connector's public entry points
//! (`POST /admin/backfill`, `POST /admin/retry-due`) against the in-memory BigCommerce and
//! QuickBooks models, with `/v2/orders` and `/v3/customers` lists served from the same orders.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use chrono::{DateTime, Duration, Utc};
use common::*;
use ml_core::http::{HttpRequest, HttpResponse, Request};
use ml_core::sync::pace;
use ml_core::sync::record::State;
use serde_json::{Value, json};

fn query(url: &str) -> BTreeMap<String, String> {
    let q = url.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn date(v: &Value) -> DateTime<Utc> {
    let s = v.as_str().unwrap_or_default();
    DateTime::parse_from_rfc2822(s)
        .or_else(|_| DateTime::parse_from_rfc3339(s))
        .unwrap_or_else(|_| panic!("not a date: {s}"))
        .with_timezone(&Utc)
}

/// Serves `/v2/orders` lists from the BigCommerce model: filters, sort, paging, 204 when empty,
/// and rate-limit headers saying `left` requests remain.
fn serve_lists(world: &mut World, left: Rc<RefCell<u64>>) {
    let bc = world.bc.clone();
    let l = left.clone();
    world.host.inner.route(
        &format!("{BC_BASE}/stores/{STORE_HASH}/v2/orders?"),
        move |r: &HttpRequest| {
            let q = query(&r.url);
            let min = |k: &str| q.get(k).map(|v| date(&json!(v)));
            let mut rows: Vec<Value> = bc
                .borrow()
                .orders
                .values()
                .filter(|o| {
                    q.get("min_id")
                        .is_none_or(|m| o["id"].as_u64() >= m.parse().ok())
                })
                .filter(|o| min("min_date_created").is_none_or(|m| date(&o["date_created"]) >= m))
                .filter(|o| min("max_date_created").is_none_or(|m| date(&o["date_created"]) <= m))
                .filter(|o| min("min_date_modified").is_none_or(|m| date(&o["date_modified"]) >= m))
                .cloned()
                .collect();
            match q.get("sort").map(String::as_str) {
                Some("id:asc") => rows.sort_by_key(|o| o["id"].as_u64()),
                Some("date_modified:asc") => {
                    rows.sort_by_key(|o| (date(&o["date_modified"]), o["id"].as_u64()))
                }
                other => panic!("unexpected sort {other:?}"),
            }
            let limit: usize = q["limit"].parse().unwrap();
            let page: usize = q["page"].parse().unwrap();
            let slice: Vec<Value> = rows
                .into_iter()
                .skip((page - 1) * limit)
                .take(limit)
                .collect();
            let mut resp = if slice.is_empty() {
                HttpResponse::new(204, Vec::new())
            } else {
                HttpResponse::json(200, &Value::Array(slice))
            };
            resp.headers
                .push(("X-Rate-Limit-Requests-Left".into(), l.borrow().to_string()));
            resp.headers
                .push(("X-Rate-Limit-Requests-Quota".into(), "150".into()));
            resp.headers
                .push(("X-Rate-Limit-Time-Reset-Ms".into(), "9000".into()));
            Ok(resp)
        },
    );
    world.host.inner.route(
        &format!("{BC_BASE}/stores/{STORE_HASH}/v3/customers?date_modified:min="),
        move |_r: &HttpRequest| {
            Ok(HttpResponse::json(
                200,
                &json!({"data": [], "meta": {"pagination": {"total": 0, "count": 0, "per_page": 250,
                        "current_page": 1, "total_pages": 0}}}),
            ))
        },
    );
}

fn post(world: &mut World, path: &str, body: &Value) -> HttpResponse {
    world.request(Request {
        method: "POST".into(),
        path_and_query: path.into(),
        headers: vec![("authorization".into(), format!("Bearer {ADMIN_TOKEN}"))],
        body: serde_json::to_vec(body).unwrap(),
    })
}

fn json_of(resp: &HttpResponse) -> Value {
    serde_json::from_slice(&resp.body).unwrap()
}

fn sweep_state(world: &World) -> Value {
    let bytes = world
        .host
        .inner
        .kv
        .get("sweep/state")
        .expect("the sweep has state");
    serde_json::from_slice(bytes).unwrap()
}

fn backfill(world: &mut World) -> Value {
    json_of(&world.admin("GET", "/admin/backfill"))
}

/// 620 January orders (ids 1..=620), with a few that must not be invoiced.
fn january(world: &mut World) {
    for id in 1..=620u64 {
        let mut order = order_json(id, &plain_shape(id));
        if id % 100 == 7 {
            order["status_id"] = json!(0);
        }
        if id % 100 == 9 {
            order["status_id"] = json!(5);
        }
        world.put_order(id, order);
    }
}

/// The most QuickBooks calls made in one second, and in any 60 s window, of `times`.
fn busiest(times: &[DateTime<Utc>]) -> (usize, usize) {
    let mut per_second: BTreeMap<i64, usize> = BTreeMap::new();
    for t in times {
        *per_second.entry(t.timestamp()).or_default() += 1;
    }
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut window = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end] - sorted[start] >= Duration::seconds(60) {
            start += 1;
        }
        window = window.max(end - start + 1);
    }
    (per_second.values().copied().max().unwrap_or(0), window)
}

#[test]
fn a_backfill_posts_every_eligible_order_once_at_a_pace_quickbooks_allows_every_second_and_minute()
{
    let mut world = World::new();
    world.set_config("sweep_interval_seconds", "0");
    serve_lists(&mut world, Rc::new(RefCell::new(140)));
    january(&mut world);
    // One order is already in QuickBooks through its webhook.
    world.deliver("store/order/created", 42, &hash(42));
    assert_eq!(world.record(42).state, State::Posted);

    world.clear_log();
    let started = world.now();
    let resp = post(
        &mut world,
        "/admin/backfill",
        &json!({"since": "2026-01-01", "until": null}),
    );
    assert_eq!(resp.status, 202, "{}", String::from_utf8_lossy(&resp.body));
    // The first slice works its whole 45 s, sleeping into each next second when one
    // second's budget is used.
    let first_slice = world.count("/v3/company/");
    let slice_secs = (world.now() - started).num_seconds();
    assert!(
        (40..=46).contains(&slice_secs),
        "the first slice worked {slice_secs} simulated seconds"
    );
    let most = (slice_secs + 1) * (pace::QBO_BULK_PER_SECOND + pace::QBO_COST_PER_JOB - 1);
    assert!(
        (300..=most as usize).contains(&first_slice),
        "the first slice used {first_slice} QuickBooks calls in {slice_secs} s"
    );
    let second = post(
        &mut world,
        "/admin/backfill",
        &json!({"since": "2026-01-01"}),
    );
    assert_eq!(second.status, 409);

    // The scheduler ticks every 15 s, as the harness does.
    let mut ticks = 0;
    let mut last_invoices = 0;
    loop {
        let view = backfill(&mut world);
        if view["state"] != "running" {
            break;
        }
        ticks += 1;
        assert!(ticks < 60, "the backfill does not finish: {view}");
        world.advance(15);
        post(&mut world, "/admin/retry-due", &Value::Null);
        let invoices = world.qbo.borrow().invoices.len();
        assert!(invoices >= last_invoices);
        last_invoices = invoices;
    }
    // A job starts while a second has budget left; its extra calls may go past it.
    let most_per_second = pace::QBO_BULK_PER_SECOND - 1 + pace::QBO_COST_PER_JOB;
    let times = world.sent_times("/v3/company/");
    let (per_second, per_minute) = busiest(&times);
    println!(
        "{} QuickBooks calls in {} s: at most {per_second} in a second, {per_minute} in 60 s",
        times.len(),
        (world.now() - started).num_seconds()
    );
    assert!(
        per_second as i64 <= most_per_second,
        "one second held {per_second} QuickBooks calls: more than the budget and one job's extra calls"
    );
    assert!(
        per_minute as i64 <= pace::QBO_REQUESTS_PER_MINUTE,
        "a 60 s window held {per_minute} QuickBooks calls"
    );
    let view = backfill(&mut world);
    assert_eq!(view["state"], "done", "{view}");
    // 620 listed: 14 never invoiced (7 × status 0, 7 × status 5), 1 already posted.
    assert_eq!(view["orders_seen"], 620);
    assert_eq!(view["orders_skipped"], 14);
    assert_eq!(view["orders_already_synced"], 1);
    assert_eq!(view["orders_queued"], 605);
    assert_eq!(view["orders_posted"], 605);
    assert_eq!(view["pages_done"], 3);
    assert_eq!(world.qbo.borrow().invoices.len(), 606);
    assert!(ticks >= 1, "605 orders cannot fit one slice");
    for id in [1, 250, 251, 620] {
        let rec = world.record(id);
        assert_eq!(rec.state, State::Posted);
        assert!(rec.audit.iter().any(|a| a.detail["scope"] == "ml/backfill"));
    }
    let incomplete = world.admin("GET", "/admin/records/order/7");
    assert_eq!(
        incomplete.status, 404,
        "status-0 orders are not even queued"
    );
}

#[test]
fn a_cancelled_backfill_drops_what_it_had_queued() {
    let mut world = World::new();
    world.set_config("sweep_interval_seconds", "0");
    serve_lists(&mut world, Rc::new(RefCell::new(140)));
    january(&mut world);
    post(
        &mut world,
        "/admin/backfill",
        &json!({"since": "2026-01-01"}),
    );
    let running = backfill(&mut world);
    assert_eq!(running["state"], "running");
    let posted_before = world.qbo.borrow().invoices.len();
    assert!(posted_before > 0 && posted_before < 605, "{posted_before}");
    let cancelled = world.request(Request {
        method: "DELETE".into(),
        path_and_query: "/admin/backfill".into(),
        headers: vec![("authorization".into(), format!("Bearer {ADMIN_TOKEN}"))],
        body: Vec::new(),
    });
    assert_eq!(cancelled.status, 200);
    assert_eq!(json_of(&cancelled)["state"], "cancelled");
    world.advance(60);
    post(&mut world, "/admin/retry-due", &Value::Null);
    assert_eq!(world.qbo.borrow().invoices.len(), posted_before);
    let view = backfill(&mut world);
    assert_eq!(view["state"], "cancelled");
    assert!(view["finished_at"].is_string());
    // A new one may start now.
    let again = post(
        &mut world,
        "/admin/backfill",
        &json!({"since": "2026-01-20"}),
    );
    assert_eq!(again.status, 202);
}

#[test]
fn a_nearly_spent_bigcommerce_window_pauses_the_backfill_until_it_resets() {
    let mut world = World::new();
    world.set_config("sweep_interval_seconds", "0");
    let left = Rc::new(RefCell::new(5));
    serve_lists(&mut world, left.clone());
    january(&mut world);
    post(
        &mut world,
        "/admin/backfill",
        &json!({"since": "2026-01-01"}),
    );
    let view = backfill(&mut world);
    assert_eq!(view["pages_done"], 1);
    assert_eq!(view["orders_posted"], 0, "{view}");
    assert!(
        view["waiting"].as_str().unwrap().contains("BigCommerce"),
        "{view}"
    );
    // Before the window resets nothing moves; after it, the backfill goes on.
    world.advance(5);
    post(&mut world, "/admin/retry-due", &Value::Null);
    assert_eq!(backfill(&mut world)["orders_posted"], 0);
    *left.borrow_mut() = 140;
    world.advance(5);
    post(&mut world, "/admin/retry-due", &Value::Null);
    assert!(backfill(&mut world)["orders_posted"].as_u64().unwrap() > 0);
}

#[test]
fn the_sweep_queues_orders_changed_without_a_webhook_and_moves_its_checkpoint() {
    let mut world = World::new();
    world.set_config("sweep_interval_seconds", "300");
    serve_lists(&mut world, Rc::new(RefCell::new(140)));
    // The connector's first run sets the first checkpoint: history is the backfill's job.
    post(&mut world, "/admin/retry-due", &Value::Null);
    let first = sweep_state(&world);
    assert_eq!(date(&first["checkpoint"]), t0());
    assert_eq!(first["last_run_at"], Value::Null);

    // Three orders placed while webhooks were off, one of them old history.
    let now = world.now();
    for (id, modified) in [
        (901, now + Duration::seconds(30)),
        (902, now + Duration::seconds(90)),
        (903, now - Duration::days(30)),
    ] {
        let mut order = order_json(id, &plain_shape(id));
        order["date_modified"] = json!(modified.to_rfc2822());
        world.put_order(id, order);
    }
    world.advance(200);
    post(&mut world, "/admin/retry-due", &Value::Null);
    assert!(
        world.qbo.borrow().invoices.is_empty(),
        "not due before the interval"
    );
    world.advance(100);
    world.clear_log();
    post(&mut world, "/admin/retry-due", &Value::Null);
    assert_eq!(world.record(901).state, State::Posted);
    assert_eq!(world.record(902).state, State::Posted);
    assert_eq!(world.admin("GET", "/admin/records/order/903").status, 404);
    let sweep = sweep_state(&world);
    assert_eq!(sweep["queued_last_run"], 2);
    assert_eq!(sweep["missed_total"], 2);
    // The checkpoint moves to when the run started; the run ends a paced moment later.
    let at = |k: &str| DateTime::parse_from_rfc3339(sweep[k].as_str().unwrap()).unwrap();
    let ran = at("last_run_at") - at("checkpoint");
    assert!(
        ran >= Duration::zero() && ran < Duration::seconds(10),
        "{sweep}"
    );

    // Nothing changed since: the next sweep costs one list call per entity kind, no job.
    world.advance(300);
    world.clear_log();
    post(&mut world, "/admin/retry-due", &Value::Null);
    assert_eq!(world.count("/v2/orders?"), 1, "{:?}", world.requests());
    assert_eq!(world.count("/v3/customers?"), 1);
    assert_eq!(world.count("/v3/company/"), 0);
    let sweep = sweep_state(&world);
    assert_eq!(sweep["queued_last_run"], 0);
    assert_eq!(sweep["missed_total"], 2);

    // An edit made with webhooks off is found again.
    world.advance(10);
    world.edit_order(901, |o| {
        o["date_modified"] = json!((t0() + Duration::seconds(620)).to_rfc2822());
        o["staff_notes"] = json!("changed");
    });
    world.advance(300);
    post(&mut world, "/admin/retry-due", &Value::Null);
    let sweep = sweep_state(&world);
    assert_eq!(sweep["queued_last_run"], 1, "{sweep}");
    let rec = world.record(901);
    assert_eq!(
        rec.audit
            .iter()
            .filter(|a| a.detail["scope"] == "ml/sweep")
            .count(),
        2
    );
}
