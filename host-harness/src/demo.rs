//! The no-credentials demo: the real component on this host, against in-process simulators of
//! BigCommerce and QuickBooks Online, so a newcomer sees an order become an invoice with nothing
//! configured.
//!
//! Everything the demo prints starts with `[SIMULATED]`: nothing here talks to a real store or a
//! real company, and a reader skimming a terminal must never mistake it for a live sync.

mod credentials;
mod orders;
mod session;
mod terminal;

use std::future::Future;

use anyhow::bail;

pub use credentials::{Credentials, credential_status};
pub use orders::{DemoOrder, DemoReport};
pub use session::{DemoOptions, DemoSession, simulator_variables};

/// Prefix of every line the demo prints.
pub const LABEL: &str = "[SIMULATED]";

/// Runs the demo once: start, place the three orders, wait for their invoices, print, stop.
pub async fn run_demo(opts: DemoOptions) -> anyhow::Result<DemoReport> {
    let mut session = DemoSession::start(&opts).await?;
    let placed = session.place_initial_orders().await;
    let report = session.report();
    session.stop().await?;
    placed?;
    Ok(report)
}

/// Runs the demo and keeps serving until `shutdown` resolves; Enter on stdin places another order.
pub async fn serve_demo(
    opts: DemoOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<DemoReport> {
    let mut session = DemoSession::start(&opts).await?;
    if let Err(e) = session.place_initial_orders().await {
        session.say(&format!("placing the demo orders failed: {e:#}"));
    }
    session.print_next_steps();
    let mut enter = stdin_lines();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            line = enter.recv() => match line {
                Some(()) => {
                    if let Err(e) = session.place_another_order().await {
                        session.say(&format!("placing another order failed: {e:#}"));
                    }
                }
                // stdin closed (not a terminal): keep serving until the signal.
                None => { shutdown.as_mut().await; break; }
            },
        }
    }
    session.say("shutting down");
    let report = session.report();
    session.stop().await?;
    Ok(report)
}

/// One message per line typed on stdin. A plain thread, because a blocking stdin read inside the
/// runtime would keep it from shutting down; the thread dies with the process.
fn stdin_lines() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let spawned = std::thread::Builder::new()
        .name("demo-stdin".into())
        .spawn(move || {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                line.clear();
                if tx.blocking_send(()).is_err() {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot read stdin ({e}); pressing Enter will not place orders");
    }
    rx
}

/// Fails with what to do when [`run_demo`] did not turn every order into a matching invoice.
pub fn check(report: &DemoReport) -> anyhow::Result<()> {
    let bad: Vec<String> = report
        .orders
        .iter()
        .filter(|o| !o.invoiced())
        .map(|o| match (&o.invoice_total, o.state()) {
            (Some(t), _) => format!(
                "order #{} total {} but invoice TotalAmt {t}",
                o.order_id, o.order_total
            ),
            (None, state) => format!(
                "order #{} has no invoice (sync state {})",
                o.order_id,
                state.unwrap_or("none")
            ),
        })
        .collect();
    if report.orders.is_empty() {
        bail!("{LABEL} demo placed no orders");
    }
    if !bad.is_empty() {
        bail!(
            "{LABEL} demo failed: {} of {} orders did not become matching invoices: {}. The audit trails printed above say why.",
            bad.len(),
            report.orders.len(),
            bad.join("; ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rust_decimal::Decimal;

    use super::*;

    #[test]
    fn a_failed_report_names_each_order_that_did_not_become_an_invoice() {
        let order = |id, total: Option<Decimal>| DemoOrder {
            order_id: id,
            label: "x".into(),
            order_total: Decimal::new(1000, 2),
            invoice: total.map(|_| serde_json::json!({})),
            invoice_total: total,
            record: Some(serde_json::json!({"state": "retrying"})),
        };
        let report = |orders| DemoReport {
            connector_url: String::new(),
            admin_token: String::new(),
            webhook_secret: String::new(),
            data_dir: PathBuf::new(),
            orders,
            invoice_count: 0,
        };
        assert!(check(&report(vec![order(100, Some(Decimal::new(10, 0)))])).is_ok());
        let err = check(&report(vec![
            order(100, Some(Decimal::new(10, 0))),
            order(101, None),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("1 of 2")
                && err.contains("order #101 has no invoice (sync state retrying)"),
            "{err}"
        );
        let err = check(&report(vec![order(102, Some(Decimal::new(9, 0)))]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("order #102 total 10.00 but invoice TotalAmt 9"),
            "{err}"
        );
        assert!(check(&report(vec![])).is_err());
    }
}
