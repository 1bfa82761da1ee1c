//! Orders become invoices (issue 4): the real component in the real harness against the
//! simulators over HTTP.

use std::time::Duration;

use ml_e2e::env::{TestEnv, TestOptions, eventually_named};
use ml_sim::bigcommerce::{OrderShape, generate};
use rust_decimal::Decimal;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn contract_mapping() -> Value {
    json!({
        "version": 1,
        "invoice": {
            "doc_number": "{order_id}",
            "default_item": "BigCommerce Sales",
            "default_class": null,
            "rules": [
                {"match": {"sku_prefix": "APP-"}, "item": "Apparel Sales", "class": "Apparel"},
                {"match": {"customer_group_id": 2}, "class": "Wholesale"},
                {"match": {"category_id": 23}, "account": "Home Goods Revenue"}
            ],
            "shipping": {"item": "Shipping Income"},
            "handling": {"item": "Handling Income"},
            "wrapping": {"item": "Gift Wrap Income"},
            "discount": {"account": "Discounts given"},
            "tax": {"mode": "auto"}
        },
        "customers": {"guest": {"mode": "per_email"}}
    })
}

fn shape(seed: u64) -> OrderShape {
    OrderShape {
        lines: 4,
        tax_inclusive: false,
        tax_rate_bp: 800,
        coupon: true,
        manual_discount: false,
        shipping: true,
        handling: true,
        wrapping: true,
        guest: false,
        seed,
    }
}

fn dec(v: &Value) -> Decimal {
    match v {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.to_string().parse().unwrap(),
        other => panic!("not a number: {other}"),
    }
}

async fn record(env: &TestEnv, id: u64) -> Value {
    let (status, rec) = env.admin_get(&format!("/admin/records/order/{id}")).await;
    assert_eq!(status, 200, "{rec}");
    rec
}

async fn wait_state(env: &TestEnv, id: u64, state: &str) -> Value {
    eventually_named(&format!("order {id} is {state}"), WAIT, || async {
        let (status, rec) = env.admin_get(&format!("/admin/records/order/{id}")).await;
        (status == 200 && rec["state"] == state).then_some(rec)
    })
    .await
}

fn invoices_for(env: &TestEnv, doc: &str) -> Vec<Value> {
    env.qbo
        .invoices()
        .into_iter()
        .filter(|i| i["DocNumber"] == doc)
        .collect()
}

fn item_name(env: &TestEnv, id: &str) -> String {
    env.qbo
        .items()
        .into_iter()
        .find(|i| i["Id"] == id)
        .and_then(|i| i["Name"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_order_becomes_one_invoice_with_the_right_lines_and_total() {
    let env = TestEnv::start(TestOptions::default()).await;
    let (status, body) = env.admin_put("/admin/mapping", &contract_mapping()).await;
    assert_eq!(status, 200, "{body}");
    let order = generate(501, &shape(11));
    let raw = order.order.clone();
    let products = order.products.clone();
    env.bc.place_order(order).await.unwrap();
    let rec = wait_state(&env, 501, "posted").await;

    let invoices = invoices_for(&env, "501");
    assert_eq!(invoices.len(), 1, "exactly one invoice");
    let inv = &invoices[0];
    assert_eq!(rec["qbo_id"], inv["Id"]);
    assert_eq!(
        dec(&inv["TotalAmt"]),
        dec(&raw["total_inc_tax"]).round_dp(2),
        "invoice total equals the order total"
    );
    let lines: Vec<&Value> = inv["Line"].as_array().unwrap().iter().collect();
    let sales: Vec<&&Value> = lines
        .iter()
        .filter(|l| l["DetailType"] == "SalesItemLineDetail")
        .collect();
    for l in &sales {
        let d = &l["SalesItemLineDetail"];
        let amount = dec(&l["Amount"]);
        assert_eq!(
            (dec(&d["Qty"]) * dec(&d["UnitPrice"])).round_dp(2),
            amount,
            "Qty x UnitPrice = Amount: {l}"
        );
    }
    // Each product line on the item/class its rule says.
    for p in &products {
        let sku = p["sku"].as_str().unwrap();
        let line = sales
            .iter()
            .find(|l| l["Description"].as_str().is_some_and(|d| d.contains(sku)))
            .unwrap_or_else(|| panic!("no line for {sku}: {inv}"));
        let item = item_name(
            &env,
            line["SalesItemLineDetail"]["ItemRef"]["value"]
                .as_str()
                .unwrap(),
        );
        if sku.starts_with("APP-") {
            assert_eq!(item, "Apparel Sales", "{sku}");
            assert!(
                line["SalesItemLineDetail"]["ClassRef"]["value"].is_string(),
                "apparel lines carry the Apparel class"
            );
        } else {
            assert!(
                item == "BigCommerce Sales" || item == "Home Goods Revenue",
                "{sku} -> {item}"
            );
        }
    }
    let named = |needle: &str| {
        sales.iter().any(|l| {
            item_name(
                &env,
                l["SalesItemLineDetail"]["ItemRef"]["value"]
                    .as_str()
                    .unwrap(),
            ) == needle
        })
    };
    assert!(named("Shipping Income"), "a shipping line");
    assert!(named("Handling Income"), "a handling line");
    assert!(named("Gift Wrap Income"), "a wrapping line");
    // Tax as the (US, automated sales tax) company books it: BigCommerce's tax as the override.
    assert!(!named("Sales Tax Collected"), "no tax line");
    // (A rounding residue of a cent per line may be absorbed in the tax.)
    let tax_gap = dec(&inv["TxnTaxDetail"]["TotalTax"]) - dec(&raw["total_tax"]).round_dp(2);
    assert!(tax_gap.abs() <= Decimal::new(5, 2), "{inv}");
    let discounts: Vec<&&Value> = lines
        .iter()
        .filter(|l| l["DetailType"] == "DiscountLineDetail")
        .collect();
    // The coupon: one discount line, or (lines of several classes) one negative line per class
    // on the discount account's item (CONTRACT §11).
    let per_class: Vec<&&&Value> = sales
        .iter()
        .filter(|l| {
            item_name(
                &env,
                l["SalesItemLineDetail"]["ItemRef"]["value"]
                    .as_str()
                    .unwrap(),
            ) == "Discounts given"
        })
        .collect();
    let coupon = dec(&raw["coupon_discount"]).round_dp(2);
    if per_class.is_empty() {
        assert_eq!(discounts.len(), 1, "one discount line for the coupon");
        assert_eq!(dec(&discounts[0]["Amount"]), coupon);
    } else {
        assert!(discounts.is_empty(), "split per class, not both");
        let total: Decimal = per_class.iter().map(|l| dec(&l["Amount"])).sum();
        assert_eq!(-total, coupon, "the coupon split per class");
    }
    // A `waiting` step (the shared QuickBooks limiter held the job back for a moment, as the
    // setup's calls used this second's budget) is the limiter's, not the order's.
    let steps: Vec<&str> = rec["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["step"].as_str().unwrap())
        .filter(|s| *s != "waiting")
        .collect();
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
    let text = rec.to_string();
    assert!(
        !text.contains(env.bc.token()),
        "no BigCommerce token in the audit trail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_concurrent_deliveries_still_post_one_invoice() {
    let env = TestEnv::start(TestOptions::default()).await;
    let order = generate(502, &shape(12));
    env.bc.put_order(order);
    let body = json!({"scope": "store/order/created", "store_id": "1", "data": {"type": "order", "id": 502},
                      "hash": "a".repeat(40), "created_at": 1_700_000_000, "producer": "stores/x"})
    .to_string();
    let updated = json!({"scope": "store/order/updated", "store_id": "1", "data": {"type": "order", "id": 502},
                         "hash": "b".repeat(40), "created_at": 1_700_000_001, "producer": "stores/x"})
    .to_string();
    let bodies: Vec<String> = (0..8)
        .map(|i| {
            if i % 2 == 0 {
                body.clone()
            } else {
                updated.clone()
            }
        })
        .collect();
    let replies = futures::future::join_all(bodies.iter().map(|b| env.post_webhook(b))).await;
    for reply in replies {
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    wait_state(&env, 502, "posted").await;
    // Let every worker finish, then make the scheduler look at the guard entries too. A worker
    // that took the lease after the first posted makes the record `pending` again until it
    // has compared the order (unchanged): on a busy machine that outlasts the pause, so the
    // record is awaited again rather than read once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.admin_post("/admin/retry-due", &json!({})).await;
    wait_state(&env, 502, "posted").await;
    assert_eq!(
        invoices_for(&env, "502").len(),
        1,
        "one invoice however often the order was announced"
    );
    let creates = env
        .qbo
        .control()
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/invoice"))
        .count();
    assert_eq!(creates, 1, "one invoice create request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_updated_order_updates_the_same_invoice() {
    let env = TestEnv::start(TestOptions::default()).await;
    env.bc.place_order(generate(503, &shape(13))).await.unwrap();
    let first = wait_state(&env, 503, "posted").await;
    let qbo_id = first["qbo_id"].clone();
    // The merchant adds staff notes and changes the customer message: the invoice memo changes.
    assert!(env.bc.update_order(503, |o| {
        o["customer_message"] = json!("Please gift wrap, thanks!");
        o["staff_notes"] = json!("called customer");
    }));
    // Wrapping changes the money too: drop the handling fee and reduce the total consistently.
    assert!(env.bc.update_order(503, |o| {
        let handling = dec(&o["handling_cost_ex_tax"]);
        let set = |o: &mut Value, k: &str, v: Decimal| o[k] = json!(format!("{:.4}", v));
        let ex = dec(&o["total_ex_tax"]) - handling;
        let inc = dec(&o["total_inc_tax"]) - handling;
        set(o, "total_ex_tax", ex);
        set(o, "total_inc_tax", inc);
        for k in [
            "handling_cost_ex_tax",
            "handling_cost_inc_tax",
            "base_handling_cost",
        ] {
            set(o, k, Decimal::ZERO);
        }
    }));
    let new_total = dec(&env.bc.order(503).unwrap()["total_inc_tax"]).round_dp(2);
    env.bc
        .deliver("store/order/updated", json!({"type": "order", "id": 503}))
        .await
        .unwrap();
    let rec = eventually_named("the invoice is updated", WAIT, || async {
        let rec = record(&env, 503).await;
        (rec["state"] == "posted" && rec["qbo_sync_token"] != first["qbo_sync_token"])
            .then_some(rec)
    })
    .await;
    assert_eq!(rec["qbo_id"], qbo_id, "the same invoice");
    let invoices = invoices_for(&env, "503");
    assert_eq!(invoices.len(), 1, "no second invoice");
    assert_eq!(dec(&invoices[0]["TotalAmt"]), new_total);
    let posts: Vec<String> = env
        .qbo
        .control()
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/invoice"))
        .map(|r| r.path)
        .collect();
    assert_eq!(posts.len(), 2, "one create, one update: {posts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_order_event_costs_no_quickbooks_write() {
    let env = TestEnv::start(TestOptions::default()).await;
    env.bc.place_order(generate(504, &shape(14))).await.unwrap();
    wait_state(&env, 504, "posted").await;
    env.qbo.control().clear_log();
    env.bc
        .deliver(
            "store/order/statusUpdated",
            json!({"type": "order", "id": 504}),
        )
        .await
        .unwrap();
    eventually_named("the event is recorded", WAIT, || async {
        let rec = record(&env, 504).await;
        rec["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["step"] == "unchanged")
    })
    .await;
    let writes = env
        .qbo
        .control()
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(writes, 0, "nothing changed, nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_webhooks_get_their_4xx_and_nothing_is_posted() {
    let env = TestEnv::start(TestOptions::default()).await;
    env.bc.put_order(generate(505, &shape(15)));
    let good = json!({"scope": "store/order/created", "store_id": "1", "data": {"type": "order", "id": 505},
                      "hash": "c".repeat(40), "created_at": 1_700_000_000, "producer": "stores/x"})
    .to_string();
    let wrong = env
        .request(
            "POST",
            "/webhooks/bigcommerce",
            &[("x-ml-webhook-secret", "nope")],
            good.clone().into_bytes(),
        )
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    let missing = env
        .request(
            "POST",
            "/webhooks/bigcommerce",
            &[],
            good.clone().into_bytes(),
        )
        .await;
    assert_eq!(missing.status, 401);
    assert_eq!(env.post_webhook("not json").await.status, 400);
    assert_eq!(
        env.post_webhook(r#"{"data": {"id": 505}}"#).await.status,
        400,
        "no scope"
    );
    assert_eq!(
        env.post_webhook(r#"{"scope": "store/order/created", "data": {"id": "x"}, "hash": "h"}"#)
            .await
            .status,
        400
    );
    let big = format!(
        "{{\"scope\":\"store/order/created\",\"pad\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    assert_eq!(env.post_webhook(&big).await.status, 413);
    let ignored = env
        .post_webhook(&good.replace("store/order/created", "store/product/updated"))
        .await;
    assert_eq!(
        ignored.status, 200,
        "other scopes are acknowledged and ignored"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        env.qbo.invoices().iter().all(|i| i["DocNumber"] != "505"),
        "nothing posted"
    );
    let (status, _) = env.admin_get("/admin/records/order/505").await;
    assert_eq!(status, 404, "no record for rejected webhooks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bigcommerce_404_fails_the_record_as_not_found_without_retrying() {
    let env = TestEnv::start(TestOptions::default()).await;
    env.bc
        .deliver(
            "store/order/created",
            json!({"type": "order", "id": 9_999_999}),
        )
        .await
        .unwrap();
    let rec = wait_state(&env, 9_999_999, "failed").await;
    assert_eq!(rec["reason"], "not_found");
    assert!(
        rec["last_error"].as_str().unwrap().len() > 10,
        "explained: {rec}"
    );
    let fetches = env.bc.control().calls_to("/v2/orders/9999999");
    env.admin_post("/admin/retry-due", &json!({})).await;
    assert_eq!(
        env.bc.control().calls_to("/v2/orders/9999999"),
        fetches,
        "not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bigcommerce_429_waits_for_the_reset_and_then_posts_once() {
    let env = TestEnv::start(TestOptions::default().retry_every(Duration::from_millis(200))).await;
    env.bc.control().inject(ml_sim::control::FaultRule {
        method: None,
        path_contains: "/v2/orders/506".into(),
        remaining: 1,
        action: ml_sim::control::FaultAction::Status {
            status: 429,
            headers: vec![
                ("X-Rate-Limit-Time-Reset-Ms".into(), "1500".into()),
                ("X-Rate-Limit-Requests-Left".into(), "0".into()),
            ],
            body: r#"{"status":429,"title":"Too many requests"}"#.into(),
        },
    });
    env.bc.place_order(generate(506, &shape(16))).await.unwrap();
    let retrying = wait_state(&env, 506, "retrying").await;
    let next = chrono::DateTime::parse_from_rfc3339(retrying["next_attempt_at"].as_str().unwrap())
        .unwrap();
    let failed_at = chrono::DateTime::parse_from_rfc3339(
        retrying["audit"].as_array().unwrap().last().unwrap()["at"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(
        next - failed_at >= chrono::Duration::milliseconds(1500),
        "waits at least the reset time"
    );
    wait_state(&env, 506, "posted").await;
    assert_eq!(invoices_for(&env, "506").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incomplete_order_is_skipped_until_checkout_completes() {
    let env = TestEnv::start(TestOptions::default()).await;
    let mut order = generate(507, &shape(17));
    order.order["status_id"] = json!(0);
    order.order["status"] = json!("Incomplete");
    env.bc.place_order(order).await.unwrap();
    let rec = wait_state(&env, 507, "skipped").await;
    assert!(rec["reason"].as_str().unwrap().contains("incomplete"));
    assert!(invoices_for(&env, "507").is_empty());
    env.bc.update_order(507, |o| {
        o["status_id"] = json!(11);
        o["status"] = json!("Awaiting Fulfillment");
    });
    env.bc
        .deliver(
            "store/order/statusUpdated",
            json!({"type": "order", "id": 507}),
        )
        .await
        .unwrap();
    wait_state(&env, 507, "posted").await;
    assert_eq!(invoices_for(&env, "507").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_shows_the_invoice_and_posts_nothing() {
    let env = TestEnv::start(TestOptions::default()).await;
    let order = generate(508, &shape(18));
    let total = dec(&order.order["total_inc_tax"]).round_dp(2);
    env.bc.put_order(order);
    let (status, preview) = env.admin_get("/admin/preview/order/508").await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["posted"], false);
    assert_eq!(preview["invoice"]["DocNumber"], "508");
    assert_eq!(dec(&json!(preview["total"].as_str().unwrap())), total);
    let writes = env
        .qbo
        .control()
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && !r.path.contains("oauth2"))
        .count();
    assert_eq!(writes, 0, "a preview writes nothing to QuickBooks");
    assert!(env.qbo.invoices().is_empty());
    let (status, _) = env.admin_get("/admin/records/order/508").await;
    assert_eq!(status, 404, "a preview leaves no record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_orders_with_one_email_share_one_quickbooks_customer() {
    let env = TestEnv::start(TestOptions::default()).await;
    let mut a = generate(
        509,
        &OrderShape {
            guest: true,
            ..shape(19)
        },
    );
    let mut b = generate(
        510,
        &OrderShape {
            guest: true,
            ..shape(20)
        },
    );
    for o in [&mut a, &mut b] {
        o.order["billing_address"]["email"] = json!("walk.in@example.com");
        o.order["billing_address"]["first_name"] = json!("Walk");
        o.order["billing_address"]["last_name"] = json!("In");
    }
    env.bc.place_order(a).await.unwrap();
    let first = wait_state(&env, 509, "posted").await;
    env.bc.place_order(b).await.unwrap();
    wait_state(&env, 510, "posted").await;
    let refs: Vec<Value> = ["509", "510"]
        .iter()
        .map(|d| invoices_for(&env, d)[0]["CustomerRef"]["value"].clone())
        .collect();
    assert_eq!(
        refs[0], refs[1],
        "the same customer for the same guest email"
    );
    let matching = env
        .qbo
        .customers()
        .into_iter()
        .filter(|c| c["PrimaryEmailAddr"]["Address"] == "walk.in@example.com")
        .count();
    assert_eq!(matching, 1);
    assert_eq!(first["state"], "posted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_order_whose_figures_do_not_tie_fails_with_the_numbers_instead_of_posting() {
    let env = TestEnv::start(TestOptions::default()).await;
    let fixtures = ml_sim::bigcommerce::shared_dir().join("fixtures/bigcommerce");
    env.bc
        .serve_fixture_order(
            218,
            &fixtures.join("spec_v2_order_218_with_fees.json"),
            Some(&fixtures.join("spec_v2_order_products_149.json")),
        )
        .unwrap();
    env.bc
        .deliver("store/order/created", json!({"type": "order", "id": 218}))
        .await
        .unwrap();
    let rec = wait_state(&env, 218, "failed").await;
    let err = rec["last_error"].as_str().unwrap();
    assert!(
        err.to_lowercase().contains("tie") || err.contains("total"),
        "{err}"
    );
    assert!(env.qbo.invoices().is_empty(), "no wrong invoice");
}
