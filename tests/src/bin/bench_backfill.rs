//! Backfill and sweep benchmark: the real component in the real harness (retry timer every
//! second) against the in-process simulators, QuickBooks enforcing its real limits (10
//! concurrent, 500 requests per minute).
//!
//! `cargo run --release -p ml-e2e --bin bench_backfill -- [ORDERS]`
//!
//! Reports the backfill's orders/s and wall time against the floor QuickBooks allows
//! (its requests / 500 per minute), the 429s QuickBooks answered (should be none: the
//! connector paces itself), and what a sweep costs in BigCommerce calls when nothing changed.

// Floating point only formats the measurements; no money is computed here.
#![allow(clippy::float_arithmetic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ml_harness::config::{EnvSource, Overrides};
use ml_harness::kv::SqliteBackend;
use ml_harness::manifest::Manifest;
use ml_harness::server::{self, AppConfig, Harness, ServeOptions};
use ml_sim::bigcommerce::{BcSim, BcSimConfig, OrderShape, generate};
use ml_sim::quickbooks::{QboSim, QboSimConfig};
use serde_json::Value;

const ADMIN: &str = "bench-admin";

fn shape(i: u64) -> OrderShape {
    OrderShape {
        lines: 1 + (i % 3) as usize,
        tax_inclusive: false,
        tax_rate_bp: 800,
        coupon: i.is_multiple_of(3),
        manual_discount: false,
        shipping: true,
        handling: false,
        wrapping: false,
        guest: i.is_multiple_of(4),
        seed: i,
    }
}

async fn admin(harness: &Harness, method: &str, path: &str, body: &str) -> anyhow::Result<Value> {
    let auth = format!("Bearer {ADMIN}");
    let (status, bytes) = harness
        .call(
            method,
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.as_bytes().to_vec(),
        )
        .await?;
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    anyhow::ensure!(status < 300, "{method} {path} answered {status}: {v}");
    Ok(v)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let orders: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(600);
    let bc = BcSim::start(BcSimConfig {
        rate_limit_quota: u32::MAX,
        ..BcSimConfig::default()
    })
    .await?;
    let qbo = QboSim::start(QboSimConfig {
        max_requests_per_minute: Some(500),
        ..QboSimConfig::default()
    })
    .await?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = Manifest::load(&root.join("spin.toml"))?;
    let mut values = ml_harness::demo::simulator_variables(&bc, &qbo);
    for (k, v) in [
        ("bigcommerce_webhook_secret", "bench-webhook-secret"),
        (
            "encryption_key",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ),
        ("admin_token", ADMIN),
        ("sweep_interval_seconds", "2"),
    ] {
        values.insert(k.to_string(), v.to_string());
    }
    let app = AppConfig::resolve(
        &manifest,
        &Overrides {
            values,
            fallback: EnvSource,
        },
    )?;
    let engine = server::engine()?;
    let wasm = std::env::var("ML_COMPONENT_WASM")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| manifest.component.source.clone());
    let component = server::compile(&engine, &wasm)?;
    let dir = std::env::temp_dir().join(format!("ml-bench-backfill-{}", std::process::id()));
    let kv = Arc::new(SqliteBackend::open_in(&dir)?);
    let harness = Arc::new(Harness::new(&engine, &component, app, kv)?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let running = server::serve(
        harness.clone(),
        listener,
        ServeOptions {
            retry_interval: Some(Duration::from_secs(1)),
        },
    )?;

    for id in 1..=orders {
        bc.put_order(generate(id, &shape(id)));
    }
    bc.control().clear_log();
    qbo.control().clear_log();
    let started = Instant::now();
    admin(
        &harness,
        "POST",
        "/admin/backfill",
        r#"{"since": "2026-01-01", "until": "2026-12-31"}"#,
    )
    .await?;
    let view = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let v = admin(&harness, "GET", "/admin/backfill", "").await?;
        if v["state"] != "running" {
            break v;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(3600),
            "the backfill did not finish within an hour: {v}"
        );
    };
    let elapsed = started.elapsed();
    let qbo_calls = qbo.control().requests().len();
    let bc_calls = bc.control().requests().len();
    let floor = Duration::from_secs_f64(qbo_calls as f64 / 500.0 * 60.0);
    println!(
        "backfill benchmark: {orders} orders, shared 2-core machine, simulators in-process, \
         QuickBooks limits on (10 concurrent, 500/min)"
    );
    println!("  result: {view}");
    println!(
        "  wall time {:.1} s, {:.2} orders/s; QuickBooks {qbo_calls} requests ({:.2}/order), BigCommerce {bc_calls}",
        elapsed.as_secs_f64(),
        orders as f64 / elapsed.as_secs_f64(),
        qbo_calls as f64 / orders as f64
    );
    println!(
        "  floor at 500 QuickBooks requests/min: {:.1} s; took {:.2}x the floor; QuickBooks 429s: {}",
        floor.as_secs_f64(),
        elapsed.as_secs_f64() / floor.as_secs_f64().max(0.001),
        qbo.throttled_per_minute()
    );

    // Sweep cost with nothing changed: the orders above are history (dated January), so an
    // idle sweep lists one empty page of orders and one of customers.
    let before = admin(&harness, "GET", "/admin/status", "").await?["sweep"].clone();
    bc.control().clear_log();
    qbo.control().clear_log();
    let watch = Instant::now();
    let after = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let s = admin(&harness, "GET", "/admin/status", "").await?["sweep"].clone();
        if s["last_run_at"] != before["last_run_at"] && s["running"] == false {
            break s;
        }
        anyhow::ensure!(
            watch.elapsed() < Duration::from_secs(60),
            "no sweep ran: {s}"
        );
    };
    let lists = bc
        .control()
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/v2/orders") || r.path.ends_with("/v3/customers"))
        .count();
    println!(
        "  idle sweep over {orders} unchanged orders: {lists} BigCommerce list calls, {} QuickBooks calls; sweep {after}",
        qbo.control()
            .requests()
            .iter()
            .filter(|r| !r.path.contains("companyinfo"))
            .count()
    );

    // Every order touched (as a bulk status change would) but already synced by its webhook:
    // the sweep pages through them (250 per call) and queues none.
    for id in 1..=orders {
        bc.modify_order(id, |_| {});
    }
    // Their webhooks arrive and sync them (nothing to write: the invoices are unchanged).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for id in 1..=orders {
        let body = serde_json::json!({
            "scope": "store/order/updated", "store_id": "1001",
            "data": {"type": "order", "id": id}, "hash": format!("{:040x}", id),
            "created_at": 1_800_000_000u64 + id, "producer": format!("stores/{}", bc.store_hash()),
        })
        .to_string();
        let (status, _) = harness
            .call(
                "POST",
                "/webhooks/bigcommerce",
                &[
                    ("x-ml-webhook-secret", "bench-webhook-secret"),
                    ("content-type", "application/json"),
                ],
                body.into_bytes(),
            )
            .await?;
        anyhow::ensure!(status == 200, "webhook answered {status}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = admin(&harness, "GET", "/admin/status", "").await?["sweep"].clone();
    bc.control().clear_log();
    let watch = Instant::now();
    let after = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let s = admin(&harness, "GET", "/admin/status", "").await?["sweep"].clone();
        if s["last_run_at"] != before["last_run_at"] && s["running"] == false {
            break s;
        }
        anyhow::ensure!(
            watch.elapsed() < Duration::from_secs(120),
            "no sweep ran: {s}"
        );
    };
    let lists = bc
        .control()
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/v2/orders") || r.path.ends_with("/v3/customers"))
        .count();
    println!(
        "  sweep over {orders} recently changed, already synced orders: {lists} BigCommerce list calls \
         ({:.1} per 1,000), queued {}",
        lists as f64 * 1000.0 / orders as f64,
        after["queued_last_run"]
    );
    running.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
