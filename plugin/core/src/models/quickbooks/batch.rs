//! The batch endpoint (`POST /v3/company/{realm}/batch`): several creates in one request.
//!
//! A batch carries at most [`MAX_BATCH_ITEMS`] operations, each under a `bId` of at most 10
//! characters, with one `requestid` of at most 36 characters for the whole request. QuickBooks
//! answers HTTP 200 even when items fail: every item comes back under its `bId` with its entity
//! or its own `Fault`. An item missing from the answer has an unknown outcome.

use std::collections::HashMap;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::request::{MINOR_VERSION, QUERY_ENCODE, base_url};
use super::response::{QboError, check_response, parse_fault_body};
use crate::http::{HttpRequest, HttpResponse, Method};

/// Most operations one batch request carries (QuickBooks' limit).
pub const MAX_BATCH_ITEMS: usize = 30;

/// One create in a batch request.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchCreate {
    /// `bId`: unique within the request, at most 10 characters.
    pub bid: String,
    /// The entity name as QuickBooks spells it (`Invoice`, `Payment`).
    pub entity: String,
    pub body: Value,
}

/// The `bId` of the `i`-th item of a batch.
pub fn batch_bid(i: usize) -> String {
    format!("b{i}")
}

/// The batch's `requestid` (36 characters at most): derived from the items' own request ids,
/// so the same items always make the same batch id.
pub fn batch_request_id(item_ids: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in item_ids {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    format!("batch-{}", &hex::encode(h.finalize())[..30])
}

/// The request body: `{"BatchItemRequest": [{"bId", "operation": "create", "<Entity>": …}]}`.
pub fn batch_body(items: &[BatchCreate]) -> Value {
    let list: Vec<Value> = items
        .iter()
        .map(|it| {
            let mut v = json!({"bId": it.bid, "operation": "create"});
            v[it.entity.as_str()] = it.body.clone();
            v
        })
        .collect();
    json!({ "BatchItemRequest": list })
}

/// `POST /v3/company/{realm}/batch?minorversion=75&requestid=…`.
pub fn batch(
    api_base: &str,
    realm: &str,
    access_token: &str,
    items: &[BatchCreate],
    request_id: &str,
) -> HttpRequest {
    let rid = percent_encoding::utf8_percent_encode(request_id, QUERY_ENCODE);
    let mut r = HttpRequest::new(
        Method::Post,
        format!(
            "{}/batch?minorversion={MINOR_VERSION}&requestid={rid}",
            base_url(api_base, realm)
        ),
    )
    .header("Authorization", format!("Bearer {access_token}"))
    .header("Accept", "application/json");
    r.body = serde_json::to_vec(&batch_body(items)).unwrap_or_default();
    r.header("Content-Type", "application/json")
}

/// What QuickBooks answered for one item.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchAnswer {
    /// The entity as QuickBooks stored it.
    Entity(Value),
    /// The item's own fault (the other items are unaffected).
    Fault(QboError),
}

/// The HTTP status a single request would have answered for an item's fault of this type: a
/// per-item fault is classified as the same fault of a single write would be.
pub fn fault_status(fault_type: Option<&str>) -> u16 {
    match fault_type.map(str::to_ascii_lowercase).as_deref() {
        Some("authenticationfault" | "authentication") => 401,
        Some("authorizationfault" | "authorization") => 403,
        Some("systemfault") => 500,
        _ => 400,
    }
}

/// Reads a batch answer: each item's entity or fault by `bId` (an item not in the map has an
/// unknown outcome). A fault of the request as a whole (or a non-2xx status) is an error.
pub fn parse_batch(
    resp: &HttpResponse,
    items: &[BatchCreate],
) -> Result<HashMap<String, BatchAnswer>, QboError> {
    check_response(resp)?;
    let v: Value = serde_json::from_slice(&resp.body).map_err(|e| QboError {
        status: resp.status,
        intuit_tid: None,
        fault_type: None,
        errors: vec![super::response::FaultError {
            code: String::new(),
            message: "unreadable batch answer".into(),
            detail: e.to_string(),
            element: None,
        }],
    })?;
    let mut out = HashMap::new();
    let answers = v
        .get("BatchItemResponse")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for a in answers {
        let Some(bid) = a.get("bId").and_then(Value::as_str) else {
            continue;
        };
        let Some(item) = items.iter().find(|i| i.bid == bid) else {
            continue;
        };
        let answer = if a.get("Fault").is_some() {
            let ty = a.pointer("/Fault/type").and_then(Value::as_str);
            let status = fault_status(ty);
            let body = serde_json::to_vec(&json!({"Fault": a["Fault"]})).unwrap_or_default();
            match parse_fault_body(status, None, &body) {
                Some(f) => BatchAnswer::Fault(f),
                None => continue,
            }
        } else if let Some(e) = a.get(item.entity.as_str()).filter(|e| e.is_object()) {
            BatchAnswer::Entity(e.clone())
        } else {
            // Neither its entity nor a fault: unknown.
            continue;
        };
        out.insert(bid.to_string(), answer);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<BatchCreate> {
        (0..n)
            .map(|i| BatchCreate {
                bid: batch_bid(i),
                entity: "Invoice".into(),
                body: json!({"DocNumber": format!("BC-{i}")}),
            })
            .collect()
    }

    #[test]
    fn a_batch_request_carries_every_create_under_its_bid_with_one_short_requestid() {
        let its = items(MAX_BATCH_ITEMS);
        let rid = batch_request_id(&["bc-1", "bc-2"]);
        assert!(rid.len() <= 36, "{rid}");
        assert_eq!(rid, batch_request_id(&["bc-1", "bc-2"]));
        assert_ne!(rid, batch_request_id(&["bc-1", "bc-3"]));
        assert!(its.iter().all(|i| i.bid.len() <= 10));
        let r = batch("https://qbo.test/", "9", "tok", &its, &rid);
        assert_eq!(
            r.url,
            format!("https://qbo.test/v3/company/9/batch?minorversion=75&requestid={rid}")
        );
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        let list = body["BatchItemRequest"].as_array().unwrap();
        assert_eq!(list.len(), 30);
        assert_eq!(list[3]["bId"], "b3");
        assert_eq!(list[3]["operation"], "create");
        assert_eq!(list[3]["Invoice"]["DocNumber"], "BC-3");
    }

    #[test]
    fn a_batch_answer_gives_each_item_its_entity_or_its_fault_and_a_missing_item_stays_unknown() {
        let its = items(3);
        let body = json!({"BatchItemResponse": [
            {"bId": "b0", "Invoice": {"Id": "11", "SyncToken": "0"}},
            {"bId": "b1", "Fault": {"type": "ValidationFault", "Error": [
                {"code": "6140", "Message": "Duplicate Document Number Error", "Detail": "BC-1"}]}},
            {"bId": "zz", "Invoice": {"Id": "99"}}
        ], "time": "2026-01-01T00:00:00Z"});
        let resp = HttpResponse::new(200, body.to_string());
        let got = parse_batch(&resp, &its).unwrap();
        assert_eq!(
            got.get("b0"),
            Some(&BatchAnswer::Entity(json!({"Id": "11", "SyncToken": "0"})))
        );
        match got.get("b1") {
            Some(BatchAnswer::Fault(f)) => {
                assert!(f.has_code("6140"));
                assert_eq!(f.status, 400);
            }
            other => panic!("expected a fault, got {other:?}"),
        }
        assert!(!got.contains_key("b2"), "b2 was not answered: unknown");
        assert!(!got.contains_key("zz"));
    }

    #[test]
    fn a_batch_that_failed_as_a_whole_is_an_error_not_a_list_of_answers() {
        let its = items(2);
        let resp = HttpResponse::new(
            500,
            r#"{"Fault":{"Error":[{"code":"10000","Message":"An application error has occurred"}],"type":"SystemFault"}}"#,
        );
        assert_eq!(parse_batch(&resp, &its).unwrap_err().status, 500);
        let throttled = HttpResponse::new(429, "");
        assert_eq!(parse_batch(&throttled, &its).unwrap_err().status, 429);
    }

    #[test]
    fn an_item_faults_type_gives_the_status_a_single_request_would_have_had() {
        assert_eq!(fault_status(Some("ValidationFault")), 400);
        assert_eq!(fault_status(Some("AuthenticationFault")), 401);
        assert_eq!(fault_status(Some("SystemFault")), 500);
        assert_eq!(fault_status(None), 400);
    }
}
