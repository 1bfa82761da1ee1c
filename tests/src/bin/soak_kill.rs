//! Kill soak (issue 16): many orders through the real `ml-harness` binary, SIGKILLed three times
//! mid-run and restarted on the same SQLite data dir, while both simulators (in this process)
//! fail a seeded share of API requests and QuickBooks access tokens expire now and then.
//!
//! `cargo run --release -p ml-e2e --bin soak_kill -- [ORDERS=10000] [--concurrency 16] [--deadline-min 60] [--keep]`
//!
//! Orders: a third paid at checkout (some partly by gift certificate or store credit), the rest
//! unpaid; once every order has settled, every 20th is refunded once. The webhooks are sent by
//! this program with `--concurrency` in flight; one the harness does not accept (it is down,
//! or answers 5xx) is sent again, as BigCommerce redelivers. The harness is SIGKILLed when a
//! quarter, half and three quarters of the invoices are in QuickBooks, and started again on the
//! same data dir; its retry timer (`--retry-interval 1`) finishes what was cut short.
//!
//! Injected on every API request of both simulators (seeded): 5 % 5xx (500/502/503), 2 % 429
//! (BigCommerce with `X-Rate-Limit-Time-Reset-Ms: 1000`; QuickBooks as it really answers, with
//! no `Retry-After`, so the connector waits 60 s), 1 % lost answers (the simulator does the work,
//! then answers 504). QuickBooks's 10-requests-in-flight limit stays on; its 500-a-minute limit
//! is off (10,000 orders at 500 calls a minute would take over 40 minutes: `bench_backfill`
//! measures the pacing). BigCommerce's quota stays at the simulator's default.
//!
//! Reports invoices, duplicates and lost orders, payments and refunds (exactly once each), wall
//! time, upstream calls per order, the faults injected, and the key-value store's size after the
//! run (keys and bytes, read from the SQLite file once the harness is stopped). Exits non-zero
//! when anything is duplicated, lost or not settled.

// Floating point only formats the measurements; money is compared in exact integer units.
#![allow(clippy::float_arithmetic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ml_e2e::env::WEBHOOK_SECRET_HEADER;
use ml_e2e::process::{HarnessProcess, ProcessOptions};
use ml_sim::bigcommerce::{
    BcSim, BcSimConfig, OrderShape, Payment, generate_paid, refund_one_unit,
};
use ml_sim::control::{Control, FaultAction, LoggedRequest, RandomFault};
use ml_sim::quickbooks::{QboSim, QboSimConfig, QboSimHandle};
use serde_json::{Value, json};
use tokio::sync::watch;

const SECRET: &str = "soak-kill-webhook-secret";
const ADMIN: &str = "soak-kill-admin-token-0123456789";
const FIRST_ID: u64 = 100_001;
/// SIGKILLs, at evenly spaced shares of the invoices.
const KILLS: u64 = 3;
/// Access-token expiries, at evenly spaced shares of the invoices (between the kills).
const EXPIRIES: u64 = 4;
/// How long a (re)started harness may take to listen.
const READY: Duration = Duration::from_secs(300);
/// Paths the status page calls upstream (counted apart from the orders' calls).
const STATUS_PATHS: [&str; 2] = ["/v2/store", "/companyinfo/"];
/// Settling gives up when neither the record counts nor the invoices change for this long
/// (longer than any retry back-off with `retry_base_seconds = 1`).
const STALL: Duration = Duration::from_secs(15 * 60);
/// Counters unchanged this long (with work still counted): read every record to be sure.
const QUIET: Duration = Duration::from_secs(90);

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

/// A third of the orders are paid at checkout, some partly by gift certificate or store credit.
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

/// Every 20th order is refunded once (one unit of its first line).
/// Every 20th order gets one refund of its first product. Coupon orders are left out: the
/// product's full price can exceed what such an order was charged, a refund BigCommerce itself
/// refuses (the connector fails it with that reason, as `tests/tests/lifecycle.rs` shows).
fn refunded(i: u64) -> bool {
    i % 20 == 3 && !shape(i).coupon
}

fn order_body(store_hash: &str, id: u64) -> String {
    json!({
        "scope": "store/order/created",
        "store_id": "1001",
        "data": {"type": "order", "id": id},
        "hash": format!("{id:040x}"),
        "created_at": 1_700_000_000u64 + id,
        "producer": format!("stores/{store_hash}"),
    })
    .to_string()
}

fn refund_body(store_hash: &str, id: u64, refund_id: u64) -> String {
    json!({
        "scope": "store/order/refund/created",
        "store_id": "1001",
        "data": {"type": "order", "id": id, "refund": {"refund_id": refund_id}},
        "hash": format!("{:040x}", refund_id << 32 | id),
        "created_at": 1_700_100_000u64 + id,
        "producer": format!("stores/{store_hash}"),
    })
    .to_string()
}

fn status_fault(code: u16, headers: &[(&str, &str)], body: &str) -> FaultAction {
    FaultAction::Status {
        status: code,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.to_string(),
    }
}

/// 5 % 5xx, 2 % `throttle`, 1 % lost answers on every request whose path contains `path`.
fn install_faults(control: &Control, seed: u64, path: &str, throttle: FaultAction) {
    control.seed_random_faults(seed);
    let faults = [
        (17, status_fault(500, &[], "")),
        (17, status_fault(502, &[], "")),
        (16, status_fault(503, &[], "")),
        (20, throttle),
        (10, FaultAction::AfterHandler { ms: 0 }),
    ];
    for (per_mille, action) in faults {
        control.inject_random(RandomFault {
            method: None,
            path_contains: path.into(),
            per_mille,
            action,
        });
    }
}

/// A money amount (JSON number or string) in ten-thousandths, exactly.
fn units(v: &Value) -> i128 {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return 0,
    };
    let (neg, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest.to_string()),
        None => (false, text),
    };
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    let frac: String = frac.chars().chain("0000".chars()).take(4).collect();
    let n = whole.parse::<i128>().unwrap_or(0) * 10_000 + frac.parse::<i128>().unwrap_or(0);
    if neg { -n } else { n }
}

/// Webhooks delivered with redelivery, to whichever harness is up.
struct Sender {
    client: reqwest::Client,
    url: watch::Receiver<Option<String>>,
    accepted: AtomicU64,
    refused: AtomicU64,
    /// Why deliveries were refused: "connect" or the HTTP status.
    reasons: std::sync::Mutex<BTreeMap<String, u64>>,
}

impl Sender {
    async fn deliver_one(&self, body: &str) -> anyhow::Result<()> {
        let mut url = self.url.clone();
        loop {
            let base = url
                .wait_for(Option::is_some)
                .await
                .context("the harness URL channel closed")?
                .clone()
                .unwrap_or_default();
            let sent = self
                .client
                .post(format!("{base}/webhooks/bigcommerce"))
                .header(WEBHOOK_SECRET_HEADER, SECRET)
                .header("content-type", "application/json")
                .body(body.to_string())
                .timeout(Duration::from_secs(60))
                .send()
                .await;
            let reason = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let text = resp.text().await.unwrap_or_default();
                    if status == 200 {
                        self.accepted.fetch_add(1, Ordering::SeqCst);
                        return Ok(());
                    }
                    if (400..500).contains(&status) {
                        bail!("the harness refused a webhook with {status}: {text}");
                    }
                    status.to_string()
                }
                Err(e) if e.is_timeout() => "timeout".to_string(),
                Err(_) => "connect".to_string(),
            };
            self.refused.fetch_add(1, Ordering::SeqCst);
            *self.reasons.lock().unwrap().entry(reason).or_default() += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Delivers every body with at most `concurrency` in flight.
    async fn deliver_all(
        self: Arc<Self>,
        bodies: Vec<String>,
        concurrency: usize,
    ) -> anyhow::Result<()> {
        let queue = Arc::new(std::sync::Mutex::new(bodies));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let queue = queue.clone();
            let sender = self.clone();
            tasks.spawn(async move {
                loop {
                    let next = queue.lock().unwrap().pop();
                    let Some(body) = next else { break };
                    sender.deliver_one(&body).await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(())
    }
}

/// The harness process and how to restart it.
struct Harness {
    options: ProcessOptions,
    process: Option<HarnessProcess>,
    url: watch::Sender<Option<String>>,
    client: reqwest::Client,
    /// Log of every incarnation, written when it ends.
    log_dir: std::path::PathBuf,
    incarnation: usize,
}

impl Harness {
    async fn start(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let process = HarnessProcess::spawn(&self.options, READY).await?;
        self.url.send_replace(Some(process.url("")));
        self.process = Some(process);
        self.incarnation += 1;
        Ok(started.elapsed())
    }

    fn save_log(&self, process: &HarnessProcess) {
        let path = self
            .log_dir
            .join(format!("harness-{}.log", self.incarnation));
        let _ = std::fs::write(path, process.stderr.text());
    }

    /// SIGKILL, then start again on the same data dir. Returns how long it was down.
    async fn kill_and_restart(&mut self) -> anyhow::Result<Duration> {
        self.url.send_replace(None);
        let down = Instant::now();
        let process = self.process.take().context("the harness is running")?;
        self.save_log(&process);
        let status = process.kill()?;
        anyhow::ensure!(!status.success(), "the harness exited by itself: {status}");
        self.start().await?;
        Ok(down.elapsed())
    }

    async fn stop(&mut self) -> anyhow::Result<()> {
        self.url.send_replace(None);
        if let Some(process) = self.process.take() {
            self.save_log(&process);
            process.terminate(Duration::from_secs(60)).await?;
        }
        Ok(())
    }

    fn url(&self, path: &str) -> anyhow::Result<String> {
        Ok(self
            .process
            .as_ref()
            .context("the harness is not running")?
            .url(path))
    }

    async fn admin_get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        admin_get(&self.client, self.url(path)?).await
    }
}

async fn admin_get(client: &reqwest::Client, url: String) -> anyhow::Result<(u16, Value)> {
    let resp = client
        .get(url)
        .bearer_auth(ADMIN)
        .timeout(Duration::from_secs(120))
        .send()
        .await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// Every order's record state (by `GET /admin/records/order/{id}`), and the orders whose
/// record is not `posted`.
async fn order_states(
    harness: &Harness,
    ids: &[u64],
    concurrency: usize,
) -> anyhow::Result<(BTreeMap<String, u64>, Vec<(u64, Value)>)> {
    let mut states: BTreeMap<String, u64> = BTreeMap::new();
    let mut not_posted = Vec::new();
    for chunk in ids.chunks(concurrency) {
        let mut gets = tokio::task::JoinSet::new();
        for &id in chunk {
            let (client, url) = (
                harness.client.clone(),
                harness.url(&format!("/admin/records/order/{id}"))?,
            );
            gets.spawn(async move { (id, admin_get(&client, url).await) });
        }
        while let Some(got) = gets.join_next().await {
            let (id, got) = got?;
            let (code, rec) = got?;
            let state = if code == 200 {
                rec["state"].as_str().unwrap_or("?").to_string()
            } else {
                format!("http {code}")
            };
            if state != "posted" {
                not_posted.push((id, rec));
            }
            *states.entry(state).or_default() += 1;
        }
    }
    not_posted.sort_by_key(|(id, _)| *id);
    Ok((states, not_posted))
}

/// Records not yet final (a webhook or retry will still move them).
fn unsettled(records: &Value) -> i64 {
    ["pending", "retrying"]
        .iter()
        .map(|s| records[*s].as_i64().unwrap_or(0))
        .sum()
}

/// Polls `/admin/status` until no record is pending or retrying, the deadline passes, or
/// nothing has changed for [`STALL`]. The status counters are kept apart from the records (a
/// SIGKILL between a record's write and its counters' leaves them off), so when they stop
/// changing for [`QUIET`] with work still counted, every order's record is read instead.
/// Returns the record counts and whether it settled.
async fn settle(
    harness: &Harness,
    qbo: &QboSimHandle,
    ids: &[u64],
    started: Instant,
    deadline: Instant,
    polls: &AtomicU64,
) -> anyhow::Result<(Value, bool)> {
    let mut last_report = Instant::now();
    let mut last_change = (Instant::now(), Value::Null, 0usize);
    let mut checked_at = Instant::now();
    loop {
        let (code, status) = harness.admin_get("/admin/status").await?;
        polls.fetch_add(1, Ordering::SeqCst);
        let records = status["records"].clone();
        if code == 200 && records.is_object() && unsettled(&records) == 0 {
            return Ok((records, true));
        }
        let invoices = qbo.invoice_count();
        if records != last_change.1 || invoices != last_change.2 {
            last_change = (Instant::now(), records.clone(), invoices);
        }
        if last_change.0.elapsed() >= QUIET && checked_at < last_change.0 + QUIET {
            checked_at = Instant::now();
            let (states, _) = order_states(harness, ids, 16).await?;
            let open: u64 = ["pending", "retrying"]
                .iter()
                .filter_map(|s| states.get(*s))
                .sum();
            println!(
                "  {:>6.0} s: counters unchanged for {} s at {records}; the records say {states:?}",
                started.elapsed().as_secs_f64(),
                QUIET.as_secs()
            );
            if open == 0 {
                return Ok((records, true));
            }
        }
        if last_report.elapsed() >= Duration::from_secs(30) {
            println!(
                "  {:>6.0} s: {invoices} invoices, records {records}",
                started.elapsed().as_secs_f64(),
            );
            last_report = Instant::now();
        }
        if Instant::now() >= deadline {
            println!("  deadline passed before every record settled");
            return Ok((records, false));
        }
        if last_change.0.elapsed() >= STALL {
            println!("  nothing changed for {} s: stalled", STALL.as_secs());
            return Ok((records, false));
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

struct Args {
    orders: u64,
    concurrency: usize,
    deadline: Duration,
    keep: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        orders: 10_000,
        concurrency: 16,
        deadline: Duration::from_secs(60 * 60),
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--concurrency" => {
                args.concurrency = it.next().context("--concurrency needs a number")?.parse()?
            }
            "--deadline-min" => {
                let min: u64 = it.next().context("--deadline-min needs minutes")?.parse()?;
                args.deadline = Duration::from_secs(min * 60);
            }
            "--keep" => args.keep = true,
            n => {
                args.orders = n
                    .parse()
                    .with_context(|| format!("unknown argument `{n}`: ORDERS is a number"))?
            }
        }
    }
    anyhow::ensure!(args.orders >= 20, "ORDERS must be at least 20");
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    Ok(args)
}

#[derive(Default)]
struct Faults {
    server_errors: usize,
    throttles: usize,
    lost_answers: usize,
    /// 429s the simulator's own limits answered (not injected).
    real_throttles: usize,
}

fn faults(log: &[LoggedRequest]) -> Faults {
    let mut f = Faults::default();
    for r in log {
        match (r.faulted, r.status) {
            (true, 500 | 502 | 503) => f.server_errors += 1,
            (true, 429) => f.throttles += 1,
            (true, 504) => f.lost_answers += 1,
            (false, 429) => f.real_throttles += 1,
            _ => {}
        }
    }
    f
}

fn is_status_call(r: &LoggedRequest) -> bool {
    STATUS_PATHS.iter().any(|p| r.path.contains(p))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let n = args.orders;
    let ids: Vec<u64> = (FIRST_ID..FIRST_ID + n).collect();

    let bc_config = BcSimConfig::default();
    let bc_quota = (bc_config.rate_limit_quota, bc_config.rate_limit_window);
    let bc = BcSim::start(bc_config).await?;
    let qbo_config = QboSimConfig {
        max_requests_per_minute: None,
        ..QboSimConfig::default()
    };
    let qbo_in_flight = qbo_config.max_concurrent_requests;
    let qbo = QboSim::start(qbo_config).await?;
    install_faults(
        &bc.control(),
        0x50a6_0001,
        "/stores/",
        status_fault(
            429,
            &[
                ("X-Rate-Limit-Time-Reset-Ms", "1000"),
                ("X-Rate-Limit-Requests-Left", "0"),
            ],
            "",
        ),
    );
    install_faults(
        qbo.control(),
        0x50a6_0002,
        "/v3/company/",
        status_fault(
            429,
            &[("content-type", "application/json")],
            r#"{"fault":{"error":[{"message":"message=ThrottleExceeded; errorCode=003001; statusCode=429","detail":"Too many requests","code":"3001"}],"type":"SERVICE"}}"#,
        ),
    );

    let work = tempfile::Builder::new()
        .prefix("ml-soak-kill-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let data_dir = work.path().join("data");
    let mut variables = ml_harness::demo::simulator_variables(&bc, &qbo);
    for (k, v) in [
        ("bigcommerce_webhook_secret", SECRET),
        ("admin_token", ADMIN),
        (
            "encryption_key",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ),
        ("retry_base_seconds", "1"),
        ("max_attempts", "10"),
        ("sweep_interval_seconds", "0"),
    ] {
        variables.insert(k.to_string(), v.to_string());
    }
    let mut options = ProcessOptions::new(&data_dir, variables);
    options.extra_args = vec!["--retry-interval".into(), "1".into(), "--no-demo".into()];
    let (url_tx, url_rx) = watch::channel(None);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let mut harness = Harness {
        options,
        process: None,
        url: url_tx,
        client: client.clone(),
        log_dir: work.path().to_path_buf(),
        incarnation: 0,
    };

    println!(
        "soak_kill: {n} orders, webhook concurrency {}, ml-harness subprocess on SQLite at {}",
        args.concurrency,
        data_dir.display()
    );
    println!(
        "  limits: QuickBooks {qbo_in_flight} requests in flight ON (then 429, no Retry-After); \
         QuickBooks 500/minute OFF for this run (10,000 orders at 500 calls/min would take 40+ min; \
         bench_backfill measures it); BigCommerce quota {} per {} s ON",
        bc_quota.0,
        bc_quota.1.as_secs()
    );
    println!(
        "  faults on every API request, both sides, seeded: 5 % 5xx, 2 % 429, 1 % lost answers; \
         {KILLS} SIGKILLs; {EXPIRIES} QuickBooks access-token expiries"
    );
    let first_start = harness.start().await?;
    println!("  harness started in {:.1} s", first_start.as_secs_f64());

    for &id in &ids {
        bc.put_order(generate_paid(id, &shape(id), payment(id)));
    }
    let sender = Arc::new(Sender {
        client: client.clone(),
        url: url_rx,
        accepted: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        reasons: Default::default(),
    });
    let started = Instant::now();
    let deadline = started + args.deadline;
    let bodies: Vec<String> = ids
        .iter()
        .rev()
        .map(|id| order_body(bc.store_hash(), *id))
        .collect();
    let mut delivery = tokio::spawn(sender.clone().deliver_all(bodies, args.concurrency));

    // Kills and token expiries at evenly spaced shares of the invoices posted.
    let kill_at: Vec<u64> = (1..=KILLS).map(|k| n * k / (KILLS + 1)).collect();
    let expire_at: Vec<u64> = (1..=EXPIRIES)
        .map(|k| n * (2 * k - 1) / (2 * EXPIRIES))
        .collect();
    let (mut kills, mut expiries) = (0usize, 0usize);
    let mut delivered = false;
    while (kills < kill_at.len() || expiries < expire_at.len() || !delivered)
        && Instant::now() < deadline
    {
        if !delivered && delivery.is_finished() {
            (&mut delivery).await??;
            delivered = true;
            println!(
                "  {:>6.1} s: all {n} webhooks accepted ({} refusals redelivered)",
                started.elapsed().as_secs_f64(),
                sender.refused.load(Ordering::SeqCst)
            );
        }
        let invoices = qbo.invoice_count() as u64;
        if expiries < expire_at.len() && invoices >= expire_at[expiries] {
            qbo.expire_access_tokens();
            expiries += 1;
            println!(
                "  {:>6.1} s: QuickBooks access tokens expired ({invoices} invoices)",
                started.elapsed().as_secs_f64()
            );
        }
        if kills < kill_at.len() && invoices >= kill_at[kills] {
            let accepted = sender.accepted.load(Ordering::SeqCst);
            let down = harness.kill_and_restart().await?;
            kills += 1;
            println!(
                "  {:>6.1} s: SIGKILL {kills} at {invoices} invoices, {accepted} webhooks accepted; \
                 restarted on the same data dir, down {:.1} s",
                started.elapsed().as_secs_f64(),
                down.as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !delivered {
        match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), delivery)
            .await
        {
            Ok(done) => done??,
            Err(_) => bail!("the webhooks were not all accepted before the deadline"),
        }
    }
    let polls = AtomicU64::new(0);
    let (orders_records, orders_settled) =
        settle(&harness, &qbo, &ids, started, deadline, &polls).await?;
    let orders_done = started.elapsed();
    println!(
        "  {:>6.1} s: orders settled: {orders_settled}; records {orders_records}",
        orders_done.as_secs_f64()
    );

    // Refunds, under the same faults.
    let refund_ids: Vec<u64> = ids.iter().copied().filter(|i| refunded(*i)).collect();
    let mut bodies = Vec::with_capacity(refund_ids.len());
    for &id in &refund_ids {
        let raw = bc.order(id).context("the order is in the simulator")?;
        let refund = refund_one_unit(&raw, &bc.products(id), "soak");
        let stored = bc.add_refund(id, refund).context("the refund is stored")?;
        bodies.push(refund_body(
            bc.store_hash(),
            id,
            stored["id"].as_u64().unwrap_or(0),
        ));
    }
    sender.clone().deliver_all(bodies, args.concurrency).await?;
    let (records, settled) = settle(&harness, &qbo, &ids, started, deadline, &polls).await?;
    let wall = started.elapsed();
    println!(
        "  {:>6.1} s: refunds settled: {settled}; records {records}",
        wall.as_secs_f64()
    );

    // What it cost (before the checks below add their own calls).
    let bc_log = bc.control().requests();
    let qbo_log = qbo.control().requests();
    let (token_calls, refresh_calls) = (qbo.token_calls(), qbo.refresh_calls());

    // Every order's record.
    let (states, not_posted) = order_states(&harness, &ids, args.concurrency).await?;
    let (_, status) = harness.admin_get("/admin/status").await?;
    harness.stop().await?;

    // Documents in QuickBooks.
    let invoices = qbo.invoices();
    let mut by_doc: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for inv in &invoices {
        by_doc
            .entry(inv["DocNumber"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(inv);
    }
    let duplicated: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| by_doc.get(&id.to_string()).is_some_and(|v| v.len() > 1))
        .collect();
    let extra_invoices: usize = by_doc.values().map(|v| v.len().saturating_sub(1)).sum();
    let lost: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| !by_doc.contains_key(&id.to_string()))
        .collect();
    let strangers = by_doc
        .keys()
        .filter(|d| {
            d.parse::<u64>()
                .map_or(true, |id| !(FIRST_ID..FIRST_ID + n).contains(&id))
        })
        .count();

    // Payments: one per payment source of each paid order.
    let payments = qbo.records("Payment");
    let mut linked: BTreeMap<String, usize> = BTreeMap::new();
    for p in &payments {
        if let Some(txn) = p["Line"][0]["LinkedTxn"][0]["TxnId"].as_str() {
            *linked.entry(txn.to_string()).or_default() += 1;
        }
    }
    let (mut payments_expected, mut payments_missing, mut payments_extra) =
        (0usize, 0usize, 0usize);
    for &id in &ids {
        let raw = bc.order(id).context("the order is in the simulator")?;
        let sources = if payment(id) == Payment::Unpaid {
            0
        } else {
            let gc = units(&raw["gift_certificate_amount"]);
            let sc = units(&raw["store_credit_amount"]);
            let card = units(&raw["total_inc_tax"]) - gc - sc;
            [gc, sc, card].iter().filter(|t| **t != 0).count()
        };
        payments_expected += sources;
        let have = by_doc
            .get(&id.to_string())
            .map(|v| {
                v.iter()
                    .map(|inv| {
                        linked
                            .get(inv["Id"].as_str().unwrap_or_default())
                            .copied()
                            .unwrap_or(0)
                    })
                    .sum::<usize>()
            })
            .unwrap_or(0);
        payments_missing += sources.saturating_sub(have);
        payments_extra += have.saturating_sub(sources);
    }

    // Refund documents: one per refunded order, `{id}-R1`.
    let mut refund_docs: BTreeMap<String, usize> = BTreeMap::new();
    let receipts = qbo.records("RefundReceipt");
    let memos = qbo.records("CreditMemo");
    for d in receipts.iter().chain(&memos) {
        *refund_docs
            .entry(d["DocNumber"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    let refunds_missing = refund_ids
        .iter()
        .filter(|id| !refund_docs.contains_key(&format!("{id}-R1")))
        .count();
    let refunds_extra: usize = refund_docs
        .values()
        .map(|c| c.saturating_sub(1))
        .sum::<usize>()
        + refund_docs
            .keys()
            .filter(|d| {
                !d.strip_suffix("-R1")
                    .and_then(|id| id.parse::<u64>().ok())
                    .is_some_and(refunded)
            })
            .count();

    // Customers: one per buyer.
    let customers = qbo.customers();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for c in &customers {
        *names
            .entry(c["DisplayName"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    let customer_dups: usize = names.values().map(|c| c.saturating_sub(1)).sum();

    // Upstream calls.
    let of = |log: &[LoggedRequest]| {
        let status = log.iter().filter(|r| is_status_call(r)).count();
        (log.len() - status, status)
    };
    let (bc_calls, bc_status) = of(&bc_log);
    let (qbo_calls, qbo_status) = of(&qbo_log);
    let nf = n as f64;
    let (bcf, qbof) = (faults(&bc_log), faults(&qbo_log));

    // The key-value store, read from the file the harness left.
    let kv = kv_size(&data_dir.join("ml-connector.db"))?;

    println!(
        "soak_kill results ({n} orders, {} refunded)",
        refund_ids.len()
    );
    println!(
        "  wall time {:.1} s (first webhook -> every record settled); orders settled after {:.1} s",
        wall.as_secs_f64(),
        orders_done.as_secs_f64()
    );
    println!(
        "  invoices in QuickBooks: {} for {n} orders; duplicated orders: {} ({extra_invoices} extra invoices); \
         lost orders (no invoice): {}; invoices of unknown orders: {strangers}",
        invoices.len(),
        duplicated.len(),
        lost.len()
    );
    println!(
        "  order records: {}; not posted: {}",
        states
            .iter()
            .map(|(s, c)| format!("{s} {c}"))
            .collect::<Vec<_>>()
            .join(", "),
        not_posted.len()
    );
    for (id, rec) in not_posted.iter().take(5) {
        println!("    order {id}: {rec}");
    }
    let drift: Vec<String> = [
        "pending",
        "retrying",
        "posted",
        "failed",
        "needs_reauth",
        "skipped",
    ]
    .iter()
    .filter_map(|s| {
        let counted = status["records"][*s].as_i64().unwrap_or(0);
        let real = states.get(*s).copied().unwrap_or(0) as i64;
        (counted != real).then(|| format!("{s} {counted} counted, {real} real"))
    })
    .collect();
    println!(
        "  /admin/status counters: {}; {}",
        status["records"],
        if drift.is_empty() {
            "they agree with the order records".to_string()
        } else {
            format!("they DISAGREE with the order records: {}", drift.join("; "))
        }
    );
    println!(
        "  payments: {} (expected {payments_expected}; missing {payments_missing}, extra {payments_extra})",
        payments.len()
    );
    println!(
        "  refund documents: {} receipts + {} credit memos (expected {}; missing {refunds_missing}, extra {refunds_extra})",
        receipts.len(),
        memos.len(),
        refund_ids.len()
    );
    println!(
        "  QuickBooks customers: {} ({customer_dups} sharing a DisplayName)",
        customers.len()
    );
    println!(
        "  upstream calls per order: {:.2} (BigCommerce {:.2}, QuickBooks {:.2}; refunds included); \
         token endpoint {token_calls} calls ({refresh_calls} refreshes) after {expiries} expiries; \
         status page {} + {} calls ({} polls) not counted",
        (bc_calls + qbo_calls) as f64 / nf,
        bc_calls as f64 / nf,
        qbo_calls as f64 / nf,
        bc_status,
        qbo_status,
        polls.load(Ordering::SeqCst)
    );
    for (side, f) in [("BigCommerce", &bcf), ("QuickBooks", &qbof)] {
        println!(
            "  injected on {side}: {} 5xx, {} 429, {} lost answers; 429s from its own limits: {}",
            f.server_errors, f.throttles, f.lost_answers, f.real_throttles
        );
    }
    println!(
        "  SIGKILLs: {kills}; webhooks: {} accepted, {} refused and redelivered ({})",
        sender.accepted.load(Ordering::SeqCst),
        sender.refused.load(Ordering::SeqCst),
        sender
            .reasons
            .lock()
            .unwrap()
            .iter()
            .map(|(r, c)| format!("{r}: {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  KV after the run: {} keys, {} bytes of keys+values ({:.1} keys, {:.0} bytes per order); file {} bytes",
        kv.keys,
        kv.bytes,
        kv.keys as f64 / nf,
        kv.bytes as f64 / nf,
        kv.file_bytes
    );
    for (prefix, (keys, bytes)) in &kv.by_prefix {
        println!(
            "    {prefix:<24} {keys:>8} keys {bytes:>12} bytes ({:.2} keys/order)",
            *keys as f64 / nf
        );
    }

    let failed = !duplicated.is_empty()
        || !lost.is_empty()
        || !not_posted.is_empty()
        || payments_missing + payments_extra + refunds_missing + refunds_extra > 0
        || !orders_settled
        || !settled;
    if failed || args.keep {
        let kept = work.keep();
        println!("  data dir and harness logs kept in {}", kept.display());
    }
    if failed {
        bail!("duplicated, lost or unsettled work: see above");
    }
    Ok(())
}

struct KvSize {
    keys: u64,
    bytes: u64,
    file_bytes: u64,
    /// Keys and bytes per key prefix (the leading path segments without digits).
    by_prefix: BTreeMap<String, (u64, u64)>,
}

fn kv_size(db: &Path) -> anyhow::Result<KvSize> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open {} read-only", db.display()))?;
    let mut stmt = conn.prepare("SELECT store, key, length(key), length(value) FROM kv")?;
    let mut rows = stmt.query([])?;
    let mut size = KvSize {
        keys: 0,
        bytes: 0,
        file_bytes: 0,
        by_prefix: BTreeMap::new(),
    };
    while let Some(row) = rows.next()? {
        let store: String = row.get(0)?;
        let key: String = row.get(1)?;
        let bytes = row.get::<_, i64>(2)? as u64 + row.get::<_, i64>(3)? as u64;
        let prefix: Vec<&str> = key
            .split('/')
            .take(2)
            .take_while(|s| !s.chars().any(|c| c.is_ascii_digit()))
            .collect();
        let prefix = format!("{store}:{}", prefix.join("/"));
        let entry = size.by_prefix.entry(prefix).or_default();
        entry.0 += 1;
        entry.1 += bytes;
        size.keys += 1;
        size.bytes += bytes;
    }
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", db.display());
        size.file_bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    }
    Ok(size)
}
