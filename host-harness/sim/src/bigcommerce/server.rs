//! The HTTP side of the BigCommerce simulator: routing, auth, rate limiting, error shapes.

// Handlers return the finished error `Response` as their `Err`; boxing it buys nothing here.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::derive;
use super::r#gen::GeneratedOrder;
use super::hooks::{self, Hook};
use super::listing::{customers, filter_orders, pagination_meta};

pub(super) const V3_ERROR_TYPE: &str =
    "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes";

/// One stored order.
#[derive(Debug, Clone)]
pub(crate) struct OrderEntry {
    /// Full order (consignments and fees embedded, as the generator makes it) or, for a
    /// fixture, the recorded body.
    pub order: Value,
    pub products: Vec<Value>,
    /// Recorded bodies served verbatim (fixtures): the order itself and any sub-resource given.
    pub recorded: Option<Recorded>,
    /// Refunds, oldest first (`/v3/orders/{id}/payment_actions/refunds`).
    pub refunds: Vec<Value>,
}

/// Bodies served exactly as recorded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorded {
    pub order: Option<Value>,
    pub products: Option<Value>,
    pub shipping_addresses: Option<Value>,
    pub coupons: Option<Value>,
    pub taxes: Option<Value>,
}

#[derive(Debug)]
pub(crate) struct RateWindow {
    pub started: Instant,
    pub used: u32,
}

/// Everything the simulator knows; shared by the server and the handle.
#[derive(Debug)]
pub(crate) struct SimState {
    pub store_hash: String,
    pub store_timezone: String,
    pub store_currency: String,
    pub token: String,
    pub orders: BTreeMap<u64, OrderEntry>,
    pub customers: BTreeMap<u64, Value>,
    pub products: BTreeMap<u64, Value>,
    pub hooks: Vec<Hook>,
    pub next_hook_id: u64,
    pub quota: u32,
    pub window: Duration,
    pub rate: RateWindow,
    pub require_https_destination: bool,
    pub client_id: String,
    pub next_refund_id: u64,
}

pub(crate) type Shared = Arc<Mutex<SimState>>;

impl SimState {
    pub fn put_generated(&mut self, g: GeneratedOrder) {
        let id = g.order["id"].as_u64().unwrap_or(0);
        if let Some(c) = g.customer
            && let Some(cid) = c["id"].as_u64()
        {
            self.customers.insert(cid, c);
        }
        self.orders.insert(
            id,
            OrderEntry {
                order: g.order,
                products: g.products,
                recorded: None,
                refunds: Vec::new(),
            },
        );
    }
}

pub(super) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp
}

fn empty(status: StatusCode) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Api {
    V2,
    V3,
}

pub(super) fn error(api: Api, status: StatusCode, message: &str) -> Response {
    let body = match api {
        Api::V2 => json!([{"status": status.as_u16(), "message": message}]),
        Api::V3 => {
            json!({"status": status.as_u16(), "title": message, "type": V3_ERROR_TYPE, "errors": {}})
        }
    };
    json_response(status, &body)
}

fn not_found(api: Api) -> Response {
    error(
        api,
        StatusCode::NOT_FOUND,
        "The requested resource was not found.",
    )
}

/// The single entry point: every BigCommerce request goes through here.
pub(crate) async fn handle(State(state): State<Shared>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let headers = req.headers().clone();
    let body = to_bytes(req.into_body(), 1 << 20).await.unwrap_or_default();

    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let api = if segs.get(2) == Some(&"v3") {
        Api::V3
    } else {
        Api::V2
    };
    if segs.len() < 3 || segs[0] != "stores" || !matches!(segs[2], "v2" | "v3") {
        return loud(
            api,
            StatusCode::NOT_FOUND,
            &method,
            &path,
            "not a BigCommerce API path (expected /stores/{hash}/v2|v3/...)",
        );
    }
    let mut st = state.lock().unwrap();
    if segs[1] != st.store_hash {
        return error(
            api,
            StatusCode::NOT_FOUND,
            &format!("Store '{}' was not found.", segs[1]),
        );
    }
    let token_ok =
        headers.get("x-auth-token").and_then(|v| v.to_str().ok()) == Some(st.token.as_str());
    if !token_ok {
        let mut resp = match api {
            Api::V2 => json_response(
                StatusCode::UNAUTHORIZED,
                &json!([{"status": 401, "message": "You are not authorized to access this resource. Send a valid X-Auth-Token header."}]),
            ),
            Api::V3 => json_response(
                StatusCode::UNAUTHORIZED,
                &json!({"status": 401, "title": "Unauthorized: send a valid X-Auth-Token header.", "type": V3_ERROR_TYPE, "errors": {}}),
            ),
        };
        add_rate_headers(&mut st, &mut resp, false);
        return resp;
    }

    // Rate limit: a fixed window per store, like BigCommerce's 30-second quota.
    let now = Instant::now();
    if now.duration_since(st.rate.started) >= st.window {
        st.rate = RateWindow {
            started: now,
            used: 0,
        };
    }
    if st.rate.used >= st.quota {
        let mut resp = error(
            api,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests: the store's API quota for this window is used up; wait X-Rate-Limit-Time-Reset-Ms.",
        );
        add_rate_headers(&mut st, &mut resp, true);
        return resp;
    }
    st.rate.used += 1;

    let rest: Vec<&str> = segs[3..].to_vec();
    let mut resp = route(&mut st, api, &method, &path, &rest, &query, &body);
    add_rate_headers(&mut st, &mut resp, false);
    resp
}

fn add_rate_headers(st: &mut SimState, resp: &mut Response, limited: bool) {
    let window_ms = st.window.as_millis();
    let elapsed = Instant::now()
        .duration_since(st.rate.started)
        .as_millis()
        .min(window_ms);
    let reset = (window_ms - elapsed).max(1);
    let left = st.quota.saturating_sub(st.rate.used);
    let h = resp.headers_mut();
    let mut set = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    set("x-rate-limit-time-window-ms", window_ms.to_string());
    set("x-rate-limit-time-reset-ms", reset.to_string());
    set("x-rate-limit-requests-quota", st.quota.to_string());
    set("x-rate-limit-requests-left", left.to_string());
    if limited {
        set("x-retry-after", reset.div_ceil(1000).to_string());
    }
}

fn loud(api: Api, status: StatusCode, method: &Method, path: &str, why: &str) -> Response {
    let message = format!("ml-sim BigCommerce: no route for {method} {path}: {why}");
    tracing::warn!("{message}");
    match api {
        Api::V2 => json_response(
            status,
            &json!([{"status": status.as_u16(), "message": message}]),
        ),
        Api::V3 => json_response(
            status,
            &json!({"status": status.as_u16(), "title": message, "type": V3_ERROR_TYPE, "errors": {}}),
        ),
    }
}

pub(super) fn q<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

pub(super) struct Page {
    pub(super) limit: usize,
    pub(super) page: usize,
}

pub(super) fn page_params(api: Api, query: &[(String, String)]) -> Result<Page, Response> {
    let parse = |key: &str, default: usize, max: usize| -> Result<usize, Response> {
        match q(query, key) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n >= 1 && n <= max => Ok(n),
                _ => Err(error(
                    api,
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "The field '{key}' is invalid: '{v}' must be an integer between 1 and {max}."
                    ),
                )),
            },
        }
    };
    Ok(Page {
        limit: parse("limit", 50, 250)?,
        page: parse("page", 1, usize::MAX)?,
    })
}

/// A v2 collection page: 204 with an empty body when there is nothing on it.
pub(super) fn v2_collection(items: &[Value], query: &[(String, String)]) -> Response {
    let p = match page_params(Api::V2, query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let slice: Vec<Value> = items
        .iter()
        .skip((p.page - 1) * p.limit)
        .take(p.limit)
        .cloned()
        .collect();
    if slice.is_empty() {
        return empty(StatusCode::NO_CONTENT);
    }
    json_response(StatusCode::OK, &Value::Array(slice))
}

fn route(
    st: &mut SimState,
    api: Api,
    method: &Method,
    path: &str,
    rest: &[&str],
    query: &[(String, String)],
    body: &[u8],
) -> Response {
    let get = method == Method::GET;
    let wrong_method = |allowed: &str| {
        let mut r = loud(
            api,
            StatusCode::METHOD_NOT_ALLOWED,
            method,
            path,
            &format!("method not allowed here (allowed: {allowed})"),
        );
        if let Ok(v) = HeaderValue::from_str(allowed) {
            r.headers_mut().insert("allow", v);
        }
        r
    };
    match (api, rest) {
        (Api::V2, ["store"]) => {
            if !get {
                return wrong_method("GET");
            }
            let mut store = super::seed::store_json(&st.store_hash);
            store["timezone"]["name"] = json!(st.store_timezone);
            store["currency"] = json!(st.store_currency);
            json_response(StatusCode::OK, &store)
        }
        (Api::V2, ["time"]) => {
            if !get {
                return wrong_method("GET");
            }
            json_response(StatusCode::OK, &json!({"time": hooks::unix_now()}))
        }
        (Api::V2, ["orders"]) => {
            if !get {
                return wrong_method("GET");
            }
            let base = base_v2(&st.store_hash);
            let list: Vec<Value> = st
                .orders
                .iter()
                .map(|(id, e)| match &e.recorded {
                    Some(Recorded { order: Some(o), .. }) => o.clone(),
                    _ => render_order(&base, *id, e, query),
                })
                .collect();
            match filter_orders(list, query) {
                Ok(list) => v2_collection(&list, query),
                Err(r) => r,
            }
        }
        (Api::V2, ["orders", id, tail @ ..]) => {
            let Ok(id) = id.parse::<u64>() else {
                return error(
                    api,
                    StatusCode::BAD_REQUEST,
                    &format!("The order id '{id}' is not a number."),
                );
            };
            if !get {
                return wrong_method("GET");
            }
            let Some(entry) = st.orders.get(&id) else {
                return not_found(api);
            };
            let base = base_v2(&st.store_hash);
            let rec = entry.recorded.clone().unwrap_or_default();
            match tail {
                [] => match rec.order {
                    Some(o) => json_response(StatusCode::OK, &o),
                    None => json_response(StatusCode::OK, &render_order(&base, id, entry, query)),
                },
                ["products"] => match rec.products {
                    Some(p) => json_response(StatusCode::OK, &p),
                    None => v2_collection(&entry.products, query),
                },
                ["shipping_addresses" | "shippingaddresses"] => match rec.shipping_addresses {
                    Some(p) => json_response(StatusCode::OK, &p),
                    None => v2_collection(&derive::shipping_addresses(&entry.order), query),
                },
                ["coupons"] => match rec.coupons {
                    Some(p) => json_response(StatusCode::OK, &p),
                    None => v2_collection(&derive::coupons(&entry.order, &entry.products), query),
                },
                ["taxes"] => match rec.taxes {
                    Some(p) => json_response(StatusCode::OK, &p),
                    None if q(query, "details") == Some("true") => {
                        v2_collection(&derive::tax_details(&entry.order, &entry.products), query)
                    }
                    None => v2_collection(&derive::taxes(&entry.order), query),
                },
                ["fees"] => {
                    let fees = entry.order["fees"].as_array().cloned().unwrap_or_default();
                    v2_collection(&fees, query)
                }
                _ => loud(
                    api,
                    StatusCode::NOT_FOUND,
                    method,
                    path,
                    "unknown order sub-resource",
                ),
            }
        }
        (Api::V3, ["orders", id, "payment_actions", "refunds"]) => {
            if !get {
                return wrong_method("GET");
            }
            let Some(entry) = id.parse::<u64>().ok().and_then(|id| st.orders.get(&id)) else {
                return not_found(api);
            };
            json_response(StatusCode::OK, &json!({"data": entry.refunds, "meta": {}}))
        }
        (Api::V3, ["orders", "payment_actions", "refunds", id]) => {
            if !get {
                return wrong_method("GET");
            }
            let id = id.parse::<u64>().unwrap_or(0);
            match st
                .orders
                .values()
                .flat_map(|e| e.refunds.iter())
                .find(|r| r["id"].as_u64() == Some(id))
            {
                Some(r) => json_response(StatusCode::OK, &json!({"data": r, "meta": {}})),
                None => not_found(api),
            }
        }
        (Api::V3, ["customers"]) => {
            if !get {
                return wrong_method("GET");
            }
            customers(st, query)
        }
        (Api::V3, ["catalog", "products", id]) => {
            if !get {
                return wrong_method("GET");
            }
            match id.parse::<u64>().ok().and_then(|id| st.products.get(&id)) {
                Some(p) => json_response(StatusCode::OK, &json!({"data": p, "meta": {}})),
                None => not_found(api),
            }
        }
        (Api::V3, ["hooks"]) => match *method {
            Method::GET => {
                let p = match page_params(Api::V3, query) {
                    Ok(p) => p,
                    Err(r) => return r,
                };
                let active = match q(query, "is_active") {
                    None => None,
                    Some("true") => Some(true),
                    Some("false") => Some(false),
                    Some(v) => {
                        return error(
                            api,
                            StatusCode::BAD_REQUEST,
                            &format!("The filter 'is_active' must be true or false, not '{v}'."),
                        );
                    }
                };
                let all: Vec<Value> = st
                    .hooks
                    .iter()
                    .filter(|h| h.client_id == st.client_id)
                    .filter(|h| active.is_none_or(|a| h.is_active == a))
                    .filter(|h| q(query, "scope").is_none_or(|sc| h.scope == sc))
                    .filter(|h| q(query, "destination").is_none_or(|d| h.destination == d))
                    .map(|h| h.to_json(&st.store_hash))
                    .collect();
                let total = all.len();
                let data: Vec<Value> = all
                    .into_iter()
                    .skip((p.page - 1) * p.limit)
                    .take(p.limit)
                    .collect();
                let count = data.len();
                json_response(
                    StatusCode::OK,
                    &json!({"data": data, "meta": pagination_meta(total, count, p.limit, p.page)}),
                )
            }
            Method::POST => hooks::create(st, body),
            _ => wrong_method("GET, POST"),
        },
        (Api::V3, ["hooks", id]) => {
            let Some(pos) = id
                .parse::<u64>()
                .ok()
                .and_then(|id| st.hooks.iter().position(|h| h.id == id))
            else {
                return not_found(api);
            };
            match *method {
                Method::GET => json_response(
                    StatusCode::OK,
                    &json!({"data": st.hooks[pos].to_json(&st.store_hash), "meta": {}}),
                ),
                Method::PUT => hooks::update(st, pos, body),
                Method::DELETE => {
                    let h = st.hooks.remove(pos);
                    json_response(
                        StatusCode::OK,
                        &json!({"data": h.to_json(&st.store_hash), "meta": {}}),
                    )
                }
                _ => wrong_method("GET, PUT, DELETE"),
            }
        }
        _ => loud(
            api,
            StatusCode::NOT_FOUND,
            method,
            path,
            "the simulator does not implement this endpoint",
        ),
    }
}

pub(crate) fn base_v2(store_hash: &str) -> String {
    format!("https://api.bigcommerce.com/stores/{store_hash}/v2")
}

fn link(base: &str, resource: String) -> Value {
    json!({"url": format!("{base}{resource}"), "resource": resource})
}

/// Renders a stored order for `GET /v2/orders/{id}` honouring `include` the way BigCommerce does:
/// consignments are embedded only with `consignment_structure=object`.
pub(crate) fn render_order(
    base: &str,
    id: u64,
    entry: &OrderEntry,
    query: &[(String, String)],
) -> Value {
    let includes: Vec<&str> = q(query, "include")
        .map(|v| v.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let object = q(query, "consignment_structure") == Some("object");
    let mut out = entry.order.clone();
    let Some(obj) = out.as_object_mut() else {
        return out;
    };
    let wants_lines = includes.contains(&"consignments.line_items");
    let wants_consignments = wants_lines || includes.contains(&"consignments");
    if wants_consignments && object {
        if let Some(shipping) = obj
            .get_mut("consignments")
            .and_then(|c| c.get_mut("shipping"))
            .and_then(Value::as_array_mut)
        {
            for c in shipping {
                let address_id = c["id"].as_u64().unwrap_or(0);
                let rows: Vec<Value> = entry
                    .products
                    .iter()
                    .filter(|p| {
                        p["order_address_id"].as_u64() == Some(address_id)
                            || entry.order["consignments"]["shipping"]
                                .as_array()
                                .is_some_and(|a| a.len() == 1)
                    })
                    .cloned()
                    .collect();
                c["line_items"] = if wants_lines {
                    Value::Array(rows)
                } else {
                    Value::Array(
                        rows.iter()
                            .map(|p| link(base, format!("/orders/{id}/products/{}", p["id"])))
                            .collect(),
                    )
                };
            }
        }
    } else {
        obj.insert(
            "consignments".into(),
            link(base, format!("/orders/{id}/consignments")),
        );
    }
    if !includes.contains(&"fees") {
        obj.insert("fees".into(), link(base, format!("/orders/{id}/fees")));
    }
    out
}
