//! Helpers of the order-job tests (`order_job.rs`, `order_failures.rs`, `intake_and_admin.rs`):
//! request labels, the order they start from.

use serde_json::Value;

use super::*;

pub const ORDER: u64 = 101;

/// Labels a request by what it is for, so sequences read like the job's plan.
pub fn label(req: &str) -> String {
    if req.contains("bc.test") {
        return "bc order".into();
    }
    if req.contains("oauth.test") {
        return "token".into();
    }
    if let Some(q) = req.split("query=").nth(1) {
        let stmt: String = form_urlencoded::parse(format!("q={q}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let entity = stmt.split_whitespace().nth(3).unwrap_or("?").to_string();
        return format!("query {entity}");
    }
    let path = req.split("/v3/company/").nth(1).unwrap_or(req);
    let path = path.split('?').next().unwrap_or(path);
    let entity = path.split('/').nth(1).unwrap_or("?");
    let method = req.split(' ').next().unwrap_or("?");
    match (method, path.split('/').count()) {
        ("POST", _) => format!("write {entity}"),
        (_, 3) => format!("read {entity}"),
        _ => format!("{method} {entity}"),
    }
}

pub fn labels(w: &World) -> Vec<String> {
    w.requests().iter().map(|r| label(r)).collect()
}

pub fn requestid_of(req: &str) -> String {
    req.split("requestid=")
        .nth(1)
        .unwrap_or_default()
        .split('&')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Requests matching `needle`, as `"METHOD url"`.
pub fn matching(w: &World, needle: &str) -> Vec<String> {
    let (method, rest) = needle.split_once(' ').unwrap_or(("", needle));
    w.requests()
        .into_iter()
        .filter(|r| r.starts_with(method) && r.contains(rest))
        .collect()
}

pub fn world_with_order() -> World {
    let mut w = World::new();
    w.put_order(ORDER, order_json(ORDER, &plain_shape(1)));
    w
}

/// An order for the same BigCommerce customer as `ORDER`.
pub fn same_customer_order(w: &World, id: u64) -> Value {
    let first = w.bc.borrow().orders[&ORDER].clone();
    let mut o = order_json(id, &plain_shape(1));
    o["customer_id"] = first["customer_id"].clone();
    o["billing_address"] = first["billing_address"].clone();
    o
}

pub fn accepted_invoices(w: &World) -> usize {
    w.qbo.borrow().invoice_creates_accepted
}
