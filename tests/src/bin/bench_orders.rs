//! Orders benchmark: webhooks in, invoices out, through the real component in the real
//! harness against the in-process simulators (no injected latency), on loopback. This is the
//! connector's own overhead: QuickBooks' limits are off in its simulator and the connector's
//! per-minute pacing is off (`qbo_pacing = off`); `bench_flash` runs bursts with both on.
//!
//! `cargo run --release -p ml-e2e --bin bench_orders -- [ORDERS] [CONCURRENCY] [unpaid|paid] [--kv sqlite|redis] [--instances N] [--rate N] [--paced] [--settle S]`
//!
//! Reports orders/s (first webhook sent → last invoice in QuickBooks), webhook response time
//! percentiles, upstream calls per order at steady state (customers already linked, names
//! already resolved — the warm-up phase takes care of that), and key-value operations per order
//! with their latency. `--kv redis` starts a `redis-server` on a free loopback port; with
//! `--instances N` (Redis only) N harnesses share it, each with its own connection, and the
//! webhooks are spread over them round-robin. All of it runs on this machine's cores. With
//! `paid` every order is captured at checkout (invoice + payment), and a second phase refunds a
//! quarter of them (`store/order/refund/created`) and reports upstream calls per refund.
//! `--rate N` sends at most N webhooks a second in all (steady traffic instead of a burst: the
//! wait queue stays empty while the connector keeps up, so the key-value operations per order
//! are those of a job that finds capacity). `--paced` keeps QuickBooks' limits and the
//! connector's pacing on, as with a real company (with `--rate` low enough to stay under 500
//! QuickBooks requests a minute: what pacing costs a steady stream of orders). `--settle S`
//! waits S seconds after the warm-up and after the last invoice before counting, so the
//! retry timer's check of every webhook's guard entry (due 30 s after it) is counted too
//! (`--settle 50` covers it: 30 s, then at most a 15 s tick).

// Floating point only formats the measurements; no money is computed here.
#![allow(clippy::float_arithmetic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ml_harness::config::{EnvSource, Overrides};
use ml_harness::kv::{BackendError, KvBackend, RedisBackend, RedisOptions, SqliteBackend};
use ml_harness::manifest::Manifest;
use ml_harness::server::{self, AppConfig, Harness, ServeOptions};
use ml_sim::bigcommerce::{
    BcSim, BcSimConfig, GeneratedOrder, OrderShape, Payment, generate_paid, refund_one_unit,
};
use ml_sim::quickbooks::{QboSim, QboSimConfig};

const SECRET: &str = "bench-webhook-secret";

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
        guest: false,
        seed: i,
    }
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

fn refund_body(store_hash: &str, id: u64, refund_id: u64) -> String {
    serde_json::json!({
        "scope": "store/order/refund/created",
        "store_id": "1001",
        "data": {"type": "order", "id": id, "refund": {"refund_id": refund_id}},
        "hash": format!("{:040x}", refund_id << 32 | id),
        "created_at": 1_700_100_000u64 + id,
        "producer": format!("stores/{store_hash}"),
    })
    .to_string()
}

fn order(id: u64, paid: bool) -> GeneratedOrder {
    let payment = if paid {
        Payment::Captured
    } else {
        Payment::Unpaid
    };
    generate_paid(id, &shape(id), payment)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

/// Counts and times every key-value operation (all instances together), with the family of
/// the key it touched.
#[derive(Default)]
struct KvStats {
    samples: std::sync::Mutex<Vec<(&'static str, Duration)>>,
    families: std::sync::Mutex<std::collections::HashMap<(&'static str, String), u64>>,
    /// `ML_BENCH_KV_TRACE=1`: every operation and its key, in order, on stderr.
    trace: bool,
}

impl KvStats {
    fn take(&self) -> Vec<(&'static str, Duration)> {
        std::mem::take(&mut *self.samples.lock().unwrap())
    }

    fn take_families(&self) -> std::collections::HashMap<(&'static str, String), u64> {
        std::mem::take(&mut *self.families.lock().unwrap())
    }
}

/// A key's family: every run of digits becomes `#` and a long segment (a name, a hash) `*`.
fn key_family(key: &str) -> String {
    key.split('/')
        .map(|seg| {
            if seg.len() > 24 {
                return "*".to_string();
            }
            let mut out = String::new();
            let mut in_digits = false;
            for c in seg.chars() {
                if c.is_ascii_digit() {
                    if !in_digits {
                        out.push('#');
                    }
                    in_digits = true;
                } else {
                    out.push(c);
                    in_digits = false;
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join("/")
}

struct Timed {
    inner: Arc<dyn KvBackend>,
    stats: Arc<KvStats>,
}

impl Timed {
    async fn time<T>(
        &self,
        op: &'static str,
        key: &str,
        f: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        if self.stats.trace {
            eprintln!("kv {op:<9} {key}");
        }
        *self
            .stats
            .families
            .lock()
            .unwrap()
            .entry((op, key_family(key)))
            .or_default() += 1;
        let started = Instant::now();
        let out = f.await;
        self.stats
            .samples
            .lock()
            .unwrap()
            .push((op, started.elapsed()));
        out
    }
}

#[async_trait::async_trait]
impl KvBackend for Timed {
    async fn get(&self, s: &str, k: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.time("get", k, self.inner.get(s, k)).await
    }
    async fn get_many(
        &self,
        s: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        // One operation (one round trip), counted under the first key's family.
        let first = keys.first().map_or("", String::as_str);
        self.time("get_many", first, self.inner.get_many(s, keys))
            .await
    }
    async fn set(&self, s: &str, k: &str, v: &[u8]) -> Result<(), BackendError> {
        self.time("set", k, self.inner.set(s, k, v)).await
    }
    async fn set_many(&self, s: &str, entries: &[(String, Vec<u8>)]) -> Result<(), BackendError> {
        // One operation (one round trip), counted under the first key's family.
        let first = entries.first().map_or("", |(k, _)| k.as_str());
        self.time("set_many", first, self.inner.set_many(s, entries))
            .await
    }
    async fn delete(&self, s: &str, k: &str) -> Result<(), BackendError> {
        self.time("delete", k, self.inner.delete(s, k)).await
    }
    async fn delete_many(&self, s: &str, keys: &[String]) -> Result<(), BackendError> {
        // One operation (one round trip), counted under the first key's family.
        let first = keys.first().map_or("", String::as_str);
        self.time("delete_many", first, self.inner.delete_many(s, keys))
            .await
    }
    async fn keys(&self, s: &str) -> Result<Vec<String>, BackendError> {
        self.time("keys", "", self.inner.keys(s)).await
    }
    async fn increment(&self, s: &str, k: &str, d: i64) -> Result<i64, BackendError> {
        self.time("increment", k, self.inner.increment(s, k, d))
            .await
    }
    async fn compare_and_swap(
        &self,
        s: &str,
        k: &str,
        e: Option<&[u8]>,
        n: &[u8],
    ) -> Result<bool, BackendError> {
        self.time("swap", k, self.inner.compare_and_swap(s, k, e, n))
            .await
    }
}

fn report_kv(
    samples: Vec<(&'static str, Duration)>,
    families: std::collections::HashMap<(&'static str, String), u64>,
    orders: f64,
) {
    let mut all: Vec<Duration> = samples.iter().map(|(_, d)| *d).collect();
    all.sort();
    println!(
        "  key-value operations per order: {:.1}; latency p50 {:.3} ms, p99 {:.3} ms",
        all.len() as f64 / orders,
        percentile(&all, 0.50).as_secs_f64() * 1e3,
        percentile(&all, 0.99).as_secs_f64() * 1e3,
    );
    for op in [
        "get",
        "get_many",
        "set",
        "set_many",
        "increment",
        "swap",
        "delete",
        "delete_many",
        "keys",
    ] {
        let mut d: Vec<Duration> = samples
            .iter()
            .filter(|(o, _)| *o == op)
            .map(|(_, d)| *d)
            .collect();
        if d.is_empty() {
            continue;
        }
        d.sort();
        println!(
            "    {op:<9} {:>6.2}/order  p50 {:.3} ms  p99 {:.3} ms",
            d.len() as f64 / orders,
            percentile(&d, 0.50).as_secs_f64() * 1e3,
            percentile(&d, 0.99).as_secs_f64() * 1e3,
        );
    }
    let mut families: Vec<_> = families.into_iter().collect();
    families.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    println!("    by key (operations per order, at least 0.05):");
    for ((op, family), n) in families {
        let per = n as f64 / orders;
        if per >= 0.05 {
            println!("      {per:>6.2}  {op:<9} {family}");
        }
    }
}

/// Sends the webhooks, spread round-robin over `urls`.
async fn fire(
    client: &reqwest::Client,
    urls: &[String],
    bodies: Vec<String>,
    concurrency: usize,
    rate: Option<u32>,
) -> anyhow::Result<Vec<Duration>> {
    let queue = Arc::new(tokio::sync::Mutex::new(bodies));
    // One ticker shared by every sender: at most `rate` webhooks a second in all.
    let ticker = rate.map(|r| {
        let mut interval = tokio::time::interval(Duration::from_secs(1) / r.max(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Arc::new(tokio::sync::Mutex::new(interval))
    });
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let queue = queue.clone();
        let ticker = ticker.clone();
        let client = client.clone();
        let url = urls[t % urls.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                if let Some(ticker) = &ticker {
                    ticker.lock().await.tick().await;
                }
                let Some(body) = queue.lock().await.pop() else {
                    break;
                };
                let started = Instant::now();
                let resp = client
                    .post(&url)
                    .header("x-ml-webhook-secret", SECRET)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = resp.status();
                resp.bytes().await?;
                latencies.push(started.elapsed());
                anyhow::ensure!(status.is_success(), "webhook answered {status}");
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut positional = Vec::new();
    let mut kv_kind = "sqlite".to_string();
    let mut instances = 1usize;
    let mut rate = None;
    let mut paced = false;
    let mut settle = Duration::ZERO;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--kv" => kv_kind = args.next().context("--kv needs sqlite or redis")?,
            "--instances" => {
                instances = args.next().context("--instances needs a number")?.parse()?
            }
            "--rate" => {
                let r: u32 = args.next().context("--rate needs a number")?.parse()?;
                anyhow::ensure!(r > 0, "--rate takes webhooks a second, at least 1");
                rate = Some(r);
            }
            "--paced" => paced = true,
            "--settle" => {
                let s: u64 = args.next().context("--settle needs seconds")?.parse()?;
                settle = Duration::from_secs(s);
            }
            _ => positional.push(arg),
        }
    }
    let orders: u64 = positional
        .first()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2000);
    let concurrency: usize = positional
        .get(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(32);
    anyhow::ensure!(
        kv_kind == "sqlite" || kv_kind == "redis",
        "--kv takes sqlite or redis"
    );
    anyhow::ensure!(
        instances >= 1 && (kv_kind == "redis" || instances == 1),
        "several instances need a shared store: --kv redis"
    );
    let paid = match positional.get(2).map(String::as_str) {
        None | Some("unpaid") => false,
        Some("paid") => true,
        Some(other) => anyhow::bail!("unknown mix '{other}': use unpaid or paid"),
    };

    let bc = BcSim::start(BcSimConfig {
        rate_limit_quota: u32::MAX,
        ..BcSimConfig::default()
    })
    .await?;
    // Pure connector overhead: QuickBooks' limits (10 in flight, 500 a minute, batch) are off,
    // and so is the connector's own per-minute pacing (`qbo_pacing = off`; its 8 slots stay).
    // `--paced` keeps both on, as a real company has them (with `--rate` below 500 QuickBooks
    // requests a minute, it measures what pacing costs a steady stream of orders).
    let qbo = if paced {
        QboSim::start(QboSimConfig::default()).await?
    } else {
        QboSim::start(QboSimConfig::default().without_limits()).await?
    };
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
            ("qbo_pacing", if paced { "on" } else { "off" }.to_string()),
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
    let dir = std::env::temp_dir().join(format!("ml-bench-orders-{}", std::process::id()));
    let redis = match kv_kind.as_str() {
        "redis" => Some(ml_e2e::redis::RedisServer::start().await?),
        _ => None,
    };
    let stats = Arc::new(KvStats {
        trace: std::env::var_os("ML_BENCH_KV_TRACE").is_some(),
        ..KvStats::default()
    });
    let mut running = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..instances {
        let inner: Arc<dyn KvBackend> = match &redis {
            Some(r) => Arc::new(RedisBackend::new(&r.url(), RedisOptions::default())?),
            None => Arc::new(SqliteBackend::open_in(&dir)?),
        };
        let kv = Arc::new(Timed {
            inner,
            stats: stats.clone(),
        });
        let harness = Arc::new(Harness::new(&engine, &component, app.clone(), kv)?);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        // The retry timer ticks every 15 s, as deployed (it drains what the webhooks left).
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
        .pool_max_idle_per_host(concurrency)
        .build()?;

    // Warm-up: link every seeded customer and resolve every mapped name.
    let warm = 60u64;
    for id in 1..=warm {
        bc.put_order(order(id, paid));
    }
    fire(
        &client,
        &urls,
        (1..=warm)
            .map(|id| webhook_body(bc.store_hash(), id))
            .collect(),
        4,
        None,
    )
    .await?;
    wait_for(&qbo, "Invoice", warm as usize, Duration::from_secs(60))
        .await
        .context("warm-up")?;
    if paid {
        wait_for(&qbo, "Payment", warm as usize, Duration::from_secs(60))
            .await
            .context("warm-up payments")?;
    }

    // With `--settle`, the warm-up's guard entries come due and are checked before measuring.
    tokio::time::sleep(settle).await;

    // Measured run.
    let first = warm + 1;
    let last = warm + orders;
    for id in first..=last {
        bc.put_order(order(id, paid));
    }
    bc.control().clear_log();
    qbo.control().clear_log();
    stats.take();
    stats.take_families();
    let bodies: Vec<String> = (first..=last)
        .rev()
        .map(|id| webhook_body(bc.store_hash(), id))
        .collect();
    let started = Instant::now();
    let mut latencies = fire(&client, &urls, bodies, concurrency, rate).await?;
    let acked = started.elapsed();
    wait_for(
        &qbo,
        "Invoice",
        (warm + orders) as usize,
        Duration::from_secs(600),
    )
    .await?;
    if paid {
        wait_for(
            &qbo,
            "Payment",
            (warm + orders) as usize,
            Duration::from_secs(600),
        )
        .await?;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    // With `--settle`, the run's guard entries (due 30 s after each webhook) are checked by the
    // retry timer before the key-value operations are counted: that check is part of an order's cost.
    tokio::time::sleep(settle).await;

    let bc_calls = bc.control().requests().len();
    let qbo_calls = qbo.control().requests().len();
    let invoices = qbo.invoice_count();
    let orders_f = orders as f64;
    let kv_samples = stats.take();
    let kv_families = stats.take_families();
    println!(
        "orders benchmark: {orders} {} orders, concurrency {concurrency}{}, KV {kv_kind}, {instances} instance(s), QuickBooks limits and pacing {}, 2-core machine, simulators in-process",
        if paid { "paid" } else { "unpaid" },
        rate.map(|r| format!(" at most {r} a second"))
            .unwrap_or_default(),
        if paced { "ON" } else { "off" }
    );
    println!(
        "  all webhooks acknowledged in {:.2} s; all invoices posted in {:.2} s",
        acked.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "  throughput: {:.0} orders/s (webhook sent -> invoice in QuickBooks)",
        orders_f / elapsed.as_secs_f64()
    );
    println!(
        "  webhook response: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "  upstream calls per order: {:.3} (BigCommerce {:.3}, QuickBooks {:.3})",
        (bc_calls + qbo_calls) as f64 / orders_f,
        bc_calls as f64 / orders_f,
        qbo_calls as f64 / orders_f
    );
    println!(
        "  invoices in QuickBooks: {invoices} (expected {}), payments: {}",
        warm + orders,
        qbo.count("Payment")
    );
    report_kv(kv_samples, kv_families, orders_f);

    if paid {
        // Refunds: one item of every fourth measured order, one webhook each.
        let refunded: Vec<u64> = (first..=last).step_by(4).collect();
        let mut bodies = Vec::with_capacity(refunded.len());
        for &id in &refunded {
            let raw = bc.order(id).context("order stored")?;
            let products = bc.products(id);
            let refund = refund_one_unit(&raw, &products, "bench");
            let stored = bc.add_refund(id, refund).context("refund stored")?;
            bodies.push(refund_body(
                bc.store_hash(),
                id,
                stored["id"].as_u64().unwrap_or(0),
            ));
        }
        bc.control().clear_log();
        qbo.control().clear_log();
        let n = refunded.len();
        let started = Instant::now();
        fire(&client, &urls, bodies, concurrency, None).await?;
        wait_for(&qbo, "RefundReceipt", n, Duration::from_secs(600)).await?;
        let elapsed = started.elapsed();
        let bc_calls = bc.control().requests().len();
        let qbo_calls = qbo.control().requests().len();
        let n_f = n as f64;
        println!(
            "  refunds: {n} in {:.2} s ({:.0} refunds/s); upstream calls per refund: {:.3} (BigCommerce {:.3}, QuickBooks {:.3})",
            elapsed.as_secs_f64(),
            n_f / elapsed.as_secs_f64(),
            (bc_calls + qbo_calls) as f64 / n_f,
            bc_calls as f64 / n_f,
            qbo_calls as f64 / n_f
        );
    }
    for r in running {
        r.stop().await?;
    }
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn wait_for(
    qbo: &ml_sim::quickbooks::QboSimHandle,
    entity: &str,
    n: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let have = qbo.count(entity);
        if have >= n {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "only {have} of {n} {entity} records after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
