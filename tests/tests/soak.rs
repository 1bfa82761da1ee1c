//! Soak (issues 7 and 11): 1,000 orders through the real component in the real harness while
//! both simulators fail a seeded share of API requests, with harness restarts in the middle.
//! A third of the orders are paid (some partly with gift certificates or store credit), a
//! tenth are refunded (half of those twice) and a few are cancelled, paid or not. Every order
//! must end as exactly one invoice, every payment source as one payment, every refund as one
//! refund document, every cancelled unpaid invoice voided once — all to the cent — and every
//! record as `posted`.
//!
//! Injected faults (per API request, seeded, so a run is reproducible up to request order):
//! - 5 % server errors (500/502/503) on BigCommerce and QuickBooks API paths;
//! - 2 % rate limits, as BigCommerce 429s with `X-Rate-Limit-Time-Reset-Ms: 1000`. QuickBooks
//!   429s are left out on purpose: a 429 without `Retry-After` waits 60 s (CONTRACT §3), which
//!   would make the soak minutes long; `retries.rs` covers that path on its own;
//! - 1 % "timeouts" as lost answers: the simulator does the work (an invoice or customer is
//!   created), then answers 504 instead of the real response (`FaultAction::AfterHandler` with
//!   no hang). A true client timeout costs the connector's fixed 15 s deadline (no knob), far
//!   too slow for ~30 requests; `retries.rs` has one real timeout.
//!
//! The QuickBooks simulator's own concurrency throttle (10 in flight, then 429) is raised: it
//! would add QuickBooks 429s (60 s each) on top of the injected share.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ml_e2e::env::{TestEnv, TestOptions};
use ml_harness::kv::{KvBackend, SqliteBackend};
use ml_sim::bigcommerce::{OrderShape, Payment, RefundPart, generate_paid, refund_of};
use ml_sim::control::{Control, FaultAction, RandomFault};
use ml_sim::quickbooks::QboSimConfig;
use rust_decimal::Decimal;
use serde_json::{Value, json};

const ORDERS: u64 = 1_000;
const FIRST_ID: u64 = 20_001;
/// Webhooks delivered at once.
const CONCURRENCY: usize = 8;

fn shape(i: u64) -> OrderShape {
    OrderShape {
        lines: 1 + (i % 3) as usize,
        tax_inclusive: i.is_multiple_of(5),
        tax_rate_bp: if i.is_multiple_of(5) { 2000 } else { 800 },
        coupon: i.is_multiple_of(3),
        manual_discount: false,
        shipping: i.is_multiple_of(2),
        handling: false,
        wrapping: false,
        guest: i.is_multiple_of(4),
        seed: i,
    }
}

/// How order `i` is paid: a third are paid at checkout, some partly with gift certificates or
/// store credit.
fn payment(i: u64) -> Payment {
    if i % 3 != 1 {
        return Payment::Unpaid;
    }
    match (i / 3) % 5 {
        1 => Payment::GiftCertificate(1_500),
        2 => Payment::StoreCredit(500),
        _ => Payment::Captured,
    }
}

/// A tenth of the orders are refunded; half of those twice.
fn refunds(i: u64) -> usize {
    match (i % 10 == 3, i % 20 == 3) {
        (true, true) => 2,
        (true, false) => 1,
        _ => 0,
    }
}

/// A few orders are cancelled after they were invoiced: unpaid ones are voided, paid ones keep
/// their invoice.
fn cancelled(i: u64) -> bool {
    i % 50 == 7 || i % 50 == 22
}

fn status(code: u16, headers: &[(&str, &str)]) -> FaultAction {
    FaultAction::Status {
        status: code,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: String::new(),
    }
}

fn random(control: &Control, path: &str, per_mille: u32, action: FaultAction) {
    control.inject_random(RandomFault {
        method: None,
        path_contains: path.into(),
        per_mille,
        action,
    });
}

/// 5 % 5xx, `rate_limit` ‰ of `limit`, 1 % lost answers, on `path`.
fn install_faults(
    control: &Control,
    seed: u64,
    path: &str,
    rate_limit: Option<(u32, FaultAction)>,
) {
    control.seed_random_faults(seed);
    random(control, path, 17, status(500, &[]));
    random(control, path, 17, status(502, &[]));
    random(control, path, 16, status(503, &[]));
    if let Some((per_mille, action)) = rate_limit {
        random(control, path, per_mille, action);
    }
    random(control, path, 10, FaultAction::AfterHandler { ms: 0 });
}

/// Places orders `ids` with at most [`CONCURRENCY`] webhook deliveries in flight.
async fn place(env: &TestEnv, ids: std::ops::Range<u64>) {
    let ids: Vec<u64> = ids.collect();
    for chunk in ids.chunks(CONCURRENCY) {
        let deliveries = chunk.iter().map(|&id| {
            env.bc
                .place_order(generate_paid(id, &shape(id), payment(id)))
        });
        for report in futures::future::join_all(deliveries).await {
            let report = report.expect("the simulator delivers the webhook");
            assert!(!report.hooks.is_empty(), "a hook is registered");
            for hook in &report.hooks {
                assert_eq!(
                    hook.final_status,
                    Some(200),
                    "the webhook was accepted: {hook:?}"
                );
            }
        }
    }
}

fn count(control: &Control, pred: impl Fn(&ml_sim::control::LoggedRequest) -> bool) -> usize {
    control.requests().iter().filter(|r| pred(r)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_orders_with_injected_faults_and_two_restarts_end_as_one_invoice_each_and_all_posted()
 {
    let started = Instant::now();
    // One SQLite connection for the whole run, kept across restarts. `TestEnv::restart` with
    // the default backend reopens the database while the old harness's background jobs still
    // run on the old connection, which a real process restart never does (the old process is
    // gone). `increment` now takes the write lock up front, so two connections wait for each
    // other instead of failing, but one connection keeps this test about the connector.
    let data = tempfile::tempdir().unwrap();
    let kv: Arc<dyn KvBackend> = Arc::new(SqliteBackend::open_in(data.path()).unwrap());
    let options = TestOptions {
        qbo: QboSimConfig {
            max_concurrent_requests: 10_000,
            // Per-minute limit off, and the connector's pacing with it (`qbo_pacing` below):
            // this test is about exactly-once under faults and restarts, not limits. With
            // pacing on, 1,000 orders need at least 1,000 × ~2.7 QuickBooks operations at 7 a
            // second (6.5 min) before faults and retries; on CI's 2 cores the run missed its
            // 600 s. The limits are on in `burst.rs`, `batch.rs` and the scale-out burst.
            max_requests_per_minute: None,
            ..QboSimConfig::default()
        },
        ..TestOptions::default()
    }
    .kv_backend(kv)
    .retry_every(Duration::from_millis(100))
    .var("retry_base_seconds", "1")
    .var("max_attempts", "10")
    .var("qbo_pacing", "off");
    let mut env = TestEnv::start(options).await;
    let bc_limit = status(
        429,
        &[
            ("X-Rate-Limit-Time-Reset-Ms", "1000"),
            ("X-Rate-Limit-Requests-Left", "0"),
        ],
    );
    install_faults(
        &env.bc.control(),
        0x5eed_0001,
        "/stores/",
        Some((20, bc_limit)),
    );
    install_faults(env.qbo.control(), 0x5eed_0002, "/v3/company/", None);

    let last = FIRST_ID + ORDERS;
    let third = ORDERS / 3;
    place(&env, FIRST_ID..FIRST_ID + third).await;
    let restart = Instant::now();
    env.restart().await;
    println!(
        "soak: restart 1 after {} orders took {:.1} s",
        third,
        restart.elapsed().as_secs_f64()
    );
    place(&env, FIRST_ID + third..FIRST_ID + 2 * third).await;
    let restart = Instant::now();
    env.restart().await;
    println!(
        "soak: restart 2 after {} orders took {:.1} s",
        2 * third,
        restart.elapsed().as_secs_f64()
    );
    place(&env, FIRST_ID + 2 * third..last).await;
    println!(
        "soak: all {ORDERS} webhooks accepted after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Pacing is off (above); the limiter's 8 slots and its wait queue still order the work.
    let counts = settle(&env, started, Duration::from_secs(600), |env| {
        env.qbo.invoice_count() >= ORDERS as usize
    })
    .await;
    println!(
        "soak: orders settled after {:.1} s; now refunds and cancellations",
        started.elapsed().as_secs_f64()
    );
    lifecycle_events(&mut env, FIRST_ID..last).await;
    let ids = FIRST_ID..last;
    let refund_docs: usize = ids.clone().map(refunds).sum();
    let voids = ids
        .filter(|i| cancelled(*i) && payment(*i) == Payment::Unpaid)
        .count();
    let counts_after = settle(&env, started, Duration::from_secs(300), |env| {
        env.qbo.count("RefundReceipt") + env.qbo.count("CreditMemo") >= refund_docs
            && env
                .qbo
                .invoices()
                .iter()
                .filter(|i| i["TotalAmt"] == json!(0))
                .count()
                >= voids
    })
    .await;
    assert_eq!(counts, counts_after, "every record posted again");
    let wall = started.elapsed();

    // What it cost, before anything else touches the simulators.
    let (bc_log, qbo_log) = (env.bc.control().requests(), env.qbo.control().requests());
    let faulted = |log: &[ml_sim::control::LoggedRequest]| log.iter().filter(|r| r.faulted).count();
    let invoice_creates = count(env.qbo.control(), |r| {
        r.method == "POST" && r.path.ends_with("/invoice")
    });
    let document_posts = count(env.qbo.control(), |r| {
        r.method == "POST"
            && ["/payment", "/refundreceipt", "/creditmemo"]
                .iter()
                .any(|p| r.path.ends_with(p))
    });
    println!(
        "soak: {ORDERS} orders in {:.1} s wall; BigCommerce {} calls ({:.2}/order, {} faulted), QuickBooks {} calls \
         ({:.2}/order, {} faulted), {} invoice POSTs, {} payment/refund POSTs; record counts {counts}",
        wall.as_secs_f64(),
        bc_log.len(),
        bc_log.len() as f64 / ORDERS as f64,
        faulted(&bc_log),
        qbo_log.len(),
        qbo_log.len() as f64 / ORDERS as f64,
        faulted(&qbo_log),
        invoice_creates,
        document_posts,
    );
    env.bc.control().clear_faults();
    env.qbo.control().clear_faults();
    assert!(
        faulted(&bc_log) > 0 && faulted(&qbo_log) > 0,
        "faults were injected on both sides"
    );

    // Exactly one invoice per order, no duplicates.
    let invoices = env.qbo.invoices();
    assert_eq!(invoices.len(), ORDERS as usize, "exactly {ORDERS} invoices");
    let by_doc: BTreeMap<String, String> = invoices
        .iter()
        .map(|i| {
            (
                i["DocNumber"].as_str().unwrap().to_string(),
                i["Id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        by_doc.len(),
        ORDERS as usize,
        "0 duplicates: {ORDERS} distinct DocNumbers"
    );
    let expected: BTreeSet<String> = (FIRST_ID..last).map(|i| i.to_string()).collect();
    assert_eq!(
        by_doc.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "one invoice for every order"
    );

    // Every order's record is posted and linked to its invoice.
    let ids: Vec<u64> = (FIRST_ID..last).collect();
    for chunk in ids.chunks(16) {
        let gets = chunk
            .iter()
            .map(|id| env.admin_get_owned(format!("/admin/records/order/{id}")));
        for (id, (code, rec)) in chunk.iter().zip(futures::future::join_all(gets).await) {
            assert_eq!(code, 200, "order {id}: {rec}");
            assert_eq!(rec["state"], "posted", "order {id}: {rec}");
            assert_eq!(
                rec["qbo_id"].as_str(),
                by_doc.get(&id.to_string()).map(String::as_str),
                "order {id} linked"
            );
        }
    }
    let (_, failed) = env
        .admin_get("/admin/records?status=failed&limit=500")
        .await;
    assert_eq!(
        failed["records"].as_array().map(Vec::len),
        Some(0),
        "{failed}"
    );
    check_documents(&env, FIRST_ID..last, &invoices);
}

/// Waits until every record is posted (none pending, retrying, failed…), or fails the test
/// showing the stuck ones.
async fn settle(
    env: &TestEnv,
    started: Instant,
    within: Duration,
    ready: impl Fn(&TestEnv) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    let mut last_report = Instant::now();
    loop {
        let (code, status) = env.admin_get("/admin/status").await;
        let records = status["records"].clone();
        let settled = ["pending", "retrying", "failed", "needs_reauth", "skipped"]
            .iter()
            .all(|s| records[*s] == 0);
        if code == 200
            && settled
            && records["posted"].as_i64().unwrap_or(0) >= ORDERS as i64
            && ready(env)
        {
            return records;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            println!(
                "soak: {:.0} s: {} invoices, records {records}",
                started.elapsed().as_secs_f64(),
                env.qbo.invoice_count()
            );
            if records.is_null() {
                println!("soak:   /admin/status answered {code}: {status}");
            }
            let unsettled = records["retrying"].as_i64().unwrap_or(0)
                + records["pending"].as_i64().unwrap_or(0);
            if unsettled <= 3 {
                for state in ["pending", "retrying"] {
                    let (_, list) = env
                        .admin_get(&format!("/admin/records?status={state}&limit=3"))
                        .await;
                    for r in list["records"].as_array().cloned().unwrap_or_default() {
                        println!("soak:   still {state}: {r}");
                    }
                }
            }
            last_report = Instant::now();
        }
        if Instant::now() >= deadline {
            let mut stuck = Vec::new();
            for state in ["pending", "retrying", "failed", "needs_reauth", "skipped"] {
                let (_, list) = env
                    .admin_get(&format!("/admin/records?status={state}&limit=5"))
                    .await;
                for r in list["records"].as_array().cloned().unwrap_or_default() {
                    let (_, full) = env
                        .admin_get(&format!(
                            "/admin/records/{}/{}",
                            r["entity"].as_str().unwrap(),
                            r["id"].as_str().unwrap()
                        ))
                        .await;
                    stuck.push(full);
                }
            }
            panic!(
                "not every order was posted in time: {} invoices, records {records}; some: {stuck:#?}",
                env.qbo.invoice_count()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The refund for the `n`-th (1-based) refund of order `id`.
fn refund_for(env: &TestEnv, id: u64, n: usize) -> Value {
    let raw = env.bc.order(id).unwrap();
    let products = env.bc.products(id);
    let part = if n == 1 && !id.is_multiple_of(3) {
        RefundPart::Product {
            line: 0,
            quantity: 1,
        }
    } else {
        RefundPart::Order(100 * n as i64 + 50)
    };
    refund_of(&raw, &products, &[part], "soak")
}

/// Refunds and cancellations under the same faults, with a restart between the first refunds
/// and the second ones; each second refund arrives together with an `updated` event.
async fn lifecycle_events(env: &mut TestEnv, ids: std::ops::Range<u64>) {
    let firsts: Vec<u64> = ids
        .clone()
        .filter(|i| refunds(*i) >= 1 || cancelled(*i))
        .collect();
    for chunk in firsts.chunks(CONCURRENCY) {
        let mut events = Vec::new();
        for &id in chunk {
            if refunds(id) >= 1 {
                let stored = env.bc.add_refund(id, refund_for(env, id, 1)).unwrap();
                events.push((
                    "store/order/refund/created",
                    json!({"type": "order", "id": id, "refund": {"refund_id": stored["id"]}}),
                ));
            }
            if cancelled(id) {
                let from = env.bc.order(id).unwrap()["status_id"].clone();
                assert!(env.bc.update_order(id, |o| {
                    o["status_id"] = json!(5);
                    o["status"] = json!("Cancelled");
                }));
                events.push((
                    "store/order/statusUpdated",
                    json!({"type": "order", "id": id,
                           "status": {"previous_status_id": from, "new_status_id": 5}}),
                ));
            }
        }
        deliver_all(env, events).await;
    }
    env.restart().await;
    let seconds: Vec<u64> = ids.filter(|i| refunds(*i) == 2).collect();
    for chunk in seconds.chunks(CONCURRENCY / 2) {
        let mut events = Vec::new();
        for &id in chunk {
            let stored = env.bc.add_refund(id, refund_for(env, id, 2)).unwrap();
            events.push((
                "store/order/refund/created",
                json!({"type": "order", "id": id, "refund": {"refund_id": stored["id"]}}),
            ));
            events.push(("store/order/updated", json!({"type": "order", "id": id})));
        }
        deliver_all(env, events).await;
    }
}

async fn deliver_all(env: &TestEnv, events: Vec<(&str, Value)>) {
    let deliveries = events
        .iter()
        .map(|(scope, data)| env.bc.deliver(scope, data.clone()));
    for report in futures::future::join_all(deliveries).await {
        let report = report.expect("the simulator delivers the webhook");
        for hook in &report.hooks {
            assert_eq!(hook.final_status, Some(200), "accepted: {hook:?}");
        }
    }
}

fn money(v: &Value) -> Decimal {
    match v {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.to_string().parse().unwrap(),
        other => panic!("not an amount: {other}"),
    }
}

/// Every payment source one payment, every refund one document, every cancellation handled,
/// all to the cent.
fn check_documents(env: &TestEnv, ids: std::ops::Range<u64>, invoices: &[Value]) {
    let payments = env.qbo.records("Payment");
    let receipts = env.qbo.records("RefundReceipt");
    let memos = env.qbo.records("CreditMemo");
    let mut expected_payments = 0;
    let mut expected_refunds = 0;
    for id in ids {
        let raw = env.bc.order(id).unwrap();
        let doc_number = id.to_string();
        let inv = invoices
            .iter()
            .find(|i| i["DocNumber"] == doc_number)
            .unwrap();
        let total = money(&raw["total_inc_tax"]).round_dp(2);
        let paid = payment(id) != Payment::Unpaid;
        let linked: Vec<&Value> = payments
            .iter()
            .filter(|p| p["Line"][0]["LinkedTxn"][0]["TxnId"] == inv["Id"])
            .collect();
        if paid {
            let tenders = [
                money(&raw["gift_certificate_amount"]),
                money(&raw["store_credit_amount"]),
                total - money(&raw["gift_certificate_amount"]) - money(&raw["store_credit_amount"]),
            ];
            let sources = tenders.iter().filter(|t| !t.is_zero()).count();
            expected_payments += sources;
            assert_eq!(linked.len(), sources, "order {id}: one payment per source");
            let sum: Decimal = linked.iter().map(|p| money(&p["TotalAmt"])).sum();
            assert_eq!(sum, total, "order {id}: payments tie to the cent");
        } else {
            assert!(linked.is_empty(), "order {id} is unpaid");
        }
        let voided = money(&inv["TotalAmt"]).is_zero();
        assert_eq!(
            voided,
            cancelled(id) && !paid,
            "order {id}: voided exactly when cancelled unpaid"
        );
        if !voided {
            assert_eq!(money(&inv["TotalAmt"]), total, "order {id}: invoice total");
        }
        let n = refunds(id);
        expected_refunds += n;
        let docs: Vec<&Value> = if paid { &receipts } else { &memos }
            .iter()
            .filter(|r| {
                r["DocNumber"]
                    .as_str()
                    .is_some_and(|d| d.starts_with(&format!("{id}-R")))
            })
            .collect();
        assert_eq!(docs.len(), n, "order {id}: one document per refund");
        for (k, bc_refund) in env.bc_refunds(id).iter().enumerate() {
            let doc = docs
                .iter()
                .find(|d| d["DocNumber"] == format!("{id}-R{}", k + 1))
                .unwrap_or_else(|| panic!("order {id}: refund {} posted", k + 1));
            assert_eq!(
                money(&doc["TotalAmt"]),
                money(&bc_refund["total_amount"]),
                "order {id} refund {}: to the cent",
                k + 1
            );
        }
    }
    assert_eq!(payments.len(), expected_payments, "no payment posted twice");
    assert_eq!(
        receipts.len() + memos.len(),
        expected_refunds,
        "no refund posted twice"
    );
    println!(
        "soak: {} payments, {} refund receipts, {} credit memos, {} voided invoices, all exactly once",
        payments.len(),
        receipts.len(),
        memos.len(),
        invoices
            .iter()
            .filter(|i| money(&i["TotalAmt"]).is_zero())
            .count()
    );
}

/// The refunds BigCommerce holds for an order.
trait BcRefunds {
    fn bc_refunds(&self, id: u64) -> Vec<Value>;
}

impl BcRefunds for TestEnv {
    fn bc_refunds(&self, id: u64) -> Vec<Value> {
        let mut out = Vec::new();
        self.bc.update_refunds(id, |r| out = r.clone());
        out
    }
}

/// `admin_get` with an owned path, so many can be in flight at once.
trait AdminGetOwned {
    fn admin_get_owned(&self, path: String) -> impl std::future::Future<Output = (u16, Value)>;
}

impl AdminGetOwned for TestEnv {
    async fn admin_get_owned(&self, path: String) -> (u16, Value) {
        self.admin_get(&path).await
    }
}
