//! Lists read by date — `/v2/orders` (backfill, sweep) and `/v3/customers` (sweep) — and the
//! webhook subscriptions under `/v3/hooks`, with their request builders and decoders.
//!
//! Dates go out as ISO-8601 in UTC (`2026-01-01T00:00:00Z`), which both APIs accept
//! (reference §3.1, §4); `/v2/orders` answers an empty page with 204 and no body.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::{HttpRequest, HttpResponse, Method};
use crate::models::bigcommerce::entities::{CustomerId, OrderId};
use crate::models::bigcommerce::lenient;
use crate::models::bigcommerce::request::get;
use crate::models::bigcommerce::response::{BcError, decode, parse_api_error};

/// The most rows BigCommerce returns per page (`limit`), for orders, customers and hooks.
pub const PAGE_LIMIT: u32 = 250;

/// A date as the list filters take it.
pub fn filter_date(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn encode(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// Sort orders of `/v2/orders` the connector uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderSort {
    /// `id:asc` (stable under inserts: new orders get higher ids).
    IdAsc,
    /// `date_modified:asc`.
    ModifiedAsc,
}

/// One page of `/v2/orders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderListQuery {
    /// `min_id` (inclusive): keyset paging for the backfill.
    pub min_id: Option<u64>,
    pub min_date_created: Option<DateTime<Utc>>,
    pub max_date_created: Option<DateTime<Utc>>,
    pub min_date_modified: Option<DateTime<Utc>>,
    pub sort: OrderSort,
    /// 1-based.
    pub page: u32,
    pub limit: u32,
}

impl Default for OrderListQuery {
    fn default() -> Self {
        OrderListQuery {
            min_id: None,
            min_date_created: None,
            max_date_created: None,
            min_date_modified: None,
            sort: OrderSort::IdAsc,
            page: 1,
            limit: PAGE_LIMIT,
        }
    }
}

/// `GET /v2/orders?…` for one page.
pub fn orders_page(base: &str, store_hash: &str, token: &str, q: &OrderListQuery) -> HttpRequest {
    let mut params = Vec::new();
    if let Some(id) = q.min_id {
        params.push(format!("min_id={id}"));
    }
    for (name, at) in [
        ("min_date_created", q.min_date_created),
        ("max_date_created", q.max_date_created),
        ("min_date_modified", q.min_date_modified),
    ] {
        if let Some(at) = at {
            params.push(format!("{name}={}", encode(&filter_date(at))));
        }
    }
    params.push(format!(
        "sort={}",
        match q.sort {
            OrderSort::IdAsc => "id:asc",
            OrderSort::ModifiedAsc => "date_modified:asc",
        }
    ));
    params.push(format!("limit={}", q.limit.clamp(1, PAGE_LIMIT)));
    params.push(format!("page={}", q.page.max(1)));
    get(
        base,
        store_hash,
        token,
        &format!("v2/orders?{}", params.join("&")),
    )
}

/// What a listed order tells without fetching it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct OrderSummary {
    pub id: OrderId,
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub status_id: u64,
    #[serde(deserialize_with = "lenient::datetime")]
    pub date_created: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "lenient::datetime")]
    pub date_modified: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "lenient::bool")]
    pub is_deleted: bool,
}

/// A `/v2/orders` page: a 204 (or an empty body) is the empty page after the last one.
pub fn parse_order_list(resp: &HttpResponse) -> Result<Vec<OrderSummary>, BcError> {
    if !resp.is_success() {
        return Err(parse_api_error(resp).into());
    }
    if resp.status == 204 || resp.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    decode(&resp.body)
}

/// One page of `/v3/customers` modified since `min_modified`, oldest change first.
pub fn customers_modified_page(
    base: &str,
    store_hash: &str,
    token: &str,
    min_modified: DateTime<Utc>,
    page: u32,
) -> HttpRequest {
    get(
        base,
        store_hash,
        token,
        &format!(
            "v3/customers?date_modified:min={}&sort=date_modified:asc&limit={PAGE_LIMIT}&page={}",
            encode(&filter_date(min_modified)),
            page.max(1)
        ),
    )
}

/// What a listed customer tells without fetching it again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CustomerSummary {
    pub id: CustomerId,
    #[serde(deserialize_with = "lenient::datetime")]
    pub date_modified: Option<DateTime<Utc>>,
}

/// v3 `meta.pagination`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Pagination {
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub total: u64,
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub current_page: u64,
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub total_pages: u64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Meta {
    pagination: Pagination,
}

#[derive(Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    data: Vec<T>,
    #[serde(default)]
    meta: Meta,
}

/// A v3 list page: its rows and whether pages follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage<T> {
    pub rows: Vec<T>,
    pub pagination: Pagination,
}

impl<T> ListPage<T> {
    /// Whether a later page exists (by the pagination block, else by a full page).
    pub fn has_more(&self, limit: u32) -> bool {
        if self.pagination.total_pages > 0 {
            self.pagination.current_page < self.pagination.total_pages
        } else {
            self.rows.len() >= limit as usize
        }
    }
}

fn parse_page<T: for<'de> Deserialize<'de>>(resp: &HttpResponse) -> Result<ListPage<T>, BcError> {
    if !resp.is_success() {
        return Err(parse_api_error(resp).into());
    }
    let page: Page<T> = decode(&resp.body)?;
    Ok(ListPage {
        rows: page.data,
        pagination: page.meta.pagination,
    })
}

/// A `/v3/customers` page.
pub fn parse_customer_list(resp: &HttpResponse) -> Result<ListPage<CustomerSummary>, BcError> {
    parse_page(resp)
}

/// A webhook subscription (`/v3/hooks`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct HookInfo {
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub id: u64,
    #[serde(deserialize_with = "lenient::string")]
    pub scope: String,
    #[serde(deserialize_with = "lenient::string")]
    pub destination: String,
    #[serde(deserialize_with = "lenient::bool")]
    pub is_active: bool,
    /// Custom headers sent with every delivery (`null` = none).
    pub headers: Option<serde_json::Map<String, Value>>,
}

impl HookInfo {
    /// Whether deliveries to this hook carry `name: value` (header names compare case-insensitively).
    pub fn sends_header(&self, name: &str, value: &str) -> bool {
        self.headers.as_ref().is_some_and(|h| {
            h.iter()
                .any(|(k, v)| k.eq_ignore_ascii_case(name) && v.as_str() == Some(value))
        })
    }

    /// Whether events of `scope` reach this hook: the same scope, or a wildcard above it
    /// (`store/order/*` covers `store/order/created` and `store/order/refund/created`).
    pub fn covers(&self, scope: &str) -> bool {
        match self.scope.strip_suffix("/*") {
            Some(prefix) => scope
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/')),
            None => self.scope == scope,
        }
    }
}

/// `GET /v3/hooks?page=…&limit=250`: the hooks this API account created.
pub fn hooks_page(base: &str, store_hash: &str, token: &str, page: u32) -> HttpRequest {
    get(
        base,
        store_hash,
        token,
        &format!("v3/hooks?page={}&limit={PAGE_LIMIT}", page.max(1)),
    )
}

/// A `/v3/hooks` page.
pub fn parse_hook_list(resp: &HttpResponse) -> Result<ListPage<HookInfo>, BcError> {
    parse_page(resp)
}

fn with_body(mut request: HttpRequest, method: Method, body: &Value) -> HttpRequest {
    request.method = method;
    request.json_body(body)
}

/// `POST /v3/hooks`: an active hook for `scope` at `destination` sending `headers`.
pub fn create_hook(
    base: &str,
    store_hash: &str,
    token: &str,
    scope: &str,
    destination: &str,
    headers: &[(&str, &str)],
) -> HttpRequest {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
        .collect();
    with_body(
        get(base, store_hash, token, "v3/hooks"),
        Method::Post,
        &json!({"scope": scope, "destination": destination, "is_active": true, "headers": headers}),
    )
}

/// `PUT /v3/hooks/{id}`: active again, with these headers.
pub fn reactivate_hook(
    base: &str,
    store_hash: &str,
    token: &str,
    id: u64,
    headers: &[(&str, &str)],
) -> HttpRequest {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
        .collect();
    with_body(
        get(base, store_hash, token, &format!("v3/hooks/{id}")),
        Method::Put,
        &json!({"is_active": true, "headers": headers}),
    )
}

/// A single hook answer (`{"data": {...}}`).
pub fn parse_hook(resp: &HttpResponse) -> Result<HookInfo, BcError> {
    #[derive(Deserialize)]
    struct One {
        data: HookInfo,
    }
    if !resp.is_success() {
        return Err(parse_api_error(resp).into());
    }
    decode::<One>(&resp.body).map(|o| o.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn an_order_page_request_names_its_window_sort_and_page() {
        let q = OrderListQuery {
            min_id: Some(101),
            min_date_created: Some(t("2026-01-01T00:00:00Z")),
            max_date_created: Some(t("2026-02-28T23:59:59Z")),
            page: 2,
            ..OrderListQuery::default()
        };
        let r = orders_page("https://api.example", "abc", "tok", &q);
        assert_eq!(
            r.url,
            "https://api.example/stores/abc/v2/orders?min_id=101&min_date_created=2026-01-01T00%3A00%3A00Z\
             &max_date_created=2026-02-28T23%3A59%3A59Z&sort=id:asc&limit=250&page=2"
        );
        assert_eq!(r.method, Method::Get);
    }

    #[test]
    fn an_empty_order_page_is_a_204_with_no_body() {
        assert_eq!(
            parse_order_list(&HttpResponse::new(204, Vec::new())).unwrap(),
            Vec::new()
        );
        let body = br#"[{"id": 7, "status_id": "11", "date_created": "Tue, 06 Jan 2026 09:00:00 +0000",
                        "date_modified": "Tue, 06 Jan 2026 10:00:00 +0000", "is_deleted": false, "total_inc_tax": "1.0000"}]"#;
        let list = parse_order_list(&HttpResponse::new(200, body.to_vec())).unwrap();
        assert_eq!(list[0].id, OrderId(7));
        assert_eq!(list[0].status_id, 11);
        assert_eq!(list[0].date_modified, Some(t("2026-01-06T10:00:00Z")));
    }

    #[test]
    fn wildcard_hooks_cover_the_scopes_below_them_only() {
        let h = HookInfo {
            scope: "store/order/*".into(),
            ..HookInfo::default()
        };
        assert!(h.covers("store/order/created"));
        assert!(h.covers("store/order/refund/created"));
        assert!(!h.covers("store/customer/created"));
        assert!(!h.covers("store/orderx/created"));
        let exact = HookInfo {
            scope: "store/customer/updated".into(),
            headers: serde_json::from_str(r#"{"X-ML-Webhook-Secret": "s3"}"#).ok(),
            ..HookInfo::default()
        };
        assert!(exact.covers("store/customer/updated"));
        assert!(exact.sends_header("x-ml-webhook-secret", "s3"));
        assert!(!exact.sends_header("x-ml-webhook-secret", "other"));
    }
}
