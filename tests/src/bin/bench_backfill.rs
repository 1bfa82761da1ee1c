//! Backfill and sweep benchmark: the real component in the real harness (retry timer every
//! second) against the in-process simulators, QuickBooks enforcing its real limits (10
//! concurrent, 500 requests per minute).
//!
//! `cargo run --release -p ml-e2e --bin bench_backfill -- [ORDERS] [--unpaid-known]`
//!
//! Reports the backfill's orders/s and wall time against the floor QuickBooks allows
//! (its API requests / 500 per minute), the QuickBooks requests by kind, the 429s QuickBooks
//! answered (per-minute and concurrency; should be none: the connector paces itself), and what
//! a sweep costs in upstream calls when nothing changed. Progress goes to stderr every 30 s.
//!
//! The default mix has guests (every 4th order) and paid orders of the seeded customers, as
//! they come. `--unpaid-known` is the issue's reference case instead: unpaid orders (status 7,
//! no payment) of registered customers the connector already linked (one order per customer is
//! synced before the backfill starts), so each order should cost one QuickBooks write.

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

fn unpaid(mut g: ml_sim::bigcommerce::GeneratedOrder) -> ml_sim::bigcommerce::GeneratedOrder {
    g.order["status_id"] = 7.into();
    g.order["status"] = "Awaiting Payment".into();
    g.order["custom_status"] = "Awaiting Payment".into();
    g.order["payment_status"] = "".into();
    g
}

/// QuickBooks API requests (`/v3/...`) by method and entity, most frequent first.
fn qbo_kinds(requests: &[ml_sim::control::LoggedRequest]) -> String {
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for r in requests.iter().filter(|r| r.path.starts_with("/v3/")) {
        // `/v3/company/{realm}/invoice/123` is a read of an invoice: name it by its entity.
        let mut segments = r.path.rsplit('/');
        let last = segments.next().unwrap_or("");
        let entity = if last.bytes().all(|b| b.is_ascii_digit()) {
            segments.next().unwrap_or("")
        } else {
            last
        };
        let what = match r.query.as_deref() {
            Some(q) if entity == "query" => {
                let q: String = url::form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "query")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                let from = q
                    .split_whitespace()
                    .skip_while(|w| !w.eq_ignore_ascii_case("from"))
                    .nth(1)
                    .unwrap_or("?")
                    .to_string();
                format!("query {from}")
            }
            _ => entity.to_string(),
        };
        *kinds.entry(format!("{} {what}", r.method)).or_default() += 1;
    }
    let mut v: Vec<_> = kinds.into_iter().collect();
    v.sort_by_key(|k| std::cmp::Reverse(k.1));
    v.iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn api_calls(requests: &[ml_sim::control::LoggedRequest]) -> usize {
    requests
        .iter()
        .filter(|r| r.path.starts_with("/v3/"))
        .count()
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let unpaid_known = args.iter().any(|a| a == "--unpaid-known");
    let orders: u64 = args
        .iter()
        .find(|a| !a.starts_with("--"))
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
    let component = server::compile(&engine, &ml_e2e::env::bench_component_path())?;
    let dir = std::env::temp_dir().join(format!("ml-bench-backfill-{}", std::process::id()));
    let kv = Arc::new(SqliteBackend::open_in(&dir)?);
    let harness = Arc::new(Harness::new(&engine, &component, app, kv)?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let running = server::serve(
        harness.clone(),
        listener,
        ServeOptions {
            retry_interval: None,
        },
    )?;
    // The retry timer, as `ServeOptions::retry_interval` would run it (a call every second,
    // not waiting for the last), but one the bench can hold while it sets up the sweep case.
    let ticking = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let ticker = {
        let harness = harness.clone();
        let ticking = ticking.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_secs(1));
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                t.tick().await;
                if ticking.load(std::sync::atomic::Ordering::SeqCst) {
                    let harness = harness.clone();
                    tokio::spawn(async move {
                        if let Err(e) = admin(&harness, "POST", "/admin/retry-due", "").await {
                            eprintln!("retry-due: {e:#}");
                        }
                    });
                }
            }
        })
    };

    for id in 1..=orders {
        if unpaid_known {
            let mut s = shape(id);
            s.guest = false;
            bc.put_order(unpaid(generate(id, &s)));
        } else {
            bc.put_order(generate(id, &shape(id)));
        }
    }
    let mut presynced = 0;
    if unpaid_known {
        // Link every customer first: sync the first order of each.
        let mut seen = std::collections::BTreeSet::new();
        for id in 1..=orders {
            let customer = bc.order(id).map(|o| o["customer_id"].clone());
            if let Some(c) = customer
                && seen.insert(c.to_string())
            {
                let r = admin(&harness, "POST", &format!("/admin/replay/order/{id}"), "").await?;
                anyhow::ensure!(r["state"] == "posted", "presync of order {id}: {r}");
                presynced += 1;
            }
        }
        // Let the per-minute counters of that warm-up (and the simulator's window) go by.
        tokio::time::sleep(Duration::from_secs(61)).await;
    }
    bc.control().clear_log();
    qbo.control().clear_log();
    let invoices_before = qbo.invoice_count();
    let started = Instant::now();
    admin(
        &harness,
        "POST",
        "/admin/backfill",
        r#"{"since": "2026-01-01", "until": "2026-12-31"}"#,
    )
    .await?;
    let mut last_progress = Instant::now();
    let view = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let v = admin(&harness, "GET", "/admin/backfill", "").await?;
        if v["state"] != "running" {
            break v;
        }
        if last_progress.elapsed() >= Duration::from_secs(30) {
            last_progress = Instant::now();
            eprintln!(
                "  [{:>6.0} s] posted {} queued {} seen {}; QuickBooks API requests {}; 429s {}+{}",
                started.elapsed().as_secs_f64(),
                v["orders_posted"],
                v["orders_queued"],
                v["orders_seen"],
                api_calls(&qbo.control().requests()),
                qbo.throttled_per_minute(),
                qbo.throttled_concurrent()
            );
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(3600),
            "the backfill did not finish within an hour: {v}"
        );
    };
    let elapsed = started.elapsed();
    let qbo_log = qbo.control().requests();
    let qbo_calls = api_calls(&qbo_log);
    let bc_calls = bc.control().requests().len();
    let floor = Duration::from_secs_f64(qbo_calls as f64 / 500.0 * 60.0);
    let mix = if unpaid_known {
        format!("unpaid orders of known customers ({presynced} presynced, one per customer)")
    } else {
        "mixed orders (every 4th a guest, paid by card)".to_string()
    };
    println!(
        "backfill benchmark: {orders} orders, {mix}, shared 2-core machine, simulators in-process, \
         QuickBooks limits on (10 concurrent, 500/min)"
    );
    println!("  result: {view}");
    println!(
        "  wall time {:.1} s, {:.2} orders/s; QuickBooks {qbo_calls} API requests ({:.3}/order), BigCommerce {bc_calls} ({:.2}/order)",
        elapsed.as_secs_f64(),
        orders as f64 / elapsed.as_secs_f64(),
        qbo_calls as f64 / orders as f64,
        bc_calls as f64 / orders as f64
    );
    println!("  QuickBooks requests by kind: {}", qbo_kinds(&qbo_log));
    println!(
        "  floor at 500 QuickBooks requests/min: {:.1} s; took {:.3}x the floor; QuickBooks 429s: {} per-minute, {} concurrency; invoices created {}",
        floor.as_secs_f64(),
        elapsed.as_secs_f64() / floor.as_secs_f64().max(0.001),
        qbo.throttled_per_minute(),
        qbo.throttled_concurrent(),
        qbo.invoice_count() - invoices_before
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

    // Orders touched in BigCommerce (as a bulk status change would) but already synced by
    // their webhooks: the sweep lists them again (250 per call) and must queue none. Up to
    // 1,000 of them, marked changed a second before the replays that stand for the webhook
    // syncs (each a live QuickBooks read, so paced to 400 a minute after a minute's rest);
    // no sweep runs meanwhile, so the next one lists every one of them.
    let changed = orders.min(1000);
    ticking.store(false, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(61)).await;
    for id in 1..=changed {
        bc.modify_order(id, |_| {});
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let throttled_before = qbo.throttled_per_minute() + qbo.throttled_concurrent();
    qbo.control().clear_log();
    let replays = Instant::now();
    for id in 1..=changed {
        let r = admin(&harness, "POST", &format!("/admin/replay/order/{id}"), "").await?;
        anyhow::ensure!(r["state"] == "posted", "replay of order {id}: {r}");
        tokio::time::sleep_until((replays + Duration::from_millis(150) * id as u32).into()).await;
    }
    println!(
        "  {changed} replays (standing for webhook syncs) in {:.1} s: {} QuickBooks calls ({}), 429s {}",
        replays.elapsed().as_secs_f64(),
        api_calls(&qbo.control().requests()),
        qbo_kinds(&qbo.control().requests()),
        qbo.throttled_per_minute() + qbo.throttled_concurrent() - throttled_before
    );
    qbo.control().clear_log();
    let before = admin(&harness, "GET", "/admin/status", "").await?["sweep"].clone();
    bc.control().clear_log();
    qbo.control().clear_log();
    ticking.store(true, std::sync::atomic::Ordering::SeqCst);
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
    // `GET /admin/status` (polled above) probes both connections: `/v2/store` and
    // `companyinfo` calls are the bench's, not the sweep's.
    let bc_log: Vec<_> = bc
        .control()
        .requests()
        .into_iter()
        .filter(|r| !r.path.ends_with("/v2/store"))
        .collect();
    let qbo_log: Vec<_> = qbo
        .control()
        .requests()
        .into_iter()
        .filter(|r| !r.path.contains("companyinfo"))
        .collect();
    let lists = bc_log
        .iter()
        .filter(|r| r.path.ends_with("/v2/orders") || r.path.ends_with("/v3/customers"))
        .count();
    let qbo_sweep = api_calls(&qbo_log);
    let mut bc_kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for r in &bc_log {
        let path: String = r
            .path
            .split('/')
            .map(|p| {
                if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
                    "{id}"
                } else {
                    p
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        *bc_kinds.entry(format!("{} {path}", r.method)).or_default() += 1;
    }
    println!(
        "  calls of that sweep (status probes left out): BigCommerce {bc_kinds:?}; QuickBooks {}",
        qbo_kinds(&qbo_log)
    );
    let upstream = bc_log.len() + qbo_sweep;
    println!(
        "  sweep over {changed} recently changed, already synced orders: {lists} BigCommerce list calls, \
         {} BigCommerce calls in all, {qbo_sweep} QuickBooks calls: {:.1} upstream calls per 1,000 unchanged orders; queued {}; sweep {after}",
        bc_log.len(),
        upstream as f64 * 1000.0 / changed as f64,
        after["queued_last_run"]
    );
    ticker.abort();
    running.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
