//! `POST /v3/company/{realm}/batch`: several operations in one request.
//!
//! As the reference describes it: at most [`super::QboSimConfig::max_batch_items`] operations
//! (30), run one after the other (none can use an earlier one's result), each answered in
//! `BatchItemResponse` with its entity, its `QueryResponse` or its own `Fault` — the request
//! itself answers HTTP 200 even when items fail. A `requestid` is at most 36 characters and
//! then every `bId` at most 10; a replayed `requestid` gets the original answer back and runs
//! nothing. Limits: 40 batch requests a minute per company, and every operation counts as
//! one request toward the 500 a minute (the safe reading: the batch request itself is one of
//! them).

use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::store::{self, Fault};
use super::{Shared, entities, exact, fault_response, json_response, lock, take_from_window};
use std::sync::atomic::Ordering;

const MAX_REQUESTID: usize = 36;
const MAX_BID: usize = 10;

fn batch_fault(f: &Fault) -> Response {
    let (status, text) = fault_response(f);
    json_response(status, text)
}

/// Handles one batch request (already authenticated, realm checked, and counted once toward
/// the per-minute limit by the throttle layer).
pub(super) fn run(
    s: &Shared,
    requestid: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    if let Some(id) = &requestid
        && id.chars().count() > MAX_REQUESTID
    {
        return batch_fault(&Fault::length(
            "requestid",
            MAX_REQUESTID,
            id.chars().count(),
        ));
    }
    let replay_key = requestid.as_ref().map(|id| format!("batch/{id}"));
    if let Some(key) = &replay_key
        && let Some((status, text)) = lock(&s.db).requestids.get(key).cloned()
    {
        return json_response(status, text);
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !ct.to_ascii_lowercase().contains("application/json") {
        return batch_fault(&Fault {
            status: 415,
            ..Fault::unsupported_operation(format!(
                "Content-Type {ct:?} is not supported; send application/json"
            ))
        });
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return batch_fault(&Fault::unsupported_operation(
            "The request body is not valid UTF-8.",
        ));
    };
    let value = match exact::parse(text) {
        Ok(v) => v,
        Err(e) => {
            return batch_fault(&Fault::new(
                "2010",
                "Request has invalid or unsupported property",
                format!("The request body is not valid JSON: {e}"),
            ));
        }
    };
    let Some(items) = value.get("BatchItemRequest").and_then(Value::as_array) else {
        return batch_fault(&Fault::required("BatchItemRequest", "BatchItemRequest"));
    };
    if items.is_empty() {
        return batch_fault(&Fault::required("BatchItemRequest", "BatchItemRequest"));
    }
    let max = s.cfg.max_batch_items;
    if items.len() > max {
        return batch_fault(
            &Fault::new(
                "2010",
                "Request has invalid or unsupported property",
                format!(
                    "BatchItemRequest carries {} operations; a batch request carries at most {max}",
                    items.len()
                ),
            )
            .at("BatchItemRequest"),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for item in items {
        let Some(bid) = item.get("bId").and_then(Value::as_str) else {
            return batch_fault(&Fault::required("bId", "bId"));
        };
        if requestid.is_some() && bid.chars().count() > MAX_BID {
            return batch_fault(&Fault::length("bId", MAX_BID, bid.chars().count()));
        }
        if !seen.insert(bid.to_string()) {
            return batch_fault(
                &Fault::new(
                    "2010",
                    "Request has invalid or unsupported property",
                    format!("bId {bid} is used twice in one batch request"),
                )
                .at("bId"),
            );
        }
    }
    if !take_from_window(&s.batch_minute, s.cfg.max_batch_requests_per_minute, 1) {
        s.throttled_batch.fetch_add(1, Ordering::SeqCst);
        return super::throttle_exceeded(&format!(
            "Too many batch requests for this company and app (more than {} in a minute); wait 60 s and retry",
            s.cfg.max_batch_requests_per_minute.unwrap_or_default()
        ));
    }
    // The throttle layer counted the request once; its other operations count too.
    if !take_from_window(&s.minute, s.cfg.max_requests_per_minute, items.len() - 1) {
        s.throttled_batch.fetch_add(1, Ordering::SeqCst);
        return super::per_minute_429(s.cfg.max_requests_per_minute.unwrap_or_default());
    }
    s.accepted.fetch_add(items.len() - 1, Ordering::SeqCst);
    let mut db = lock(&s.db);
    let answers: Vec<Value> = items.iter().map(|item| run_item(&mut db, item)).collect();
    let result = (
        200,
        exact::to_text(&json!({"BatchItemResponse": answers, "time": store::envelope_time()})),
    );
    if let Some(key) = replay_key {
        db.requestids.insert(key, result.clone());
    }
    json_response(result.0, result.1)
}

fn item_fault(bid: &Value, f: &Fault) -> Value {
    json!({"bId": bid, "Fault": f.body()["Fault"].clone()})
}

/// One operation: its answer, or its fault, under its `bId`.
fn run_item(db: &mut store::Db, item: &Value) -> Value {
    let bid = item["bId"].clone();
    if let Some(stmt) = item.get("Query") {
        let Some(stmt) = stmt.as_str() else {
            return item_fault(&bid, &Fault::required("Query", "Query"));
        };
        return match entities::run_query(db, stmt) {
            Ok(v) => json!({"bId": bid, "QueryResponse": v["QueryResponse"].clone()}),
            Err(f) => item_fault(&bid, &f),
        };
    }
    let op = match item.get("operation").and_then(Value::as_str) {
        Some("create") => None,
        Some(op @ ("update" | "delete")) => Some(op),
        Some(other) => {
            return item_fault(
                &bid,
                &Fault::new(
                    "2170",
                    "Invalid Enumeration",
                    format!("operation {other:?} is not one of create, update, delete"),
                )
                .at("operation"),
            );
        }
        None => return item_fault(&bid, &Fault::required("operation", "operation")),
    };
    let Some(obj) = item.as_object() else {
        return item_fault(&bid, &Fault::required("bId", "bId"));
    };
    let payloads: Vec<(&String, &Value)> = obj
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "bId" | "operation" | "optionsData"))
        .collect();
    let [(name, payload)] = payloads.as_slice() else {
        return item_fault(
            &bid,
            &Fault::new(
                "2010",
                "Request has invalid or unsupported property",
                "a batch operation carries exactly one entity (Invoice, Customer, …)",
            ),
        );
    };
    let Some(entity) = store::canonical(name).filter(|e| *e == name.as_str()) else {
        return item_fault(
            &bid,
            &Fault::unsupported_operation(format!("unknown entity {name} in a batch operation")),
        );
    };
    match entities::post(db, entity, op, (*payload).clone()) {
        Ok(v) => json!({"bId": bid, entity: v[entity].clone()}),
        Err(f) => item_fault(&bid, &f),
    }
}
