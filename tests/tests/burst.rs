//! A flash sale against QuickBooks' real limits (issue 17): a burst of orders from 8
//! concurrent senders, returning customers and guests, into one connector whose QuickBooks
//! enforces 10 requests in flight, 500 a minute and the batch limits (the simulator's
//! defaults). The connector's limiter keeps it inside them: every order becomes exactly one
//! invoice and QuickBooks never answers 429.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ml_e2e::env::{TestEnv, TestOptions, eventually_named};
use ml_sim::bigcommerce::{OrderShape, generate};
use serde_json::json;

const ORDERS: u64 = 120;
const SENDERS: usize = 8;
const FIRST: u64 = 7001;

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
        // One in four is a guest; the rest are the store's registered customers, each coming
        // back many times.
        guest: i.is_multiple_of(4),
        seed: i,
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_120_orders_from_8_senders_posts_each_once_with_no_429_and_at_most_10_in_flight()
{
    // The QuickBooks simulator's defaults are its real limits; the harness's retry timer
    // ticks as deployed (every 15 s).
    let env =
        Arc::new(TestEnv::start(TestOptions::default().retry_every(Duration::from_secs(15))).await);
    let ids: Vec<u64> = (FIRST..FIRST + ORDERS).collect();
    for id in &ids {
        env.bc.put_order(generate(*id, &shape(*id)));
    }
    let registered = ids.iter().filter(|id| !shape(**id).guest).count();
    assert!(registered > 0 && registered < ids.len());

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
    let mut statuses = Vec::new();
    for s in senders {
        statuses.extend(s.await.unwrap());
    }
    assert_eq!(statuses.len(), ids.len());
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every webhook is accepted at once: {statuses:?}"
    );

    eventually_named(
        "every order of the burst has its invoice",
        Duration::from_secs(600),
        || async { env.qbo.count("Invoice") >= ids.len() },
    )
    .await;
    // A moment for anything still running to show a second invoice if it were to make one.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut per_doc: BTreeMap<String, usize> = BTreeMap::new();
    for inv in env.qbo.invoices() {
        *per_doc
            .entry(inv["DocNumber"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    for id in &ids {
        assert_eq!(
            per_doc.get(&id.to_string()),
            Some(&1),
            "order {id} became exactly one invoice"
        );
    }
    assert_eq!(env.qbo.count("Invoice"), ids.len());
    assert_eq!(
        env.qbo.throttled_total(),
        0,
        "QuickBooks never answered 429 (concurrency {}, per minute {}, batch {})",
        env.qbo.throttled_concurrent(),
        env.qbo.throttled_per_minute(),
        env.qbo.throttled_batch()
    );
    assert!(
        env.qbo.peak_in_flight() <= 10,
        "at most 10 QuickBooks requests were in flight at once, saw {}",
        env.qbo.peak_in_flight()
    );
    let (status, posted) = env
        .admin_get("/admin/records?status=posted&limit=500")
        .await;
    assert_eq!(status, 200, "{posted}");
}
