//! Shared fixtures for the job tests: a [`FakeHost`] wired to the one in-memory model of
//! BigCommerce (orders, customers) and of QuickBooks Online every core test uses, a host wrapper that interleaves KV writes with HTTP
//! requests (so tests can check *when* a credential was stored), and helpers that drive the
//! connector through its public entry points only.
//!
//! The QuickBooks model is deliberately strict where the connector's guarantees depend on it:
//! it honours `requestid` replays, checks `SyncToken`s, rotates refresh tokens on every
//! refresh and rejects superseded ones with `invalid_grant`, accepts only the access tokens
//! it issued, keeps one DisplayName namespace across customers, vendors and employees
//! (active or not), and answers customer queries with active customers only unless asked
//! otherwise. The two models live in `bc.rs` and `qbo.rs`.

#![allow(dead_code)]

mod bc;
mod order;
mod qbo;

pub use bc::*;
// Only the order-job tests use these.
#[allow(unused_imports)]
pub use order::*;
pub use qbo::*;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use ml_core::crypto::{self, Keyring};
use ml_core::host::{CasOutcome, Host, KvError, LogLevel};
use ml_core::http::Request;
use ml_core::http::{HttpRequest, HttpResponse, TransportError};
use ml_core::jobs::run::{self, RetryReport};
use ml_core::routes::router;
use ml_core::sync::record::SyncRecord;
use ml_core::testing::FakeHost;
use ml_sim::bigcommerce::{GeneratedOrder, OrderShape, generate};
use serde_json::{Value, json};

pub const BC_BASE: &str = "http://bc.test";
pub const QBO_BASE: &str = "http://qbo.test";
pub const OAUTH_BASE: &str = "http://oauth.test";
pub const STORE_HASH: &str = "abc123store";
pub const BC_TOKEN: &str = "bcTokenSecret0000111122223333";
pub const WEBHOOK_SECRET: &str = "hook-secret-5f2a9c";
pub const CLIENT_ID: &str = "ABclientId0001";
pub const CLIENT_SECRET: &str = "clientSecretZZ9988776655";
pub const REALM: &str = "9130350000000001";
pub const BOOTSTRAP_RT: &str = "AB11bootstrapRefreshToken0001";
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-123";
pub const KEY_BYTES: [u8; 32] = [7; 32];
/// KV key of the sealed QuickBooks token set (connection.rs layout).
pub const TOKENS_KEY: &str = "cred/qbo/tokens";

/// Where the shared design material lives, read in place: `../shared` beside the repository,
/// or `ML_SHARED_DIR` when the checkout sits elsewhere (a git worktree).
pub fn shared(rel: &str) -> String {
    match std::env::var("ML_SHARED_DIR") {
        Ok(dir) if !dir.is_empty() => format!("{dir}/{rel}"),
        _ => format!("{}/../../../shared/{rel}", env!("CARGO_MANIFEST_DIR")),
    }
}

/// A recorded fixture as JSON (read once per process: the simulation asks for them often).
pub fn fixture(rel: &str) -> Value {
    static CACHE: std::sync::OnceLock<std::sync::Mutex<HashMap<String, Value>>> =
        std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(rel) {
        return v.clone();
    }
    let path = shared(&format!("fixtures/{rel}"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"));
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(rel.to_string(), v.clone());
    v
}

/// 2026-11-26T15:00:00Z: a minute boundary, so "same minute" scenarios are explicit.
pub fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-26T15:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A registered, tax-exclusive order with shipping, no discounts: maps with the default rules.
pub fn plain_shape(seed: u64) -> OrderShape {
    OrderShape {
        lines: 2,
        tax_inclusive: false,
        tax_rate_bp: 800,
        coupon: false,
        manual_discount: false,
        shipping: true,
        handling: false,
        wrapping: false,
        guest: false,
        seed,
    }
}

/// A generated order JSON (as `GET /v2/orders/{id}?include=consignments.line_items…` returns it).
pub fn order_json(id: u64, shape: &OrderShape) -> Value {
    let GeneratedOrder { order, .. } = generate(id, shape);
    order
}

// ---------------------------------------------------------------------------------------------
// Host wrapper: one timeline of HTTP requests and KV writes.

/// One observable effect, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An outbound request (`"POST http://…"`).
    Http(String),
    /// A KV write (set, or a successful compare-and-swap) to this key.
    KvWrite(String),
}

/// Delegates to [`FakeHost`] and records every request and KV write on one timeline.
pub struct Recorder {
    pub inner: FakeHost,
    pub events: Vec<Event>,
    /// When each outbound request was made, with its URL.
    pub sent_at: Vec<(DateTime<Utc>, String)>,
    /// Every key-value round trip, as `(operation, key)`.
    pub kv_ops: Vec<(&'static str, String)>,
}

impl Host for Recorder {
    fn now(&self) -> DateTime<Utc> {
        self.inner.now()
    }
    fn random_bytes(&mut self, buf: &mut [u8]) {
        self.inner.random_bytes(buf)
    }
    fn config(&mut self, name: &str) -> Option<String> {
        self.inner.config(name)
    }
    fn http(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        self.events.push(Event::Http(format!(
            "{} {}",
            request.method.as_str(),
            request.url
        )));
        self.sent_at.push((self.inner.now(), request.url.clone()));
        self.inner.http(request)
    }
    fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.kv_ops.push(("get", key.to_string()));
        self.inner.kv_get(key)
    }
    fn kv_get_many(&mut self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        // One round trip, named by its keys.
        self.kv_ops.push(("get_many", keys.join(",")));
        self.inner.kv_get_many(keys)
    }
    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.kv_ops.push(("set", key.to_string()));
        self.events.push(Event::KvWrite(key.to_string()));
        self.inner.kv_set(key, value)
    }
    fn kv_set_many(&mut self, entries: &[(&str, &[u8])]) -> Result<(), KvError> {
        let keys: Vec<&str> = entries.iter().map(|(k, _)| *k).collect();
        self.kv_ops.push(("set_many", keys.join(",")));
        for key in keys {
            self.events.push(Event::KvWrite(key.to_string()));
        }
        self.inner.kv_set_many(entries)
    }
    fn kv_delete(&mut self, key: &str) -> Result<(), KvError> {
        self.kv_ops.push(("delete", key.to_string()));
        self.events.push(Event::KvWrite(key.to_string()));
        self.inner.kv_delete(key)
    }
    fn kv_delete_many(&mut self, keys: &[&str]) -> Result<(), KvError> {
        self.kv_ops.push(("delete_many", keys.join(",")));
        for key in keys {
            self.events.push(Event::KvWrite(key.to_string()));
        }
        self.inner.kv_delete_many(keys)
    }
    fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.kv_ops.push(("increment", key.to_string()));
        if delta != 0 {
            self.events.push(Event::KvWrite(key.to_string()));
        }
        self.inner.kv_increment(key, delta)
    }
    fn kv_cas(&mut self, key: &str, expected: &[u8], new: &[u8]) -> Result<CasOutcome, KvError> {
        self.kv_ops.push(("cas", key.to_string()));
        let out = self.inner.kv_cas(key, expected, new)?;
        if out == CasOutcome::Swapped {
            self.events.push(Event::KvWrite(key.to_string()));
        }
        Ok(out)
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.inner.sleep_ms(ms)
    }
    fn log(&mut self, level: LogLevel, message: &str) {
        self.inner.log(level, message)
    }
}

/// A [`FakeHost`] with every variable set and its routes wired to the models; QuickBooks
/// holds [`BOOTSTRAP_RT`] as a valid refresh token.
pub fn wired_host() -> (FakeHost, Rc<RefCell<Bc>>, Rc<RefCell<Qbo>>) {
    let mut host = FakeHost::new(t0());
    for (k, v) in [
        ("bigcommerce_store_hash", STORE_HASH),
        ("bigcommerce_access_token", BC_TOKEN),
        ("bigcommerce_api_base", BC_BASE),
        ("bigcommerce_webhook_secret", WEBHOOK_SECRET),
        ("qbo_client_id", CLIENT_ID),
        ("qbo_client_secret", CLIENT_SECRET),
        ("qbo_api_base", QBO_BASE),
        ("qbo_oauth_base", OAUTH_BASE),
        ("qbo_realm_id", REALM),
        ("qbo_refresh_token", BOOTSTRAP_RT),
        ("admin_token", ADMIN_TOKEN),
        ("retry_base_seconds", "10"),
        ("max_attempts", "5"),
        // Set, so these tests read no store profile (`ledger_job.rs` covers that read).
        ("store_timezone", "America/Chicago"),
    ] {
        host.set_config(k, v);
    }
    host.set_config(
        "encryption_key",
        &base64::engine::general_purpose::STANDARD.encode(KEY_BYTES),
    );
    let bc = Rc::new(RefCell::new(Bc::default()));
    let qbo = Rc::new(RefCell::new(Qbo::default()));
    qbo.borrow_mut()
        .valid_refresh
        .insert(BOOTSTRAP_RT.to_string());
    let b = bc.clone();
    host.route(BC_BASE, move |r| b.borrow_mut().handle(r));
    let q = qbo.clone();
    host.route(QBO_BASE, move |r| q.borrow_mut().handle(r));
    let q = qbo.clone();
    host.route(OAUTH_BASE, move |r| q.borrow_mut().handle(r));
    (host, bc, qbo)
}

// ---------------------------------------------------------------------------------------------
// The world: host + models + helpers.

/// A connector on a simulated clock, talking to the models.
pub struct World {
    pub host: Recorder,
    pub bc: Rc<RefCell<Bc>>,
    pub qbo: Rc<RefCell<Qbo>>,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    /// Fully configured, QuickBooks holding [`BOOTSTRAP_RT`] as a valid refresh token.
    pub fn new() -> Self {
        let (host, bc, qbo) = wired_host();
        World {
            host: Recorder {
                inner: host,
                events: Vec::new(),
                sent_at: Vec::new(),
                kv_ops: Vec::new(),
            },
            bc,
            qbo,
        }
    }

    pub fn set_config(&mut self, name: &str, value: &str) {
        self.host.inner.set_config(name, value);
    }

    pub fn advance(&mut self, secs: i64) {
        self.host.inner.advance(Duration::seconds(secs));
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.host.inner.now
    }

    /// Puts an order in the BigCommerce model.
    pub fn put_order(&mut self, id: u64, order: Value) {
        self.bc.borrow_mut().orders.insert(id, order);
    }

    /// Changes an order in the BigCommerce model.
    pub fn edit_order(&mut self, id: u64, f: impl FnOnce(&mut Value)) {
        f(self
            .bc
            .borrow_mut()
            .orders
            .get_mut(&id)
            .expect("order exists"));
    }

    /// Sends a request through the app; runs the work it leaves, as the adapter does.
    pub fn request(&mut self, req: Request) -> HttpResponse {
        let (resp, work) = router::handle(&req, &mut self.host);
        if let Some(w) = work {
            router::run(w, &mut self.host);
        }
        resp
    }

    /// A signed-by-secret webhook delivery for an order.
    pub fn deliver(&mut self, scope: &str, order_id: u64, hash: &str) -> HttpResponse {
        self.request(webhook_request(scope, order_id, hash, WEBHOOK_SECRET))
    }

    /// `POST /admin/…` or `GET /admin/…` with the admin token.
    pub fn admin(&mut self, method: &str, path: &str) -> HttpResponse {
        self.request(Request {
            method: method.into(),
            path_and_query: path.into(),
            headers: vec![("authorization".into(), format!("Bearer {ADMIN_TOKEN}"))],
            body: Vec::new(),
        })
    }

    /// `run::retry_due`, as the scheduler runs it.
    pub fn retry_due(&mut self) -> RetryReport {
        run::retry_due(&mut self.host).expect("retry_due")
    }

    /// The order's record via `GET /admin/records/order/{id}`.
    pub fn record(&mut self, id: u64) -> SyncRecord {
        let resp = self.admin("GET", &format!("/admin/records/order/{id}"));
        assert_eq!(
            resp.status,
            200,
            "record for order {id}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        serde_json::from_slice(&resp.body).expect("a sync record")
    }

    /// The audit steps of the order's record.
    pub fn steps(&mut self, id: u64) -> Vec<String> {
        self.record(id).audit.into_iter().map(|a| a.step).collect()
    }

    /// Every request made so far, as `"METHOD url"`.
    pub fn requests(&self) -> Vec<String> {
        self.host
            .inner
            .requests
            .iter()
            .map(|r| format!("{} {}", r.method.as_str(), r.url))
            .collect()
    }

    /// When each request whose URL contains `needle` was made, in order.
    pub fn sent_times(&self, needle: &str) -> Vec<DateTime<Utc>> {
        self.host
            .sent_at
            .iter()
            .filter(|(_, url)| url.contains(needle))
            .map(|(at, _)| *at)
            .collect()
    }

    /// Forgets the request and event logs (to count what one step costs).
    pub fn clear_log(&mut self) {
        self.host.inner.requests.clear();
        self.host.events.clear();
        self.host.sent_at.clear();
        self.host.kv_ops.clear();
    }

    /// Requests matching a needle (`"POST /invoice?"`, `"bc.test"`).
    pub fn count(&self, needle: &str) -> usize {
        self.host
            .inner
            .requests
            .iter()
            .filter(|r| needle_matches(needle, r))
            .count()
    }

    /// The sealed token set in KV, opened with the test key.
    pub fn stored_tokens(&self) -> Option<Value> {
        let sealed = self.host.inner.kv.get(TOKENS_KEY)?;
        let keyring = Keyring::from_bytes(KEY_BYTES, None);
        let opened = crypto::open(&keyring, TOKENS_KEY, sealed)
            .expect("tokens are sealed under encryption_key");
        Some(serde_json::from_slice(&opened.plaintext).expect("token JSON"))
    }

    /// KV keys whose value contains `needle` in plain text.
    pub fn kv_keys_containing(&self, needle: &str) -> Vec<String> {
        self.host
            .inner
            .kv
            .iter()
            .filter(|(_, v)| v.windows(needle.len()).any(|w| w == needle.as_bytes()))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// A BigCommerce webhook delivery.
pub fn webhook_request(scope: &str, order_id: u64, hash: &str, secret: &str) -> Request {
    let body = json!({
        "producer": format!("stores/{STORE_HASH}"),
        "scope": scope,
        "store_id": "1001",
        "data": {"type": "order", "id": order_id},
        "hash": hash,
        "created_at": 1_795_100_000,
    });
    Request {
        method: "POST".into(),
        path_and_query: "/webhooks/bigcommerce".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-ml-webhook-secret".into(), secret.into()),
        ],
        body: serde_json::to_vec(&body).unwrap(),
    }
}

/// A 40-hex-digit hash, distinct per `n`.
pub fn hash(n: u32) -> String {
    format!("{n:040x}")
}

/// Other workers hold every QuickBooks slot, and keep holding them while they are alive (a
/// live holder renews its slot; here the lease simply lasts a day of the test's clock, through
/// the drainers' polling).
pub fn hold_every_slot(w: &mut World) -> Vec<ml_core::sync::store::LeaseGuard> {
    (0..ml_core::sync::limiter::SLOTS)
        .map(|i| {
            let key = format!("limit/qbo/slot/{i}");
            ml_core::sync::store::try_acquire(&mut w.host.inner, &key, 86_400_000)
                .unwrap()
                .unwrap()
        })
        .collect()
}
