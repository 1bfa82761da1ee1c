//! A strict QuickBooks Online simulator: OAuth 2.0 token endpoint, consent redirect and the
//! Accounting API v3 subset the connector uses, on one real HTTP server.
//!
//! Facts it follows are in `shared/reference/quickbooks-online.md`; field names come from the
//! Intuit XSDs (checked by `tests/quickbooks_conformance.rs`). Like the real service it rejects
//! unknown properties, stale `SyncToken`s, dangling references and arithmetic that does not add
//! up, so a connector bug fails a test here instead of in a customer's books.

mod batch;
mod currency;
mod entities;
mod exact;
mod oauth;
mod query;
pub mod schema;
mod seed;
mod store;
mod tax;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine as _;
use rand::Rng as _;
use serde_json::{Value, json};

use crate::control::{self, Control};
pub use currency::Currencies;
pub(crate) use store::{Db, Fault};
pub use tax::{CompanyProfile, US_AST_RATE_PERCENT};

/// How the simulator is set up.
#[derive(Debug, Clone)]
pub struct QboSimConfig {
    /// Company id (`realmId`).
    pub realm_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// Access-token lifetime; the real service uses 3600 s.
    pub access_token_ttl_secs: u64,
    /// When true (the default), every refresh returns a new refresh token and kills the old one.
    pub rotate_refresh_tokens: bool,
    /// More API requests than this in flight at once are answered 429 (the real limit is 10).
    pub max_concurrent_requests: usize,
    /// More API requests than this within any 60 s (a sliding window: stricter than fixed
    /// minutes) are answered 429, as QuickBooks does past 500 per company and minute. On
    /// (500) by default; each operation of a batch request counts as one request.
    pub max_requests_per_minute: Option<usize>,
    /// More batch requests than this within any 60 s are answered 429 (the real limit is 40
    /// per company and app).
    pub max_batch_requests_per_minute: Option<usize>,
    /// Most operations one batch request may carry (the real limit is 30); more is a fault.
    pub max_batch_items: usize,
    /// Reject a second invoice with the same `DocNumber` (fault 6140), as companies with
    /// duplicate-number checking do.
    pub reject_duplicate_doc_number: bool,
    /// Registered redirect URIs; empty accepts any (handy for tests on random ports).
    pub redirect_uris: Vec<String>,
    /// The company's currencies (default: USD home, multicurrency off).
    pub currencies: Currencies,
    /// The kind of company: US with automated sales tax (default) or UK with VAT.
    pub profile: CompanyProfile,
}

impl QboSimConfig {
    /// No rate or concurrency limit at all: for benchmarks that measure the connector's own
    /// overhead, not QuickBooks' limits.
    pub fn without_limits(self) -> Self {
        QboSimConfig {
            max_concurrent_requests: usize::MAX,
            max_requests_per_minute: None,
            max_batch_requests_per_minute: None,
            max_batch_items: usize::MAX,
            ..self
        }
    }
}

impl Default for QboSimConfig {
    fn default() -> Self {
        QboSimConfig {
            realm_id: "9341455130166501".into(),
            client_id: "ABsimClientId0000000000000000000000000000000000000".into(),
            client_secret: "simClientSecret000000000000000000000000".into(),
            access_token_ttl_secs: 3600,
            rotate_refresh_tokens: true,
            max_concurrent_requests: 10,
            max_requests_per_minute: Some(500),
            max_batch_requests_per_minute: Some(40),
            max_batch_items: 30,
            reject_duplicate_doc_number: true,
            redirect_uris: Vec::new(),
            currencies: Currencies::default(),
            profile: CompanyProfile::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum RefreshState {
    Active,
    Superseded,
    Revoked,
}

struct CodeGrant {
    redirect_uri: String,
    used: bool,
}

#[derive(Default)]
struct Auth {
    codes: HashMap<String, CodeGrant>,
    refresh: HashMap<String, RefreshState>,
    access: HashMap<String, Instant>,
    ttl_secs: u64,
    rotate: bool,
    token_calls: usize,
    refresh_calls: usize,
}

struct Shared {
    cfg: QboSimConfig,
    db: Mutex<Db>,
    auth: Mutex<Auth>,
    in_flight: AtomicUsize,
    /// The most API requests ever in flight at once.
    peak_in_flight: AtomicUsize,
    /// When each request of the last 60 s was accepted (a batch counts once per operation).
    minute: Mutex<VecDeque<Instant>>,
    /// When each batch request of the last 60 s was accepted.
    batch_minute: Mutex<VecDeque<Instant>>,
    /// API requests accepted (a batch counts once per operation).
    accepted: AtomicUsize,
    /// Batch requests refused with 429.
    throttled_batch: AtomicUsize,
    /// Requests refused by the per-minute limit.
    throttled: AtomicUsize,
    /// Requests refused by the concurrency limit.
    throttled_concurrent: AtomicUsize,
    control: Control,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts simulators.
#[derive(Debug)]
pub struct QboSim;

impl QboSim {
    /// Binds `127.0.0.1:0`, seeds the company and serves until the handle is dropped.
    pub async fn start(config: QboSimConfig) -> anyhow::Result<QboSimHandle> {
        let control = Control::default();
        let mut db = Db {
            next_doc_number: 1000,
            reject_duplicate_doc_number: config.reject_duplicate_doc_number,
            currencies: config.profile.currencies(&config.currencies),
            profile: config.profile,
            ..Db::default()
        };
        seed::seed(&mut db, &store::meta_time());
        currency::seed(&mut db, &store::meta_time());
        let auth = Auth {
            ttl_secs: config.access_token_ttl_secs,
            rotate: config.rotate_refresh_tokens,
            ..Auth::default()
        };
        let shared = Arc::new(Shared {
            cfg: config,
            db: Mutex::new(db),
            auth: Mutex::new(auth),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            minute: Mutex::new(VecDeque::new()),
            batch_minute: Mutex::new(VecDeque::new()),
            accepted: AtomicUsize::new(0),
            throttled_batch: AtomicUsize::new(0),
            throttled: AtomicUsize::new(0),
            throttled_concurrent: AtomicUsize::new(0),
            control: control.clone(),
        });
        let app = Router::new()
            .route("/oauth2/v1/tokens/bearer", post(oauth::token))
            .route("/connect/oauth2", get(oauth::authorize))
            .route("/v2/oauth2/tokens/revoke", post(oauth::revoke))
            .route("/v3/company/{realm}/{*rest}", any(api))
            .fallback(unknown_route)
            .with_state(shared.clone())
            .layer(axum::middleware::from_fn_with_state(
                control.clone(),
                control::fault_layer,
            ))
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                throttle,
            ))
            .merge(control::control_routes(control.clone()))
            .layer(axum::middleware::map_response(add_intuit_tid));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the QuickBooks simulator to 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(QboSimHandle {
            addr,
            shared,
            _shutdown: tx,
        })
    }
}

/// A running simulator. Dropping it stops the server.
pub struct QboSimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for QboSimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QboSimHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl QboSimHandle {
    /// `http://127.0.0.1:PORT` — use it as both `qbo_oauth_base` and `qbo_api_base`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// The consent URL (`qbo_authorize_url`).
    pub fn authorize_url(&self) -> String {
        format!("{}/connect/oauth2", self.base_url())
    }
    /// API requests refused with 429 by the per-minute limit
    /// ([`QboSimConfig::max_requests_per_minute`]).
    pub fn throttled_per_minute(&self) -> usize {
        self.shared.throttled.load(Ordering::SeqCst)
    }
    /// API requests refused with 429 by the concurrency limit
    /// ([`QboSimConfig::max_concurrent_requests`]).
    pub fn throttled_concurrent(&self) -> usize {
        self.shared.throttled_concurrent.load(Ordering::SeqCst)
    }
    /// Batch requests refused with 429 by the batch limit
    /// ([`QboSimConfig::max_batch_requests_per_minute`]) or the per-minute limit.
    pub fn throttled_batch(&self) -> usize {
        self.shared.throttled_batch.load(Ordering::SeqCst)
    }
    /// Every answer of 429 so far (concurrency, per-minute and batch limits).
    pub fn throttled_total(&self) -> usize {
        self.throttled_concurrent() + self.throttled_per_minute() + self.throttled_batch()
    }
    /// The most API requests that were ever in flight at once (refused ones included: they
    /// were in flight too).
    pub fn peak_in_flight(&self) -> usize {
        self.shared.peak_in_flight.load(Ordering::SeqCst)
    }
    /// Operations in the per-minute limit's sliding window now (what QuickBooks' minute holds).
    pub fn minute_in_use(&self) -> usize {
        let mut w = lock(&self.shared.minute);
        drop_older_than_a_minute(&mut w, Instant::now());
        w.len()
    }
    /// API requests accepted past the limits (each operation of a batch counts once).
    pub fn accepted_requests(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }
    pub fn realm_id(&self) -> &str {
        &self.shared.cfg.realm_id
    }
    pub fn client_id(&self) -> &str {
        &self.shared.cfg.client_id
    }
    pub fn client_secret(&self) -> &str {
        &self.shared.cfg.client_secret
    }
    /// Fault injection and the request log.
    pub fn control(&self) -> &Control {
        &self.shared.control
    }
    /// A valid refresh token, as if a user had just connected the app.
    pub fn issue_refresh_token(&self) -> String {
        let rt = oauth::new_refresh_token();
        lock(&self.shared.auth)
            .refresh
            .insert(rt.clone(), RefreshState::Active);
        rt
    }
    /// A valid access token (skips the token endpoint; for tests of the API itself).
    pub fn issue_access_token(&self) -> String {
        let mut auth = lock(&self.shared.auth);
        let ttl = auth.ttl_secs;
        oauth::mint_access(&mut auth, ttl)
    }
    /// The authorization code the consent page would hand to `redirect_uri`.
    pub fn authorize_code(&self, redirect_uri: &str) -> String {
        let code = oauth::new_code();
        lock(&self.shared.auth).codes.insert(
            code.clone(),
            CodeGrant {
                redirect_uri: redirect_uri.into(),
                used: false,
            },
        );
        code
    }
    /// The user disconnected the app: every refresh and access token stops working.
    pub fn revoke_refresh_tokens(&self) {
        let mut auth = lock(&self.shared.auth);
        for s in auth.refresh.values_mut() {
            *s = RefreshState::Revoked;
        }
        auth.access.clear();
    }
    /// Lifetime of access tokens minted from now on (0 = already expired when issued).
    pub fn set_access_token_ttl(&self, secs: u64) {
        lock(&self.shared.auth).ttl_secs = secs;
    }
    /// Whether refreshes rotate the refresh token.
    pub fn set_rotate_refresh_tokens(&self, rotate: bool) {
        lock(&self.shared.auth).rotate = rotate;
    }
    /// Expires every access token issued so far (deterministic stand-in for waiting an hour).
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        for exp in lock(&self.shared.auth).access.values_mut() {
            *exp = now;
        }
    }
    /// Calls to the token endpoint (any grant, failed ones too).
    pub fn token_calls(&self) -> usize {
        lock(&self.shared.auth).token_calls
    }
    /// Calls with `grant_type=refresh_token`.
    pub fn refresh_calls(&self) -> usize {
        lock(&self.shared.auth).refresh_calls
    }
    fn all(&self, entity: &str) -> Vec<Value> {
        lock(&self.shared.db)
            .list(entity)
            .iter()
            .map(exact::to_plain)
            .collect()
    }
    /// Every invoice (deleted ones are gone; voided ones have zero amounts).
    pub fn invoices(&self) -> Vec<Value> {
        self.all("Invoice")
    }
    /// How many invoices exist (cheap: nothing is copied), for polling in benchmarks.
    pub fn invoice_count(&self) -> usize {
        lock(&self.shared.db).list("Invoice").len()
    }
    /// How many records of `entity` exist (cheap: nothing is copied), for polling.
    pub fn count(&self, entity: &str) -> usize {
        lock(&self.shared.db).list(entity).len()
    }
    pub fn customers(&self) -> Vec<Value> {
        self.all("Customer")
    }
    pub fn items(&self) -> Vec<Value> {
        self.all("Item")
    }
    /// Every record of an entity (`"Vendor"`, `"Account"`, …).
    pub fn records(&self, entity: &str) -> Vec<Value> {
        self.all(entity)
    }
    /// Adds a record without validation (Vendor, Employee, inactive entries, …); fills
    /// `Id`, `SyncToken`, `MetaData`, `domain`, `sparse` and `Active`. Returns the stored record.
    pub fn insert(&self, entity: &str, record: Value) -> Value {
        let mut db = lock(&self.shared.db);
        let v = db.insert_raw(entity, record, &store::meta_time());
        exact::to_plain(&v)
    }
    /// Creates or updates a record through the same validation as `POST /{entity}`;
    /// `Err` carries the Fault body.
    pub fn post(&self, entity: &str, body: Value) -> Result<Value, Value> {
        let Some(entity) = store::canonical(entity) else {
            return Err(Fault::unsupported_operation(format!("unknown entity {entity}")).body());
        };
        let mut db = lock(&self.shared.db);
        entities::post(&mut db, entity, None, exact::normalize(body))
            .map(|v| exact::to_plain(&v[entity]))
            .map_err(|f| f.body())
    }
    /// Deletes an invoice as a user would in the QuickBooks UI.
    pub fn delete_invoice(&self, id: &str) -> bool {
        let mut db = lock(&self.shared.db);
        match db.position("Invoice", id) {
            Some(i) => {
                if let Some(list) = db.entities.get_mut("Invoice") {
                    list.remove(i);
                }
                true
            }
            None => false,
        }
    }
}

fn intuit_tid() -> String {
    let b = oauth::random_bytes(16);
    format!("1-{}-{}", hex::encode(&b[..4]), hex::encode(&b[4..]))
}

async fn add_intuit_tid(mut resp: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&intuit_tid()) {
        resp.headers_mut().insert("intuit_tid", v);
    }
    resp
}

fn json_response(status: u16, body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    resp
}

/// The lower-case fault shape the gateway uses for 401/403/429 (recorded for 401).
fn gateway_fault(status: u16, message: &str, detail: &str, code: &str, ty: &str) -> Response {
    let millis = store::company_now().timestamp_millis();
    let body = json!({
        "warnings": null, "intuitObject": null,
        "fault": {"error": [{"message": message, "detail": detail, "code": code, "element": null}], "type": ty},
        "report": null, "queryResponse": null, "batchItemResponse": [], "attachableResponse": [],
        "syncErrorResponse": null, "requestId": null, "time": millis, "status": null, "cdcresponse": []
    });
    json_response(status, body.to_string())
}

fn unauthorized(detail: &str) -> Response {
    let mut resp = gateway_fault(
        401,
        "message=AuthenticationFailed; errorCode=003200; statusCode=401",
        detail,
        "3200",
        "AUTHENTICATION",
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"Intuit\", error=\"invalid_token\""),
    );
    resp
}

/// Caps concurrent API requests (counting injected latency, which stands for slow processing).
async fn throttle(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/v3/") {
        return next.run(req).await;
    }
    struct Slot<'a>(&'a AtomicUsize);
    impl Drop for Slot<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    if !take_from_window(&s.minute, s.cfg.max_requests_per_minute, 1) {
        s.throttled.fetch_add(1, Ordering::SeqCst);
        return per_minute_429(s.cfg.max_requests_per_minute.unwrap_or_default());
    }
    let before = s.in_flight.fetch_add(1, Ordering::SeqCst);
    let _slot = Slot(&s.in_flight);
    s.peak_in_flight.fetch_max(before + 1, Ordering::SeqCst);
    if before >= s.cfg.max_concurrent_requests {
        s.throttled_concurrent.fetch_add(1, Ordering::SeqCst);
        return throttle_exceeded(&format!(
            "Too many concurrent requests for this company and app (more than {}); wait 60 s and retry",
            s.cfg.max_concurrent_requests
        ));
    }
    s.accepted.fetch_add(1, Ordering::SeqCst);
    next.run(req).await
}

/// Forgets the requests that left the sliding 60 s window by `now`.
fn drop_older_than_a_minute(window: &mut VecDeque<Instant>, now: Instant) {
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
    {
        window.pop_front();
    }
}

/// Takes `n` requests from a sliding 60 s window holding at most `limit` (`None`: no limit).
/// `false`, taking nothing, when they do not fit.
fn take_from_window(window: &Mutex<VecDeque<Instant>>, limit: Option<usize>, n: usize) -> bool {
    let Some(limit) = limit else {
        return true;
    };
    let mut w = lock(window);
    let now = Instant::now();
    drop_older_than_a_minute(&mut w, now);
    if w.len().saturating_add(n) > limit {
        return false;
    }
    w.extend(std::iter::repeat_n(now, n));
    true
}

fn throttle_exceeded(detail: &str) -> Response {
    // The gateway's lower-case shape; QuickBooks documents no Retry-After (wait 60 s).
    gateway_fault(
        429,
        "message=ThrottleExceeded; errorCode=003001; statusCode=429",
        detail,
        "3001",
        "SERVICE",
    )
}

fn per_minute_429(limit: usize) -> Response {
    throttle_exceeded(&format!(
        "Too many requests for this company and app (more than {limit} in a minute); wait 60 s and retry"
    ))
}

async fn unknown_route(method: Method, uri: axum::http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("QuickBooks simulator: no route for {method} {uri}. Known: POST /oauth2/v1/tokens/bearer, GET /connect/oauth2, /v3/company/{{realm}}/..."),
    )
        .into_response()
}

fn fault_response(f: &Fault) -> (u16, String) {
    (f.status, exact::to_text(&f.body()))
}

/// Everything under `/v3/company/{realm}/`.
async fn api(
    State(s): State<Arc<Shared>>,
    Path((realm, rest)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    {
        let auth = lock(&s.auth);
        match bearer.map(|t| (t, auth.access.get(t))) {
            None => {
                return unauthorized("Authorization header with a Bearer access token is required");
            }
            Some((_, None)) => return unauthorized("Token invalid: unknown access token"),
            Some((t, Some(exp))) if Instant::now() >= *exp => {
                return unauthorized(&format!(
                    "Token expired: {}",
                    t.chars().take(40).collect::<String>()
                ));
            }
            Some(_) => {}
        }
    }
    if realm != s.cfg.realm_id {
        // A token is bound to the company that granted it; another realm is an authorization failure.
        return gateway_fault(
            403,
            "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
            &format!(
                "The access token was not issued for company {realm}; use the realmId from the OAuth callback"
            ),
            "3100",
            "AUTHORIZATION",
        );
    }
    let params: Vec<(String, String)> =
        form_urlencoded::parse(q.as_deref().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let segments: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    if method == Method::POST && segments == ["batch"] {
        return batch::run(&s, param("requestid"), &headers, &body);
    }
    let not_supported = || {
        fault_response(&Fault::unsupported_operation(format!(
            "Operation Could not find resource for relative : /v3/company/{realm}/{rest} of full path: {method} /v3/company/{realm}/{rest} is not supported."
        )))
    };
    let (status, text) = match (method.clone(), segments.as_slice()) {
        (Method::GET, ["query"]) => match param("query") {
            None => fault_response(&Fault::required("query", "query")),
            Some(stmt) => {
                let db = lock(&s.db);
                match entities::run_query(&db, &stmt) {
                    Ok(v) => (200, exact::to_text(&v)),
                    Err(f) => fault_response(&f),
                }
            }
        },
        (Method::POST, ["query"]) => {
            let stmt = String::from_utf8_lossy(&body).to_string();
            let db = lock(&s.db);
            match entities::run_query(&db, &stmt) {
                Ok(v) => (200, exact::to_text(&v)),
                Err(f) => fault_response(&f),
            }
        }
        (Method::GET, ["preferences"]) => {
            let db = lock(&s.db);
            let p = db.list("Preferences").first().cloned().unwrap_or_default();
            (
                200,
                exact::to_text(&json!({"Preferences": p, "time": store::envelope_time()})),
            )
        }
        (Method::GET, ["companyinfo", id]) => {
            let db = lock(&s.db);
            let c = db.list("CompanyInfo").first().cloned().unwrap_or_default();
            if *id == s.cfg.realm_id || Some(*id) == c["Id"].as_str() {
                let mut c = c;
                c["Id"] = json!(id);
                (
                    200,
                    exact::to_text(&json!({"CompanyInfo": c, "time": store::envelope_time()})),
                )
            } else {
                fault_response(&Fault::not_found("Id"))
            }
        }
        (Method::GET, [entity, id]) => {
            match store::ENTITIES.iter().find(|(_, path)| path == entity) {
                Some((name, _)) if !matches!(*name, "CompanyInfo" | "Preferences") => {
                    let db = lock(&s.db);
                    match entities::read(&db, name, id) {
                        Ok(v) => (200, exact::to_text(&v)),
                        Err(f) => fault_response(&f),
                    }
                }
                _ => not_supported(),
            }
        }
        (Method::POST, [entity]) => match store::ENTITIES.iter().find(|(_, path)| path == entity) {
            Some((name, _)) => post_entity(
                &s,
                name,
                param("operation").as_deref(),
                param("requestid"),
                &headers,
                &body,
            ),
            None => not_supported(),
        },
        _ => not_supported(),
    };
    json_response(status, text)
}

fn post_entity(
    s: &Shared,
    entity: &'static str,
    op: Option<&str>,
    requestid: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> (u16, String) {
    let mut db = lock(&s.db);
    if let Some(id) = &requestid
        && let Some(original) = db.requestids.get(id)
    {
        return original.clone();
    }
    let result = (|| {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !ct.to_ascii_lowercase().contains("application/json") {
            return fault_response(&Fault {
                status: 415,
                ..Fault::unsupported_operation(format!(
                    "Content-Type {ct:?} is not supported; send application/json"
                ))
            });
        }
        let Ok(text) = std::str::from_utf8(body) else {
            return fault_response(&Fault::unsupported_operation(
                "The request body is not valid UTF-8.",
            ));
        };
        let value = match exact::parse(text) {
            Ok(v) => v,
            Err(e) => {
                return fault_response(&Fault::new(
                    "2010",
                    "Request has invalid or unsupported property",
                    format!("The request body is not valid JSON: {e}"),
                ));
            }
        };
        match entities::post(&mut db, entity, op, value) {
            Ok(v) => (200, exact::to_text(&v)),
            Err(f) => fault_response(&f),
        }
    })();
    if let Some(id) = requestid {
        db.requestids.insert(id, result.clone());
    }
    result
}
