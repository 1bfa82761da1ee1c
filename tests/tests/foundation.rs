//! The foundation, end to end: the real component in the real harness (in-process and as the
//! `ml-harness` binary), over real HTTP, against the simulators.

use std::collections::BTreeMap;
use std::time::Duration;

use ml_e2e::env::{TestEnv, TestOptions, component_wasm_path, no_keep_alive_client};
use ml_e2e::process::{HarnessProcess, ProcessOptions};
use ml_e2e::wit_check;
use serde_json::{Value, json};

/// Generous bound for things that normally take milliseconds (only a failing test waits this long).
const PATIENCE: Duration = Duration::from_secs(60);

fn component_bytes() -> Vec<u8> {
    std::fs::read(component_wasm_path()).expect("build.rs built the component")
}

/// A mapping that differs from the built-in default in every field we can observe.
fn custom_mapping() -> Value {
    json!({
        "version": 1,
        "invoice": {
            "doc_number": "BC-{order_id}",
            "default_item": "Services",
            "default_class": null,
            "rules": [{"match": {"sku_prefix": "APP-"}, "item": "Apparel Sales"}],
            "shipping": {"item": "Shipping Income"},
            "tax": {"mode": "none"}
        },
        "customers": {"guest": {"mode": "single", "name": "Web Guest"}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_from_inside_the_component() {
    let env = TestEnv::start(TestOptions::default()).await;
    let reply = env.request("GET", "/health", &[], Vec::new()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json, json!({"status": "ok"}));
    assert_eq!(reply.headers["content-type"], "application/json");
    // HEAD is GET without a body.
    let head = env.request("HEAD", "/health", &[], Vec::new()).await;
    assert_eq!(head.status, 200);
    assert!(head.text.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_put_survives_a_harness_restart_on_the_same_data_dir() {
    // The real binary, configured only through SPIN_VARIABLE_* and flags, as a user would.
    let env = TestEnv::start(TestOptions::default().without_webhooks()).await;
    let data_dir = tempfile::tempdir().unwrap();
    let options = ProcessOptions::new(data_dir.path(), env.variables().clone());
    let client = no_keep_alive_client();
    let mapping = custom_mapping();

    let first = HarnessProcess::spawn(&options, PATIENCE).await.unwrap();
    let put = client
        .put(first.url("/admin/mapping"))
        .bearer_auth(&env.admin_token)
        .json(&mapping)
        .send()
        .await
        .unwrap();
    // Read every body: an unread response keeps its connection open, and a graceful stop
    // waits for open connections.
    let (status, text) = (put.status(), put.text().await.unwrap());
    assert_eq!(status, 200, "{text}");
    let status = first.terminate(PATIENCE).await.unwrap();
    assert!(
        status.success(),
        "a SIGTERM is a clean shutdown, got {status}"
    );

    let second = HarnessProcess::spawn(&options, PATIENCE).await.unwrap();
    let got = client
        .get(second.url("/admin/mapping"))
        .bearer_auth(&env.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let body: Value = got.json().await.unwrap();
    let stored = body.get("mapping").unwrap_or(&body);
    assert_eq!(stored["invoice"]["doc_number"], "BC-{order_id}", "{body}");
    assert_eq!(stored["customers"]["guest"]["name"], "Web Guest", "{body}");

    // A crash (SIGKILL) after a write loses nothing either: SQLite commits before the 200.
    let mut changed = mapping.clone();
    changed["invoice"]["default_item"] = json!("BigCommerce Sales");
    let put = client
        .put(second.url("/admin/mapping"))
        .bearer_auth(&env.admin_token)
        .json(&changed)
        .send()
        .await
        .unwrap();
    let (status, text) = (put.status(), put.text().await.unwrap());
    assert_eq!(status, 200, "{text}");
    second.kill().unwrap();
    let third = HarnessProcess::spawn(&options, PATIENCE).await.unwrap();
    let body: Value = client
        .get(third.url("/admin/mapping"))
        .bearer_auth(&env.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored = body.get("mapping").unwrap_or(&body);
    assert_eq!(
        stored["invoice"]["default_item"], "BigCommerce Sales",
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_put_survives_an_in_process_restart_and_a_crash() {
    let mut env = TestEnv::start(TestOptions::default()).await;
    let (status, body) = env.admin_put("/admin/mapping", &custom_mapping()).await;
    assert_eq!(status, 200, "{body}");
    env.restart().await;
    let (status, body) = env.admin_get("/admin/mapping").await;
    assert_eq!(status, 200);
    assert_eq!(
        body.get("mapping").unwrap_or(&body)["invoice"]["doc_number"],
        "BC-{order_id}",
        "{body}"
    );
    env.kill();
    env.restart().await;
    let (status, body) = env.admin_get("/admin/mapping").await;
    assert_eq!(status, 200);
    assert_eq!(
        body.get("mapping").unwrap_or(&body)["invoice"]["doc_number"],
        "BC-{order_id}",
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_without_the_bearer_are_401() {
    let env = TestEnv::start(TestOptions::default()).await;
    let wrong = format!("Bearer {}x", env.admin_token);
    let basic = format!("Basic {}", env.admin_token);
    /// Method, path, headers.
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
    let cases: [Case; 8] = [
        ("GET", "/admin/mapping", vec![]),
        ("GET", "/admin/mapping", vec![("authorization", &wrong)]),
        ("GET", "/admin/mapping", vec![("authorization", &basic)]),
        ("GET", "/admin/mapping", vec![("authorization", "Bearer ")]),
        (
            "PUT",
            "/admin/mapping",
            vec![("authorization", "Bearer nope")],
        ),
        ("GET", "/admin/status", vec![]),
        ("POST", "/admin/retry-due", vec![("authorization", &wrong)]),
        ("GET", "/admin/records", vec![]),
    ];
    for (method, path, headers) in cases {
        let reply = env.request(method, path, &headers, Vec::new()).await;
        assert_eq!(
            reply.status, 401,
            "{method} {path} with {headers:?}: {}",
            reply.text
        );
        assert_eq!(reply.json["error"], "unauthorized", "{}", reply.text);
        assert!(
            reply.json["message"]
                .as_str()
                .is_some_and(|m| m.contains("Bearer")),
            "{}",
            reply.text
        );
        assert!(
            !reply.text.contains(&env.admin_token),
            "a 401 must not echo the token"
        );
    }
    // And the right bearer gets through.
    let (status, _) = env.admin_get("/admin/mapping").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_wrong_methods_big_bodies_and_malformed_mapping_get_json_4xx() {
    let env = TestEnv::start(TestOptions::default()).await;
    let auth = format!("Bearer {}", env.admin_token);
    let admin = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];

    let assert_json_error = |reply: &ml_e2e::env::Reply, status: u16, what: &str| {
        assert_eq!(reply.status, status, "{what}: {}", reply.text);
        assert!(
            reply.json["error"].is_string(),
            "{what}: error code missing in {}",
            reply.text
        );
        assert!(
            reply.json["message"].is_string(),
            "{what}: message missing in {}",
            reply.text
        );
    };

    let reply = env.request("GET", "/nope", &[], Vec::new()).await;
    assert_json_error(&reply, 404, "unknown route");
    let reply = env.request("GET", "/admin/nope", &admin, Vec::new()).await;
    assert_json_error(&reply, 404, "unknown admin route");

    let reply = env.request("POST", "/health", &[], Vec::new()).await;
    assert_json_error(&reply, 405, "POST /health");
    let reply = env
        .request("DELETE", "/admin/mapping", &admin, Vec::new())
        .await;
    assert_json_error(&reply, 405, "DELETE /admin/mapping");
    assert!(
        reply.headers.contains_key("allow"),
        "a 405 says what is allowed"
    );

    let big = vec![b' '; 64 * 1024 + 1];
    let reply = env
        .request("PUT", "/admin/mapping", &admin, big.clone())
        .await;
    assert_json_error(&reply, 413, "65 KiB mapping");
    let reply = env
        .request(
            "POST",
            "/webhooks/bigcommerce",
            &[("x-ml-webhook-secret", &env.webhook_secret)],
            big,
        )
        .await;
    assert_json_error(&reply, 413, "65 KiB webhook");

    let reply = env
        .request("PUT", "/admin/mapping", &admin, b"{not json".to_vec())
        .await;
    assert_json_error(&reply, 400, "mapping that is not JSON");

    // Several problems at once are all listed.
    let bad = json!({
        "version": 2,
        "invoice": {
            "rules": [{"match": {"no_such_key": 1}, "item": "X"}],
            "tax": {"mode": "sometimes"}
        },
        "customers": {"guest": {"mode": "single"}}
    });
    let reply = env
        .request(
            "PUT",
            "/admin/mapping",
            &admin,
            serde_json::to_vec(&bad).unwrap(),
        )
        .await;
    assert_json_error(&reply, 400, "invalid mapping");
    let paths: Vec<&str> = reply.json["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("a 400 for a bad mapping lists `problems`: {}", reply.text))
        .iter()
        .filter_map(|p| p["path"].as_str())
        .collect();
    for path in [
        "$.version",
        "$.invoice.rules[0].match.no_such_key",
        "$.invoice.tax.mode",
        "$.customers.guest.name",
    ] {
        assert!(
            paths.contains(&path),
            "the 400 should list `{path}`: {}",
            reply.text
        );
    }
    // The rejected mapping was not stored.
    let (status, body) = env.admin_get("/admin/mapping").await;
    assert_eq!(status, 200);
    assert_ne!(body.get("mapping").unwrap_or(&body)["version"], 2, "{body}");

    let reply = env.post_webhook("this is not json").await;
    assert_json_error(&reply, 400, "webhook that is not JSON");
    let reply = env.post_webhook(r#"{"scope": 5}"#).await;
    assert_json_error(&reply, 400, "webhook without data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_requests_to_hosts_not_in_the_allow_list_are_refused() {
    // Allowed: the preview fetches the order from BigCommerce (which has no such order).
    let allowed = TestEnv::start(TestOptions::default()).await;
    let (status, body) = allowed.admin_get("/admin/preview/order/12345").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        allowed.bc.control().calls_to("/orders/12345") > 0,
        "the allowed host was called"
    );

    // Refused: the same connector with BigCommerce left off the allow-list.
    let refused = TestEnv::start(
        TestOptions::default().allow_only(&["{{ qbo_api_base }}", "{{ qbo_oauth_base }}"]),
    )
    .await;
    let (status, body) = refused.admin_get("/admin/preview/order/12345").await;
    assert!(
        (400..600).contains(&status) && status != 404,
        "{status} {body}"
    );
    assert!(
        body["message"].is_string(),
        "the failure is explained: {body}"
    );
    assert!(
        refused.bc.control().requests().is_empty(),
        "no request reached the refused host"
    );
}

#[test]
fn component_imports_are_within_the_allowed_list() {
    let imports = wit_check::component_imports(&component_bytes()).unwrap();
    assert!(
        imports
            .iter()
            .any(|i| i.starts_with("wasi:http/outgoing-handler@")),
        "{imports:?}"
    );
    assert!(
        imports
            .iter()
            .any(|i| i.starts_with("wasi:keyvalue/store@")),
        "{imports:?}"
    );
    if let Err(forbidden) = wit_check::check_imports_allowed(&imports) {
        panic!("the component imports what Spin may not provide: {forbidden:?}");
    }
    // Shown with `--nocapture`: the list the closing notes and the README quote.
    println!("component imports: {imports:#?}");
}

#[test]
fn component_matches_our_wit() {
    let bytes = component_bytes();
    wit_check::check_component_matches_wit(&bytes).unwrap();
    let exports = wit_check::component_exports(&bytes).unwrap();
    assert!(
        exports
            .iter()
            .any(|e| e.starts_with("wasi:http/incoming-handler@0.2")),
        "{exports:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_required_variable_is_a_clear_error_naming_it() {
    // Served anyway (as Spin does): the request that needs it fails naming it.
    let env = TestEnv::start(TestOptions::default().unset("admin_token")).await;
    let (status, body) = env.get("/health").await;
    assert_eq!(
        status, 200,
        "routes that don't need the variable still work: {body}"
    );
    let reply = env
        .request(
            "GET",
            "/admin/mapping",
            &[("authorization", "Bearer x")],
            Vec::new(),
        )
        .await;
    assert_eq!(reply.json["error"], "configuration", "{}", reply.text);
    let message = reply.json["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("admin_token") && message.contains("SPIN_VARIABLE_ADMIN_TOKEN"),
        "{message}"
    );

    // The binary with some credentials but not all refuses to start, naming what is missing.
    let mut variables: BTreeMap<String, String> = env.variables().clone();
    variables.remove("admin_token");
    let data_dir = tempfile::tempdir().unwrap();
    let mut options = ProcessOptions::new(data_dir.path(), variables);
    options.extra_args = vec!["--retry-interval".into(), "0".into()];
    let (status, stdout, stderr) = HarnessProcess::run_to_exit(&options, PATIENCE)
        .await
        .unwrap();
    assert!(!status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("SPIN_VARIABLE_ADMIN_TOKEN"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_placed_in_the_simulator_reaches_the_connector_through_the_registered_webhook() {
    use ml_e2e::env::eventually_named;
    use ml_sim::bigcommerce::{OrderShape, generate};

    let env = TestEnv::start(TestOptions::default()).await;
    let shape = OrderShape {
        lines: 2,
        tax_inclusive: false,
        tax_rate_bp: 800,
        coupon: false,
        manual_discount: false,
        shipping: true,
        handling: false,
        wrapping: false,
        guest: false,
        seed: 7,
    };
    let report = env.bc.place_order(generate(4100, &shape)).await.unwrap();
    assert!(
        !report.hooks.is_empty(),
        "the env registered a store/order/* hook"
    );
    let record = eventually_named("order 4100 to be posted", PATIENCE, || async {
        let (status, record) = env.admin_get("/admin/records/order/4100").await;
        (status == 200 && record["state"] == "posted").then_some(record)
    })
    .await;
    let invoices = env.qbo.invoices();
    assert_eq!(invoices.len(), 1, "{invoices:?}");
    assert_eq!(record["qbo_id"], invoices[0]["Id"], "{record}");
}
