//! `ml-harness backfill --url URL --since DATE [--until DATE]`: starts a backfill and shows
//! its progress until it ends. Ctrl-C stops watching only: the backfill goes on in the
//! connector.

use std::future::Future;
use std::time::Duration;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::Admin;

/// Arguments of `ml-harness backfill`.
#[derive(Debug, Clone, clap::Args)]
pub struct BackfillArgs {
    /// The connector's base URL, e.g. https://connector.example.com.
    #[arg(long)]
    pub url: String,
    /// First day (or RFC 3339 instant) of the window, e.g. 2026-01-01.
    #[arg(long)]
    pub since: String,
    /// Last day (or instant) of the window; default: up to the moment the backfill starts.
    #[arg(long)]
    pub until: Option<String>,
    /// Seconds between progress checks.
    #[arg(long, default_value_t = 1.0)]
    pub poll: f64,
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

fn describe(v: &Value) -> String {
    let mut text = format!(
        "{} pages · {} seen · {} queued · {} already synced · {} posted",
        n(v, "pages_done"),
        n(v, "orders_seen"),
        n(v, "orders_queued"),
        n(v, "orders_already_synced"),
        n(v, "orders_posted"),
    );
    for (key, label) in [
        ("orders_skipped", "not invoiced"),
        ("orders_failed", "failed"),
        ("orders_waiting", "waiting for a retry"),
    ] {
        if n(v, key) > 0 {
            text.push_str(&format!(" · {} {label}", n(v, key)));
        }
    }
    if let Some(w) = v["waiting"].as_str() {
        text.push_str(&format!(" — {w}"));
    }
    if let Some(e) = v["error"].as_str() {
        text.push_str(&format!(" — {e}"));
    }
    text
}

/// Runs the command; `interrupted` resolves on Ctrl-C.
pub async fn backfill(
    args: BackfillArgs,
    interrupted: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let admin = Admin::from_env(&args.url)?;
    let started = admin
        .call(
            http::Method::POST,
            "/admin/backfill",
            Some(&json!({"since": args.since, "until": args.until})),
        )
        .await?;
    if started.status != 202 {
        bail!(
            "the connector did not start the backfill (HTTP {}): {}",
            started.status,
            started.reason()
        );
    }
    println!(
        "Backfill started at {} for orders created from {} to {}.",
        args.url,
        started.body["since"].as_str().unwrap_or("?"),
        started.body["until"].as_str().unwrap_or("now")
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} orders\n  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let every = Duration::from_secs_f64(args.poll.clamp(0.1, 60.0));
    let watch = async {
        let mut view = started.body.clone();
        loop {
            let done = n(&view, "orders_posted") + n(&view, "orders_failed");
            bar.set_length(n(&view, "orders_queued").max(done));
            bar.set_position(done);
            bar.set_message(describe(&view));
            if view["state"] != "running" {
                return Ok::<Value, anyhow::Error>(view);
            }
            tokio::time::sleep(every).await;
            let answer = admin
                .call(http::Method::GET, "/admin/backfill", None)
                .await?;
            if answer.status != 200 {
                bail!(
                    "the connector did not report progress (HTTP {}): {}",
                    answer.status,
                    answer.reason()
                );
            }
            view = answer.body;
        }
    };
    tokio::select! {
        result = watch => {
            let view = result?;
            bar.finish();
            let state = view["state"].as_str().unwrap_or("?").to_string();
            println!("Backfill {state}: {}", describe(&view));
            match state.as_str() {
                "done" => Ok(()),
                "cancelled" => bail!("the backfill was cancelled (DELETE /admin/backfill) before it finished"),
                _ => bail!(
                    "the backfill ended `{state}`: {}",
                    view["error"].as_str().unwrap_or("see GET /admin/backfill")
                ),
            }
        }
        _ = interrupted => {
            bar.abandon();
            println!(
                "Stopped watching. The backfill keeps running in the connector: watch it with \
                 GET {}/admin/backfill, cancel it with DELETE {}/admin/backfill.",
                args.url.trim_end_matches('/'),
                args.url.trim_end_matches('/')
            );
            Ok(())
        }
    }
}
