//! Lead's scratch smoke test (temporary).
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ml_harness::config::{EnvSource, Overrides};
use ml_harness::kv::SqliteBackend;
use ml_harness::manifest::Manifest;
use ml_harness::server::{self, AppConfig, Harness, ServeOptions};
use ml_sim::bigcommerce::{BcSim, BcSimConfig, OrderShape, generate};
use ml_sim::quickbooks::{QboSim, QboSimConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scratch_an_order_becomes_an_invoice() {
    let bc = BcSim::start(BcSimConfig::default()).await.unwrap();
    let qbo = QboSim::start(QboSimConfig::default()).await.unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = Manifest::load(&root.join("spin.toml")).unwrap();
    let mut values = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        values.insert(k.to_string(), v);
    };
    set("bigcommerce_store_hash", bc.store_hash().to_string());
    set("bigcommerce_access_token", bc.token().to_string());
    set("bigcommerce_api_base", bc.base_url());
    set("bigcommerce_webhook_secret", "whsec".into());
    set("qbo_client_id", qbo.client_id().to_string());
    set("qbo_client_secret", qbo.client_secret().to_string());
    set("qbo_api_base", qbo.base_url());
    set("qbo_oauth_base", qbo.base_url());
    set("qbo_realm_id", qbo.realm_id().to_string());
    set("qbo_refresh_token", qbo.issue_refresh_token());
    set(
        "encryption_key",
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
    );
    set("admin_token", "adm".into());
    set("retry_base_seconds", "1".into());
    let source = Overrides {
        values,
        fallback: EnvSource,
    };
    let app = AppConfig::resolve(&manifest, &source).unwrap();
    let engine = server::engine().unwrap();
    let component = server::compile(
        &engine,
        &root.join("target/wasm32-wasip2/component/ml_connector.wasm"),
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("scratch-{}", std::process::id()));
    let kv = Arc::new(SqliteBackend::open_in(&dir).unwrap());
    let harness = Arc::new(Harness::new(&engine, &component, app, kv).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = server::serve(harness, listener, ServeOptions::default()).unwrap();
    let url = format!("http://{}/webhooks/bigcommerce", running.addr);
    bc.add_hook("store/order/*", &url, &[("x-ml-webhook-secret", "whsec")]);
    let shape = OrderShape {
        lines: 3,
        tax_inclusive: false,
        tax_rate_bp: 800,
        coupon: true,
        manual_discount: false,
        shipping: true,
        handling: true,
        wrapping: false,
        guest: false,
        seed: 1,
    };
    let order = generate(250, &shape);
    let total = order.order["total_inc_tax"].clone();
    let report = bc.place_order(order).await.unwrap();
    println!("delivery: {report:?}");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if !qbo.invoices().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rec = client
        .get(format!("http://{}/admin/records/order/250", running.addr))
        .bearer_auth("adm")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    println!("record: {rec}");
    println!(
        "invoices: {}",
        serde_json::to_string_pretty(&qbo.invoices()).unwrap()
    );
    println!("order total: {total}");
    assert_eq!(qbo.invoices().len(), 1);
}
