//! `/v3/hooks` management and webhook delivery, the way BigCommerce does both.

// Handlers return the finished error `Response` as their `Err`; boxing it buys nothing here.
#![allow(clippy::result_large_err)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use sha2::Sha256;

use super::server::SimState;

/// A registered webhook subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Hook {
    /// Hook id.
    pub id: u64,
    /// Scope, possibly a wildcard (`store/order/*`).
    pub scope: String,
    /// Where deliveries go.
    pub destination: String,
    /// Inactive hooks receive nothing.
    pub is_active: bool,
    /// Custom headers sent verbatim on every delivery.
    pub headers: Option<serde_json::Map<String, Value>>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// The API client that created it.
    pub client_id: String,
}

impl Hook {
    /// The hook as `/v3/hooks` returns it inside `data`.
    pub fn to_json(&self, store_hash: &str) -> Value {
        json!({
            "id": self.id,
            "client_id": self.client_id,
            "store_hash": store_hash,
            "scope": self.scope,
            "destination": self.destination,
            "headers": self.headers,
            "is_active": self.is_active,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        })
    }

    /// Whether an event of `scope` goes to this hook (`store/order/*` matches `store/order/created`
    /// and deeper scopes such as `store/order/refund/created`).
    pub fn matches(&self, scope: &str) -> bool {
        scope_matches(&self.scope, scope)
    }
}

/// Wildcard scope matching as BigCommerce does it: a trailing `/*` covers everything below.
pub fn scope_matches(pattern: &str, scope: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(prefix) => scope.starts_with(prefix) && scope[prefix.len()..].starts_with('/'),
        None => pattern == scope,
    }
}

/// Current Unix time in seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn unprocessable(title: &str, field: &str, reason: &str) -> Response {
    let body = json!({"status": 422, "title": title, "type": "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes",
        "errors": {field: reason}});
    let mut r = Response::new(axum::body::Body::from(body.to_string()));
    *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    r.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/json"),
    );
    r
}

fn ok(status: StatusCode, body: &Value) -> Response {
    let mut r = Response::new(axum::body::Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/json"),
    );
    r
}

#[derive(Deserialize)]
struct HookBody {
    scope: Option<Value>,
    destination: Option<Value>,
    is_active: Option<Value>,
    headers: Option<Value>,
}

fn parse_body(body: &[u8]) -> Result<HookBody, Response> {
    serde_json::from_slice::<HookBody>(body).map_err(|e| {
        unprocessable(&format!("The request body is not a JSON hook object: {e}. Send {{\"scope\", \"destination\", \"is_active\", \"headers\"}}."), "body", "invalid JSON")
    })
}

fn validate_scope(v: &Value) -> Result<String, Response> {
    let s = v.as_str().unwrap_or("");
    let valid = s.starts_with("store/")
        && s.split('/').count() >= 3
        && !s.contains(' ')
        && !s.ends_with('/');
    if valid {
        Ok(s.to_string())
    } else {
        Err(unprocessable(
            &format!(
                "Invalid scope '{s}': use a BigCommerce webhook scope such as 'store/order/created' or 'store/order/*'."
            ),
            "scope",
            "invalid scope",
        ))
    }
}

fn validate_destination(v: &Value, require_https: bool) -> Result<String, Response> {
    let s = v.as_str().unwrap_or("");
    let parsed = url::Url::parse(s)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    let Some(u) = parsed else {
        return Err(unprocessable(
            &format!("Invalid destination '{s}': it must be an absolute https URL."),
            "destination",
            "invalid url",
        ));
    };
    if require_https && (u.scheme() != "https" || u.port_or_known_default() != Some(443)) {
        return Err(unprocessable(
            &format!("Invalid destination '{s}': BigCommerce only delivers to https on port 443."),
            "destination",
            "must be https on port 443",
        ));
    }
    Ok(s.to_string())
}

fn validate_headers(v: Option<&Value>) -> Result<Option<serde_json::Map<String, Value>>, Response> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) if m.values().all(Value::is_string) => Ok(Some(m.clone())),
        Some(_) => Err(unprocessable(
            "Invalid headers: must be an object of string header names to string values.",
            "headers",
            "must be an object of strings",
        )),
    }
}

/// `POST /v3/hooks`.
pub(crate) fn create(st: &mut SimState, body: &[u8]) -> Response {
    let b = match parse_body(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(scope) = b.scope.as_ref() else {
        return unprocessable("The field 'scope' is required.", "scope", "required");
    };
    let Some(destination) = b.destination.as_ref() else {
        return unprocessable(
            "The field 'destination' is required.",
            "destination",
            "required",
        );
    };
    let scope = match validate_scope(scope) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let destination = match validate_destination(destination, st.require_https_destination) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let headers = match validate_headers(b.headers.as_ref()) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let is_active = match b.is_active {
        None => true,
        Some(Value::Bool(x)) => x,
        Some(_) => {
            return unprocessable(
                "The field 'is_active' must be a boolean.",
                "is_active",
                "must be boolean",
            );
        }
    };
    let same_scope = st
        .hooks
        .iter()
        .filter(|h| h.scope == scope && h.client_id == st.client_id)
        .count();
    if st
        .hooks
        .iter()
        .any(|h| h.scope == scope && h.destination == destination && h.client_id == st.client_id)
    {
        return unprocessable(
            &format!(
                "A hook for scope '{scope}' and destination '{destination}' already exists; update it with PUT /v3/hooks/{{id}} instead."
            ),
            "destination",
            "duplicate",
        );
    }
    if same_scope >= 10 {
        return unprocessable(
            &format!("Too many hooks for scope '{scope}': the limit is 10 per store and client."),
            "scope",
            "limit reached",
        );
    }
    let now = unix_now();
    let hook = Hook {
        id: st.next_hook_id,
        scope,
        destination,
        is_active,
        headers,
        created_at: now,
        updated_at: now,
        client_id: st.client_id.clone(),
    };
    st.next_hook_id += 1;
    let body = json!({"data": hook.to_json(&st.store_hash), "meta": {}});
    st.hooks.push(hook);
    ok(StatusCode::OK, &body)
}

/// `PUT /v3/hooks/{id}`.
pub(crate) fn update(st: &mut SimState, pos: usize, body: &[u8]) -> Response {
    let b = match parse_body(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut hook = st.hooks[pos].clone();
    if let Some(s) = b.scope.as_ref() {
        match validate_scope(s) {
            Ok(s) => hook.scope = s,
            Err(r) => return r,
        }
    }
    if let Some(d) = b.destination.as_ref() {
        match validate_destination(d, st.require_https_destination) {
            Ok(d) => hook.destination = d,
            Err(r) => return r,
        }
    }
    if b.headers.is_some() {
        match validate_headers(b.headers.as_ref()) {
            Ok(h) => hook.headers = h,
            Err(r) => return r,
        }
    }
    match b.is_active {
        None => {}
        Some(Value::Bool(x)) => hook.is_active = x,
        Some(_) => {
            return unprocessable(
                "The field 'is_active' must be a boolean.",
                "is_active",
                "must be boolean",
            );
        }
    }
    hook.updated_at = unix_now();
    let body = json!({"data": hook.to_json(&st.store_hash), "meta": {}});
    st.hooks[pos] = hook;
    ok(StatusCode::OK, &body)
}

/// What happened to one hook's delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookDelivery {
    /// The hook delivered to.
    pub hook_id: u64,
    /// Its destination.
    pub destination: String,
    /// Attempts made (1 = delivered first time).
    pub attempts: u32,
    /// HTTP status of the last attempt (None = timed out or connection failed).
    pub final_status: Option<u16>,
    /// The last attempt's transport error, if any.
    pub last_error: Option<String>,
    /// True when an attempt got a 2xx.
    pub delivered: bool,
}

/// The outcome of [`super::BcSimHandle::deliver`]: one entry per matching active hook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DeliveryReport {
    /// The exact body sent.
    pub body: String,
    /// `webhook-id` (the body's `hash`).
    pub webhook_id: String,
    /// One entry per hook the event matched.
    pub hooks: Vec<HookDelivery>,
}

impl DeliveryReport {
    /// True when every matching hook got a 2xx (and at least one hook matched).
    pub fn all_delivered(&self) -> bool {
        !self.hooks.is_empty() && self.hooks.iter().all(|h| h.delivered)
    }

    /// Total attempts over all hooks.
    pub fn attempts(&self) -> u32 {
        self.hooks.iter().map(|h| h.attempts).sum()
    }
}

/// SHA-1 hex of the event data, as BigCommerce's `hash` (stable for the same event).
pub fn event_hash(data: &Value) -> String {
    hex::encode(Sha1::digest(data.to_string().as_bytes()))
}

/// The stub body BigCommerce POSTs for an event.
pub fn event_body(
    scope: &str,
    store_id: &str,
    store_hash: &str,
    data: &Value,
    created_at: i64,
) -> String {
    json!({
        "scope": scope,
        "store_id": store_id,
        "data": data,
        "hash": event_hash(data),
        "created_at": created_at,
        "producer": format!("stores/{store_hash}"),
    })
    .to_string()
}

/// `v1,<base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}"))>` (Standard Webhooks).
pub fn signature(client_secret: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(client_secret)
        .expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Delivery settings.
#[derive(Debug, Clone)]
pub(crate) struct DeliverySettings {
    pub client_secret: Option<String>,
    pub retry_schedule: Vec<Duration>,
    pub timeout: Duration,
}

/// Sends `body` to one hook, retrying on non-2xx and transport errors along the schedule.
pub(crate) async fn deliver_to(
    client: &reqwest::Client,
    settings: &DeliverySettings,
    hook: &Hook,
    body: &str,
    webhook_id: &str,
) -> HookDelivery {
    let mut result = HookDelivery {
        hook_id: hook.id,
        destination: hook.destination.clone(),
        attempts: 0,
        final_status: None,
        last_error: None,
        delivered: false,
    };
    let mut delays = settings.retry_schedule.iter();
    loop {
        result.attempts += 1;
        let timestamp = unix_now();
        let mut req = client
            .post(&hook.destination)
            .timeout(settings.timeout)
            .header("content-type", "application/json")
            .header("accept-encoding", "gzip")
            .header("user-agent", "pekko-http/1.3.0")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(secret) = &settings.client_secret {
            req = req.header(
                "webhook-signature",
                signature(secret.as_bytes(), webhook_id, timestamp, body),
            );
        }
        for (k, v) in hook.headers.iter().flatten() {
            req = req.header(k.as_str(), v.as_str().unwrap_or(""));
        }
        match req.body(body.to_string()).send().await {
            Ok(resp) => {
                result.final_status = Some(resp.status().as_u16());
                result.last_error = None;
                if resp.status().is_success() {
                    result.delivered = true;
                    return result;
                }
            }
            Err(e) => {
                result.final_status = None;
                result.last_error = Some(e.to_string());
            }
        }
        match delays.next() {
            Some(d) => tokio::time::sleep(*d).await,
            None => return result,
        }
    }
}
