//! BigCommerce webhook deliveries: authenticate, then parse into a typed event.
//!
//! BigCommerce sends light bodies (ids only), at least once and in no particular order, so
//! the parsed event only says *which* entity changed; the job re-fetches it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::{HttpResponse, header_value};

/// Largest body accepted; the route answers 413 above it (checked by the caller before parsing).
pub const MAX_BODY: usize = 64 * 1024;

/// Header carrying the shared secret registered in the hook's `headers` object.
pub const SECRET_HEADER: &str = "x-ml-webhook-secret";

/// Longest `scope` accepted (BigCommerce's longest are about 40 characters).
pub const MAX_SCOPE_LEN: usize = 128;

/// Largest accepted distance between `webhook-timestamp` and now (Standard Webhooks default).
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Authentication failed (401). The message never echoes the received or expected secret.
    #[error("{0}")]
    Unauthorized(String),
    /// The body is not a BigCommerce webhook (400). The message names the offending field.
    #[error("{0}")]
    BadRequest(String),
    /// The body exceeds [`MAX_BODY`] (413).
    #[error(
        "webhook body is {size} bytes, more than the {MAX_BODY}-byte limit: BigCommerce bodies are \
         small, so check what is posting to /webhooks/bigcommerce"
    )]
    TooLarge {
        /// Size of the rejected body in bytes.
        size: usize,
    },
}

impl WebhookError {
    /// HTTP status for the route's answer.
    pub fn status(&self) -> u16 {
        match self {
            WebhookError::Unauthorized(_) => 401,
            WebhookError::BadRequest(_) => 400,
            WebhookError::TooLarge { .. } => 413,
        }
    }

    /// Machine-readable code for the JSON error body's `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::Unauthorized(_) => "unauthorized",
            WebhookError::BadRequest(_) => "bad_request",
            WebhookError::TooLarge { .. } => "payload_too_large",
        }
    }

    /// `{"error": code, "message": text}` as the contract prescribes.
    pub fn body_json(&self) -> Value {
        serde_json::json!({ "error": self.code(), "message": self.to_string() })
    }

    /// The full HTTP answer for this error.
    pub fn to_response(&self) -> HttpResponse {
        HttpResponse::json(self.status(), &self.body_json())
    }
}

/// Refuses bodies over [`MAX_BODY`].
pub fn check_size(len: usize) -> Result<(), WebhookError> {
    if len > MAX_BODY {
        Err(WebhookError::TooLarge { size: len })
    } else {
        Ok(())
    }
}

/// Checks the shared-secret header against `expected` in constant time.
///
/// Both sides are hashed first so the comparison also hides the secret's length.
/// An empty `expected` refuses everything: an unset secret must never mean "open".
pub fn verify_shared_secret(
    headers: &[(String, String)],
    expected: &str,
) -> Result<(), WebhookError> {
    if expected.is_empty() {
        return Err(WebhookError::Unauthorized(
            "bigcommerce_webhook_secret is not set: set SPIN_VARIABLE_BIGCOMMERCE_WEBHOOK_SECRET and register \
             the hook with the same value in header x-ml-webhook-secret"
                .into(),
        ));
    }
    let Some(got) = header_value(headers, SECRET_HEADER) else {
        return Err(WebhookError::Unauthorized(
            "missing header x-ml-webhook-secret: register the BigCommerce hook with headers \
             {\"x-ml-webhook-secret\": <bigcommerce_webhook_secret>}"
                .into(),
        ));
    };
    let a = Sha256::digest(got.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    if bool::from(a.ct_eq(&b)) {
        Ok(())
    } else {
        Err(WebhookError::Unauthorized(
            "header x-ml-webhook-secret does not match bigcommerce_webhook_secret: update the hook's \
             headers (PUT /v3/hooks/{id}) or the variable so they agree"
                .into(),
        ))
    }
}

/// Verifies a Standard Webhooks signature whose HMAC key is the app's client secret bytes
/// (BigCommerce's documented setup).
pub fn verify_signature(
    headers: &[(String, String)],
    body: &[u8],
    client_secret: &str,
    now: DateTime<Utc>,
) -> Result<(), WebhookError> {
    verify_signature_with_key(headers, body, client_secret.as_bytes(), now)
}

/// Verifies a Standard Webhooks signature with a raw HMAC key.
///
/// Signed content is `"{webhook-id}.{webhook-timestamp}.{body}"`; `webhook-signature` is a
/// space-separated list of `v1,<base64>` entries (several during a key rotation), any of
/// which may match. Entries with other versions are ignored.
pub fn verify_signature_with_key(
    headers: &[(String, String)],
    body: &[u8],
    key: &[u8],
    now: DateTime<Utc>,
) -> Result<(), WebhookError> {
    let missing = |name: &str| {
        WebhookError::Unauthorized(format!(
            "missing header {name}: bigcommerce_client_secret is set, so every delivery must carry a \
             Standard Webhooks signature; clear the variable if this store's hooks are not signed"
        ))
    };
    let id = header_value(headers, "webhook-id").ok_or_else(|| missing("webhook-id"))?;
    let ts_text =
        header_value(headers, "webhook-timestamp").ok_or_else(|| missing("webhook-timestamp"))?;
    let sigs =
        header_value(headers, "webhook-signature").ok_or_else(|| missing("webhook-signature"))?;

    let ts: i64 = ts_text.trim().parse().map_err(|_| {
        WebhookError::Unauthorized(
            "header webhook-timestamp is not a Unix time in seconds: the delivery was not sent by BigCommerce".into(),
        )
    })?;
    let skew = now.timestamp().saturating_sub(ts).saturating_abs();
    if skew > SIGNATURE_TOLERANCE_SECS {
        return Err(WebhookError::Unauthorized(format!(
            "header webhook-timestamp is {skew} s away from now (limit {SIGNATURE_TOLERANCE_SECS} s): \
             a replayed delivery, or this host's clock is wrong (check NTP)"
        )));
    }

    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| {
        WebhookError::Unauthorized("bigcommerce_client_secret cannot be used as an HMAC key".into())
    })?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts_text.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();

    let mut any_v1 = false;
    let mut matched = subtle::Choice::from(0);
    for entry in sigs.split_whitespace() {
        let Some((version, b64)) = entry.split_once(',') else {
            continue;
        };
        if version != "v1" {
            continue;
        }
        any_v1 = true;
        if let Ok(sig) = BASE64.decode(b64) {
            // Accumulate instead of returning early: timing stays independent of which entry matched.
            matched |= sig.as_slice().ct_eq(expected.as_slice());
        }
    }
    if bool::from(matched) {
        Ok(())
    } else if !any_v1 {
        Err(WebhookError::Unauthorized(
            "header webhook-signature has no v1 entry: expected `v1,<base64>` (Standard Webhooks)"
                .into(),
        ))
    } else {
        Err(WebhookError::Unauthorized(
            "webhook signature does not match: check that bigcommerce_client_secret is the client secret \
             of the app that registered the hook"
                .into(),
        ))
    }
}

/// A parsed, authenticated BigCommerce webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// The registered scope, e.g. `store/order/created`.
    pub scope: String,
    /// SHA-1 of the event data; stable across redeliveries, so it is the dedupe key.
    pub hash: String,
    /// When the event was created (not delivered).
    pub created_at: Option<DateTime<Utc>>,
    /// `stores/{store_hash}`.
    pub producer: Option<String>,
    /// BigCommerce's numeric store id (sent as a string or a number).
    pub store_id: Option<String>,
    /// What changed.
    pub kind: EventKind,
}

/// The entity an event is about. Scopes the connector does not sync are [`EventKind::Ignored`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// An order changed.
    Order { id: u64, change: OrderChange },
    /// A customer changed.
    Customer { id: u64, change: CustomerChange },
    /// A customer's address changed (`store/customer/updated` does not fire for these).
    CustomerAddress { address_id: u64, customer_id: u64 },
    /// Acknowledged and dropped (products, transactions, …).
    Ignored,
}

/// Which order scope fired. All of them mean "re-sync the order"; the distinction is for audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderChange {
    Created,
    Updated,
    StatusUpdated,
    Archived,
    /// Another order scope about the order itself (refund, message, …).
    Other,
}

/// Which customer scope fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerChange {
    Created,
    Updated,
    Deleted,
}

/// The sync-record target of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `order/{id}`.
    Order(u64),
    /// `customer/{id}`.
    Customer(u64),
}

impl WebhookEvent {
    /// The record this event re-syncs, or `None` for ignored scopes.
    pub fn target(&self) -> Option<Target> {
        match self.kind {
            EventKind::Order { id, .. } => Some(Target::Order(id)),
            EventKind::Customer { id, .. } => Some(Target::Customer(id)),
            EventKind::CustomerAddress { customer_id, .. } => Some(Target::Customer(customer_id)),
            EventKind::Ignored => None,
        }
    }
}

/// A number or a string of digits: BigCommerce sends both for ids and times.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrString {
    Num(i64),
    Str(String),
}

#[derive(Deserialize)]
struct RawEvent {
    scope: String,
    data: Map<String, Value>,
    hash: String,
    #[serde(default)]
    created_at: Option<NumOrString>,
    #[serde(default)]
    producer: Option<String>,
    #[serde(default)]
    store_id: Option<NumOrString>,
}

/// Parses a delivery body. The caller has already checked the size and authenticated it.
pub fn parse(body: &[u8]) -> Result<WebhookEvent, WebhookError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        WebhookError::BadRequest(format!(
            "webhook body is not valid JSON ({e}): send the BigCommerce webhook body unchanged"
        ))
    })?;
    if !value.is_object() {
        return Err(WebhookError::BadRequest(
            "webhook body is not a BigCommerce webhook: expected a JSON object with scope, data and hash".into(),
        ));
    }
    let raw: RawEvent = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            WebhookError::BadRequest(format!(
                "webhook body is not a BigCommerce webhook ({inner}): expected scope, data and hash"
            ))
        } else {
            WebhookError::BadRequest(format!(
                "webhook field `{path}` is invalid ({inner}): expected a BigCommerce webhook with scope, data and hash"
            ))
        }
    })?;

    // The scope is stored on the record (last scope, event keys, audit): bounded, and only the
    // characters BigCommerce's scopes use (`store/order/statusUpdated`).
    if raw.scope.is_empty()
        || raw.scope.len() > MAX_SCOPE_LEN
        || !raw
            .scope
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'_')
    {
        return Err(WebhookError::BadRequest(format!(
            "webhook field `scope` must be 1-{MAX_SCOPE_LEN} characters of letters, digits, `/` and `_` \
             (BigCommerce sends e.g. store/order/created)"
        )));
    }
    if raw.hash.is_empty()
        || raw.hash.len() > 128
        || !raw
            .hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(WebhookError::BadRequest(
            "webhook field `hash` must be 1-128 letters/digits (BigCommerce sends 40 hex digits)"
                .into(),
        ));
    }
    let created_at = match raw.created_at {
        None => None,
        Some(v) => {
            let secs = num_or_string(&v).ok_or_else(|| {
                WebhookError::BadRequest("webhook field `created_at` must be Unix seconds".into())
            })?;
            Some(DateTime::from_timestamp(secs, 0).ok_or_else(|| {
                WebhookError::BadRequest("webhook field `created_at` is out of range".into())
            })?)
        }
    };
    let store_id = raw.store_id.map(|v| match v {
        NumOrString::Num(n) => n.to_string(),
        NumOrString::Str(s) => s,
    });
    let kind = classify(&raw.scope, &raw.data)?;
    Ok(WebhookEvent {
        scope: raw.scope,
        hash: raw.hash,
        created_at,
        producer: raw.producer,
        store_id,
        kind,
    })
}

fn num_or_string(v: &NumOrString) -> Option<i64> {
    match v {
        NumOrString::Num(n) => Some(*n),
        NumOrString::Str(s) => s.trim().parse().ok(),
    }
}

/// Reads a positive integer id at `data.<path>`, accepting a digit string too.
fn id_at(data: &Map<String, Value>, path: &[&str]) -> Result<u64, WebhookError> {
    let mut cur: Option<&Value> = data.get(path[0]);
    for key in &path[1..] {
        cur = cur.and_then(|v| v.get(key));
    }
    let name = format!("data.{}", path.join("."));
    let id = match cur {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        None | Some(Value::Null) => {
            return Err(WebhookError::BadRequest(format!(
                "webhook field `{name}` is missing: an order/customer event must carry the entity id"
            )));
        }
        Some(_) => None,
    };
    match id {
        Some(id) if id > 0 => Ok(id),
        _ => Err(WebhookError::BadRequest(format!(
            "webhook field `{name}` must be a positive integer id"
        ))),
    }
}

fn classify(scope: &str, data: &Map<String, Value>) -> Result<EventKind, WebhookError> {
    let data_type = data.get("type").and_then(Value::as_str);
    if let Some(rest) = scope.strip_prefix("store/order/") {
        // Transaction, metafield and similar scopes live under store/order/ but describe
        // another object (`data.type` says which); they do not change the invoice.
        // (A missing `type` is read as an order: then a bad id is a 400, not silently ignored.)
        if data_type.is_some_and(|t| t != "order") {
            return Ok(EventKind::Ignored);
        }
        let change = match rest {
            "created" => OrderChange::Created,
            "updated" => OrderChange::Updated,
            "statusUpdated" => OrderChange::StatusUpdated,
            "archived" => OrderChange::Archived,
            _ => OrderChange::Other,
        };
        return Ok(EventKind::Order {
            id: id_at(data, &["id"])?,
            change,
        });
    }
    if let Some(rest) = scope.strip_prefix("store/customer/") {
        if rest.starts_with("address/") {
            return Ok(EventKind::CustomerAddress {
                address_id: id_at(data, &["id"])?,
                customer_id: id_at(data, &["address", "customer_id"])?,
            });
        }
        let change = match rest {
            "created" => CustomerChange::Created,
            "updated" => CustomerChange::Updated,
            "deleted" => CustomerChange::Deleted,
            _ => return Ok(EventKind::Ignored),
        };
        if data_type.is_some_and(|t| t != "customer") {
            return Ok(EventKind::Ignored);
        }
        return Ok(EventKind::Customer {
            id: id_at(data, &["id"])?,
            change,
        });
    }
    Ok(EventKind::Ignored)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/bigcommerce/"
    );

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}{name}")).unwrap()
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn shared_secret_matches_case_insensitively_by_header_name() {
        let headers = h(&[("X-ML-Webhook-Secret", "s3cret")]);
        assert_eq!(verify_shared_secret(&headers, "s3cret"), Ok(()));
    }

    #[test]
    fn wrong_or_missing_shared_secret_is_unauthorized_without_echoing_it() {
        let err = verify_shared_secret(&h(&[(SECRET_HEADER, "guess-123")]), "s3cret").unwrap_err();
        assert_eq!(err.status(), 401);
        assert!(!err.to_string().contains("guess-123") && !err.to_string().contains("s3cret"));
        let err = verify_shared_secret(&h(&[("x-other", "s3cret")]), "s3cret").unwrap_err();
        assert!(
            err.to_string()
                .contains("missing header x-ml-webhook-secret")
        );
        // A prefix of the secret is not the secret.
        assert!(verify_shared_secret(&h(&[(SECRET_HEADER, "s3cre")]), "s3cret").is_err());
    }

    #[test]
    fn an_unset_expected_secret_refuses_even_an_empty_header() {
        let err = verify_shared_secret(&h(&[(SECRET_HEADER, "")]), "").unwrap_err();
        assert!(
            err.to_string()
                .contains("bigcommerce_webhook_secret is not set")
        );
    }

    // Test vector published by the Standard Webhooks project (key = base64-decoded `whsec_` secret).
    const SW_KEY_B64: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SW_TS: i64 = 1_614_265_330;
    const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn sw_headers(sig: &str) -> Vec<(String, String)> {
        h(&[
            ("webhook-id", SW_ID),
            ("webhook-timestamp", &SW_TS.to_string()),
            ("webhook-signature", sig),
        ])
    }

    #[test]
    fn standard_webhooks_published_vector_verifies() {
        let key = BASE64.decode(SW_KEY_B64).unwrap();
        assert_eq!(
            verify_signature_with_key(&sw_headers(SW_SIG), SW_BODY, &key, at(SW_TS + 10)),
            Ok(())
        );
    }

    #[test]
    fn any_matching_v1_entry_in_a_rotation_list_passes() {
        let key = BASE64.decode(SW_KEY_B64).unwrap();
        let list = format!("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= v1a,xyz {SW_SIG}");
        assert_eq!(
            verify_signature_with_key(&sw_headers(&list), SW_BODY, &key, at(SW_TS)),
            Ok(())
        );
    }

    #[test]
    fn tampered_body_or_other_key_fails_signature() {
        let key = BASE64.decode(SW_KEY_B64).unwrap();
        let tampered = br#"{"test": 2432232315}"#;
        assert!(verify_signature_with_key(&sw_headers(SW_SIG), tampered, &key, at(SW_TS)).is_err());
        let err = verify_signature(&sw_headers(SW_SIG), SW_BODY, "another-secret", at(SW_TS))
            .unwrap_err();
        assert_eq!(err.status(), 401);
        assert!(err.to_string().contains("does not match"));
    }

    #[test]
    fn timestamps_more_than_five_minutes_away_are_refused_both_ways() {
        let key = BASE64.decode(SW_KEY_B64).unwrap();
        let ok_edge =
            verify_signature_with_key(&sw_headers(SW_SIG), SW_BODY, &key, at(SW_TS + 300));
        assert_eq!(ok_edge, Ok(()));
        let late = verify_signature_with_key(&sw_headers(SW_SIG), SW_BODY, &key, at(SW_TS + 301))
            .unwrap_err();
        assert!(late.to_string().contains("301 s away"));
        assert!(
            verify_signature_with_key(&sw_headers(SW_SIG), SW_BODY, &key, at(SW_TS - 301)).is_err()
        );
    }

    #[test]
    fn missing_signature_headers_are_named() {
        let err = verify_signature(&h(&[("webhook-id", "x")]), b"{}", "k", at(0)).unwrap_err();
        assert!(err.to_string().contains("webhook-timestamp"));
    }

    #[test]
    fn client_secret_bytes_are_the_hmac_key() {
        // Signs with an independent HMAC computation over the fixture body, the way BigCommerce
        // would for an app whose client secret is "app-client-secret".
        let body = serde_json::to_vec(
            &serde_json::from_slice::<Value>(&fixture(
                "webhook_product_updated_real_with_headers.json",
            ))
            .unwrap()["body"],
        )
        .unwrap();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"app-client-secret").unwrap();
        mac.update(format!("hook-1.1786447831.{}", String::from_utf8_lossy(&body)).as_bytes());
        let sig = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
        let headers = h(&[
            ("Webhook-Id", "hook-1"),
            ("Webhook-Timestamp", "1786447831"),
            ("Webhook-Signature", &sig),
        ]);
        assert_eq!(
            verify_signature(&headers, &body, "app-client-secret", at(1_786_447_900)),
            Ok(())
        );
    }

    #[test]
    fn real_status_updated_delivery_parses_as_an_order_event() {
        let ev = parse(&fixture("webhook_order_statusUpdated_real.json")).unwrap();
        assert_eq!(ev.scope, "store/order/statusUpdated");
        assert_eq!(ev.hash, "8ff00a08f931f2fd9bc8d8b55686775469d63a43");
        assert_eq!(ev.created_at, Some(at(1_623_051_110)));
        assert_eq!(ev.producer.as_deref(), Some("stores/v6q95r5n91"));
        assert_eq!(ev.store_id.as_deref(), Some("1000941740"));
        assert_eq!(
            ev.kind,
            EventKind::Order {
                id: 423,
                change: OrderChange::StatusUpdated
            }
        );
        assert_eq!(ev.target(), Some(Target::Order(423)));
    }

    #[test]
    fn real_updated_delivery_with_producer_first_parses() {
        let ev = parse(&fixture("webhook_order_updated_real.json")).unwrap();
        assert_eq!(
            ev.kind,
            EventKind::Order {
                id: 100,
                change: OrderChange::Updated
            }
        );
    }

    #[test]
    fn product_scope_is_acknowledged_as_ignored() {
        let v: Value =
            serde_json::from_slice(&fixture("webhook_product_updated_real_with_headers.json"))
                .unwrap();
        let ev = parse(&serde_json::to_vec(&v["body"]).unwrap()).unwrap();
        assert_eq!(ev.kind, EventKind::Ignored);
        assert_eq!(ev.target(), None);
    }

    #[test]
    fn order_transaction_events_are_ignored() {
        let body =
            br#"{"scope":"store/order/transaction/created","store_id":1025646,"hash":"abc123",
            "data":{"type":"transaction","id":9,"order_id":"250","transaction_id":"x"}}"#;
        let ev = parse(body).unwrap();
        assert_eq!(ev.kind, EventKind::Ignored);
        assert_eq!(ev.store_id.as_deref(), Some("1025646"));
    }

    #[test]
    fn created_archived_and_refund_scopes_map_to_order_changes() {
        for (scope, change) in [
            ("store/order/created", OrderChange::Created),
            ("store/order/archived", OrderChange::Archived),
            ("store/order/refund/created", OrderChange::Other),
        ] {
            let body = format!(
                r#"{{"scope":"{scope}","hash":"h1","data":{{"type":"order","id":"77"}},"extra":[1]}}"#
            );
            assert_eq!(
                parse(body.as_bytes()).unwrap().kind,
                EventKind::Order { id: 77, change }
            );
        }
    }

    #[test]
    fn customer_and_address_scopes_are_parsed() {
        let ev = parse(
            br#"{"scope":"store/customer/deleted","hash":"h","data":{"type":"customer","id":42}}"#,
        )
        .unwrap();
        assert_eq!(
            ev.kind,
            EventKind::Customer {
                id: 42,
                change: CustomerChange::Deleted
            }
        );
        let ev = parse(
            br#"{"scope":"store/customer/address/updated","hash":"h",
                "data":{"type":"customer","id":7,"address":{"customer_id":42}}}"#,
        )
        .unwrap();
        assert_eq!(
            ev.kind,
            EventKind::CustomerAddress {
                address_id: 7,
                customer_id: 42
            }
        );
        assert_eq!(ev.target(), Some(Target::Customer(42)));
    }

    #[test]
    fn malformed_bodies_are_bad_requests_naming_the_field() {
        let cases: [(&[u8], &str); 7] = [
            (b"not json", "not valid JSON"),
            (b"[1,2]", "not a BigCommerce webhook"),
            (br#"{"data":{},"hash":"h"}"#, "scope"),
            (br#"{"scope":"store/order/created","hash":"h"}"#, "data"),
            (
                br#"{"scope":"store/order/created","data":{"type":"order","id":1}}"#,
                "hash",
            ),
            (br#"{"scope":5,"data":{},"hash":"h"}"#, "`scope`"),
            (
                br#"{"scope":"store/order/created","hash":"h","data":{"type":"order","id":true}}"#,
                "`data.id`",
            ),
        ];
        for (body, needle) in cases {
            let err = parse(body).unwrap_err();
            assert_eq!(err.status(), 400, "{needle}");
            assert!(err.to_string().contains(needle), "{needle}: {err}");
        }
        let err = parse(br#"{"scope":"store/order/created","hash":"h","data":[]}"#).unwrap_err();
        assert!(err.to_string().contains("`data`"), "{err}");
    }

    #[test]
    fn scopes_are_bounded_in_length_and_characters() {
        let body = |scope: &str| {
            serde_json::to_vec(&serde_json::json!({
                "scope": scope, "store_id": "1", "data": {"type": "order", "id": 1},
                "hash": "abc", "created_at": 1_700_000_000, "producer": "stores/x"
            }))
            .unwrap()
        };
        assert!(parse(&body("store/order/statusUpdated")).is_ok());
        assert!(parse(&body("store/product/inventory/order/updated")).is_ok());
        for bad in [
            format!("store/order/{}", "a".repeat(120)),
            "store/order/created\n".to_string(),
            "store/order/created ".to_string(),
            "store/order/créé".to_string(),
            "store/order/*".to_string(),
            "store/order/<script>".to_string(),
            String::new(),
        ] {
            let err = parse(&body(&bad)).unwrap_err();
            assert_eq!(err.status(), 400, "{bad:?}");
            assert!(err.to_string().contains("scope"), "{err}");
        }
    }

    #[test]
    fn error_bodies_follow_the_contract_shape() {
        let err = check_size(MAX_BODY + 1).unwrap_err();
        assert_eq!(err.status(), 413);
        let resp = err.to_response();
        let v: Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(v["error"], "payload_too_large");
        assert!(v["message"].as_str().unwrap().contains("65537 bytes"));
        assert_eq!(check_size(MAX_BODY), Ok(()));
    }
}
