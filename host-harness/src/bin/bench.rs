//! Benchmarks of the host (not tests: numbers to read, nothing asserted).
//!
//! ```text
//! cargo run --release -p ml-harness --bin bench -- health [--requests 10000]
//! cargo run --release -p ml-harness --bin bench -- kv [--ops 20000] [--concurrency 32] [--redis-url redis://127.0.0.1:6379]
//! cargo run --release -p ml-harness --bin bench -- slow-clients [--connections 2000]
//! ```
//!
//! `health` measures what every request pays: a fresh instance of the component, the call into
//! `wasi:http/incoming-handler`, the response — in-process through `Harness::call` (no TCP),
//! one at a time and then from two concurrent tasks. `kv` measures a key-value backend (SQLite:
//! WAL + synchronous=FULL on its own thread, grouping concurrent requests into one commit; or a
//! Redis): sets of 200-byte values, increments, compare-and-swaps and gets, one task at a time
//! and then from many, with latency percentiles.
//! `slow-clients` serves over TCP, opens many connections that send request headers announcing
//! a 64 KiB body and then nothing, and reports what they got and whether `GET /health` still
//! answers.
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
    /// Many clients that send headers with `content-length: 65536` and no body, then
    /// `GET /health` from a fresh connection.
    SlowClients {
        /// How many slow connections to open.
        #[arg(long, default_value_t = 2000)]
        connections: usize,
        /// Where the slow clients post.
        #[arg(long, default_value = "/webhooks/bigcommerce")]
        path: String,
        /// Send the right `x-ml-webhook-secret` (default: a wrong one).
        #[arg(long)]
        right_secret: bool,
        /// Seconds to keep the slow connections open after the probes, waiting for answers.
        #[arg(long, default_value_t = 2)]
        hold: u64,
        /// Path to the Spin manifest.
        #[arg(long, default_value = "spin.toml")]
        manifest: PathBuf,
        /// The .wasm to run instead of the manifest's `source`.
        #[arg(long)]
        component: Option<PathBuf>,
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
        Command::SlowClients {
            connections,
            path,
            right_secret,
            hold,
            manifest,
            component,
        } => runtime.block_on(slow_clients(SlowClients {
            connections,
            path,
            right_secret,
            hold: Duration::from_secs(hold),
            manifest,
            component,
        })),
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

struct SlowClients {
    connections: usize,
    path: String,
    right_secret: bool,
    hold: Duration,
    manifest: PathBuf,
    component: Option<PathBuf>,
}

const BENCH_SECRET: &str = "bench-webhook-secret";

/// One raw HTTP/1.1 exchange on a fresh connection: the status code (0 when the connection
/// closed without one) and how long it took; `None` when nothing came within `limit`.
async fn raw_request(
    addr: std::net::SocketAddr,
    head: &str,
    limit: Duration,
) -> anyhow::Result<Option<(u16, Duration)>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(head.as_bytes()).await?;
    let mut buf = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut buf)).await {
        Err(_) => Ok(None),
        Ok(_) => Ok(Some((status_of(&buf), t.elapsed()))),
    }
}

fn status_of(response: &[u8]) -> u16 {
    String::from_utf8_lossy(response)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn slow_clients(opts: SlowClients) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The host's own account of what it refused (RUST_LOG overrides).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let manifest = Manifest::load(&opts.manifest)?;
    let source = opts
        .component
        .clone()
        .unwrap_or_else(|| manifest.component.source.clone());
    let values = BTreeMap::from([
        ("bigcommerce_store_hash".to_string(), "bench".to_string()),
        ("admin_token".to_string(), "bench".to_string()),
        (
            "bigcommerce_webhook_secret".to_string(),
            BENCH_SECRET.to_string(),
        ),
    ]);
    let app = AppConfig::resolve(
        &manifest,
        &Overrides {
            values,
            fallback: Placeholders,
        },
    )?;
    let engine = server::engine()?;
    let component = server::compile(&engine, &source)?;
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryBackend::default());
    let harness = Arc::new(Harness::new(&engine, &component, app, kv)?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let running = server::serve(harness.clone(), listener, server::ServeOptions::default())?;
    let addr = running.addr;
    let health = "GET /health HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n";
    match raw_request(addr, health, Duration::from_secs(30)).await? {
        Some((status, took)) => println!("before: GET /health -> {status} in {took:.1?}"),
        None => println!("before: GET /health -> no answer within 30 s"),
    }

    let secret = if opts.right_secret {
        BENCH_SECRET
    } else {
        "wrong"
    };
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n\
         content-length: 65536\r\nx-ml-webhook-secret: {secret}\r\n\r\n",
        opts.path
    );
    let opened = Instant::now();
    let (release, released) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::with_capacity(opts.connections);
    let mut refused = 0usize;
    for _ in 0..opts.connections {
        let mut stream = match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => {
                refused += 1;
                if refused == 1 {
                    println!("connect failed: {e}");
                }
                continue;
            }
        };
        stream.write_all(head.as_bytes()).await?;
        let mut released = released.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let mut buf = Vec::new();
            // Held open (no body sent) until the probes are done and `hold` has passed.
            tokio::select! {
                _ = stream.read_to_end(&mut buf) => Some((status_of(&buf), t.elapsed())),
                _ = released.wait_for(|r| *r) => None,
            }
        }));
    }
    println!(
        "opened {} slow connections to {} ({} failed to connect) in {:.2?}",
        tasks.len(),
        opts.path,
        refused,
        opened.elapsed()
    );
    // Let the server pick every one of them up before probing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "instances alive: {} (limit {})",
        harness.live_instances(),
        harness.limits().max_concurrent
    );
    for probe in 1..=3 {
        match raw_request(addr, health, Duration::from_secs(30)).await? {
            Some((status, took)) => {
                println!("during (probe {probe}): GET /health -> {status} in {took:.1?}")
            }
            None => println!("during (probe {probe}): GET /health -> no answer within 30 s"),
        }
    }
    tokio::time::sleep(opts.hold).await;
    let _ = release.send(true);
    let mut by_status = BTreeMap::<u16, (usize, Duration)>::new();
    let mut unanswered = 0usize;
    for task in tasks {
        match task.await? {
            Some((status, took)) => {
                let e = by_status.entry(status).or_default();
                e.0 += 1;
                e.1 = e.1.max(took);
            }
            None => unanswered += 1,
        }
    }
    for (status, (n, slowest)) in &by_status {
        println!("slow clients answered {status}: {n} (slowest after {slowest:.1?})");
    }
    println!(
        "slow clients with no answer by the end (probes + {:?}): {unanswered}",
        opts.hold
    );
    match raw_request(addr, health, Duration::from_secs(30)).await? {
        Some((status, took)) => println!("after: GET /health -> {status} in {took:.1?}"),
        None => println!("after: GET /health -> no answer within 30 s"),
    }
    running.abort();
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
