//! Benchmarks of the host (not tests: numbers to read, nothing asserted).
//!
//! ```text
//! cargo run --release -p ml-harness --bin bench -- health [--requests 10000]
//! cargo run --release -p ml-harness --bin bench -- kv [--ops 20000] [--concurrency 32] [--redis-url redis://127.0.0.1:6379]
//! ```
//!
//! `health` measures what every request pays: a fresh instance of the component, the call into
//! `wasi:http/incoming-handler`, the response — in-process through `Harness::call` (no TCP),
//! one at a time and then from two concurrent tasks. `kv` measures a key-value backend (SQLite:
//! WAL + synchronous=FULL on its own thread, grouping concurrent requests into one commit; or a
//! Redis): sets of 200-byte values, increments, compare-and-swaps and gets, one task at a time
//! and then from many, with latency percentiles.
//! The orders benchmark (webhooks in, invoices out) lives in the e2e crate:
//! `cargo run --release -p ml-e2e --bin bench_orders`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use ml_harness::config::{Overrides, VariableSource};
use ml_harness::kv::{KvBackend, MemoryBackend, RedisBackend, RedisOptions, SqliteBackend};
use ml_harness::manifest::Manifest;
use ml_harness::server::{self, AppConfig, Harness};

#[derive(Parser)]
#[command(name = "bench", about = "Benchmarks of the ml-connector host")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Instantiate + handle `GET /health`, in-process.
    Health {
        /// Requests per phase (sequential, then two concurrent tasks).
        #[arg(long, default_value_t = 10_000)]
        requests: usize,
        /// Path to the Spin manifest.
        #[arg(long, default_value = "spin.toml")]
        manifest: PathBuf,
        /// The .wasm to run instead of the manifest's `source`.
        #[arg(long)]
        component: Option<PathBuf>,
    },
    /// Key-value backend operations (SQLite by default, or a Redis with --redis-url), one task
    /// at a time and then from --concurrency tasks.
    Kv {
        /// Operations per measurement.
        #[arg(long, default_value_t = 20_000)]
        ops: usize,
        /// Tasks of the concurrent measurements.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Measure the Redis at this URL instead of SQLite (its keys `bench/*` are overwritten).
        #[arg(long)]
        redis_url: Option<String>,
    },
    /// Not here: see `cargo run --release -p ml-e2e --bin bench_orders`.
    Orders,
}

/// Variables for a connector that only needs to answer `/health`: placeholders, never the
/// process environment (a benchmark must not pick up real credentials).
struct Placeholders;

impl VariableSource for Placeholders {
    fn get(&self, _: &str) -> Option<String> {
        None
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.command {
        Command::Health {
            requests,
            manifest,
            component,
        } => runtime.block_on(health(requests, &manifest, component)),
        Command::Kv {
            ops,
            concurrency,
            redis_url,
        } => kv(ops, concurrency, redis_url),
        Command::Orders => {
            println!("the orders benchmark is `cargo run --release -p ml-e2e --bin bench_orders`");
            Ok(())
        }
    }
}

/// Latency summary of one phase.
fn report(label: &str, mut samples: Vec<Duration>, wall: Duration) {
    samples.sort_unstable();
    let n = samples.len();
    if n == 0 {
        println!("{label}: no samples");
        return;
    }
    let total: Duration = samples.iter().sum();
    let mean = total / u32::try_from(n).unwrap_or(u32::MAX);
    let p50 = samples[n * 50 / 100];
    let p99 = samples[(n * 99 / 100).min(n - 1)];
    println!(
        "{label}: {n} requests in {wall:.2?}: {} req/s; latency p50 {p50:.1?}, p99 {p99:.1?}, mean {mean:.1?}, max {:.1?}",
        per_second(n, wall),
        samples[n - 1]
    );
}

/// `count / elapsed`, in whole operations per second (integer arithmetic).
fn per_second(count: usize, elapsed: Duration) -> u128 {
    let nanos = elapsed.as_nanos().max(1);
    (count as u128) * 1_000_000_000 / nanos
}

async fn health(
    requests: usize,
    manifest_path: &std::path::Path,
    component: Option<PathBuf>,
) -> anyhow::Result<()> {
    let manifest = Manifest::load(manifest_path)?;
    let source = component.unwrap_or_else(|| manifest.component.source.clone());
    let values = BTreeMap::from([
        ("bigcommerce_store_hash".to_string(), "bench".to_string()),
        ("admin_token".to_string(), "bench".to_string()),
    ]);
    let app = AppConfig::resolve(
        &manifest,
        &Overrides {
            values,
            fallback: Placeholders,
        },
    )?;
    let engine = server::engine()?;
    let started = Instant::now();
    let component = server::compile(&engine, &source)?;
    println!("compiled {} in {:.2?}", source.display(), started.elapsed());
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryBackend::default());
    let harness = Arc::new(Harness::new(&engine, &component, app, kv)?);

    let call = |h: Arc<Harness>| async move {
        let t = Instant::now();
        let (status, _) = h.call("GET", "/health", &[], Vec::new()).await?;
        anyhow::ensure!(status == 200, "GET /health answered {status}");
        Ok::<_, anyhow::Error>(t.elapsed())
    };
    for _ in 0..200 {
        call(harness.clone()).await?;
    }

    let mut samples = Vec::with_capacity(requests);
    let wall = Instant::now();
    for _ in 0..requests {
        samples.push(call(harness.clone()).await?);
    }
    report("GET /health, 1 task ", samples, wall.elapsed());

    let wall = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..2 {
        let harness = harness.clone();
        let share = requests / 2 + if t == 0 { requests % 2 } else { 0 };
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(share);
            for _ in 0..share {
                samples.push(call(harness.clone()).await?);
            }
            Ok::<_, anyhow::Error>(samples)
        }));
    }
    let mut samples = Vec::with_capacity(requests);
    for task in tasks {
        samples.extend(task.await??);
    }
    report("GET /health, 2 tasks", samples, wall.elapsed());
    Ok(())
}

fn kv(ops: usize, concurrency: usize, redis_url: Option<String>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = std::env::temp_dir().join(format!("ml-bench-kv-{}", std::process::id()));
    let result = runtime.block_on(async {
        let (label, backend): (&str, Arc<dyn KvBackend>) = match &redis_url {
            Some(url) => (
                "redis",
                Arc::new(RedisBackend::new(url, RedisOptions::default())?),
            ),
            None => ("sqlite", Arc::new(SqliteBackend::open_in(&dir)?)),
        };
        kv_in(label, backend, ops, concurrency).await
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// One measured phase: `ops` operations from `concurrency` tasks; prints throughput and latency.
async fn phase<F, Fut>(name: &str, ops: usize, concurrency: usize, op: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let wall = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut i = t;
            while i < ops {
                let started = Instant::now();
                op(i).await?;
                samples.push(started.elapsed());
                i += concurrency;
            }
            anyhow::Ok(samples)
        }));
    }
    let mut samples = Vec::with_capacity(ops);
    for task in tasks {
        samples.extend(task.await??);
    }
    let wall = wall.elapsed();
    samples.sort_unstable();
    let n = samples.len().max(1);
    println!(
        "{name:<34} {:>7} ops/s; latency p50 {:.1?}, p99 {:.1?} ({ops} ops, {concurrency} task(s), {wall:.2?})",
        per_second(ops, wall),
        samples[n * 50 / 100],
        samples[(n * 99 / 100).min(n - 1)],
    );
    Ok(())
}

async fn kv_in(
    label: &'static str,
    backend: Arc<dyn KvBackend>,
    ops: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let value = Arc::new(vec![b'x'; 200]);
    for tasks in [1, concurrency] {
        let (b, v) = (backend.clone(), value.clone());
        phase(
            &format!("{label} set (new keys, 200 B)"),
            ops,
            tasks,
            move |i| {
                let (b, v) = (b.clone(), v.clone());
                async move {
                    b.set("default", &format!("bench/{tasks}/new/{i}"), &v)
                        .await
                        .context("set")
                }
            },
        )
        .await?;
        let (b, v) = (backend.clone(), value.clone());
        phase(
            &format!("{label} set (overwrite, 200 B)"),
            ops,
            tasks,
            move |i| {
                let (b, v) = (b.clone(), v.clone());
                async move {
                    b.set("default", &format!("bench/{tasks}/new/{}", i % 100), &v)
                        .await
                        .context("overwrite")
                }
            },
        )
        .await?;
        let b = backend.clone();
        phase(&format!("{label} increment"), ops, tasks, move |_| {
            let b = b.clone();
            async move {
                b.increment("default", "bench/counter", 1)
                    .await
                    .map(drop)
                    .context("increment")
            }
        })
        .await?;
        let b = backend.clone();
        phase(&format!("{label} compare-and-swap"), ops, tasks, move |i| {
            let b = b.clone();
            async move {
                let key = format!("bench/{tasks}/cas/{}", i % 64);
                let current = b.get("default", &key).await.context("get")?;
                b.compare_and_swap("default", &key, current.as_deref(), &i.to_le_bytes())
                    .await
                    .map(drop)
                    .context("compare-and-swap")
            }
        })
        .await?;
        let b = backend.clone();
        phase(&format!("{label} get (200 B)"), ops, tasks, move |i| {
            let b = b.clone();
            async move {
                b.get("default", &format!("bench/{tasks}/new/{i}"))
                    .await
                    .map(drop)
                    .context("get")
            }
        })
        .await?;
    }
    Ok(())
}
