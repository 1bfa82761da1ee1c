//! The in-memory BigCommerce model the core tests share (see the parent module).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use ml_core::http::{HttpRequest, HttpResponse, Method, TransportError};
use serde_json::{Value, json};

use super::*;

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
