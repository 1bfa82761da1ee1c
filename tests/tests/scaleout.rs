//! Scale-out (issue 14, CONTRACT §9): several `ml-harness serve` processes on one Redis,
//! configured with `--runtime-config-file` as an operator would, behave as one connector.
//! Every event is delivered to several instances at once and again later; one instance is
//! killed (SIGKILL) mid-job; token refreshes race across instances; a burst spread over two
//! instances meets QuickBooks' real limits. Every order ends as exactly one invoice, one
//! refresh call per expiry, nothing lost, no 429.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ml_e2e::env::{WEBHOOK_SECRET_HEADER, eventually_named, no_keep_alive_client};
use ml_e2e::process::{HarnessProcess, ProcessOptions};
use ml_e2e::redis::RedisServer;
use ml_sim::bigcommerce::{BcSim, BcSimConfig, BcSimHandle, OrderShape, generate};
use ml_sim::control::{FaultAction, FaultRule};
use ml_sim::quickbooks::{QboSim, QboSimConfig, QboSimHandle};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(120);
const WAIT: Duration = Duration::from_secs(60);
/// How often [`Cluster::wait_posted`] calls the scheduler (the harness's own timer's default).
const SCHEDULER_EVERY: Duration = Duration::from_secs(15);

/// N harness processes sharing one Redis, and the simulators they talk to.
struct Cluster {
    bc: BcSimHandle,
    qbo: QboSimHandle,
    redis: RedisServer,
    instances: Vec<Option<HarnessProcess>>,
    admin_token: String,
    webhook_secret: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// `qbo` as given: [`unlimited`] for the tests about exactly-once, the defaults (QuickBooks'
    /// real limits) for the burst.
    async fn start(n: usize, qbo: QboSimConfig) -> Cluster {
        let bc = BcSim::start(BcSimConfig {
            rate_limit_quota: u32::MAX,
            ..BcSimConfig::default()
        })
        .await
        .unwrap();
        let qbo = QboSim::start(qbo).await.unwrap();
        let redis = RedisServer::start()
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("runtime-config.toml");
        std::fs::write(&config, redis.runtime_config()).unwrap();

        let token =
            || base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>());
        let admin_token = token();
        let webhook_secret = token();
        let mut variables: BTreeMap<String, String> =
            ml_harness::demo::simulator_variables(&bc, &qbo);
        variables.insert("admin_token".into(), admin_token.clone());
        variables.insert("bigcommerce_webhook_secret".into(), webhook_secret.clone());
        variables.insert(
            "encryption_key".into(),
            base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()),
        );
        variables.insert("retry_base_seconds".into(), "1".into());
        variables.insert("max_attempts".into(), "10".into());

        let spawn = (0..n).map(|i| {
            // Each instance its own (unused) data dir: all state must be in Redis.
            let data = dir.path().join(format!("instance-{i}"));
            let mut options = ProcessOptions::new(&data, variables.clone());
            options.extra_args.extend([
                "--runtime-config-file".to_string(),
                config.display().to_string(),
            ]);
            async move { HarnessProcess::spawn(&options, READY).await }
        });
        let instances = futures::future::join_all(spawn)
            .await
            .into_iter()
            .map(|p| Some(p.unwrap_or_else(|e| panic!("{e:#}"))))
            .collect();
        Cluster {
            bc,
            qbo,
            redis,
            instances,
            admin_token,
            webhook_secret,
            client: no_keep_alive_client(),
            _dir: dir,
        }
    }

    fn url(&self, i: usize, path: &str) -> String {
        self.instances[i]
            .as_ref()
            .unwrap_or_else(|| panic!("instance {i} was killed"))
            .url(path)
    }

    fn live(&self) -> Vec<usize> {
        (0..self.instances.len())
            .filter(|i| self.instances[*i].is_some())
            .collect()
    }

    async fn webhook(&self, i: usize, body: &str) -> u16 {
        self.client
            .post(self.url(i, "/webhooks/bigcommerce"))
            .header(WEBHOOK_SECRET_HEADER, &self.webhook_secret)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("webhook to instance {i}: {e}"))
            .status()
            .as_u16()
    }

    /// Sends `body` to every live instance at once; each must accept it.
    async fn deliver_everywhere(&self, body: &str) {
        let statuses =
            futures::future::join_all(self.live().into_iter().map(|i| self.webhook(i, body))).await;
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }

    async fn admin(&self, i: usize, method: &str, path: &str) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = self
            .client
            .request(method, self.url(i, path))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path} on instance {i}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn record(&self, i: usize, id: u64) -> Value {
        self.admin(i, "GET", &format!("/admin/records/order/{id}"))
            .await
            .1
    }

    fn invoices_for(&self, id: u64) -> usize {
        let doc = id.to_string();
        self.qbo
            .invoices()
            .iter()
            .filter(|inv| inv["DocNumber"] == doc.as_str())
            .count()
    }

    /// Waits until every order in `ids` is `posted` (asking instance `via`), calling
    /// `POST /admin/retry-due` on `via` every [`SCHEDULER_EVERY`] meanwhile, as a deployment's
    /// scheduler does (the instances run without their own timer, so that the tests decide
    /// when the scheduler runs): work left to a guard entry or to the wait queue by a run that
    /// could not finish it is the scheduler's to pick up.
    /// On timeout, panics with the record and the status, so a failure says where it stuck.
    async fn wait_posted(&self, via: usize, ids: &[u64], within: Duration) {
        let mut scheduled = Instant::now();
        for id in ids {
            let deadline = Instant::now() + within;
            loop {
                let record = self.record(via, *id).await;
                if record["state"] == "posted" {
                    break;
                }
                if scheduled.elapsed() >= SCHEDULER_EVERY {
                    let (code, report) = self.admin(via, "POST", "/admin/retry-due").await;
                    assert_eq!(code, 200, "{report}");
                    eprintln!("order {id} not posted yet; the scheduler's tick: {report}");
                    scheduled = Instant::now();
                }
                if Instant::now() >= deadline {
                    let (_, status) = self.admin(via, "GET", "/admin/status").await;
                    let logs: Vec<String> = self
                        .instances
                        .iter()
                        .flatten()
                        .enumerate()
                        .map(|(i, p)| {
                            let text = p.stderr.text();
                            let lines: Vec<&str> = text.lines().collect();
                            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                            format!("--- instance {i}, last lines of its log ---\n{tail}")
                        })
                        .collect();
                    panic!(
                        "order {id} is not posted within {within:?}\nrecord: {record:#}\nstatus: {status:#}\n{}",
                        logs.join("\n")
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// QuickBooks' in-flight and per-minute limits off: these tests are about exactly-once across
/// instances, not about limits (the burst below has them on).
fn unlimited() -> QboSimConfig {
    QboSimConfig {
        max_concurrent_requests: 1000,
        max_requests_per_minute: None,
        ..QboSimConfig::default()
    }
}

fn order(id: u64) -> ml_sim::bigcommerce::GeneratedOrder {
    generate(
        id,
        &OrderShape {
            lines: 1 + (id % 3) as usize,
            tax_inclusive: false,
            tax_rate_bp: 800,
            coupon: id.is_multiple_of(2),
            manual_discount: false,
            shipping: true,
            handling: false,
            wrapping: false,
            guest: false,
            seed: id,
        },
    )
}

fn created_hook(id: u64) -> String {
    json!({"scope": "store/order/created", "store_id": "1001", "data": {"type": "order", "id": id},
           "hash": format!("{:040x}", id), "created_at": 1_700_000_000 + id, "producer": "stores/x"})
    .to_string()
}

fn updated_hook(id: u64) -> String {
    json!({"scope": "store/order/updated", "store_id": "1001", "data": {"type": "order", "id": id},
           "hash": format!("{:040x}", id + 1_000_000), "created_at": 1_700_100_000 + id, "producer": "stores/x"})
    .to_string()
}

async fn each_order_delivered_to_every_instance_at_once_and_again_makes_one_invoice(n: usize) {
    let cluster = Cluster::start(n, unlimited()).await;
    let ids: Vec<u64> = (5001..=5012).collect();
    for id in &ids {
        cluster.bc.put_order(order(*id));
    }
    // Every event to every instance at the same moment, all events at once.
    futures::future::join_all(
        ids.iter()
            .map(|id| async { cluster.deliver_everywhere(&created_hook(*id)).await }),
    )
    .await;
    cluster.wait_posted(0, &ids, WAIT).await;
    // Redelivered (BigCommerce retries), plus an update, again everywhere at once.
    futures::future::join_all(ids.iter().map(|id| async {
        cluster.deliver_everywhere(&created_hook(*id)).await;
        cluster.deliver_everywhere(&updated_hook(*id)).await;
    }))
    .await;
    // The retry scheduler on every instance at once (as overlapping CronJob runs would).
    for _ in 0..2 {
        let reports = futures::future::join_all(
            cluster
                .live()
                .into_iter()
                .map(|i| cluster.admin(i, "POST", "/admin/retry-due")),
        )
        .await;
        assert!(reports.iter().all(|(s, _)| *s == 200), "{reports:?}");
    }
    // Jobs of the redeliveries may still be running after their 200: wait until every record
    // is back to posted (asking the last instance), then until the shared counts say so.
    cluster.wait_posted(n - 1, &ids, WAIT).await;
    let deadline = Instant::now() + WAIT;
    let status = loop {
        let (_, status) = cluster.admin(n - 1, "GET", "/admin/status").await;
        if status["records"]["posted"].as_i64() == Some(ids.len() as i64)
            && status["records"]["pending"] == 0
        {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "every record is posted, but the counts do not say so within {WAIT:?}: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status["records"]["failed"], 0, "{status}");
    assert_eq!(status["records"]["retrying"], 0, "{status}");
    for id in &ids {
        assert_eq!(
            cluster.invoices_for(*id),
            1,
            "order {id} has exactly one invoice"
        );
    }
    assert_eq!(cluster.qbo.invoice_count(), ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_make_one_invoice_per_order_when_every_event_reaches_both_twice()
{
    each_order_delivered_to_every_instance_at_once_and_again_makes_one_invoice(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_redis_make_one_invoice_per_order_when_every_event_reaches_all_twice()
 {
    each_order_delivered_to_every_instance_at_once_and_again_makes_one_invoice(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed_once_for_jobs_racing_on_three_instances() {
    let cluster = Cluster::start(3, unlimited()).await;
    cluster.bc.put_order(order(6000));
    cluster.deliver_everywhere(&created_hook(6000)).await;
    cluster.wait_posted(0, &[6000], WAIT).await;
    assert_eq!(cluster.qbo.refresh_calls(), 1, "the bootstrap token, once");

    for round in 0..2u64 {
        cluster.qbo.expire_access_tokens();
        let before = cluster.qbo.refresh_calls();
        let ids: Vec<u64> = (0..15).map(|k| 6100 + round * 100 + k).collect();
        for id in &ids {
            cluster.bc.put_order(order(*id));
        }
        // Spread over the instances, all at once: each instance's jobs find the token expired.
        let sent = futures::future::join_all(ids.iter().enumerate().map(|(k, id)| {
            let cluster = &cluster;
            async move { cluster.webhook(k % 3, &created_hook(*id)).await }
        }))
        .await;
        assert!(sent.iter().all(|s| *s == 200), "{sent:?}");
        cluster.wait_posted(1, &ids, WAIT).await;
        let refreshes = cluster.qbo.refresh_calls() - before;
        eprintln!(
            "measured: round {round}: {refreshes} refresh call(s) for 15 jobs on 3 instances"
        );
        assert_eq!(refreshes, 1, "one refresh per expiry across the instances");
        for id in &ids {
            assert_eq!(cluster.invoices_for(*id), 1, "order {id}");
        }
    }
    let (_, status) = cluster.admin(2, "GET", "/admin/status").await;
    assert_eq!(status["quickbooks"]["needs_reauth"], false, "{status}");
}

/// An instance dies (SIGKILL) while it runs an order's job, holding the order's lease. The
/// survivors keep serving; once the dead holder's lease expires (ENTITY_LEASE_MS, 120 s) the
/// retry scheduler on a survivor finishes the order: one invoice. This takes about two
/// minutes: the product's recovery time, not a test delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_mid_job_loses_nothing_and_a_survivor_finishes_with_one_invoice() {
    let mut cluster = Cluster::start(3, unlimited()).await;
    // Warm up the connection (token, customers) so the killed job is an ordinary one.
    cluster.bc.put_order(order(7000));
    cluster.webhook(1, &created_hook(7000)).await;
    cluster.wait_posted(1, &[7000], WAIT).await;

    // Hold the next invoice create for a while: the job is mid-flight when its instance dies.
    cluster.qbo.control().inject(FaultRule {
        method: Some("POST".into()),
        path_contains: "/invoice".into(),
        remaining: 1,
        action: FaultAction::Delay { ms: 3_000 },
    });
    cluster.bc.put_order(order(7001));
    assert_eq!(cluster.webhook(0, &created_hook(7001)).await, 200);
    eventually_named("the job reaches QuickBooks", WAIT, || async {
        cluster.qbo.control().calls_to("/invoice") > 1
            || cluster.record(1, 7001).await["state"] == "pending"
    })
    .await;
    let victim = cluster.instances[0].take().unwrap();
    victim.kill().unwrap();
    let at_kill = cluster.record(1, 7001).await;
    assert_ne!(at_kill["state"], "posted", "killed mid-job: {at_kill}");

    // The survivors serve other orders meanwhile.
    for id in [7002, 7003] {
        cluster.bc.put_order(order(id));
        cluster.deliver_everywhere(&created_hook(id)).await;
    }
    cluster.wait_posted(2, &[7002, 7003], WAIT).await;

    // What the CronJob does: retry-due on a survivor, until the order is posted.
    let started = Instant::now();
    eventually_named(
        "a survivor finishes the killed instance's order",
        Duration::from_secs(240),
        || async {
            let (status, report) = cluster.admin(2, "POST", "/admin/retry-due").await;
            assert_eq!(status, 200, "{report}");
            if cluster.record(1, 7001).await["state"] == "posted" {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            false
        },
    )
    .await;
    eprintln!(
        "measured: the killed instance's order was posted {:.1} s after the kill",
        started.elapsed().as_secs_f64()
    );
    for id in 7000..=7003 {
        assert_eq!(
            cluster.invoices_for(id),
            1,
            "order {id} has exactly one invoice"
        );
    }
    let (_, status) = cluster.admin(1, "GET", "/admin/status").await;
    assert_eq!(status["records"]["posted"], 4, "{status}");
    assert_eq!(status["records"]["pending"], 0, "{status}");
    // The Redis server kept everything; nothing was on the instances' disks.
    assert!(cluster.redis.ping().await);
}

/// A flash sale on two instances sharing one Redis, against a QuickBooks that enforces its real
/// limits (10 requests in flight, 500 a minute): the limiter lives in Redis, so the instances
/// stay inside the limits together. 8 senders spread 60 orders over both instances at once;
/// the CronJob's retry-due runs every 15 s, as deployed. Every order becomes exactly one
/// invoice, QuickBooks never answers 429, and at most 10 requests are ever in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_stay_inside_quickbooks_limits_together_in_a_burst() {
    const SENDERS: usize = 8;
    let cluster = Cluster::start(2, QboSimConfig::default()).await;
    let ids: Vec<u64> = (8001..=8060).collect();
    for id in &ids {
        cluster.bc.put_order(order(*id));
    }
    let started = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let senders = (0..SENDERS).map(|_| async {
        let mut statuses = Vec::new();
        loop {
            let k = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let Some(id) = ids.get(k) else {
                return statuses;
            };
            statuses.push(cluster.webhook(k % 2, &created_hook(*id)).await);
        }
    });
    let statuses: Vec<u16> = futures::future::join_all(senders)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(statuses.len(), ids.len());
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    // The CronJob, while the burst drains.
    let cron = async {
        loop {
            tokio::time::sleep(Duration::from_secs(15)).await;
            let (status, report) = cluster.admin(0, "POST", "/admin/retry-due").await;
            assert_eq!(status, 200, "{report}");
        }
    };
    let settled = async {
        eventually_named(
            "every order of the burst has its invoice",
            Duration::from_secs(300),
            || async { cluster.qbo.count("Invoice") >= ids.len() },
        )
        .await
    };
    tokio::select! {
        () = settled => {}
        () = cron => unreachable!("the cron loop never ends"),
    }
    eprintln!(
        "measured: 60 orders on 2 instances with QuickBooks' limits on: last invoice {:.1} s after the first webhook, {} QuickBooks requests, peak {} in flight",
        started.elapsed().as_secs_f64(),
        cluster.qbo.accepted_requests(),
        cluster.qbo.peak_in_flight()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    for id in &ids {
        assert_eq!(
            cluster.invoices_for(*id),
            1,
            "order {id} has exactly one invoice"
        );
    }
    assert_eq!(
        cluster.qbo.throttled_total(),
        0,
        "QuickBooks never answered 429 (concurrency {}, per minute {})",
        cluster.qbo.throttled_concurrent(),
        cluster.qbo.throttled_per_minute()
    );
    assert!(
        cluster.qbo.peak_in_flight() <= 10,
        "at most 10 QuickBooks requests in flight across both instances, saw {}",
        cluster.qbo.peak_in_flight()
    );
    cluster.wait_posted(1, &ids, WAIT).await;
}
