//! Backfill, sweep, webhook registration and the operator CLI, end to end: the built
//! component in the real host (in-process, or the `ml-harness` binary as a subprocess)
//! against the simulators over HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ml_e2e::env::{TestEnv, TestOptions, eventually_named};
use ml_e2e::process::{HarnessProcess, ProcessOptions, harness_binary};
use ml_sim::bigcommerce::{BcSim, BcSimConfig, OrderShape, generate};
use ml_sim::quickbooks::{QboSim, QboSimConfig};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(180);

/// A registered buyer's plain order (one QuickBooks write once the customer is known).
fn shape(seed: u64) -> OrderShape {
    OrderShape {
        lines: 2,
        tax_inclusive: false,
        tax_rate_bp: 800,
        coupon: false,
        manual_discount: false,
        shipping: true,
        handling: false,
        wrapping: false,
        guest: false,
        seed,
    }
}

/// Orders `first..first+count` created in January 2026; every 50th is incomplete (status 0).
/// Returns the ids that must be invoiced.
fn put_history(bc: &ml_sim::bigcommerce::BcSimHandle, first: u64, count: u64) -> BTreeSet<u64> {
    let mut eligible = BTreeSet::new();
    for id in first..first + count {
        let mut g = generate(id, &shape(id));
        if id % 50 == 0 {
            g.order["status_id"] = json!(0);
            g.order["status"] = json!("Incomplete");
        } else {
            eligible.insert(id);
        }
        bc.put_order(g);
    }
    eligible
}

/// Invoices by DocNumber: panics on a duplicate.
fn invoice_numbers(invoices: &[Value]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for inv in invoices {
        let doc = inv["DocNumber"].as_str().unwrap_or_default().to_string();
        assert!(seen.insert(doc.clone()), "two invoices numbered {doc}");
    }
    seen
}

async fn admin(
    client: &reqwest::Client,
    token: &str,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_killed_midway_resumes_and_posts_every_eligible_order_exactly_once() {
    let bc = BcSim::start(BcSimConfig::default()).await.unwrap();
    let qbo = QboSim::start(QboSimConfig {
        max_requests_per_minute: Some(500),
        ..QboSimConfig::default()
    })
    .await
    .unwrap();
    let eligible = put_history(&bc, 1001, 300);
    let data = tempfile::tempdir().unwrap();
    let token = "backfill-admin-token-0123456789";
    let mut vars: BTreeMap<String, String> = ml_harness::demo::simulator_variables(&bc, &qbo);
    vars.insert(
        "bigcommerce_webhook_secret".into(),
        "hook-secret-abc".into(),
    );
    vars.insert("admin_token".into(), token.into());
    vars.insert(
        "encryption_key".into(),
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
    );
    vars.insert("retry_base_seconds".into(), "1".into());
    vars.insert("sweep_interval_seconds".into(), "0".into());
    let mut options = ProcessOptions::new(data.path(), vars);
    options.extra_args = vec!["--retry-interval".into(), "1".into(), "--no-demo".into()];
    let client = reqwest::Client::new();

    let first = HarnessProcess::spawn(&options, Duration::from_secs(60))
        .await
        .unwrap();
    let (status, started) = admin(
        &client,
        token,
        reqwest::Method::POST,
        &first.url("/admin/backfill"),
        Some(json!({"since": "2026-01-01", "until": "2026-12-31"})),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["state"], "running");
    let (again, body) = admin(
        &client,
        token,
        reqwest::Method::POST,
        &first.url("/admin/backfill"),
        Some(json!({"since": "2026-01-01"})),
    )
    .await;
    assert_eq!(again, 409, "one backfill at a time: {body}");

    // Kill the host (SIGKILL) once part of the orders are in QuickBooks.
    eventually_named("a third of the backfill", LONG, || async {
        qbo.invoice_count() >= 100
    })
    .await;
    first.kill().unwrap();
    let at_crash = qbo.invoice_count();
    assert!(at_crash < eligible.len(), "killed mid-way ({at_crash})");

    let second = HarnessProcess::spawn(&options, Duration::from_secs(60))
        .await
        .unwrap();
    let url = second.url("/admin/backfill");
    let view = eventually_named("the backfill to finish after the restart", LONG, || async {
        let (_, v) = admin(&client, token, reqwest::Method::GET, &url, None).await;
        (v["state"] != "running").then_some(v)
    })
    .await;
    assert_eq!(view["state"], "done", "{view}");
    assert_eq!(view["orders_seen"], 300);
    assert_eq!(view["orders_skipped"], 6, "status 0 is never invoiced");
    assert_eq!(
        view["orders_queued"].as_u64().unwrap() + view["orders_already_synced"].as_u64().unwrap(),
        eligible.len() as u64,
        "{view}"
    );
    assert_eq!(view["orders_posted"], view["orders_queued"], "{view}");
    assert_eq!(view["pages_done"], 2);
    assert!(view["finished_at"].is_string());

    let invoices = qbo.invoices();
    let numbers = invoice_numbers(&invoices);
    let expected: BTreeSet<String> = eligible.iter().map(u64::to_string).collect();
    assert_eq!(numbers, expected, "every eligible order exactly once");
    assert_eq!(
        qbo.throttled_per_minute(),
        0,
        "never past QuickBooks' limit"
    );
    second.kill().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_picks_up_orders_and_customers_created_while_webhooks_were_off() {
    let env = TestEnv::start(
        TestOptions::default()
            .without_webhooks()
            .var("sweep_interval_seconds", "1"),
    )
    .await;
    // The connector's first run sets the checkpoint.
    let (status, _) = env.admin_post("/admin/retry-due", &Value::Null).await;
    assert_eq!(status, 200);
    eventually_named("the first checkpoint", LONG, || async {
        let (_, s) = env.admin_get("/admin/status").await;
        s["sweep"]["checkpoint"].is_string()
    })
    .await;

    // Placed and registered with no webhook at all.
    for id in [7001u64, 7002] {
        env.bc.put_order(generate(id, &shape(id)));
        assert!(env.bc.modify_order(id, |_| {}));
    }
    let mut customer = env.bc.customer(1).expect("seeded customer 1");
    customer["id"] = json!(8801);
    customer["email"] = json!("new.while.offline@example.com");
    customer["first_name"] = json!("Offline");
    env.bc.put_customer_now(customer);

    let (_, rec) = eventually_named("the sweep to post the missed order", LONG, || async {
        env.admin_post("/admin/retry-due", &Value::Null).await;
        let (code, rec) = env.admin_get("/admin/records/customer/8801").await;
        let (_, o1) = env.admin_get("/admin/records/order/7001").await;
        let (_, o2) = env.admin_get("/admin/records/order/7002").await;
        (code == 200
            && rec["state"] == "posted"
            && o1["state"] == "posted"
            && o2["state"] == "posted")
            .then_some((o1, rec))
    })
    .await;
    assert!(
        rec["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["detail"]["scope"] == "ml/sweep"),
        "{rec}"
    );
    let numbers = invoice_numbers(&env.qbo.invoices());
    assert!(numbers.contains("7001") && numbers.contains("7002"));
    let (_, s) = env.admin_get("/admin/status").await;
    assert!(s["sweep"]["missed_total"].as_u64().unwrap() >= 3, "{s}");
    assert!(s["sweep"]["last_run_at"].is_string(), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_webhooks_is_idempotent_and_reactivates_what_bigcommerce_deactivated() {
    let mut env = TestEnv::start(TestOptions::default().without_webhooks()).await;
    let (code, err) = env.admin_post("/admin/webhooks", &Value::Null).await;
    assert_eq!(code, 400, "{err}");
    assert!(err["message"].as_str().unwrap().contains("public_base_url"));
    env.restart_with(&[("public_base_url", "http://connector.example.com")])
        .await;
    let (code, err) = env.admin_post("/admin/webhooks", &Value::Null).await;
    assert_eq!(code, 400);
    assert!(err["message"].as_str().unwrap().contains("https"), "{err}");

    let base = env.url("");
    env.restart_with(&[("public_base_url", &base)]).await;
    let (_, s) = env.admin_get("/admin/status").await;
    assert_eq!(s["webhooks"]["ok"], false);
    assert_eq!(s["webhooks"]["missing"].as_array().unwrap().len(), 9);

    let (code, first) = env.admin_post("/admin/webhooks", &Value::Null).await;
    assert_eq!(code, 200, "{first}");
    let actions: Vec<&str> = first["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["created"; 9]);
    assert_eq!(first["destination"], format!("{base}/webhooks/bigcommerce"));
    let (_, again) = env.admin_post("/admin/webhooks", &Value::Null).await;
    assert!(
        again["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["action"] == "unchanged"),
        "{again}"
    );
    assert_eq!(env.bc.hooks().len(), 9, "never a second hook per scope");
    let (_, s) = env.admin_get("/admin/status").await;
    assert_eq!(s["webhooks"]["ok"], true, "{s}");

    // BigCommerce gives up on one hook; status says so and what to do; registering fixes it.
    let created = env
        .bc
        .hooks()
        .into_iter()
        .find(|h| h.scope == "store/order/created")
        .unwrap();
    env.bc.deactivate_hook(created.id);
    let (_, s) = env.admin_get("/admin/status").await;
    assert_eq!(s["webhooks"]["ok"], false);
    let why = s["webhooks"]["error"].as_str().unwrap();
    assert!(
        why.contains("deactivated") && why.contains("POST /admin/webhooks"),
        "{why}"
    );
    let (_, fixed) = env.admin_post("/admin/webhooks", &Value::Null).await;
    let reactivated: Vec<&Value> = fixed["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["action"] == "reactivated")
        .collect();
    assert_eq!(reactivated.len(), 1, "{fixed}");
    assert_eq!(env.bc.hooks().len(), 9);
    assert!(env.bc.hooks().iter().all(|h| h.is_active));

    // The registered hooks really deliver: an order placed now becomes an invoice.
    let report = env
        .bc
        .place_order(generate(5150, &shape(5150)))
        .await
        .unwrap();
    assert!(report.all_delivered(), "{report:?}");
    eventually_named("the delivered order's invoice", LONG, || async {
        env.qbo.invoices().iter().any(|i| i["DocNumber"] == "5150")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_backfill_requests_are_refused_with_what_to_fix() {
    let env = TestEnv::start(TestOptions::default().without_webhooks()).await;
    for (body, needle) in [
        (
            json!({"since": "2026-02-01", "until": "2026-01-01"}),
            "after `until`",
        ),
        (json!({"since": "last tuesday"}), "not a date"),
        (json!({"until": "2026-01-01"}), "`since` is missing"),
    ] {
        let (code, err) = env.admin_post("/admin/backfill", &body).await;
        assert_eq!(code, 400, "{body}: {err}");
        assert!(err["message"].as_str().unwrap().contains(needle), "{err}");
    }
    let (code, idle) = env.admin_get("/admin/backfill").await;
    assert_eq!((code, idle["state"].as_str()), (200, Some("idle")));
    let auth = format!("Bearer {}", env.admin_token);
    let code = env
        .request(
            "DELETE",
            "/admin/backfill",
            &[("authorization", &auth)],
            Vec::new(),
        )
        .await
        .status;
    assert_eq!(code, 409, "nothing to cancel");
}

fn cli(args: &[&str], token: Option<&str>) -> std::process::Output {
    let mut cmd = std::process::Command::new(harness_binary());
    cmd.args(args).env_remove("ML_ADMIN_TOKEN");
    if let Some(t) = token {
        cmd.env("ML_ADMIN_TOKEN", t);
    }
    cmd.output().expect("ml-harness runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_runs_a_backfill_to_the_end_and_prints_the_status_as_a_table() {
    let env = TestEnv::start(
        TestOptions::default()
            .without_webhooks()
            .retry_every(Duration::from_millis(300)),
    )
    .await;
    let eligible = put_history(&env.bc, 3001, 40);
    let url = env.url("");
    let token = env.admin_token.clone();

    let u = url.clone();
    let missing = tokio::task::spawn_blocking(move || {
        cli(&["backfill", "--url", &u, "--since", "2026-01-01"], None)
    })
    .await
    .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("ML_ADMIN_TOKEN"));

    let (u, t) = (url.clone(), token.clone());
    let bad = tokio::task::spawn_blocking(move || {
        cli(&["backfill", "--url", &u, "--since", "someday"], Some(&t))
    })
    .await
    .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not a date"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let (u, t) = (url.clone(), token.clone());
    let run = tokio::task::spawn_blocking(move || {
        cli(
            &[
                "backfill",
                "--url",
                &u,
                "--since",
                "2026-01-01",
                "--poll",
                "0.2",
            ],
            Some(&t),
        )
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(out.contains("Backfill started"), "{out}");
    assert!(out.contains("Backfill done"), "{out}");
    assert!(out.contains(&format!("{} posted", eligible.len())), "{out}");
    assert_eq!(invoice_numbers(&env.qbo.invoices()).len(), eligible.len());

    let (u, t) = (url.clone(), token.clone());
    let status = tokio::task::spawn_blocking(move || cli(&["status", "--url", &u], Some(&t)))
        .await
        .unwrap();
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(table.starts_with("Check"), "{table}");
    for row in ["BigCommerce", "QuickBooks", "Webhooks", "Sweep", "Records"] {
        assert!(table.contains(row), "{row} missing from\n{table}");
    }
    // No public_base_url, so the webhooks row says what to fix and the exit code says so too.
    assert_eq!(status.status.code(), Some(2), "{table}");
}
