//! `router::precheck`: what the adapter may do with a request before reading its body.

use chrono::{DateTime, Utc};
use ml_core::http::{MAX_BODY, Request};
use ml_core::routes::router::{self as app, Precheck};
use ml_core::testing::FakeHost;

const SECRET: &str = "hook-secret-5f2a9c";
const ADMIN: &str = "admin-token-for-tests-123";

fn host() -> FakeHost {
    let now = DateTime::parse_from_rfc3339("2026-11-26T15:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut host = FakeHost::new(now);
    host.set_config("bigcommerce_webhook_secret", SECRET)
        .set_config("admin_token", ADMIN);
    host
}

/// A request as the adapter sees it before reading: headers, no body yet.
fn head(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
    Request {
        method: method.to_string(),
        path_and_query: path.to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: Vec::new(),
    }
}

fn refused(p: Precheck) -> ml_core::http::HttpResponse {
    match p {
        Precheck::Respond(resp) => resp,
        other => panic!("expected an answer before the body, got {other:?}"),
    }
}

fn error_code(resp: &ml_core::http::HttpResponse) -> String {
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    v["error"].as_str().unwrap().to_string()
}

#[test]
fn a_webhook_with_a_wrong_secret_is_refused_before_its_body_is_read() {
    let mut host = host();
    let req = head(
        "POST",
        "/webhooks/bigcommerce",
        &[
            ("x-ml-webhook-secret", "wrong"),
            ("content-length", "65536"),
        ],
    );
    let resp = refused(app::precheck(&req, &mut host));
    assert_eq!(resp.status, 401);
    assert_eq!(error_code(&resp), "unauthorized");
    // The same answer the full handler gives once a body has been read.
    let mut with_body = req.clone();
    with_body.body = b"{\"scope\":\"store/order/created\"}".to_vec();
    let (full, work) = app::handle(&with_body, &mut host);
    assert_eq!(full, resp);
    assert_eq!(work, None);
}

#[test]
fn a_webhook_without_the_secret_header_is_refused_before_its_body_is_read() {
    let mut host = host();
    let req = head("POST", "/webhooks/bigcommerce", &[("content-length", "10")]);
    let resp = refused(app::precheck(&req, &mut host));
    assert_eq!(resp.status, 401);
    assert!(
        String::from_utf8_lossy(&resp.body).contains("missing header x-ml-webhook-secret"),
        "{}",
        String::from_utf8_lossy(&resp.body)
    );
}

#[test]
fn a_webhook_with_the_right_secret_has_its_body_read() {
    let mut host = host();
    let req = head(
        "POST",
        "/webhooks/bigcommerce",
        &[("X-ML-Webhook-Secret", SECRET), ("content-length", "120")],
    );
    assert_eq!(app::precheck(&req, &mut host), Precheck::ReadBody);
}

#[test]
fn a_webhook_is_refused_when_the_secret_variable_is_unset() {
    let now = DateTime::parse_from_rfc3339("2026-11-26T15:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut host = FakeHost::new(now);
    let req = head(
        "POST",
        "/webhooks/bigcommerce",
        &[("x-ml-webhook-secret", "anything")],
    );
    let resp = refused(app::precheck(&req, &mut host));
    assert_eq!(resp.status, 500);
    assert_eq!(error_code(&resp), "configuration");
}

#[test]
fn admin_routes_check_the_bearer_before_the_body_is_read() {
    let mut host = host();
    for path in [
        "/admin/mapping",
        "/admin/records",
        "/oauth/quickbooks/connect",
    ] {
        let resp = refused(app::precheck(
            &head("PUT", path, &[("content-length", "65536")]),
            &mut host,
        ));
        assert_eq!(resp.status, 401, "{path}");
        assert_eq!(resp.header("www-authenticate"), Some("Bearer"), "{path}");
        let resp = refused(app::precheck(
            &head("PUT", path, &[("authorization", "Bearer nope")]),
            &mut host,
        ));
        assert_eq!(resp.status, 401, "{path}");
    }
    let auth = format!("Bearer {ADMIN}");
    let req = head(
        "PUT",
        "/admin/mapping",
        &[("authorization", &auth), ("content-length", "300")],
    );
    assert_eq!(app::precheck(&req, &mut host), Precheck::ReadBody);
}

#[test]
fn routes_without_credentials_never_read_a_body() {
    let mut host = host();
    for (method, path) in [
        ("GET", "/health"),
        ("POST", "/health"),
        ("GET", "/oauth/quickbooks/callback?state=x&code=y"),
        ("POST", "/no/such/route"),
        ("GET", "/webhooks/bigcommerce"),
        // The console's files are public; its calls to /admin carry the token.
        ("GET", "/admin/ui"),
        ("GET", "/"),
    ] {
        let req = head(method, path, &[("content-length", "65536")]);
        assert_eq!(
            app::precheck(&req, &mut host),
            Precheck::SkipBody,
            "{method} {path}"
        );
    }
    // The handler still answers those without a body as before.
    let (resp, _) = app::handle(&head("GET", "/webhooks/bigcommerce", &[]), &mut host);
    assert_eq!(resp.status, 405);
    let (resp, _) = app::handle(&head("GET", "/health", &[]), &mut host);
    assert_eq!(resp.status, 200);
}

#[test]
fn a_declared_body_over_the_limit_is_refused_on_every_route_without_reading_it() {
    let mut host = host();
    let too_big = (MAX_BODY + 1).to_string();
    let auth = format!("Bearer {ADMIN}");
    for (method, path, headers) in [
        (
            "POST",
            "/webhooks/bigcommerce",
            vec![("x-ml-webhook-secret", SECRET)],
        ),
        (
            "PUT",
            "/admin/mapping",
            vec![("authorization", auth.as_str())],
        ),
        ("GET", "/health", vec![]),
    ] {
        let mut headers = headers;
        headers.push(("content-length", too_big.as_str()));
        let resp = refused(app::precheck(&head(method, path, &headers), &mut host));
        assert_eq!(resp.status, 413, "{method} {path}");
        assert_eq!(error_code(&resp), "payload_too_large");
    }
    let exactly = MAX_BODY.to_string();
    let req = head(
        "POST",
        "/webhooks/bigcommerce",
        &[
            ("x-ml-webhook-secret", SECRET),
            ("content-length", &exactly),
        ],
    );
    assert_eq!(app::precheck(&req, &mut host), Precheck::ReadBody);
}
