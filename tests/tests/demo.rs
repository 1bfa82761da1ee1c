//! The no-credentials demo, run in-process: three simulated orders become three invoices.

use std::path::Path;

use ml_harness::demo::{DemoOptions, check, run_demo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_turns_three_orders_into_three_invoices_with_matching_totals() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let opts = DemoOptions {
        manifest: root.join("spin.toml"),
        print: false,
        ..DemoOptions::default()
    };
    let report = run_demo(opts)
        .await
        .expect("the demo starts and places its orders");

    let states: Vec<_> = report
        .orders
        .iter()
        .map(|o| (o.order_id, o.state().map(str::to_string)))
        .collect();
    assert_eq!(report.orders.len(), 3, "{states:?}");
    assert_eq!(
        report.invoice_count, 3,
        "exactly one invoice per order: {states:?}"
    );
    for order in &report.orders {
        assert_eq!(
            order.invoice_total,
            Some(order.order_total),
            "order #{} ({}): record {}",
            order.order_id,
            order.label,
            order
                .record
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        assert_eq!(order.state(), Some("posted"));
    }
    check(&report).expect("the report passes the --exit check");
    assert!(
        !report.data_dir.exists(),
        "the temporary data directory is removed when the demo stops"
    );
    assert!(report.admin_token.starts_with("demo-admin-") && report.admin_token.len() > 20);
}
