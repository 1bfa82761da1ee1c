//! `ml-harness`: run the ml-connector component on wasmtime, from the same spin.toml as Spin.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use ml_harness::config::EnvSource;
use ml_harness::demo::{self, Credentials, DemoOptions};
use ml_harness::kv::{KvBackend, RedisOptions, SqliteBackend};
use ml_harness::manifest::Manifest;
use ml_harness::runtime_config::RuntimeConfig;
use ml_harness::server::{self, AppConfig, Harness, ServeOptions};
use ml_harness::wasm_target::{self, Plan};

/// A wasmtime host for the ml-connector component.
///
/// It reads the same spin.toml as `spin up`: the component source, variables (values from
/// SPIN_VARIABLE_<NAME> environment variables, else the manifest defaults),
/// allowed_outbound_hosts (with {{ variable }} templates) and key_value_stores.
#[derive(Parser)]
#[command(name = "ml-harness", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the component over HTTP, as `spin up` would.
    ///
    /// With no credentials configured (none of the manifest's required SPIN_VARIABLE_* set) it
    /// runs the SIMULATED demo instead (see `demo`), unless --no-demo is given. With some but
    /// not all set, it names the missing ones and exits non-zero.
    Serve(ServeArgs),
    /// Run the SIMULATED demo: the real component against in-process BigCommerce and QuickBooks
    /// simulators, three orders placed and shown as invoices. Needs no credentials.
    Demo(DemoArgs),
    /// Start a backfill on a running connector (either host) and show its progress until it
    /// ends. Ctrl-C stops watching; the backfill goes on. Admin token from ML_ADMIN_TOKEN.
    Backfill(ml_harness::cli::BackfillArgs),
    /// Print a running connector's /admin/status as a table (exit 2 when something needs
    /// fixing). Admin token from ML_ADMIN_TOKEN.
    Status(ml_harness::cli::StatusArgs),
}

#[derive(Parser)]
struct DemoArgs {
    /// Path to the Spin manifest (spin.toml).
    #[arg(long, default_value = "spin.toml")]
    manifest: PathBuf,
    /// Address to listen on [default: 127.0.0.1:3000, or 127.0.0.1:0 with --exit].
    #[arg(long)]
    listen: Option<String>,
    /// Exit after printing the three invoices (non-zero when an order did not become an
    /// invoice for its exact total), instead of serving until Ctrl-C. For CI smoke tests.
    #[arg(long)]
    exit: bool,
    /// Seconds to wait for the demo orders to become invoices.
    #[arg(long, default_value_t = 30)]
    wait: u64,
    /// Run the manifest's build command first (like `spin up --build`).
    #[arg(long)]
    build: bool,
    /// Use this .wasm instead of the manifest's `source`.
    #[arg(long)]
    component: Option<PathBuf>,
}

#[derive(Parser)]
struct ServeArgs {
    /// Path to the Spin manifest (spin.toml) describing the component, its variables,
    /// outbound hosts and key-value stores.
    #[arg(long, default_value = "spin.toml")]
    manifest: PathBuf,
    /// Address to listen on, e.g. 127.0.0.1:3000 (port 0 picks a free port; the chosen
    /// address is printed).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: String,
    /// Directory for the embedded key-value database (ml-connector.db); created if missing.
    /// Data survives restarts. (The demo uses a fresh temporary directory instead.)
    #[arg(long, default_value = ".ml-data")]
    data_dir: PathBuf,
    /// A Spin runtime config file saying where each key-value store lives, the same file
    /// `spin up --runtime-config-file` takes: [key_value_store.default] with type = "redis" and
    /// url = "redis://host:6379" (shared by several instances), or type = "spin" and
    /// path = "file.db" (SQLite; relative to the file's directory). Without it, or for a label
    /// it does not configure, `default` is SQLite under --data-dir.
    #[arg(long, value_name = "FILE")]
    runtime_config_file: Option<PathBuf>,
    /// Seconds between calls to POST /admin/retry-due (0 disables the timer; on Spin an
    /// external scheduler does this).
    #[arg(long, default_value_t = 15)]
    retry_interval: u64,
    /// Run the manifest's build command first (like `spin up --build`).
    #[arg(long)]
    build: bool,
    /// Use this .wasm instead of the manifest's `source` (for tests and benchmarks).
    #[arg(long)]
    component: Option<PathBuf>,
    /// Never fall back to the SIMULATED demo: serve with whatever variables are set (missing
    /// required ones are warned about and fail the requests that need them, as on Spin).
    #[arg(long)]
    no_demo: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Limits on requests, instances and outbound calls (see README, "Limits").
#[derive(Parser)]
struct LimitArgs {
    /// Most requests handled at once, counting work that continues after a response; more
    /// are answered 503 `overloaded` with Retry-After. Also the size of the instance pool.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrent: u32,
    /// Seconds a client has to send the request line and headers.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// Seconds a client has to send the request body, after its headers (else 408).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout: u64,
    /// Seconds the component has to answer a request (else 503 `timeout`).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    response_timeout: u64,
    /// Seconds an instance may live, including the work it does after answering; then it is
    /// stopped, even in the middle of computing (epoch interruption).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    work_timeout: u64,
    /// Seconds any one outbound request may take in all (connect, response head and body),
    /// whatever timeouts the component asks for.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    outbound_timeout: u64,
}

impl LimitArgs {
    fn limits(&self) -> server::Limits {
        let defaults = server::Limits::default();
        server::Limits {
            max_concurrent: self.max_concurrent,
            header_timeout: Duration::from_secs(self.header_timeout),
            body_timeout: Duration::from_secs(self.body_timeout),
            response_timeout: Duration::from_secs(self.response_timeout),
            work_timeout: Duration::from_secs(self.work_timeout),
            outbound: ml_harness::outbound::OutboundTimeouts {
                total: Duration::from_secs(self.outbound_timeout),
                ..defaults.outbound
            },
        }
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Demo(args) => runtime.block_on(run_demo_command(args)),
        Command::Backfill(args) => runtime.block_on(ml_harness::cli::backfill(args, async {
            let _ = tokio::signal::ctrl_c().await;
        })),
        Command::Status(args) => {
            let code = runtime.block_on(ml_harness::cli::status(args))?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
    }
}

fn run_build(manifest: &Manifest) -> anyhow::Result<()> {
    let Some(build) = &manifest.component.build else {
        bail!(
            "--build: the manifest has no [component.{}.build] command",
            manifest.component.id
        );
    };
    if build.command.contains(wasm_target::TARGET) {
        ensure_wasm_target(&build.workdir)?;
    }
    tracing::info!(command = %build.command, "building the component");
    if let Some(log) = option_env!("ML_HARNESS_COMPONENT_BUILD_LOG")
        && std::path::Path::new(log).is_file()
    {
        tracing::info!(
            "the harness build started this build in the background (log: {log}); \
             cargo waits for it to finish if it still runs"
        );
    }
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(&build.command)
        .current_dir(&build.workdir)
        .status()
        .context("cannot run the build command")?;
    if !status.success() {
        bail!("the build command failed ({status})");
    }
    Ok(())
}

/// Before a build for `wasm32-wasip2`: adds the target with rustup when it is missing, or
/// stops with what to install when rustup is not there either.
fn ensure_wasm_target(workdir: &std::path::Path) -> anyhow::Result<()> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let probe =
        wasm_target::probe(workdir, &rustc, "rustup".as_ref()).map_err(anyhow::Error::msg)?;
    match probe.plan() {
        Plan::Ready => Ok(()),
        Plan::AddWithRustup => {
            tracing::info!(
                "the Rust toolchain {} has no {} target, which the component needs; running `{}` in {} (a one-time download of its standard library)",
                probe.toolchain_name(),
                wasm_target::TARGET,
                wasm_target::RUSTUP_ADD,
                workdir.display()
            );
            wasm_target::add_with_rustup(workdir, "rustup".as_ref(), false)
                .map_err(anyhow::Error::msg)
        }
        Plan::Stop(message) => Err(anyhow::Error::msg(message)),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load(&args.manifest)?;
    let demo_mode = if args.no_demo {
        false
    } else {
        match demo::credential_status(&manifest, &EnvSource) {
            Credentials::None => true,
            Credentials::Complete => false,
            partial @ Credentials::Partial { .. } => {
                bail!(
                    "{} To serve anyway with only what is set, pass --no-demo.",
                    partial.partial_message().unwrap_or_default()
                )
            }
        }
    };
    if args.build {
        run_build(&manifest)?;
    }
    if demo_mode {
        if args.runtime_config_file.is_some() {
            tracing::warn!(
                "--runtime-config-file is ignored by the SIMULATED demo (it keeps its data in a temporary directory)"
            );
        }
        if args.limits.limits() != server::Limits::default() {
            tracing::warn!(
                "the demo runs with the default limits; the limit flags apply to real serving"
            );
        }
        let opts = DemoOptions {
            manifest: args.manifest.clone(),
            component: args.component.clone(),
            listen: args.listen.clone(),
            retry_interval: DemoOptions::default()
                .retry_interval
                .filter(|_| args.retry_interval > 0),
            ..DemoOptions::default()
        };
        demo::serve_demo(opts, shutdown_signal()).await?;
        return Ok(());
    }
    let app = AppConfig::resolve(&manifest, &EnvSource)?;
    let limits = args.limits.limits();
    let engine = server::engine_with(&limits)?;
    let source = args
        .component
        .clone()
        .unwrap_or_else(|| manifest.component.source.clone());
    let component = server::compile(&engine, &source)?;
    let kv = open_storage(&args, &manifest).await?;
    let harness = Arc::new(Harness::new(&engine, &component, app, kv)?.with_limits(limits));
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let options = ServeOptions {
        retry_interval: (args.retry_interval > 0).then(|| Duration::from_secs(args.retry_interval)),
    };
    let running = server::serve(harness, listener, options)?;
    println!(
        "ml-harness serving {} on http://{}",
        manifest.app_name, running.addr
    );
    let stopper = running.stopper();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stopper.send(true);
    });
    running.wait().await
}

/// The key-value storage: what the runtime config file says, else SQLite under --data-dir.
async fn open_storage(args: &ServeArgs, manifest: &Manifest) -> anyhow::Result<Arc<dyn KvBackend>> {
    let Some(file) = &args.runtime_config_file else {
        return Ok(Arc::new(SqliteBackend::open_in(&args.data_dir)?));
    };
    let config = RuntimeConfig::load(file)?;
    let (kv, described) = config
        .open(
            &manifest.component.key_value_stores,
            &args.data_dir,
            RedisOptions::default(),
        )
        .with_context(|| format!("runtime config file {}", file.display()))?;
    for line in described {
        tracing::info!("{line}");
    }
    // A store that is down now may be up by the first request (the component gets a storage
    // error until then, and BigCommerce redelivers): warn, don't refuse to start.
    for label in &manifest.component.key_value_stores {
        if let Err(e) = kv.get(label, "ml-harness/startup-check").await {
            tracing::warn!("key-value store `{label}` is not reachable yet: {e}");
        }
    }
    Ok(kv)
}

async fn run_demo_command(args: DemoArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load(&args.manifest)?;
    if args.build {
        run_build(&manifest)?;
    }
    let listen = args.listen.unwrap_or_else(|| {
        if args.exit {
            "127.0.0.1:0"
        } else {
            "127.0.0.1:3000"
        }
        .to_string()
    });
    let opts = DemoOptions {
        manifest: args.manifest,
        component: args.component,
        listen,
        wait: Duration::from_secs(args.wait),
        ..DemoOptions::default()
    };
    if args.exit {
        let report = demo::run_demo(opts).await?;
        demo::check(&report)?;
        println!(
            "{} demo OK: {} orders became invoices for their exact totals",
            demo::LABEL,
            report.orders.len()
        );
        Ok(())
    } else {
        demo::serve_demo(opts, shutdown_signal()).await.map(|_| ())
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
