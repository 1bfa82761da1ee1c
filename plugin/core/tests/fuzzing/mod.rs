//! Fuzz targets: one function per target, taking raw bytes and panicking when a property
//! breaks. They run three ways:
//! - as a regular test on stable (`tests/fuzz_corpus.rs`): every recorded fixture, the small
//!   committed seed corpus (`fuzz/corpus/<target>/`) and seeded mutations of both;
//! - under libFuzzer (`plugin/core/fuzz`, nightly: `cargo +nightly fuzz run <target>`), which
//!   includes this file;
//! - nothing here touches the file system or the network: the host is `FakeHost`, whose
//!   upstreams answer 404.
//!
//! Properties, beyond "does not panic":
//! - webhook intake: a delivery without the shared secret is refused with 401 and writes
//!   nothing; every refusal is JSON `{"error","message"}` and never a 5xx; an accepted delivery
//!   has filed its guard entry before the 200; running the work it leaves never panics; no
//!   answer and no KV value carries a credential the delivery did not.
//! - order mapping: an order BigCommerce's own totals identity accepts maps to an invoice
//!   whose lines total `total_inc_tax` to the cent.
//! - refund mapping: a refund of an order (`{"order": …, "refund": …}`) that the connector
//!   lays out becomes a document whose lines and tax total the refund's `total_amount` to the
//!   cent.
//! - admin routes: with every variable set, every answer is below 500, with a JSON error body
//!   when it is an error, and no answer carries a credential the request did not.

#![allow(dead_code)]

use std::collections::HashMap;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ml_core::books::customer::CustomerSource;
use ml_core::books::mapping::refund::{build_refund, refund_names};
use ml_core::books::mapping::{
    MappingConfig, OrderContext, ResolvedRefs, build_invoice, check_totals, plan, plan_exact,
};
use ml_core::http::{HttpResponse, Request};
use ml_core::models::bigcommerce::{self, Order, Refund};
use ml_core::routes::router;
use ml_core::testing::FakeHost;
use rust_decimal::Decimal;
use serde_json::Value;

/// A target: raw bytes in, a panic when a property breaks.
pub type Target = fn(&[u8]);

/// The targets, by name (the names of the libFuzzer binaries and corpus folders).
pub const TARGETS: &[(&str, Target)] = &[
    ("webhook_intake", webhook_intake),
    ("order_mapping", order_mapping),
    ("refund_mapping", refund_mapping),
    ("admin_route", admin_route),
];

const SECRET: &str = "fuzz-hook-secret-8d1e";
const ADMIN: &str = "fuzz-admin-token-77aa";
const BC_TOKEN: &str = "fuzzBcToken0000aaaa";
const CLIENT_SECRET: &str = "fuzzClientSecretBBBB";
const REFRESH: &str = "AB11fuzzRefreshToken";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-26T15:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A configured host whose upstreams know nothing (BigCommerce 404, QuickBooks 400).
fn host() -> FakeHost {
    let mut h = FakeHost::new(t0());
    for (k, v) in [
        ("bigcommerce_store_hash", "fuzzstore"),
        ("bigcommerce_access_token", BC_TOKEN),
        ("bigcommerce_api_base", "http://bc.fuzz"),
        ("bigcommerce_webhook_secret", SECRET),
        ("qbo_client_id", "fuzzClient"),
        ("qbo_client_secret", CLIENT_SECRET),
        ("qbo_api_base", "http://qbo.fuzz"),
        ("qbo_oauth_base", "http://oauth.fuzz"),
        ("qbo_realm_id", "123"),
        ("qbo_refresh_token", REFRESH),
        (
            "qbo_redirect_uri",
            "https://connector.fuzz/oauth/quickbooks/callback",
        ),
        ("admin_token", ADMIN),
    ] {
        h.set_config(k, v);
    }
    h.set_config(
        "encryption_key",
        &base64::engine::general_purpose::STANDARD.encode([9u8; 32]),
    );
    h.route("http://bc.fuzz", |_| {
        Ok(HttpResponse::json(
            404,
            &serde_json::json!({"status": 404, "title": "The requested resource was not found."}),
        ))
    });
    h.route("http://oauth.fuzz", |_| {
        Ok(HttpResponse::json(
            400,
            &serde_json::json!({"error": "invalid_grant"}),
        ))
    });
    h.route("http://qbo.fuzz", |_| {
        Ok(HttpResponse::json(
            401,
            &serde_json::json!({"fault": {"error": [{"code": "3200"}]}}),
        ))
    });
    h
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// No credential of the connector's in `bytes` — unless the request itself carried it (a
/// sender may put any text into a webhook, and the connector may keep that text).
fn assert_no_credential(what: &str, bytes: &[u8], input: &[u8]) {
    for c in [SECRET, ADMIN, BC_TOKEN, CLIENT_SECRET, REFRESH] {
        assert!(
            !contains(bytes, c) || contains(input, c),
            "{what} carries a credential"
        );
    }
}

fn assert_error_body(what: &str, resp: &HttpResponse) {
    let v: Value = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("{what}: HTTP {} with a non-JSON body ({e})", resp.status));
    assert!(
        v["error"].is_string() && v["message"].is_string(),
        "{what}: HTTP {} without error/message: {v}",
        resp.status
    );
}

/// Flag byte, then the body. Bit 0: send the right shared secret; bit 1: a wrong one; bit 2:
/// GET instead of POST; bit 3: set `bigcommerce_client_secret` (signatures then required).
pub fn webhook_intake(data: &[u8]) {
    let (flags, body) = data.split_first().map_or((1, data), |(f, b)| (*f, b));
    let mut h = host();
    if flags & 8 != 0 {
        h.set_config("bigcommerce_client_secret", CLIENT_SECRET);
    }
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    let authentic = flags & 1 != 0;
    if authentic {
        headers.push(("x-ml-webhook-secret".into(), SECRET.into()));
    } else if flags & 2 != 0 {
        headers.push(("x-ml-webhook-secret".into(), "not-the-secret".into()));
    }
    let req = Request {
        method: if flags & 4 != 0 { "GET" } else { "POST" }.into(),
        path_and_query: "/webhooks/bigcommerce".into(),
        headers,
        body: body.to_vec(),
    };
    let (resp, work) = router::handle(&req, &mut h);
    assert_no_credential("the webhook answer", &resp.body, body);
    assert!(
        resp.status < 500,
        "webhook intake answered {} to a delivery: {}",
        resp.status,
        String::from_utf8_lossy(&resp.body)
    );
    if resp.status != 200 {
        assert_error_body("webhook intake", &resp);
        assert!(work.is_none(), "a refused delivery left work behind");
        assert!(
            h.kv.is_empty(),
            "a refused delivery wrote to KV: {:?}",
            h.kv.keys().collect::<Vec<_>>()
        );
    }
    if !authentic || flags & 4 != 0 {
        assert_ne!(resp.status, 200, "an unauthenticated delivery was accepted");
    }
    if let Some(w) = work {
        assert!(
            h.kv.keys().any(|k| k.starts_with("due/")),
            "accepted without a guard entry"
        );
        router::run(w, &mut h);
        for (k, v) in &h.kv {
            assert_no_credential(&format!("KV `{k}`"), v, body);
        }
    }
}

/// Invoice total as QuickBooks computes it from the lines.
fn lines_total(inv: &Value) -> Decimal {
    let num = |v: &Value| -> Decimal {
        match v {
            Value::String(s) => s.parse().unwrap_or_default(),
            Value::Number(n) => n.to_string().parse().unwrap_or_default(),
            _ => Decimal::ZERO,
        }
    };
    let mut total = Decimal::ZERO;
    for l in inv["Line"].as_array().into_iter().flatten() {
        match l["DetailType"].as_str() {
            Some("SalesItemLineDetail") => total += num(&l["Amount"]),
            Some("DiscountLineDetail") => total -= num(&l["Amount"]),
            _ => {}
        }
    }
    if let Some(t) = inv.pointer("/TxnTaxDetail/TotalTax") {
        total += num(t);
    }
    total
}

/// A BigCommerce v2 order (or anything) → the default mapping.
pub fn order_mapping(data: &[u8]) {
    // The customer side reads the raw JSON.
    if let Ok(raw) = serde_json::from_slice::<Value>(data) {
        let billing = raw.get("billing_address").cloned().unwrap_or(Value::Null);
        let source = CustomerSource::from_billing_address(&billing, None);
        let _ = source.display_name_candidates();
        let _ = CustomerSource::from_v3_customer(&raw).display_name_candidates();
    }
    let _ = bigcommerce::parse_customers(&HttpResponse {
        status: 200,
        headers: Vec::new(),
        body: data.to_vec(),
    });
    let Ok(order) = bigcommerce::decode::<Order>(data) else {
        return;
    };
    let config = MappingConfig::default();
    let lines = bigcommerce::line_items(&order);
    let p = plan(&config, &order, &lines);
    let catalog = HashMap::new();
    let ctx = OrderContext {
        order: &order,
        lines: &lines,
        catalog: &catalog,
        customer_group_id: None,
    };
    let Ok(exact) = plan_exact(&config, &ctx) else {
        return;
    };
    assert!(
        exact.items.is_subset(&p.items),
        "the exact plan names items the first plan did not"
    );
    if check_totals(&order, &lines).is_err() {
        return;
    }
    let mut refs = ResolvedRefs::default();
    for (i, n) in exact.items.iter().enumerate() {
        refs.items.insert(n.clone(), (100 + i).to_string());
    }
    for (i, n) in exact.accounts.iter().enumerate() {
        refs.account_items.insert(n.clone(), (200 + i).to_string());
    }
    for (i, n) in exact.classes.iter().enumerate() {
        refs.classes.insert(n.clone(), (300 + i).to_string());
    }
    refs.discount_account = exact.discount_account.as_ref().map(|_| "86".into());
    let Ok(draft) = build_invoice(&config, &ctx, &refs, "42") else {
        return;
    };
    assert_eq!(
        draft.total, draft.target,
        "the invoice does not total its target"
    );
    assert_eq!(
        draft.target,
        order.total_inc_tax.round_cents(),
        "the target is not the order's total"
    );
    let inv = serde_json::to_value(&draft.invoice).expect("an invoice serializes");
    assert_eq!(
        lines_total(&inv),
        draft.total.amount(),
        "the invoice lines do not add up to the total: {inv}"
    );
}

/// `{"order": <v2 order with its consignments>, "refund": <v3 refund>}` → the refund's
/// document under the default mapping.
pub fn refund_mapping(data: &[u8]) {
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let (Ok(order), Ok(refund)) = (
        serde_json::from_value::<Order>(input["order"].clone()),
        serde_json::from_value::<Refund>(input["refund"].clone()),
    ) else {
        return;
    };
    let config = MappingConfig::default();
    let lines = bigcommerce::line_items(&order);
    let catalog = HashMap::new();
    let ctx = OrderContext {
        order: &order,
        lines: &lines,
        catalog: &catalog,
        customer_group_id: None,
    };
    let Ok(names) = refund_names(&config, &ctx, &refund) else {
        return;
    };
    let mut refs = ResolvedRefs::default();
    for (i, n) in names.items.iter().enumerate() {
        refs.items.insert(n.clone(), (100 + i).to_string());
    }
    for (i, n) in names.accounts.iter().enumerate() {
        refs.account_items.insert(n.clone(), (200 + i).to_string());
    }
    for (i, n) in names.classes.iter().enumerate() {
        refs.classes.insert(n.clone(), (300 + i).to_string());
    }
    let Ok(draft) = build_refund(&config, &ctx, &refs, &refund) else {
        return;
    };
    assert_eq!(
        draft.total, draft.target,
        "the refund document does not total its target"
    );
    let doc = serde_json::json!({"Line": draft.lines, "TxnTaxDetail": draft.txn_tax_detail});
    assert_eq!(
        lines_total(&doc),
        draft.total.amount(),
        "the refund lines do not add up to the total: {doc}"
    );
}

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "get",
];

/// Flag byte (method, with or without the admin token), then the path and query up to the
/// first newline, then the body.
pub fn admin_route(data: &[u8]) {
    let (flags, rest) = data.split_first().map_or((0, data), |(f, b)| (*f, b));
    let (path, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let path = String::from_utf8_lossy(path).into_owned();
    let mut headers = Vec::new();
    if flags & 0x10 == 0 {
        headers.push(("authorization".to_string(), format!("Bearer {ADMIN}")));
    }
    let req = Request {
        method: METHODS[(flags & 7) as usize].into(),
        path_and_query: if path.starts_with('/') {
            path
        } else {
            format!("/admin/{path}")
        },
        headers,
        body: body.to_vec(),
    };
    let mut h = host();
    let (resp, work) = router::handle(&req, &mut h);
    let what = format!("{} {}", req.method, req.path_and_query);
    assert_no_credential(&what, &resp.body, data);
    assert!(
        resp.status < 500,
        "{what}: HTTP {}: {}",
        resp.status,
        String::from_utf8_lossy(&resp.body)
    );
    if resp.status >= 400 {
        assert_error_body(&what, &resp);
    }
    let routed = req.path().trim_end_matches('/');
    if flags & 0x10 != 0 && routed.starts_with("/admin/") && req.body.len() <= 65_536 {
        assert_eq!(resp.status, 401, "{what} without the admin token");
    }
    if let Some(w) = work {
        router::run(w, &mut h);
    }
}
