//! Cold-burst benchmark: where the upstream calls of a burst go.
//!
//! `cargo run -p ml-e2e --bin bench_burst -- [ORDERS] [SENDERS] [unpaid|paid|mixed] [--qbo-limit N] [--warm]`
//!
//! A fresh connector (nothing cached, no customer linked) with the contract's example mapping
//! (SKU, customer-group and category rules, classes, an income account) receives ORDERS
//! `store/order/created` webhooks from SENDERS concurrent senders: orders of 20 returning
//! customers (registered in BigCommerce, unknown to QuickBooks) and guests, against a
//! QuickBooks simulator that enforces its 10-at-a-time limit (`--qbo-limit` changes it). The
//! harness calls retry-due every second, as the deploy's CronJob would. Prints upstream calls
//! per order, broken down by what was asked (order reads, `/v3/customers`, catalog, QuickBooks
//! queries per entity, writes, 429 answers), and key-value operations per order. `--warm` runs
//! the same burst a second time on new orders of the same buyers (names resolved, customers
//! linked) and reports it too.

// Floating point only formats the measurements; no money is computed here.
#![allow(clippy::float_arithmetic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use ml_harness::config::{EnvSource, Overrides};
use ml_harness::kv::{BackendError, KvBackend, SqliteBackend};
use ml_harness::manifest::Manifest;
use ml_harness::server::{self, AppConfig, Harness, ServeOptions};
use ml_sim::bigcommerce::{BcSim, BcSimConfig, GeneratedOrder, OrderShape, Payment, generate_paid};
use ml_sim::control::LoggedRequest;
use ml_sim::quickbooks::{QboSim, QboSimConfig};
use serde_json::json;

const SECRET: &str = "bench-webhook-secret";
const ADMIN: &str = "bench-admin";
const RETURNING: u64 = 20;

/// The contract's example mapping, on names the QuickBooks simulator has.
fn mapping() -> serde_json::Value {
    json!({
        "version": 1,
        "invoice": {
            "doc_number": "{order_id}",
            "default_item": "Services",
            "default_class": null,
            "rules": [
                {"match": {"sku_prefix": "APP-"}, "item": "Apparel Sales", "class": "Apparel"},
                {"match": {"customer_group_id": 2}, "class": "Wholesale"},
                {"match": {"category_id": 23}, "account": "Services"}
            ],
            "shipping": {"item": "Shipping Income"},
            "handling": {"item": "Handling Income"},
            "discount": {"account": "Discounts given"},
            "tax": {"mode": "line", "item": "Sales Tax Collected"}
        },
        "customers": {"guest": {"mode": "per_email"}}
    })
}

fn shape(i: u64) -> OrderShape {
    OrderShape {
        lines: 1 + (i % 4) as usize,
        tax_inclusive: false,
        tax_rate_bp: 800,
        coupon: i.is_multiple_of(3),
        manual_discount: false,
        shipping: i.is_multiple_of(2),
        handling: i.is_multiple_of(7),
        wrapping: false,
        guest: i.is_multiple_of(4),
        seed: i,
    }
}

/// Order `id`: a guest, or one of the [`RETURNING`] registered customers (cloned from the
/// generated buyer with their own id, name and email).
fn order(id: u64, paid: bool) -> GeneratedOrder {
    let payment = if paid {
        Payment::Captured
    } else {
        Payment::Unpaid
    };
    let mut g = generate_paid(id, &shape(id), payment);
    if let Some(mut c) = g.customer.take() {
        let n = id % RETURNING;
        let cid = 5_000 + n;
        let email = format!("returning{n}@example.com");
        let last = format!("Returning{n}");
        c["id"] = json!(cid);
        c["email"] = json!(email);
        c["last_name"] = json!(last);
        c["customer_group_id"] = json!(if n.is_multiple_of(3) { 2 } else { 1 });
        g.order["customer_id"] = json!(cid);
        g.order["billing_address"]["email"] = json!(email);
        g.order["billing_address"]["last_name"] = json!(last);
        g.customer = Some(c);
    }
    g
}

fn webhook_body(store_hash: &str, id: u64) -> String {
    json!({
        "scope": "store/order/created",
        "store_id": "1001",
        "data": {"type": "order", "id": id},
        "hash": format!("{:040x}", id),
        "created_at": 1_700_000_000u64 + id,
        "producer": format!("stores/{store_hash}"),
    })
    .to_string()
}

struct Counted {
    inner: Arc<dyn KvBackend>,
    ops: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl KvBackend for Counted {
    async fn get(&self, s: &str, k: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        self.inner.get(s, k).await
    }
    async fn get_many(
        &self,
        s: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        // One operation: one round trip, however many keys.
        self.ops.fetch_add(1, Ordering::Relaxed);
        self.inner.get_many(s, keys).await
    }
    async fn set(&self, s: &str, k: &str, v: &[u8]) -> Result<(), BackendError> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        self.inner.set(s, k, v).await
    }
    async fn delete(&self, s: &str, k: &str) -> Result<(), BackendError> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        self.inner.delete(s, k).await
    }
    async fn keys(&self, s: &str) -> Result<Vec<String>, BackendError> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        self.inner.keys(s).await
    }
    async fn increment(&self, s: &str, k: &str, d: i64) -> Result<i64, BackendError> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        self.inner.increment(s, k, d).await
    }
    async fn compare_and_swap(
        &self,
        s: &str,
        k: &str,
        e: Option<&[u8]>,
        n: &[u8],
    ) -> Result<bool, BackendError> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        self.inner.compare_and_swap(s, k, e, n).await
    }
}

/// What a request asked for: `GET order`, `query Item`, `POST invoice`, ...
fn kind(r: &LoggedRequest) -> String {
    let p = r.path.as_str();
    if p.contains("/v3/company/") {
        return qbo_kind(r);
    }
    if p.contains("/oauth2/") || p.contains("bearer") {
        return "QBO token".into();
    }
    if p.contains("/v2/orders/") {
        let rest = p.split("/v2/orders/").nth(1).unwrap_or("");
        return match rest.split('/').nth(1) {
            None => "BC order read".into(),
            Some(sub) => format!("BC order {sub}"),
        };
    }
    if p.contains("/v3/customers") {
        return "BC /v3/customers".into();
    }
    if p.contains("/v3/catalog") {
        return "BC catalog".into();
    }
    format!("BC {} {p}", r.method)
}

fn qbo_kind(r: &LoggedRequest) -> String {
    let p = r.path.as_str();
    if p.ends_with("/query") {
        let q = r.query.clone().unwrap_or_default();
        let q = urlish_decode(&q);
        let entity = q
            .to_ascii_lowercase()
            .split(" from ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or("?")
            .to_string();
        return format!("QBO query {entity}");
    }
    let entity = p
        .rsplit('/')
        .find(|s| !s.chars().all(|c| c.is_ascii_digit()))
        .unwrap_or(p);
    format!("QBO {} {entity}", r.method)
}

fn urlish_decode(s: &str) -> String {
    url::form_urlencoded::parse(s.as_bytes())
        .find(|(k, _)| k == "query")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

struct Burst<'a> {
    bc: &'a ml_sim::bigcommerce::BcSimHandle,
    qbo: &'a ml_sim::quickbooks::QboSimHandle,
    client: &'a reqwest::Client,
    url: &'a str,
    ops: &'a AtomicU64,
}

impl Burst<'_> {
    async fn run(
        &self,
        label: &str,
        ids: Vec<u64>,
        senders: usize,
        paid: &dyn Fn(u64) -> bool,
    ) -> anyhow::Result<()> {
        for &id in &ids {
            self.bc.put_order(order(id, paid(id)));
        }
        let payments = ids.iter().filter(|&&id| paid(id)).count();
        let invoices_before = self.qbo.count("Invoice");
        let payments_before = self.qbo.count("Payment");
        self.bc.control().clear_log();
        self.qbo.control().clear_log();
        self.ops.store(0, Ordering::Relaxed);
        let queue = Arc::new(tokio::sync::Mutex::new(
            ids.iter()
                .rev()
                .map(|&id| webhook_body(self.bc.store_hash(), id))
                .collect::<Vec<_>>(),
        ));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..senders {
            let queue = queue.clone();
            let client = self.client.clone();
            let url = self.url.to_string();
            tasks.push(tokio::spawn(async move {
                loop {
                    let Some(body) = queue.lock().await.pop() else {
                        break;
                    };
                    let resp = client
                        .post(&url)
                        .header("x-ml-webhook-secret", SECRET)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await?;
                    anyhow::ensure!(
                        resp.status().is_success(),
                        "webhook answered {}",
                        resp.status()
                    );
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let n = ids.len();
        loop {
            let inv = self.qbo.count("Invoice") - invoices_before;
            let pay = self.qbo.count("Payment") - payments_before;
            if inv >= n && pay >= payments {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(900),
                "{label}: only {inv} of {n} invoices and {pay} of {payments} payments after 900 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed();
        // Let in-flight work finish its saves before counting key-value operations.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let bc_log = self.bc.control().requests();
        let qbo_log = self.qbo.control().requests();
        let nf = n as f64;
        println!(
            "{label}: {n} orders ({payments} paid), {senders} senders: all posted in {:.1} s",
            elapsed.as_secs_f64()
        );
        println!(
            "  upstream calls per order: {:.3} (BigCommerce {:.3}, QuickBooks {:.3}); QuickBooks 429 answers: {}",
            (bc_log.len() + qbo_log.len()) as f64 / nf,
            bc_log.len() as f64 / nf,
            qbo_log.len() as f64 / nf,
            qbo_log.iter().filter(|r| r.status == 429).count()
        );
        let mut by: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for r in bc_log.iter().chain(qbo_log.iter()) {
            let e = by.entry(kind(r)).or_default();
            e.0 += 1;
            if r.status == 429 {
                e.1 += 1;
            }
        }
        for (k, (c, throttled)) in by {
            println!(
                "    {k:<28} {c:>6}  ({:.3}/order; {throttled} answered 429)",
                c as f64 / nf
            );
        }
        println!(
            "  key-value operations per order: {:.1}",
            self.ops.load(Ordering::Relaxed) as f64 / nf
        );
        Ok(())
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut positional = Vec::new();
    let mut qbo_limit = 10usize;
    let mut warm = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--qbo-limit" => {
                qbo_limit = args.next().context("--qbo-limit needs a number")?.parse()?
            }
            "--warm" => warm = true,
            _ => positional.push(arg),
        }
    }
    let orders: u64 = positional
        .first()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(300);
    let senders: usize = positional
        .get(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(8);
    let mix = positional
        .get(2)
        .cloned()
        .unwrap_or_else(|| "unpaid".into());
    let paid: Box<dyn Fn(u64) -> bool> = match mix.as_str() {
        "unpaid" => Box::new(|_| false),
        "paid" => Box::new(|_| true),
        "mixed" => Box::new(|id| id.is_multiple_of(3)),
        other => anyhow::bail!("unknown mix '{other}': use unpaid, paid or mixed"),
    };

    let bc = BcSim::start(BcSimConfig {
        rate_limit_quota: u32::MAX,
        ..BcSimConfig::default()
    })
    .await?;
    let qbo = QboSim::start(QboSimConfig {
        max_concurrent_requests: qbo_limit,
        ..QboSimConfig::default()
    })
    .await?;
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
            ("admin_token", ADMIN.to_string()),
            ("mapping", mapping().to_string()),
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
    let ops = Arc::new(AtomicU64::new(0));
    let kv = Arc::new(Counted {
        inner: Arc::new(SqliteBackend::open_in(&dir)?),
        ops: ops.clone(),
    });
    let harness = Arc::new(Harness::new(&engine, &component, app, kv)?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let running = server::serve(
        harness,
        listener,
        ServeOptions {
            retry_interval: Some(Duration::from_secs(1)),
        },
    )?;
    let url = format!("http://{}/webhooks/bigcommerce", running.addr);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(senders)
        .build()?;
    let burst = Burst {
        bc: &bc,
        qbo: &qbo,
        client: &client,
        url: &url,
        ops: &ops,
    };
    println!(
        "burst benchmark: QuickBooks limit {qbo_limit} concurrent, contract example mapping, {RETURNING} returning customers + guests (every 4th order), retry-due every 1 s, KV SQLite, 2-core machine"
    );
    burst
        .run("cold", (1..=orders).collect(), senders, &*paid)
        .await?;
    if warm {
        burst
            .run("warm", (orders + 1..=2 * orders).collect(), senders, &*paid)
            .await?;
    }
    running.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
