//! The BigCommerce simulator over real HTTP, and the order generator's arithmetic.

use ml_sim::bigcommerce::r#gen::{dec, generate, shapes};
use rust_decimal::Decimal;
use serde_json::Value;

fn d(v: &Value) -> Decimal {
    assert!(v.is_string(), "money must be a string, got {v}");
    let s = v.as_str().unwrap();
    assert!(
        s.ends_with("00") && s.split('.').nth(1).map(str::len) == Some(4),
        "not a whole-cent 4-decimal string: {s}"
    );
    dec(v)
}

#[test]
fn generated_payments_tie_to_the_cent_whatever_the_tender() {
    use ml_sim::bigcommerce::{Payment, capture, generate_paid};
    for (i, shape) in shapes(24, 11).iter().enumerate() {
        let id = 300 + i as u64;
        let total = d(&generate(id, shape).order["total_inc_tax"]);
        for payment in [
            Payment::Unpaid,
            Payment::Captured,
            Payment::Authorized,
            Payment::GiftCertificate(2_500),
            Payment::StoreCredit(1_000),
            Payment::GiftCertificate(10_000_000),
        ] {
            let o = generate_paid(id, shape, payment).order;
            let ctx = format!("order {id} {payment:?}");
            assert_eq!(d(&o["total_inc_tax"]), total, "same figures: {ctx}");
            let gift = d(&o["gift_certificate_amount"]);
            let credit = d(&o["store_credit_amount"]);
            let card = total - gift - credit;
            assert!(card >= Decimal::ZERO, "{ctx}");
            let status = o["payment_status"].as_str().unwrap();
            match payment {
                Payment::Unpaid => {
                    assert_eq!(
                        (o["status_id"].as_u64(), status),
                        (Some(7), "pending"),
                        "{ctx}"
                    );
                    assert_eq!(o["payment_provider_id"], "", "{ctx}");
                }
                Payment::Authorized => assert_eq!(status, "authorized", "{ctx}"),
                _ => assert_eq!(status, "captured", "{ctx}"),
            }
            if matches!(payment, Payment::GiftCertificate(_)) {
                assert_eq!(
                    gift,
                    total.min(Decimal::new(
                        if matches!(payment, Payment::GiftCertificate(2_500)) {
                            2_500
                        } else {
                            10_000_000
                        },
                        2
                    )),
                    "{ctx}"
                );
            }
            if card.is_zero() {
                assert_eq!(o["payment_method"], "Gift Certificate", "{ctx}");
                assert_eq!(o["payment_provider_id"], "", "{ctx}");
            } else if payment != Payment::Unpaid {
                let provider = o["payment_provider_id"].as_str().unwrap();
                assert!(
                    provider.starts_with("ch_") && provider.len() > 21,
                    "{ctx}: {provider}"
                );
            }
        }
        let mut later = generate_paid(id, shape, Payment::Authorized).order;
        capture(&mut later);
        assert_eq!(later["payment_status"], "captured");
    }
}

#[test]
fn generator_totals_tie_to_the_cent_for_forty_shapes() {
    let all = shapes(40, 7);
    assert_eq!(all.len(), 40);
    for (i, shape) in all.iter().enumerate() {
        let id = 100 + i as u64;
        let g = generate(id, shape);
        let o = &g.order;
        let ctx = format!("order {id} shape {shape:?}");
        let subtotal = d(&o["subtotal_ex_tax"]);
        let total_ex = d(&o["total_ex_tax"]);
        assert_eq!(
            total_ex,
            subtotal
                + d(&o["shipping_cost_ex_tax"])
                + d(&o["handling_cost_ex_tax"])
                + d(&o["wrapping_cost_ex_tax"])
                - d(&o["coupon_discount"])
                - d(&o["discount_amount"]),
            "{ctx}"
        );
        assert_eq!(
            d(&o["total_inc_tax"]),
            total_ex + d(&o["total_tax"]),
            "{ctx}"
        );
        let mut sum = Decimal::ZERO;
        for row in &g.products {
            let qty = Decimal::from(row["quantity"].as_i64().unwrap());
            assert_eq!(
                d(&row["total_ex_tax"]),
                d(&row["price_ex_tax"]) * qty,
                "{ctx}"
            );
            assert_eq!(
                d(&row["price_inc_tax"]),
                d(&row["price_ex_tax"]) + d(&row["price_tax"]),
                "{ctx}"
            );
            assert_eq!(
                d(&row["total_inc_tax"]),
                d(&row["total_ex_tax"]) + d(&row["total_tax"]),
                "{ctx}"
            );
            sum += d(&row["total_ex_tax"]);
        }
        assert_eq!(subtotal, sum, "{ctx}");
        assert_eq!(g.products.len(), shape.lines, "{ctx}");
        // Order-level discounts are spread over the lines exactly.
        let spread: Decimal = g
            .products
            .iter()
            .flat_map(|r| r["applied_discounts"].as_array().unwrap().iter())
            .map(|a| d(&a["amount"]))
            .sum();
        assert_eq!(
            spread,
            d(&o["coupon_discount"]) + d(&o["discount_amount"]),
            "{ctx}"
        );
        assert_eq!(o["is_tax_inclusive_pricing"], shape.tax_inclusive, "{ctx}");
        assert_eq!(shape.coupon, !d(&o["coupon_discount"]).is_zero(), "{ctx}");
        assert_eq!(
            shape.manual_discount,
            !d(&o["discount_amount"]).is_zero(),
            "{ctx}"
        );
        assert_eq!(
            shape.shipping,
            !d(&o["shipping_cost_ex_tax"]).is_zero(),
            "{ctx}"
        );
        assert_eq!(
            shape.handling,
            !d(&o["handling_cost_ex_tax"]).is_zero(),
            "{ctx}"
        );
        assert_eq!(
            shape.wrapping,
            !d(&o["wrapping_cost_ex_tax"]).is_zero(),
            "{ctx}"
        );
        assert_eq!(
            shape.tax_rate_bp == 0,
            d(&o["total_tax"]).is_zero(),
            "{ctx}"
        );
        if shape.guest {
            assert_eq!(o["customer_id"], 0, "{ctx}");
            assert!(g.customer.is_none());
            assert!(
                o["billing_address"]["email"]
                    .as_str()
                    .unwrap()
                    .contains('@')
            );
        } else {
            let c = g
                .customer
                .as_ref()
                .expect("registered buyer has a customer");
            assert_eq!(o["customer_id"], c["id"], "{ctx}");
        }
        // Consignments embed the same rows /products serves.
        assert_eq!(
            o["consignments"]["shipping"][0]["line_items"],
            Value::Array(g.products.clone()),
            "{ctx}"
        );
        assert!(
            o["date_created"].as_str().unwrap().ends_with("+0000"),
            "{ctx}"
        );
    }
}

#[test]
fn generator_is_deterministic_and_shapes_cover_every_knob() {
    let a = shapes(128, 3);
    assert_eq!(a, shapes(128, 3));
    assert_eq!(generate(9, &a[5]), generate(9, &a[5]));
    let combos: std::collections::HashSet<_> = a
        .iter()
        .map(|s| {
            (
                s.tax_inclusive,
                s.coupon,
                s.manual_discount,
                s.shipping,
                s.handling,
                s.wrapping,
                s.guest,
            )
        })
        .collect();
    assert_eq!(
        combos.len(),
        128,
        "128 shapes cover every combination of the seven knobs"
    );
    let lines: std::collections::BTreeSet<_> = a.iter().map(|s| s.lines).collect();
    assert_eq!(
        lines.into_iter().collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    let exclusive: std::collections::BTreeSet<_> = a
        .iter()
        .filter(|s| !s.tax_inclusive)
        .map(|s| s.tax_rate_bp)
        .collect();
    assert_eq!(
        exclusive.into_iter().collect::<Vec<_>>(),
        vec![0, 625, 800, 2000]
    );
    let inclusive: std::collections::BTreeSet<_> = a
        .iter()
        .filter(|s| s.tax_inclusive)
        .map(|s| s.tax_rate_bp)
        .collect();
    assert_eq!(inclusive.into_iter().collect::<Vec<_>>(), vec![1000, 2000]);
    // Small batches mix the knobs too.
    let few = shapes(8, 1);
    assert!(few.iter().any(|s| s.guest) && few.iter().any(|s| !s.guest));
    assert!(few.iter().any(|s| s.tax_inclusive) && few.iter().any(|s| !s.tax_inclusive));
}

// ---------------------------------------------------------------------------------------------
// The server, over real HTTP.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ml_sim::bigcommerce::{BcSim, BcSimConfig, BcSimHandle, OrderShape, hooks, shared_dir};

fn shape(coupon: bool, guest: bool) -> OrderShape {
    OrderShape {
        lines: 3,
        tax_inclusive: false,
        tax_rate_bp: 825,
        coupon,
        manual_discount: false,
        shipping: true,
        handling: false,
        wrapping: false,
        guest,
        seed: 42,
    }
}

async fn sim() -> BcSimHandle {
    BcSim::start(BcSimConfig::default()).await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn get(h: &BcSimHandle, path_and_query: &str) -> reqwest::Response {
    client()
        .get(format!("{}{}", h.store_url(), path_and_query))
        .header("X-Auth-Token", h.token())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn requests_without_the_token_are_401_in_the_v2_and_v3_error_shapes() {
    let h = sim().await;
    h.put_order(generate(250, &shape(false, true)));
    let r = client()
        .get(format!("{}/v2/orders/250", h.store_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("x-rate-limit-requests-left"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body[0]["status"], 401);
    let r = client()
        .get(format!("{}/v3/customers", h.store_url()))
        .header("X-Auth-Token", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], 401);
    assert!(body["title"].as_str().unwrap().contains("X-Auth-Token"));
    // Header names are case-insensitive.
    let r = client()
        .get(format!("{}/v2/orders/250", h.store_url()))
        .header("x-auth-token", h.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_wrong_store_hash_is_404() {
    let h = sim().await;
    let r = client()
        .get(format!("{}/stores/nosuchstore/v2/store", h.base_url()))
        .header("X-Auth-Token", h.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn consignment_line_items_are_embedded_only_with_consignment_structure_object() {
    let h = sim().await;
    let g = generate(251, &shape(true, false));
    let products = g.products.clone();
    h.put_order(g);

    let with: Value = get(
        &h,
        "/v2/orders/251?include=consignments.line_items,fees&consignment_structure=object",
    )
    .await
    .json()
    .await
    .unwrap();
    let lines = &with["consignments"]["shipping"][0]["line_items"];
    assert_eq!(lines, &Value::Array(products.clone()));
    assert!(with["fees"].is_array());
    assert_eq!(with["products"]["resource"], "/orders/251/products");

    let without: Value = get(&h, "/v2/orders/251?include=consignments.line_items,fees")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        without["consignments"].get("shipping").is_none(),
        "consignments must not be embedded: {}",
        without["consignments"]
    );
    assert_eq!(
        without["consignments"]["resource"],
        "/orders/251/consignments"
    );

    let plain: Value = get(&h, "/v2/orders/251").await.json().await.unwrap();
    assert_eq!(
        plain["consignments"]["resource"],
        "/orders/251/consignments"
    );
    assert_eq!(plain["fees"]["resource"], "/orders/251/fees");
    assert_eq!(plain["total_inc_tax"], with["total_inc_tax"]);

    let links: Value = get(
        &h,
        "/v2/orders/251?include=consignments&consignment_structure=object",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        links["consignments"]["shipping"][0]["line_items"][0]["resource"],
        format!("/orders/251/products/{}", products[0]["id"])
    );

    let rows: Value = get(&h, "/v2/orders/251/products")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rows, Value::Array(products));
}

#[tokio::test]
async fn an_unknown_order_is_404_with_an_array_body() {
    let h = sim().await;
    let r = get(&h, "/v2/orders/999999").await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    let recorded: Value = serde_json::from_str(
        &std::fs::read_to_string(shared_dir().join("fixtures/bigcommerce/spec_v2_404.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(body, recorded);
    let r = get(&h, "/v2/orders/999999/products").await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn an_order_without_coupons_answers_204_with_an_empty_body() {
    let h = sim().await;
    h.put_order(generate(252, &shape(false, true)));
    h.put_order(generate(253, &shape(true, true)));
    let r = get(&h, "/v2/orders/252/coupons").await;
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty());
    let coupons: Value = get(&h, "/v2/orders/253/coupons")
        .await
        .json()
        .await
        .unwrap();
    let order = h.order(253).unwrap();
    assert_eq!(dec(&coupons[0]["discount"]), dec(&order["coupon_discount"]));
    let taxes: Value = get(&h, "/v2/orders/253/taxes").await.json().await.unwrap();
    assert_eq!(taxes[0]["rate"], "8.2500");
    assert_eq!(taxes[0]["line_amount"], order["total_tax"]);
    let addresses: Value = get(&h, "/v2/orders/253/shipping_addresses")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(addresses[0]["cost_ex_tax"], order["shipping_cost_ex_tax"]);
    assert!(addresses[0].get("line_items").is_none());
}

#[tokio::test]
async fn sub_resources_paginate_with_limit_and_page() {
    let h = sim().await;
    let mut s = shape(false, true);
    s.lines = 5;
    h.put_order(generate(254, &s));
    let first: Value = get(&h, "/v2/orders/254/products?limit=2&page=1")
        .await
        .json()
        .await
        .unwrap();
    let third: Value = get(&h, "/v2/orders/254/products?limit=2&page=3")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first.as_array().unwrap().len(), 2);
    assert_eq!(third.as_array().unwrap().len(), 1);
    assert_eq!(
        get(&h, "/v2/orders/254/products?limit=2&page=4")
            .await
            .status(),
        204
    );
    assert_eq!(
        get(&h, "/v2/orders/254/products?limit=0").await.status(),
        400
    );
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_its_reset_header() {
    let h = sim().await;
    h.set_rate_limit(3, Duration::from_secs(30));
    for left in [2, 1, 0] {
        let r = get(&h, "/v2/store").await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["x-rate-limit-requests-left"],
            left.to_string().as_str()
        );
        assert_eq!(r.headers()["x-rate-limit-requests-quota"], "3");
        assert_eq!(r.headers()["x-rate-limit-time-window-ms"], "30000");
    }
    let r = get(&h, "/v2/store").await;
    assert_eq!(r.status(), 429);
    let reset: u64 = r.headers()["x-rate-limit-time-reset-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset > 0 && reset <= 30_000);
    assert_eq!(r.headers()["x-rate-limit-requests-left"], "0");
    // A fresh window lets requests through again.
    h.set_rate_limit(3, Duration::from_secs(30));
    assert_eq!(get(&h, "/v2/store").await.status(), 200);
}

#[tokio::test]
async fn customers_id_in_with_an_unknown_id_gives_empty_data() {
    let h = sim().await;
    let r = get(&h, "/v3/customers?id:in=424242").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"], serde_json::json!([]));
    assert_eq!(body["meta"]["pagination"]["total"], 0);

    let body: Value = get(&h, "/v3/customers?id:in=2,3&include=addresses")
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["last_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["O'Brien", "Smith"]);
    assert_eq!(body["data"][1]["company"], "Smith & Sons Hardware");
    assert_eq!(body["data"][1]["customer_group_id"], 2);
    assert!(body["data"][0]["addresses"].is_array());

    let body: Value = get(&h, "/v3/customers?email:in=TARO.YAMADA@example.jp")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"][0]["first_name"], "太郎");
    assert!(
        body["data"][0].get("addresses").is_none(),
        "addresses only with include=addresses"
    );

    h.delete_customer(2);
    let body: Value = get(&h, "/v3/customers?id:in=2").await.json().await.unwrap();
    assert_eq!(body["data"], serde_json::json!([]));
}

#[tokio::test]
async fn catalog_products_carry_categories_and_brand() {
    let h = sim().await;
    let body: Value = get(&h, "/v3/catalog/products/121")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"]["categories"], serde_json::json!([23]));
    assert_eq!(body["data"]["brand_id"], 5);
    assert_eq!(get(&h, "/v3/catalog/products/5555").await.status(), 404);
    let store: Value = get(&h, "/v2/store").await.json().await.unwrap();
    assert_eq!(store["name"], "Maple & Loom Outfitters");
}

#[tokio::test]
async fn unknown_routes_and_methods_fail_loudly_naming_them() {
    let h = sim().await;
    let r = get(&h, "/v2/orderz/1").await;
    assert_eq!(r.status(), 404);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("GET") && text.contains("/v2/orderz/1"),
        "{text}"
    );
    let r = client()
        .delete(format!("{}/v2/orders/1", h.store_url()))
        .header("X-Auth-Token", h.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("DELETE") && text.contains("/v2/orders/1"),
        "{text}"
    );
}

#[tokio::test]
async fn hooks_are_created_validated_and_listed() {
    let h = sim().await;
    let url = format!("{}/v3/hooks", h.store_url());
    let create = |body: Value| {
        client()
            .post(&url)
            .header("X-Auth-Token", h.token())
            .json(&body)
            .send()
    };
    let r = create(serde_json::json!({"scope": "store/order/*", "destination": "https://connector.example/webhooks",
        "is_active": true, "headers": {"x-ml-webhook-secret": "s3cret"}}))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["data"]["scope"], "store/order/*");
    assert_eq!(created["data"]["headers"]["x-ml-webhook-secret"], "s3cret");
    assert!(created["data"]["id"].is_u64());
    assert_eq!(
        create(serde_json::json!({"scope": "orders", "destination": "https://x.example/"}))
            .await
            .unwrap()
            .status(),
        422
    );
    assert_eq!(
        create(serde_json::json!({"scope": "store/order/created", "destination": "not a url"}))
            .await
            .unwrap()
            .status(),
        422
    );
    assert_eq!(
        create(serde_json::json!({"destination": "https://x.example/"}))
            .await
            .unwrap()
            .status(),
        422
    );
    // Only one hook per scope and destination.
    assert_eq!(
        create(serde_json::json!({"scope": "store/order/*", "destination": "https://connector.example/webhooks"})).await.unwrap().status(),
        422
    );
    let list: Value = client()
        .get(&url)
        .header("X-Auth-Token", h.token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(h.hooks().len(), 1);
    assert!(hooks::scope_matches(
        "store/order/*",
        "store/order/statusUpdated"
    ));
    assert!(!hooks::scope_matches(
        "store/order/*",
        "store/customer/created"
    ));
}

type Seen = Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>>;

/// A tiny webhook receiver: answers each request with the next status from `statuses`
/// (200 once they run out) and records what it got.
async fn receiver(statuses: Vec<u16>) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let queue = Arc::new(Mutex::new(statuses.into_iter()));
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/webhooks",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = s2.clone();
            let queue = queue.clone();
            async move {
                seen.lock().unwrap().push((headers, body));
                let status = queue.lock().unwrap().next().unwrap_or(200);
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/webhooks"), seen)
}

#[tokio::test]
async fn a_webhook_is_delivered_signed_with_custom_headers_and_retried_after_a_500() {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let secret = "bc-client-secret-for-tests";
    let h = BcSim::start(BcSimConfig {
        client_secret: Some(secret.into()),
        retry_schedule: vec![Duration::from_millis(5), Duration::from_millis(5)],
        ..BcSimConfig::default()
    })
    .await
    .unwrap();
    let (dest, seen) = receiver(vec![500]).await;
    h.add_hook(
        "store/order/*",
        &dest,
        &[("x-ml-webhook-secret", "hook-header-value")],
    );
    h.add_hook("store/customer/created", &dest, &[]);

    let report = h
        .place_order(generate(260, &shape(false, false)))
        .await
        .unwrap();
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(report.hooks.len(), 1, "only the order hook matches");
    assert_eq!(report.hooks[0].attempts, 2);
    assert_eq!(report.hooks[0].final_status, Some(200));

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].1, seen[1].1, "a retry resends the same body");
    let (headers, body) = &seen[1];
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["scope"], "store/order/created");
    assert_eq!(v["data"], serde_json::json!({"type": "order", "id": 260}));
    assert_eq!(v["producer"], format!("stores/{}", h.store_hash()));
    assert!(
        v["store_id"]
            .as_str()
            .unwrap()
            .chars()
            .all(|c| c.is_ascii_digit())
    );
    assert!(v["created_at"].is_i64());
    let hash = v["hash"].as_str().unwrap();
    assert_eq!(hash.len(), 40);
    assert_eq!(headers["x-ml-webhook-secret"], "hook-header-value");
    assert_eq!(headers["webhook-id"], hash);
    let ts = headers["webhook-timestamp"].to_str().unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{hash}.{ts}.{body}").as_bytes());
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(headers["webhook-signature"], expected.as_str());

    // A duplicate delivery of the same event carries the same hash and webhook-id.
    let dup = h.deliver_raw("store/order/created", body).await.unwrap();
    assert_eq!(dup.webhook_id, hash);
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_reports_every_attempt() {
    let h = BcSim::start(BcSimConfig {
        retry_schedule: vec![Duration::from_millis(1); 2],
        ..BcSimConfig::default()
    })
    .await
    .unwrap();
    let (dest, seen) = receiver(vec![503, 503, 503, 503]).await;
    h.add_hook("store/customer/created", &dest, &[]);
    let report = h
        .deliver(
            "store/customer/created",
            serde_json::json!({"type": "customer", "id": 3}),
        )
        .await
        .unwrap();
    assert!(!report.all_delivered());
    assert_eq!(report.hooks[0].attempts, 3);
    assert_eq!(report.hooks[0].final_status, Some(503));
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert!(
        seen.lock().unwrap()[0].0.get("webhook-signature").is_none(),
        "no client secret, no signature"
    );
}

#[tokio::test]
async fn recorded_fixtures_are_served_as_recorded() {
    let h = sim().await;
    let dir = shared_dir().join("fixtures/bigcommerce");
    h.serve_fixture_order(
        218,
        &dir.join("spec_v2_order_218_with_fees.json"),
        Some(&dir.join("spec_v2_order_products_149.json")),
    )
    .unwrap();
    h.serve_fixture_subresource(218, "coupons", &dir.join("spec_v2_order_coupons_120.json"))
        .unwrap();
    h.serve_fixture_subresource(218, "taxes", &dir.join("spec_v2_order_taxes_138.json"))
        .unwrap();
    h.serve_fixture_subresource(
        218,
        "shipping_addresses",
        &dir.join("spec_v2_order_shipping_addresses_229.json"),
    )
    .unwrap();
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
    };
    let order: Value = get(
        &h,
        "/v2/orders/218?include=consignments.line_items,fees&consignment_structure=object",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(order, read("spec_v2_order_218_with_fees.json"));
    assert_eq!(
        order["fees"][0]["cost_exc_tax"], "12.3000",
        "odd fields survive"
    );
    let products: Value = get(&h, "/v2/orders/218/products")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(products, read("spec_v2_order_products_149.json"));
    let coupons: Value = get(&h, "/v2/orders/218/coupons")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(coupons, read("spec_v2_order_coupons_120.json"));
    let taxes: Value = get(&h, "/v2/orders/218/taxes").await.json().await.unwrap();
    assert_eq!(taxes, read("spec_v2_order_taxes_138.json"));
    let addresses: Value = get(&h, "/v2/orders/218/shipping_addresses")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(addresses, read("spec_v2_order_shipping_addresses_229.json"));
    assert!(
        h.serve_fixture_subresource(999, "taxes", &dir.join("spec_v2_order_taxes_138.json"))
            .is_err()
    );
}

#[tokio::test]
async fn faults_injected_through_control_hit_bigcommerce_paths() {
    let h = sim().await;
    h.put_order(generate(270, &shape(false, true)));
    h.control().fail_next("/v2/orders/270", 1, 503);
    assert_eq!(get(&h, "/v2/orders/270").await.status(), 503);
    assert_eq!(get(&h, "/v2/orders/270").await.status(), 200);
    assert_eq!(h.control().calls_to("/v2/orders/270"), 2);
    assert!(h.update_order(270, |o| o["status_id"] = serde_json::json!(2)));
    let o: Value = get(&h, "/v2/orders/270").await.json().await.unwrap();
    assert_eq!(o["status_id"], 2);
}

#[tokio::test]
async fn a_hook_whose_every_retry_failed_is_deactivated_and_receives_nothing_more() {
    let h = BcSim::start(BcSimConfig {
        retry_schedule: vec![Duration::from_millis(1); 2],
        ..BcSimConfig::default()
    })
    .await
    .unwrap();
    let (dest, seen) = receiver(vec![503, 503, 503]).await;
    let id = h.add_hook("store/customer/created", &dest, &[]);
    let data = serde_json::json!({"type": "customer", "id": 3});
    let report = h
        .deliver("store/customer/created", data.clone())
        .await
        .unwrap();
    assert!(!report.all_delivered());
    let listed: Value = get(&h, "/v3/hooks").await.json().await.unwrap();
    assert_eq!(listed["data"][0]["id"], id);
    assert_eq!(listed["data"][0]["is_active"], false);
    let later = h.deliver("store/customer/created", data).await.unwrap();
    assert!(later.hooks.is_empty(), "an inactive hook gets nothing");
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn hooks_are_listed_in_pages_and_one_per_scope_and_destination() {
    let h = sim().await;
    for i in 0..3 {
        h.add_hook(&format!("store/order/s{i}"), "https://a.example/w", &[]);
    }
    let page: Value = get(&h, "/v3/hooks?limit=2&page=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["meta"]["pagination"]["total_pages"], 2);
    let dup = client()
        .post(format!("{}/v3/hooks", h.store_url()))
        .header("X-Auth-Token", h.token())
        .json(&serde_json::json!({"scope": "store/order/s0", "destination": "https://a.example/w"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 422);
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn the_order_list_filters_by_id_and_dates_sorts_and_ends_with_a_204() {
    let h = sim().await;
    for id in 1..=5u64 {
        let mut g = generate(id, &shape(false, false));
        let day = |d: u64| {
            chrono::DateTime::parse_from_rfc3339(&format!("2026-01-{d:02}T10:00:00Z"))
                .unwrap()
                .to_rfc2822()
        };
        g.order["date_created"] = Value::String(day(id));
        g.order["date_modified"] = Value::String(day(16 - id));
        h.put_order(g);
    }
    let all: Value = get(&h, "/v2/orders").await.json().await.unwrap();
    assert_eq!(ids(&all), [1, 2, 3, 4, 5], "default sort: id ascending");
    let window: Value = get(
        &h,
        "/v2/orders?min_date_created=2026-01-02T00:00:00Z&max_date_created=Sun,%2004%20Jan%202026%2010:00:00%20%2B0000&sort=id:desc",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(ids(&window), [4, 3, 2]);
    let keyset: Value = get(&h, "/v2/orders?min_id=4&limit=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&keyset), [4]);
    let modified: Value = get(
        &h,
        "/v2/orders?min_date_modified=2026-01-13T10:00:00Z&sort=date_modified:asc",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(ids(&modified), [3, 2, 1]);
    let past_the_end = get(&h, "/v2/orders?min_id=6").await;
    assert_eq!(past_the_end.status(), 204);
    assert!(past_the_end.text().await.unwrap().is_empty());
    assert_eq!(
        get(&h, "/v2/orders?min_date_created=yesterday")
            .await
            .status(),
        400
    );
    assert_eq!(get(&h, "/v2/orders?sort=total:asc").await.status(), 400);
}

#[tokio::test]
async fn customers_filter_by_date_modified_and_sort() {
    let h = sim().await;
    let mut c: Value = h.customer(1).expect("seeded customer 1");
    c["id"] = 9001.into();
    c["email"] = "later@example.com".into();
    c["date_modified"] = "2026-06-01T00:00:00Z".into();
    h.put_customer(c);
    let later: Value = get(
        &h,
        "/v3/customers?date_modified:min=2026-05-31T00:00:00&sort=date_modified:asc",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(ids(&later["data"]), [9001]);
    assert_eq!(later["meta"]["pagination"]["total"], 1);
    assert_eq!(
        get(&h, "/v3/customers?date_modified:min=soon")
            .await
            .status(),
        422
    );
}
