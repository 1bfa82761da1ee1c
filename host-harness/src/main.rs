//! `ml-harness`: run the ml-connector component on wasmtime, from the same spin.toml as Spin.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use ml_harness::config::EnvSource;
use ml_harness::kv::SqliteBackend;
use ml_harness::manifest::Manifest;
use ml_harness::server::{self, AppConfig, Harness, ServeOptions};

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
    Serve(ServeArgs),
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
    /// Data survives restarts.
    #[arg(long, default_value = ".ml-data")]
    data_dir: PathBuf,
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
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
    }
}

fn run_build(manifest: &Manifest) -> anyhow::Result<()> {
    let Some(build) = &manifest.component.build else {
        bail!("--build: the manifest has no [component.{}.build] command", manifest.component.id);
    };
    tracing::info!(command = %build.command, "building the component");
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load(&args.manifest)?;
    if args.build {
        run_build(&manifest)?;
    }
    let app = AppConfig::resolve(&manifest, &EnvSource)?;
    let engine = server::engine()?;
    let source = args.component.clone().unwrap_or_else(|| manifest.component.source.clone());
    let component = server::compile(&engine, &source)?;
    let kv = Arc::new(SqliteBackend::open_in(&args.data_dir)?);
    let harness = Arc::new(Harness::new(&engine, &component, app, kv)?);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let options = ServeOptions {
        retry_interval: (args.retry_interval > 0).then(|| Duration::from_secs(args.retry_interval)),
    };
    let running = server::serve(harness, listener, options)?;
    println!("ml-harness serving {} on http://{}", manifest.app_name, running.addr);
    let stopper = running.stopper();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stopper.send(true);
    });
    running.wait().await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
