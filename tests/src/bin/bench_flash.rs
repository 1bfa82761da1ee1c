//! Flash-sale benchmark (issue 17): a burst of orders arriving within a few seconds, against a
//! QuickBooks simulator that enforces its real limits (10 requests in flight, 500 a minute,
//! the batch limits), through the real component in the real harness.
//!
//! `cargo run --release -p ml-e2e --bin bench_flash -- [ORDERS] [WINDOW_SECONDS] [--kv sqlite|redis] [--instances N]`
//!
//! Defaults: 500 orders within 10 s, one instance on SQLite. A third of the orders are paid
//! at checkout (invoice + payment), a quarter are guests, the rest returning customers (the
//! store's registered customers, each ordering many times). 8 senders spread the webhooks
//! evenly over the window. The harness's retry timer ticks every 15 s, as deployed.
//!
//! Reports the time from the first webhook to the last invoice and payment, next to the floor
//! QuickBooks' 500 requests a minute set (for the QuickBooks requests this run made, and for
//! the floor of 1 per unpaid and 2 per paid order), the 429 answers of each kind, the most
//! QuickBooks requests in flight at once, and upstream calls per order from a cold start.

// Floating point only formats the measurements; no money is computed here.
#![allow(clippy::float_arithmetic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ml_harness::config::{EnvSource, Overrides};
use ml_harness::kv::{KvBackend, RedisBackend, RedisOptions, SqliteBackend};
use ml_harness::manifest::Manifest;
use ml_harness::server::{self, AppConfig, Harness, ServeOptions};
use ml_sim::bigcommerce::{BcSim, BcSimConfig, OrderShape, Payment, generate_paid};
use ml_sim::quickbooks::{QboSim, QboSimConfig};

const SECRET: &str = "bench-webhook-secret";
const SENDERS: usize = 8;
const FIRST: u64 = 1;

fn shape(i: u64) -> OrderShape {
    OrderShape {
        lines: 1 + (i % 4) as usize,
        tax_inclusive: i.is_multiple_of(5),
        tax_rate_bp: if i.is_multiple_of(5) { 2000 } else { 800 },
        coupon: i.is_multiple_of(3),
        manual_discount: false,
        shipping: i.is_multiple_of(2),
        handling: i.is_multiple_of(7),
        wrapping: false,
        guest: i.is_multiple_of(4),
        seed: i,
    }
}

fn paid(i: u64) -> bool {
    i.is_multiple_of(3)
}

fn webhook_body(store_hash: &str, id: u64) -> String {
    serde_json::json!({
        "scope": "store/order/created",
        "store_id": "1001",
        "data": {"type": "order", "id": id},
        "hash": format!("{:040x}", id),
        "created_at": 1_700_000_000u64 + id,
        "producer": format!("stores/{store_hash}"),
    })
    .to_string()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut positional = Vec::new();
    let mut kv_kind = "sqlite".to_string();
    let mut instances = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--kv" => kv_kind = args.next().context("--kv needs sqlite or redis")?,
            "--instances" => {
                instances = args.next().context("--instances needs a number")?.parse()?
            }
            _ => positional.push(arg),
        }
    }
    let orders: u64 = positional
        .first()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(500);
    let window_s: f64 = positional
        .get(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10.0);
    anyhow::ensure!(
        kv_kind == "sqlite" || kv_kind == "redis",
        "--kv takes sqlite or redis"
    );
    anyhow::ensure!(
        instances >= 1 && (kv_kind == "redis" || instances == 1),
        "several instances need a shared store: --kv redis"
    );

    let bc = BcSim::start(BcSimConfig {
        rate_limit_quota: u32::MAX,
        ..BcSimConfig::default()
    })
    .await?;
    // QuickBooks' real limits: the simulator's defaults.
    let qbo = QboSim::start(QboSimConfig::default()).await?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = Manifest::load(&root.join("spin.toml"))?;
    let mut values = ml_harness::demo::simulator_variables(&bc, &qbo);
    values.extend(
        [
            ("bigcommerce_webhook_secret", SECRET.to_string()),
            (
                "encryption_key",
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_string(),
            ),
            ("admin_token", "bench-admin".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v)),
    );
    let app = AppConfig::resolve(
        &manifest,
        &Overrides {
            values,
            fallback: EnvSource,
        },
    )?;
    let engine = server::engine()?;
    let component = server::compile(&engine, &ml_e2e::env::bench_component_path())?;
    let dir = std::env::temp_dir().join(format!("ml-bench-burst-{}", std::process::id()));
    let redis = match kv_kind.as_str() {
        "redis" => Some(ml_e2e::redis::RedisServer::start().await?),
        _ => None,
    };
    let mut running = Vec::new();
    let mut urls = Vec::new();
    let mut first_kv = None;
    for _ in 0..instances {
        let kv: Arc<dyn KvBackend> = match &redis {
            Some(r) => Arc::new(RedisBackend::new(&r.url(), RedisOptions::default())?),
            None => Arc::new(SqliteBackend::open_in(&dir)?),
        };
        first_kv.get_or_insert_with(|| kv.clone());
        let harness = Arc::new(Harness::new(&engine, &component, app.clone(), kv)?);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let r = server::serve(
            harness,
            listener,
            ServeOptions {
                retry_interval: Some(Duration::from_secs(15)),
            },
        )?;
        urls.push(format!("http://{}/webhooks/bigcommerce", r.addr));
        running.push(r);
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(SENDERS)
        .build()?;

    let ids: Vec<u64> = (FIRST..FIRST + orders).collect();
    let paid_count = ids.iter().filter(|i| paid(**i)).count();
    for id in &ids {
        let payment = if paid(*id) {
            Payment::Captured
        } else {
            Payment::Unpaid
        };
        bc.put_order(generate_paid(*id, &shape(*id), payment));
    }
    bc.control().clear_log();
    qbo.control().clear_log();

    // 8 senders; webhook k leaves at k × window / orders.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ids = Arc::new(ids);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..SENDERS {
        let (next, ids, client) = (next.clone(), ids.clone(), client.clone());
        let url = urls[t % urls.len()].clone();
        let store = bc.store_hash().to_string();
        tasks.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(id) = ids.get(k) else {
                    return anyhow::Ok(());
                };
                let at = Duration::from_secs_f64(window_s * k as f64 / ids.len() as f64);
                if let Some(wait) = at.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
                let resp = client
                    .post(&url)
                    .header("x-ml-webhook-secret", SECRET)
                    .header("content-type", "application/json")
                    .body(webhook_body(&store, *id))
                    .send()
                    .await?;
                let status = resp.status();
                resp.bytes().await?;
                anyhow::ensure!(status.is_success(), "webhook answered {status}");
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let sent = started.elapsed();
    let limit = Duration::from_secs(3 * 3600);
    let mut last_invoice = None;
    let mut last_payment = None;
    // Documents in QuickBooks every 10 s: how the burst fills QuickBooks' minute.
    let mut progress = Vec::new();
    // QuickBooks' minute each second (operations in its sliding 60 s): how full the limiter
    // keeps it.
    let mut minute = Vec::new();
    loop {
        let at = started.elapsed().as_secs() / 10;
        if progress.len() as u64 <= at {
            progress.push(qbo.count("Invoice") + qbo.count("Payment"));
        }
        if minute.len() as u64 <= started.elapsed().as_secs() {
            minute.push(qbo.minute_in_use());
        }
        if last_invoice.is_none() && qbo.count("Invoice") >= ids.len() {
            last_invoice = Some(started.elapsed());
        }
        if last_payment.is_none() && qbo.count("Payment") >= paid_count {
            last_payment = Some(started.elapsed());
        }
        if last_invoice.is_some() && last_payment.is_some() {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "only {} of {} invoices and {} of {paid_count} payments after {limit:?}",
            qbo.count("Invoice"),
            ids.len(),
            qbo.count("Payment")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = started.elapsed();
    let bc_calls = bc.control().requests().len();
    let qbo_log = qbo.control().requests();
    let qbo_calls = qbo_log.len();
    let n = ids.len() as f64;
    let per_s = 500.0 / 60.0;
    // The floor of calls per order is 2 (unpaid) or 3 (paid), one of them the BigCommerce
    // read: QuickBooks requests 1 per unpaid and 2 per paid order.
    let floor_calls = ((ids.len() - paid_count) + 2 * paid_count) as f64;
    println!(
        "burst benchmark: {orders} orders ({paid_count} paid, every 4th a guest) sent within {window_s} s by {SENDERS} senders; KV {kv_kind}, {instances} instance(s); QuickBooks limits ON; 2-core machine"
    );
    println!(
        "  webhooks sent in {:.1} s; last invoice at {:.1} s, last payment at {:.1} s",
        sent.as_secs_f64(),
        last_invoice.unwrap_or_default().as_secs_f64(),
        last_payment.unwrap_or_default().as_secs_f64()
    );
    println!(
        "  floor set by 500 requests/min: {:.1} s for the {qbo_calls} QuickBooks requests made; {:.1} s at the floor of 1 QuickBooks request per unpaid + 2 per paid order ({floor_calls} requests); done / that floor = {:.2}",
        qbo_calls as f64 / per_s,
        floor_calls / per_s,
        done.as_secs_f64() / (floor_calls / per_s)
    );
    // Every operation QuickBooks counted toward its 500 a minute: each single request, and each
    // item of a batch (the run injects no faults, so every batch item created its document).
    let api: Vec<_> = qbo_log
        .iter()
        .filter(|r| r.path.contains("/v3/company/"))
        .collect();
    let kind = |method: &str, tail: &str| {
        api.iter()
            .filter(|r| r.method == method && r.path.ends_with(tail))
            .count()
    };
    let customer_queries = api
        .iter()
        .filter(|r| {
            r.path.ends_with("/query")
                && r.query
                    .as_deref()
                    .is_some_and(|q| q.to_ascii_lowercase().contains("from%20customer"))
        })
        .count();
    let (single_invoices, single_payments) = (kind("POST", "/invoice"), kind("POST", "/payment"));
    let batches = kind("POST", "/batch");
    let batched = qbo.count("Invoice") + qbo.count("Payment") - single_invoices - single_payments;
    let ops = api.len() - batches + batched;
    println!(
        "  QuickBooks operations: {ops} ({batched} in {batches} batch requests; single requests: {single_invoices} invoices, {single_payments} payments, {} customer creates, {customer_queries} customer queries, {} other); floor for these operations at 500 a minute: {:.1} s; done / that floor = {:.2}",
        kind("POST", "/customer"),
        api.len()
            - batches
            - single_invoices
            - single_payments
            - kind("POST", "/customer")
            - customer_queries,
        ops as f64 / per_s,
        done.as_secs_f64() / (ops as f64 / per_s)
    );
    println!("  documents in QuickBooks every 10 s: {progress:?}");
    // From the first minute's end to the last minute's start, QuickBooks' minute is what the
    // limiter lets the burst use.
    let busy = minute
        .get(60..minute.len().saturating_sub(60))
        .unwrap_or_default();
    if !busy.is_empty() {
        println!(
            "  QuickBooks' minute in use, sampled each second from 60 s to 60 s before the end: mean {:.1}, min {}, max {} (of 500)",
            busy.iter().sum::<usize>() as f64 / busy.len() as f64,
            busy.iter().min().unwrap_or(&0),
            busy.iter().max().unwrap_or(&0)
        );
    }
    if std::env::var_os("ML_BENCH_TRACE").is_some() {
        println!("  QuickBooks' minute each second: {minute:?}");
    }
    // The limiter's count of operations reserved (a reservation that found no room stays
    // counted): what it reserved beyond what QuickBooks received is window room it wasted.
    if let Some(kv) = &first_kv {
        let reserved = kv
            .get("default", "pace/qbo/ops")
            .await?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, i64::from_le_bytes);
        println!(
            "  operations the limiter reserved: {reserved} ({} beyond those QuickBooks received)",
            reserved - ops as i64
        );
    }
    println!(
        "  QuickBooks 429 answers: {} (concurrency {}, per minute {}, batch {}); most requests in flight at once: {}",
        qbo.throttled_total(),
        qbo.throttled_concurrent(),
        qbo.throttled_per_minute(),
        qbo.throttled_batch(),
        qbo.peak_in_flight()
    );
    println!(
        "  upstream calls per order from a cold start: {:.3} (BigCommerce {:.3}, QuickBooks {:.3}); invoices {}, payments {}",
        (bc_calls + qbo_calls) as f64 / n,
        bc_calls as f64 / n,
        qbo_calls as f64 / n,
        qbo.count("Invoice"),
        qbo.count("Payment")
    );
    for r in running {
        r.stop().await?;
    }
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
