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
//! otherwise.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::Rc;

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use ml_core::crypto::{self, Keyring};
use ml_core::host::{CasOutcome, Host, KvError, LogLevel};
use ml_core::http::Request;
use ml_core::http::{HttpRequest, HttpResponse, Method, TransportError};
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
    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.kv_ops.push(("set", key.to_string()));
        self.events.push(Event::KvWrite(key.to_string()));
        self.inner.kv_set(key, value)
    }
    fn kv_delete(&mut self, key: &str) -> Result<(), KvError> {
        self.kv_ops.push(("delete", key.to_string()));
        self.events.push(Event::KvWrite(key.to_string()));
        self.inner.kv_delete(key)
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

// ---------------------------------------------------------------------------------------------
// BigCommerce model.

/// Orders and customers by id; anything else is a loud failure.
#[derive(Default)]
pub struct Bc {
    pub orders: BTreeMap<u64, Value>,
    pub customers: HashMap<u64, Value>,
    /// Refunds per order (`/v3/orders/{id}/payment_actions/refunds`).
    pub refunds: HashMap<u64, Vec<Value>>,
    /// The store's time zone in `/v2/store` (empty: `America/Chicago`).
    pub store_timezone: String,
    /// How often `/v2/store` was read.
    pub store_reads: usize,
    /// Tax rows per order (`/v2/orders/{id}/taxes?details=true`); none stored: an empty list.
    pub taxes: HashMap<u64, Vec<Value>>,
    /// How often an order's tax rows were read.
    pub taxes_reads: usize,
}

impl Bc {
    /// Answers one request as BigCommerce would.
    pub fn handle(&mut self, req: &HttpRequest) -> Result<HttpResponse, TransportError> {
        if req.url == format!("{BC_BASE}/stores/{STORE_HASH}/v2/store") {
            assert_eq!(req.method, Method::Get, "BigCommerce is only read");
            self.store_reads += 1;
            let zone = if self.store_timezone.is_empty() {
                "America/Chicago"
            } else {
                self.store_timezone.as_str()
            };
            return Ok(HttpResponse::json(
                200,
                &json!({"id": STORE_HASH, "name": "Test store", "currency": "USD",
                        "timezone": {"name": zone, "raw_offset": -21600}}),
            ));
        }
        let customers = format!("{BC_BASE}/stores/{STORE_HASH}/v3/customers?");
        if req.url.starts_with(&customers) {
            return Ok(self.customers(req));
        }
        let v3_orders = format!("{BC_BASE}/stores/{STORE_HASH}/v3/orders/");
        if let Some(rest) = req.url.strip_prefix(&v3_orders)
            && let Some(id) = rest.strip_suffix("/payment_actions/refunds")
        {
            assert_eq!(req.method, Method::Get, "BigCommerce is only read");
            let id: u64 = id.parse().expect("order id");
            if !self.orders.contains_key(&id) {
                return Ok(HttpResponse::json(
                    404,
                    &json!({"status": 404, "title": "Not found", "type": "about:blank"}),
                ));
            }
            let data = self.refunds.get(&id).cloned().unwrap_or_default();
            return Ok(HttpResponse::json(200, &json!({"data": data, "meta": {}})));
        }
        let prefix = format!("{BC_BASE}/stores/{STORE_HASH}/v2/orders/");
        let rest = req.url.strip_prefix(&prefix).unwrap_or_else(|| {
            panic!(
                "BigCommerce model: unexpected request {} {}",
                req.method.as_str(),
                req.url
            )
        });
        assert_eq!(req.method, Method::Get, "BigCommerce is only read");
        assert_eq!(
            header(req, "X-Auth-Token"),
            Some(BC_TOKEN),
            "X-Auth-Token must carry the configured token"
        );
        let (id, query) = rest.split_once('?').unwrap_or((rest, ""));
        if let Some(id) = id.strip_suffix("/taxes") {
            assert!(
                query.contains("details=true"),
                "tax rows read without details: {query}"
            );
            let id: u64 = id.parse().expect("order id");
            self.taxes_reads += 1;
            let rows = self.taxes.get(&id).cloned().unwrap_or_default();
            return Ok(HttpResponse::json(200, &json!(rows)));
        }
        let id: u64 = id
            .parse()
            .unwrap_or_else(|_| panic!("BigCommerce model: unexpected order path {rest}"));
        assert!(
            query.contains("consignment_structure=object"),
            "order fetched without consignments: {query}"
        );
        match self.orders.get(&id) {
            Some(order) => Ok(HttpResponse::json(200, order)),
            None => Ok(HttpResponse::json(
                404,
                &fixture("bigcommerce/spec_v2_404.json"),
            )),
        }
    }

    fn customers(&mut self, req: &HttpRequest) -> HttpResponse {
        assert_eq!(req.method, Method::Get, "BigCommerce is only read");
        assert!(
            req.url.contains("include=addresses"),
            "customers are fetched with their addresses"
        );
        let ids = query_param(&req.url, "id:in").expect("id:in");
        let data: Vec<Value> = ids
            .split(',')
            .filter_map(|i| i.parse::<u64>().ok())
            .filter_map(|i| self.customers.get(&i).cloned())
            .collect();
        HttpResponse::json(
            200,
            &json!({"data": data, "meta": {"pagination": {"total": data.len()}}}),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// QuickBooks model.

/// An injected failure.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and body (and an `intuit_tid`).
    Status(u16, Value),
    /// Answer 500 with a plain-text body.
    ServerError,
    /// The request never gets an answer.
    Timeout,
    /// QuickBooks performs the request, but the answer is lost on the way back.
    CommitThenTimeout,
}

/// What QuickBooks holds, and what it was asked.
#[derive(Default)]
pub struct Qbo {
    /// Item/Class/Account names that do not exist (every other name does).
    pub unknown_names: HashSet<String>,
    name_ids: HashMap<String, String>,
    pub customers: Vec<Value>,
    /// Vendors and employees: they share the customers' DisplayName namespace.
    pub vendors: Vec<Value>,
    pub employees: Vec<Value>,
    pub invoices: BTreeMap<String, Value>,
    /// Answers already given per `requestid`: replays return them without writing.
    replies: HashMap<String, HttpResponse>,
    /// Creates that wrote a new invoice.
    pub invoice_creates_accepted: usize,
    /// Creates answered from `replies` (a reused requestid).
    pub invoice_creates_replayed: usize,
    pub invoice_updates_accepted: usize,
    next_id: u64,
    pub valid_access: HashSet<String>,
    pub valid_refresh: HashSet<String>,
    pub refreshes: usize,
    /// One-shot faults: `(needle, fault)`, needle as in [`FakeHost::route`] (`"POST /invoice?"`).
    pub faults: VecDeque<(String, Fault)>,
    /// A fault on every matching request until cleared.
    pub permanent: Option<(String, Fault)>,
    /// Decoded query statements, in order.
    pub statements: Vec<String>,
    /// Bodies of customer writes that QuickBooks accepted.
    pub writes: Vec<Value>,
    /// A concurrent creator: just before our create of this DisplayName, it creates this customer.
    pub race: Option<(String, Value)>,
    /// The company's `Preferences` (`None`: a US company with automated sales tax).
    pub preferences: Option<Value>,
    /// The company's `CompanyInfo` (`None`: a US company).
    pub company_info: Option<Value>,
    /// When set, the model totals invoices (`TotalAmt`) as an automated-sales-tax company:
    /// an invoice without a `TxnTaxDetail.TotalTax` override gets this much tax on top.
    pub automated_tax: Option<rust_decimal::Decimal>,
    /// Reads of `Preferences` and `CompanyInfo`.
    pub company_reads: usize,
    /// Operations carried by each batch request answered, in order.
    pub batch_sizes: Vec<usize>,
    /// Batch items whose invoice has one of these DocNumbers answer this fault instead.
    pub batch_item_faults: HashMap<String, Value>,
    /// Batch items whose invoice has one of these DocNumbers are created, but left out of the
    /// answer (their outcome is unknown to the caller).
    pub batch_unanswered: HashSet<String>,
}

/// `Preferences` of a US company with automated sales tax.
pub fn us_preferences() -> Value {
    json!({"Id": "1", "TaxPrefs": {"UsingSalesTax": true, "PartnerTaxEnabled": true},
           "CurrencyPrefs": {"MultiCurrencyEnabled": false, "HomeCurrency": {"value": "USD"}}})
}

/// Totals an invoice as QuickBooks does: sales lines − discount + tax (`extra` when no override).
fn total_amt(inv: &mut Value, extra: rust_decimal::Decimal) {
    use std::str::FromStr;
    let num = |v: &Value| {
        rust_decimal::Decimal::from_str(v.to_string().trim_matches('"')).unwrap_or_default()
    };
    let mut total = rust_decimal::Decimal::ZERO;
    for l in inv["Line"].as_array().cloned().unwrap_or_default() {
        match l["DetailType"].as_str() {
            Some("SalesItemLineDetail") => total += num(&l["Amount"]),
            Some("DiscountLineDetail") => total -= num(&l["Amount"]),
            _ => {}
        }
    }
    let tax = match inv.pointer("/TxnTaxDetail/TotalTax") {
        Some(t) => num(t),
        None => extra,
    };
    inv["TxnTaxDetail"]["TotalTax"] = json!(tax.to_string());
    inv["TotalAmt"] = json!((total + tax).to_string());
}

fn needle_matches(needle: &str, req: &HttpRequest) -> bool {
    match needle.split_once(' ') {
        Some((m, rest)) if m.chars().all(|c| c.is_ascii_uppercase()) => {
            req.method.as_str() == m && req.url.contains(rest)
        }
        _ => req.url.contains(needle),
    }
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn qbo_json(status: u16, v: Value) -> HttpResponse {
    let mut r = HttpResponse::json(status, &v);
    r.headers
        .push(("intuit_tid".into(), format!("tid-{status}-test")));
    r
}

/// A QuickBooks `Fault` body.
pub fn fault_body(code: &str, message: &str, kind: &str) -> Value {
    json!({"Fault": {"Error": [{"Message": message, "Detail": format!("{message} (test)"), "code": code}], "type": kind},
           "time": "2026-11-26T07:00:00.000-08:00"})
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `SELECT * FROM E WHERE F = 'v' [AND Active IN (true, false)]` → (E, F, v, include inactive).
pub fn parse_statement(stmt: &str) -> (String, String, String, bool) {
    let words: Vec<&str> = stmt.split_whitespace().collect();
    let entity = words[3].to_string();
    if words.len() <= 5 {
        // `select * from Preferences`: no condition.
        return (entity, String::new(), String::new(), false);
    }
    let field = words[5].to_string();
    let start = stmt.find('\'').expect("quoted literal") + 1;
    let mut value = String::new();
    let mut chars = stmt[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => value.extend(chars.next()),
            '\'' => break,
            c => value.push(c),
        }
    }
    (
        entity,
        field,
        value,
        stmt.contains("Active IN (true, false)"),
    )
}

impl Qbo {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        (100 + self.next_id).to_string()
    }

    fn take_fault(&mut self, req: &HttpRequest) -> Option<Fault> {
        if let Some(pos) = self.faults.iter().position(|(n, _)| needle_matches(n, req)) {
            return self.faults.remove(pos).map(|(_, f)| f);
        }
        match &self.permanent {
            Some((n, f)) if needle_matches(n, req) => Some(f.clone()),
            _ => None,
        }
    }

    /// Answers one request as QuickBooks would (after any injected fault).
    pub fn handle(&mut self, req: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let fault = self.take_fault(req);
        match fault {
            Some(Fault::Status(status, body)) => return Ok(qbo_json(status, body)),
            Some(Fault::ServerError) => {
                let mut r = HttpResponse::new(500, "Internal Server Error");
                r.headers.push(("intuit_tid".into(), "tid-500-test".into()));
                return Ok(r);
            }
            Some(Fault::Timeout) => return Err(TransportError::Timeout),
            Some(Fault::CommitThenTimeout) => {
                let _lost = self.serve(req);
                return Err(TransportError::Timeout);
            }
            None => {}
        }
        self.serve(req)
    }

    fn serve(&mut self, req: &HttpRequest) -> Result<HttpResponse, TransportError> {
        if req.url.starts_with(OAUTH_BASE) {
            return Ok(self.token(req));
        }
        let bearer = header(req, "Authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !self.valid_access.contains(bearer) {
            let mut r = HttpResponse::json(
                401,
                &fixture("quickbooks/fault_3200_authentication_401_lowercase_shape.json"),
            );
            r.headers.push((
                "WWW-Authenticate".into(),
                "Bearer realm=\"Intuit\", error=\"invalid_token\"".into(),
            ));
            return Ok(r);
        }
        let prefix = format!("{QBO_BASE}/v3/company/{REALM}/");
        let rest = req.url.strip_prefix(&prefix).unwrap_or_else(|| {
            panic!(
                "QuickBooks model: unexpected request {} {}",
                req.method.as_str(),
                req.url
            )
        });
        let path = rest.split('?').next().unwrap_or_default();
        assert!(
            req.url.contains("minorversion=75"),
            "every call pins minorversion: {}",
            req.url
        );
        let body: Value = if req.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&req.body).unwrap()
        };
        Ok(match (req.method, path) {
            (Method::Get, "query") => {
                self.query(&query_param(&req.url, "query").expect("query parameter"))
            }
            (Method::Post, "invoice") => {
                let rid = query_param(&req.url, "requestid").expect("writes carry a requestid");
                if let Some(r) = self.replies.get(&rid) {
                    if body.get("Id").is_none() {
                        self.invoice_creates_replayed += 1;
                    }
                    return Ok(r.clone());
                }
                let r = if body.get("Id").is_some() {
                    self.update_invoice(body)
                } else {
                    self.create_invoice(body)
                };
                if r.is_success() {
                    self.replies.insert(rid, r.clone());
                }
                r
            }
            (Method::Post, "batch") => {
                let rid = query_param(&req.url, "requestid").expect("a batch carries a requestid");
                assert!(
                    rid.len() <= 36,
                    "a batch requestid is at most 36 characters: {rid}"
                );
                if let Some(r) = self.replies.get(&format!("batch/{rid}")) {
                    return Ok(r.clone());
                }
                let items = body["BatchItemRequest"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                assert!(items.len() <= 30, "a batch carries at most 30 operations");
                self.batch_sizes.push(items.len());
                let mut answers = Vec::new();
                for item in items {
                    let bid = item["bId"].clone();
                    assert!(
                        bid.as_str().unwrap().len() <= 10,
                        "bId at most 10 characters"
                    );
                    assert_eq!(item["operation"], "create");
                    let inv = item["Invoice"].clone();
                    let doc = inv["DocNumber"].as_str().unwrap_or_default().to_string();
                    if let Some(f) = self.batch_item_faults.get(&doc) {
                        answers.push(json!({"bId": bid, "Fault": f["Fault"]}));
                        continue;
                    }
                    let r = self.create_invoice(inv);
                    let v: Value = serde_json::from_slice(&r.body).unwrap();
                    if !self.batch_unanswered.contains(&doc) {
                        answers.push(json!({"bId": bid, "Invoice": v["Invoice"]}));
                    }
                }
                let r = qbo_json(
                    200,
                    json!({"BatchItemResponse": answers, "time": "2026-03-02T10:00:00Z"}),
                );
                self.replies.insert(format!("batch/{rid}"), r.clone());
                r
            }
            (Method::Get, p) if p.starts_with("invoice/") => {
                let id = &p["invoice/".len()..];
                match self.invoices.get(id) {
                    Some(inv) => qbo_json(200, json!({"Invoice": inv})),
                    None => qbo_json(
                        400,
                        fault_body("610", "Object Not Found", "ValidationFault"),
                    ),
                }
            }
            (Method::Post, "customer") => {
                let rid = query_param(&req.url, "requestid").expect("writes carry a requestid");
                if let Some(r) = self.replies.get(&rid) {
                    return Ok(r.clone());
                }
                let r = if body.get("Id").is_some() {
                    self.update_customer(body)
                } else {
                    self.create_customer(body)
                };
                if r.is_success() {
                    self.replies.insert(rid, r.clone());
                }
                r
            }
            (Method::Get, p) if p.starts_with("companyinfo/") => {
                self.company_reads += 1;
                let info = self.company_info.clone().unwrap_or_else(
                    || json!({"Id": "1", "CompanyName": "Model Co", "Country": "US"}),
                );
                qbo_json(200, json!({"CompanyInfo": info}))
            }
            (Method::Get, p) if p.starts_with("customer/") => {
                let id = &p["customer/".len()..];
                match self.customers.iter().find(|c| c["Id"] == id) {
                    Some(c) => qbo_json(200, json!({"Customer": c})),
                    None => qbo_json(
                        400,
                        fault_body("610", "Object Not Found", "ValidationFault"),
                    ),
                }
            }
            _ => panic!(
                "QuickBooks model: unexpected request {} {}",
                req.method.as_str(),
                req.url
            ),
        })
    }

    /// Whether a DisplayName is in use (by another customer, a vendor or an employee).
    fn taken(&self, name: &str, except: Option<&str>) -> bool {
        self.customers
            .iter()
            .any(|c| c["DisplayName"] == name && c["Id"].as_str() != except)
            || self
                .vendors
                .iter()
                .chain(&self.employees)
                .any(|v| v["DisplayName"] == name)
    }

    /// Adds a customer as if made in QuickBooks (an `Id`, SyncToken 0, active unless told).
    pub fn insert_customer(&mut self, mut c: Value) -> Value {
        c["Id"] = json!(self.new_id());
        c["SyncToken"] = json!("0");
        if c.get("Active").is_none() {
            c["Active"] = json!(true);
        }
        self.customers.push(c.clone());
        c
    }

    fn create_customer(&mut self, body: Value) -> HttpResponse {
        let name = body["DisplayName"].as_str().unwrap_or_default().to_string();
        if let Some((_, theirs)) = self.race.take_if(|(n, _)| *n == name) {
            self.insert_customer(theirs);
        }
        if self.taken(&name, None) {
            return qbo_json(
                400,
                fixture("quickbooks/fault_6240_duplicate_name_400.json"),
            );
        }
        self.writes.push(body.clone());
        let c = self.insert_customer(body);
        qbo_json(200, json!({"Customer": c}))
    }

    fn update_customer(&mut self, body: Value) -> HttpResponse {
        assert_eq!(body["sparse"], json!(true), "customer updates are sparse");
        let id = body["Id"].as_str().unwrap().to_string();
        if let Some(name) = body.get("DisplayName").and_then(Value::as_str)
            && self.taken(name, Some(&id))
        {
            return qbo_json(
                400,
                fixture("quickbooks/fault_6240_duplicate_name_400.json"),
            );
        }
        let Some(current) = self.customers.iter_mut().find(|c| c["Id"] == id.as_str()) else {
            return qbo_json(
                400,
                fault_body("610", "Object Not Found", "ValidationFault"),
            );
        };
        if body["SyncToken"] != current["SyncToken"] {
            return qbo_json(
                400,
                fault_body("5010", "Stale Object Error", "ValidationFault"),
            );
        }
        for (k, v) in body.as_object().unwrap() {
            if k != "sparse" && k != "SyncToken" {
                current[k] = v.clone();
            }
        }
        let next = current["SyncToken"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            + 1;
        current["SyncToken"] = json!(next.to_string());
        if let Some(extra) = self.automated_tax {
            if body.pointer("/TxnTaxDetail/TotalTax").is_none() {
                // An update without the override: QuickBooks computes its own tax again.
                if let Some(o) = current
                    .get_mut("TxnTaxDetail")
                    .and_then(Value::as_object_mut)
                {
                    o.remove("TotalTax");
                }
            }
            total_amt(current, extra);
        }
        let out = current.clone();
        self.writes.push(body);
        qbo_json(200, json!({"Customer": out}))
    }

    fn create_invoice(&mut self, mut inv: Value) -> HttpResponse {
        if let Some(extra) = self.automated_tax {
            total_amt(&mut inv, extra);
        }
        let id = self.new_id();
        inv["Id"] = json!(id);
        inv["SyncToken"] = json!("0");
        self.invoices.insert(id, inv.clone());
        self.invoice_creates_accepted += 1;
        qbo_json(200, json!({"Invoice": inv}))
    }

    fn update_invoice(&mut self, body: Value) -> HttpResponse {
        assert_eq!(
            body.get("sparse"),
            Some(&json!(true)),
            "invoice updates are sparse"
        );
        let id = body["Id"].as_str().unwrap_or_default().to_string();
        let Some(current) = self.invoices.get_mut(&id) else {
            return qbo_json(
                400,
                fault_body("610", "Object Not Found", "ValidationFault"),
            );
        };
        if body["SyncToken"] != current["SyncToken"] {
            return qbo_json(
                400,
                fault_body("5010", "Stale Object Error", "ValidationFault"),
            );
        }
        for (k, v) in body.as_object().unwrap() {
            if k != "sparse" && k != "SyncToken" {
                current[k] = v.clone();
            }
        }
        let next: u64 = current["SyncToken"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            + 1;
        current["SyncToken"] = json!(next.to_string());
        if let Some(extra) = self.automated_tax {
            if body.pointer("/TxnTaxDetail/TotalTax").is_none() {
                // An update without the override: QuickBooks computes its own tax again.
                if let Some(o) = current
                    .get_mut("TxnTaxDetail")
                    .and_then(Value::as_object_mut)
                {
                    o.remove("TotalTax");
                }
            }
            total_amt(current, extra);
        }
        let out = current.clone();
        self.invoice_updates_accepted += 1;
        qbo_json(200, json!({"Invoice": out}))
    }

    /// Someone edits the invoice in QuickBooks: its SyncToken moves on.
    pub fn edit_in_quickbooks(&mut self, id: &str) {
        let inv = self.invoices.get_mut(id).expect("invoice exists");
        let next: u64 = inv["SyncToken"].as_str().unwrap().parse::<u64>().unwrap() + 1;
        inv["SyncToken"] = json!(next.to_string());
    }

    fn query(&mut self, stmt: &str) -> HttpResponse {
        self.statements.push(stmt.to_string());
        let (entity, field, value, with_inactive) = parse_statement(stmt);
        let found: Vec<Value> = match entity.as_str() {
            "Item" | "Class" | "Account" => {
                if self.unknown_names.contains(&value) {
                    Vec::new()
                } else {
                    let n = self.name_ids.len();
                    let id = self
                        .name_ids
                        .entry(format!("{entity}/{value}"))
                        .or_insert_with(|| (10 + n).to_string())
                        .clone();
                    vec![
                        json!({"Id": id, "Name": value, "SyncToken": "0", "Active": true, "Type": "Service", "AccountType": "Income"}),
                    ]
                }
            }
            "Customer" => self
                .customers
                .iter()
                .filter(|c| with_inactive || c["Active"] != json!(false))
                .filter(|c| match field.as_str() {
                    "PrimaryEmailAddr" => {
                        c.pointer("/PrimaryEmailAddr/Address")
                            .and_then(Value::as_str)
                            == Some(&value)
                    }
                    f => c.get(f).and_then(Value::as_str) == Some(&value),
                })
                .cloned()
                .collect(),
            "Preferences" => {
                self.company_reads += 1;
                vec![self.preferences.clone().unwrap_or_else(us_preferences)]
            }
            "TaxCode" if !self.unknown_names.contains(&value) => {
                vec![json!({"Id": format!("tc-{value}"), "Name": value, "Active": true})]
            }
            "TaxCode" => Vec::new(),
            "Invoice" => self
                .invoices
                .values()
                .filter(|i| i.get(&field).and_then(Value::as_str) == Some(&value))
                .cloned()
                .collect(),
            other => panic!("QuickBooks model: query on unexpected entity {other}: {stmt}"),
        };
        if found.is_empty() {
            qbo_json(
                200,
                json!({"QueryResponse": {}, "time": "2026-11-26T07:00:00.000-08:00"}),
            )
        } else {
            let n = found.len();
            qbo_json(
                200,
                json!({"QueryResponse": {entity: found, "startPosition": 1, "maxResults": n}}),
            )
        }
    }

    fn token(&mut self, req: &HttpRequest) -> HttpResponse {
        assert!(
            req.url.ends_with("/oauth2/v1/tokens/bearer"),
            "token endpoint path: {}",
            req.url
        );
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
        assert_eq!(
            header(req, "Authorization"),
            Some(format!("Basic {basic}").as_str()),
            "client authentication"
        );
        let form: HashMap<String, String> =
            form_urlencoded::parse(&req.body).into_owned().collect();
        assert_eq!(
            form.get("grant_type").map(String::as_str),
            Some("refresh_token")
        );
        let presented = form.get("refresh_token").cloned().unwrap_or_default();
        if !self.valid_refresh.remove(&presented) {
            return HttpResponse::json(400, &fixture("quickbooks/oauth_invalid_grant_400.json"));
        }
        self.refreshes += 1;
        let access = format!("AT{:04}accessTokenValue9", self.refreshes);
        let refresh = format!("RT{:04}rotatedRefreshToken7", self.refreshes);
        self.valid_access.insert(access.clone());
        self.valid_refresh.insert(refresh.clone());
        HttpResponse::json(
            200,
            &json!({"token_type": "bearer", "access_token": access, "expires_in": 3600,
                    "refresh_token": refresh, "x_refresh_token_expires_in": 8_726_400}),
        )
    }

    /// The access tokens issued so far stop working (QuickBooks answers 401).
    pub fn expire_access_tokens(&mut self) {
        self.valid_access.clear();
    }

    /// Every refresh token is revoked: refreshes get `invalid_grant`.
    pub fn revoke_refresh_tokens(&mut self) {
        self.valid_refresh.clear();
    }

    /// The latest rotated refresh token issued.
    pub fn latest_refresh(&self) -> String {
        format!("RT{:04}rotatedRefreshToken7", self.refreshes)
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
