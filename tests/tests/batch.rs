//! Batch posting against QuickBooks' real limits (issue 17): orders that wait for QuickBooks
//! capacity have their invoices created through the batch endpoint, many per request, each
//! exactly once — with a third of them paid (one payment each), with one order whose invoice
//! number clashes (its item's own fault), and with a batch whose answer is lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ml_e2e::env::{TestEnv, TestOptions, eventually_named};
use ml_sim::bigcommerce::{OrderShape, Payment, generate, generate_paid};
use ml_sim::control::{FaultAction, FaultRule};
use serde_json::{Value, json};

const SENDERS: usize = 8;

fn shape(i: u64) -> OrderShape {
    OrderShape {
        lines: 1 + (i % 3) as usize,
        tax_inclusive: false,
        tax_rate_bp: 800,
        coupon: i.is_multiple_of(5),
        manual_discount: false,
        shipping: i.is_multiple_of(2),
        handling: false,
        wrapping: false,
        guest: i.is_multiple_of(4),
        seed: i,
    }
}

fn paid(id: u64) -> bool {
    id.is_multiple_of(3)
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

/// Puts the orders in BigCommerce and sends their webhooks from 8 concurrent senders.
async fn burst(env: &Arc<TestEnv>, ids: &[u64]) {
    for id in ids {
        let order = if paid(*id) {
            generate_paid(*id, &shape(*id), Payment::Captured)
        } else {
            generate(*id, &shape(*id))
        };
        env.bc.put_order(order);
    }
    let queue = Arc::new(tokio::sync::Mutex::new(
        ids.iter()
            .rev()
            .map(|id| webhook_body(env.bc.store_hash(), *id))
            .collect::<Vec<_>>(),
    ));
    let senders = (0..SENDERS).map(|_| {
        let env = env.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            loop {
                let Some(body) = queue.lock().await.pop() else {
                    break;
                };
                statuses.push(env.post_webhook(&body).await.status);
            }
            statuses
        })
    });
    for s in senders {
        assert!(s.await.unwrap().iter().all(|s| *s == 200));
    }
}

fn invoices_per_doc(env: &TestEnv) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for inv in env.qbo.invoices() {
        out.entry(inv["DocNumber"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(inv);
    }
    out
}

fn payments_for(env: &TestEnv, invoice_id: &Value) -> usize {
    env.qbo
        .records("Payment")
        .into_iter()
        .filter(|p| p["Line"][0]["LinkedTxn"][0]["TxnId"] == *invoice_id)
        .count()
}

/// Batch requests, single invoice creates and single payment creates QuickBooks answered,
/// from its request log.
fn batch_and_single_creates(env: &TestEnv) -> (usize, usize, usize) {
    let log = env.qbo.control().requests();
    let posts = |suffix: &str| {
        log.iter()
            .filter(|r| r.method == "POST" && r.path.ends_with(suffix) && r.status == 200)
            .count()
    };
    (posts("/batch"), posts("/invoice"), posts("/payment"))
}

async fn record_of(env: &TestEnv, id: u64) -> Value {
    let (status, rec) = env.admin_get(&format!("/admin/records/order/{id}")).await;
    assert_eq!(status, 200, "{rec}");
    rec
}

fn steps(rec: &Value) -> Vec<String> {
    rec["audit"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["step"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_posts_its_invoices_through_batch_requests_each_once_and_a_clashing_number_fails_only_its_order()
 {
    let env =
        Arc::new(TestEnv::start(TestOptions::default().retry_every(Duration::from_secs(15))).await);
    let ids: Vec<u64> = (9001..9091).collect();
    // An invoice made in QuickBooks by hand already carries one order's number: that order's
    // create is refused (6140) — in a batch, as its item's own fault.
    let clash = 9050u64;
    env.qbo.insert(
        "Invoice",
        json!({"DocNumber": clash.to_string(), "CustomerRef": {"value": "1"},
               "Line": [], "TotalAmt": 1, "PrivateNote": "typed in by hand"}),
    );
    burst(&env, &ids).await;
    let others: Vec<u64> = ids.iter().copied().filter(|i| *i != clash).collect();
    eventually_named(
        "every other order has its invoice, and paid ones their payment",
        Duration::from_secs(600),
        || async {
            env.qbo.count("Invoice") > others.len()
                && env.qbo.count("Payment") >= others.iter().filter(|i| paid(**i)).count()
        },
    )
    .await;
    eventually_named(
        "the clashing order has failed",
        Duration::from_secs(120),
        || async { record_of(&env, clash).await["state"] == "failed" },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let per_doc = invoices_per_doc(&env);
    for id in &others {
        let invs = per_doc.get(&id.to_string()).cloned().unwrap_or_default();
        assert_eq!(invs.len(), 1, "order {id} became exactly one invoice");
        let want = usize::from(paid(*id));
        assert_eq!(
            payments_for(&env, &invs[0]["Id"]),
            want,
            "order {id} has {want} payment(s)"
        );
    }
    assert_eq!(per_doc.get(&clash.to_string()).map(Vec::len), Some(1));
    let rec = record_of(&env, clash).await;
    assert!(
        rec["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("document number"),
        "{rec}"
    );
    let (batches, singles, single_payments) = batch_and_single_creates(&env);
    let batched = others.len() - singles.min(others.len());
    let paid_orders = others.iter().filter(|i| paid(**i)).count();
    assert!(batches >= 1, "no batch request was sent");
    let batched_payments = paid_orders - single_payments.min(paid_orders);
    assert!(
        batched + batched_payments >= 2 * batches,
        "batch requests carry many documents: {batched} invoices and {batched_payments} \
         payments in {batches} batch requests, {singles} single invoice creates"
    );
    // Orders run on their own (before the queue formed) post their payments on their own too.
    assert!(
        batched_payments > 0,
        "payments go out in batch requests after their invoices: all {single_payments} of \
         {paid_orders} were posted one by one"
    );
    assert_eq!(
        env.qbo.throttled_total(),
        0,
        "QuickBooks never answered 429 (concurrency {}, per minute {}, batch {})",
        env.qbo.throttled_concurrent(),
        env.qbo.throttled_per_minute(),
        env.qbo.throttled_batch()
    );
    assert!(env.qbo.peak_in_flight() <= 10);
    eprintln!(
        "batch e2e: {batches} batch requests carried {batched} invoices and {batched_payments} \
         payments; {singles} single invoice creates, {single_payments} single payment creates"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_whose_answer_is_lost_makes_no_second_invoice() {
    let env =
        Arc::new(TestEnv::start(TestOptions::default().retry_every(Duration::from_secs(5))).await);
    // The first batch request is carried out, but its answer is lost (504 after the write).
    env.qbo.control().inject(FaultRule {
        method: Some("POST".into()),
        path_contains: "/batch".into(),
        remaining: 1,
        action: FaultAction::AfterHandler { ms: 10 },
    });
    let ids: Vec<u64> = (9201..9241).collect();
    burst(&env, &ids).await;
    eventually_named(
        "every order is posted",
        Duration::from_secs(600),
        || async {
            let (status, v) = env
                .admin_get("/admin/records?status=posted&limit=500")
                .await;
            status == 200 && v["records"].as_array().map_or(0, Vec::len) >= ids.len()
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let per_doc = invoices_per_doc(&env);
    for id in &ids {
        let invs = per_doc.get(&id.to_string()).cloned().unwrap_or_default();
        assert_eq!(invs.len(), 1, "order {id} became exactly one invoice");
        assert_eq!(payments_for(&env, &invs[0]["Id"]), usize::from(paid(*id)));
    }
    let log = env.qbo.control().requests();
    let lost = log
        .iter()
        .filter(|r| r.path.ends_with("/batch") && r.faulted)
        .count();
    assert_eq!(lost, 1, "one batch answer was lost");
    let mut looked_up = 0;
    for id in &ids {
        if steps(&record_of(&env, *id).await).contains(&"found_existing".to_string()) {
            looked_up += 1;
        }
    }
    // How many orders the lost batch carried depends on how the burst met the queue (one CI
    // run saw a lost batch whose retry found a single order this way); every one of them was
    // looked up, and none became a second invoice (asserted above).
    assert!(
        looked_up >= 1,
        "the lost batch's orders were found by DocNumber and marker ({looked_up})"
    );
}
