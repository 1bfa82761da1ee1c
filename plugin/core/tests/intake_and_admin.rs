//! The router around the jobs: webhook intake (bad deliveries, ignored scopes), admin
//! authentication and id checks, missing or file-mounted variables, and previews, which post
//! nothing. Driven as `order_job.rs` is (see `common`).

mod common;

use common::*;
use ml_core::http::Request;
use ml_core::sync::record::State;
use serde_json::{Value, json};

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
