//! BigCommerce responses: API errors, rate-limit headers and decoding that names the JSON
//! path that failed.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::http::HttpResponse;
use crate::models::bigcommerce::entities::{
    CatalogProduct, Customer, Order, OrderProduct, OrderTax, Refund, Store,
};

/// Why a BigCommerce response could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BcError {
    /// The body is not the JSON we expected; `path` says where.
    #[error(
        "BigCommerce sent a response we could not read at `{path}`: {message}. \
         This is a connector bug or an API change: report it with the order id"
    )]
    Decode { path: String, message: String },
    /// BigCommerce answered with an error status (boxed: it carries headers and details).
    #[error("{0}")]
    Api(Box<BcApiError>),
}

impl From<BcApiError> for BcError {
    fn from(e: BcApiError) -> Self {
        BcError::Api(Box::new(e))
    }
}

/// One error from BigCommerce, from either the v2 array shape or the v3 object shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("BigCommerce answered HTTP {status}: {message}{}", advice(*status))]
pub struct BcApiError {
    pub status: u16,
    pub message: String,
    /// Field-level reasons (v3 `errors`, v2 `details`), as `(field, reason)`.
    pub details: Vec<(String, String)>,
    pub rate_limit: RateLimit,
}

fn advice(status: u16) -> &'static str {
    match status {
        401 => " (check bigcommerce_access_token)",
        403 => " (the API account lacks a scope: grant orders, customers and products read access)",
        404 => " (the resource does not exist or was deleted)",
        429 => " (rate limited; the sync will retry after the window resets)",
        500..=599 => " (BigCommerce is having trouble; the sync will retry)",
        _ => "",
    }
}

impl BcApiError {
    /// Whether trying again later can help (429, 5xx).
    pub fn is_retryable(&self) -> bool {
        self.status == 429 || self.status >= 500
    }
}

/// Rate-limit headers of a BigCommerce response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// `X-Rate-Limit-Time-Reset-Ms`: milliseconds until the window resets.
    pub reset_ms: Option<u64>,
    /// `X-Rate-Limit-Requests-Left`.
    pub requests_left: Option<u64>,
    /// `X-Rate-Limit-Requests-Quota`.
    pub quota: Option<u64>,
    /// `X-Rate-Limit-Time-Window-Ms`.
    pub window_ms: Option<u64>,
    /// `X-Retry-After` (seconds), sent on some responses.
    pub retry_after_secs: Option<u64>,
}

impl RateLimit {
    /// Reads the headers (case-insensitively); absent or garbled headers are `None`.
    pub fn from_response(resp: &HttpResponse) -> Self {
        let n = |name: &str| resp.header(name).and_then(|v| v.trim().parse::<u64>().ok());
        RateLimit {
            reset_ms: n("X-Rate-Limit-Time-Reset-Ms"),
            requests_left: n("X-Rate-Limit-Requests-Left"),
            quota: n("X-Rate-Limit-Requests-Quota"),
            window_ms: n("X-Rate-Limit-Time-Window-Ms"),
            retry_after_secs: n("X-Retry-After").or_else(|| n("Retry-After")),
        }
    }

    /// How long to wait before the next call, in milliseconds: the reset time when the quota
    /// is spent (or a retry-after was given), else nothing.
    pub fn wait_ms(&self) -> Option<u64> {
        if let Some(s) = self.retry_after_secs {
            return Some(s.saturating_mul(1000));
        }
        match self.requests_left {
            Some(0) => self.reset_ms,
            _ => None,
        }
    }
}

/// Turns an error response (v2 array or v3 object, or anything else) into a [`BcApiError`].
pub fn parse_api_error(resp: &HttpResponse) -> BcApiError {
    let rate_limit = RateLimit::from_response(resp);
    let mut message = String::new();
    let mut details = Vec::new();
    let value: Option<serde_json::Value> = serde_json::from_slice(&resp.body).ok();
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match &value {
        Some(serde_json::Value::Array(items)) => {
            let msgs: Vec<String> = items
                .iter()
                .filter_map(|i| i.get("message").map(text))
                .collect();
            message = msgs.join("; ");
            for i in items {
                if let Some(serde_json::Value::Object(d)) = i.get("details") {
                    details.extend(d.iter().map(|(k, v)| (k.clone(), text(v))));
                }
            }
        }
        Some(serde_json::Value::Object(o)) => {
            message = o
                .get("title")
                .or_else(|| o.get("message"))
                .map(text)
                .unwrap_or_default();
            if let Some(serde_json::Value::Object(e)) = o.get("errors") {
                details.extend(e.iter().map(|(k, v)| (k.clone(), text(v))));
            }
        }
        _ => {}
    }
    if message.is_empty() {
        let body = String::from_utf8_lossy(&resp.body);
        message = body.chars().take(200).collect::<String>();
        if message.trim().is_empty() {
            message = "no error message".into();
        }
    }
    if !details.is_empty() {
        let d: Vec<String> = details.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        message = format!("{message} ({})", d.join(", "));
    }
    BcApiError {
        status: resp.status,
        message,
        details,
        rate_limit,
    }
}

/// Decodes a JSON body, naming the path of the first problem.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, BcError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| BcError::Decode {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// Checks the status, then decodes the body.
pub fn parse_response<T: DeserializeOwned>(resp: &HttpResponse) -> Result<T, BcError> {
    if !resp.is_success() {
        return Err(parse_api_error(resp).into());
    }
    decode(&resp.body)
}

/// An order response.
pub fn parse_order(resp: &HttpResponse) -> Result<Order, BcError> {
    parse_response(resp)
}

/// An order-products page (a 204 or empty body is an empty page).
pub fn parse_order_products(resp: &HttpResponse) -> Result<Vec<OrderProduct>, BcError> {
    if resp.status == 204 || (resp.is_success() && resp.body.iter().all(u8::is_ascii_whitespace)) {
        return Ok(Vec::new());
    }
    parse_response(resp)
}

/// An order-taxes page (a 204 or empty body is an empty page).
pub fn parse_order_taxes(resp: &HttpResponse) -> Result<Vec<OrderTax>, BcError> {
    if resp.status == 204 || (resp.is_success() && resp.body.iter().all(u8::is_ascii_whitespace)) {
        return Ok(Vec::new());
    }
    parse_response(resp)
}

#[derive(Deserialize)]
struct DataList<T> {
    #[serde(default = "Vec::new")]
    data: Vec<T>,
}

#[derive(Deserialize)]
struct DataOne<T> {
    data: T,
}

/// A v3 `/customers` response; an unknown id gives an empty list.
pub fn parse_customers(resp: &HttpResponse) -> Result<Vec<Customer>, BcError> {
    parse_response::<DataList<Customer>>(resp).map(|l| l.data)
}

/// A v3 catalog product response (`{"data": {...}}`).
pub fn parse_catalog_product(resp: &HttpResponse) -> Result<CatalogProduct, BcError> {
    parse_response::<DataOne<CatalogProduct>>(resp).map(|d| d.data)
}

/// An order's refunds (`{"data": [...], "meta": {}}`), sorted by refund id.
pub fn parse_refunds(resp: &HttpResponse) -> Result<Vec<Refund>, BcError> {
    let mut list = parse_response::<DataList<Refund>>(resp)?.data;
    list.sort_by_key(|r| r.id);
    Ok(list)
}

/// A `/v2/store` response.
pub fn parse_store(resp: &HttpResponse) -> Result<Store, BcError> {
    parse_response(resp)
}
