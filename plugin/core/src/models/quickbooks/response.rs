//! QuickBooks responses: faults (both shapes, even inside HTTP 200), the `intuit_tid`, and
//! decoding of entities and query pages.

use std::fmt;

use serde::de::DeserializeOwned;

use crate::http::{HttpResponse, header_value};

/// One `Error` of a QuickBooks fault.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FaultError {
    pub code: String,
    pub message: String,
    pub detail: String,
    pub element: Option<String>,
}

/// A failed QuickBooks call: the HTTP status, `intuit_tid` and the fault's errors.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QboError {
    pub status: u16,
    /// Transaction id for Intuit support (`intuit_tid` / `Intuit-Tid` header).
    pub intuit_tid: Option<String>,
    /// `ValidationFault`, `SystemFault`, `AUTHENTICATION`, …
    pub fault_type: Option<String>,
    pub errors: Vec<FaultError>,
}

impl QboError {
    /// The first error's code (`"6240"`), if any.
    pub fn code(&self) -> Option<&str> {
        self.errors.first().map(|e| e.code.as_str())
    }

    /// Whether any error has this code.
    pub fn has_code(&self, code: &str) -> bool {
        self.errors
            .iter()
            .any(|e| e.code.trim_start_matches('0') == code.trim_start_matches('0'))
    }

    /// The access token is expired or invalid: refresh and retry once.
    pub fn is_authentication(&self) -> bool {
        self.status == 401 || self.has_code("3200")
    }

    /// 429, 5xx or a throttle fault: try again later.
    pub fn is_retryable(&self) -> bool {
        self.status == 429 || self.status >= 500 || self.has_code("3001")
    }

    /// What to tell a human, by fault code.
    fn advice(&self) -> &'static str {
        let c = self.code().unwrap_or("");
        match c {
            "6240" => "a customer, vendor or employee already has that name",
            "6140" => {
                "an invoice with that number already exists; check QuickBooks before replaying"
            }
            "6000" => "QuickBooks rejected the amounts; check the mapping and the order",
            "610" | "2500" => {
                "a referenced item, account or class is inactive or deleted; fix the mapping"
            }
            "2010" | "2020" | "2030" | "500" => {
                "the connector sent a request QuickBooks does not accept; report it"
            }
            "2210" => "the email address is not valid; correct it in BigCommerce",
            "5010" => "someone changed the record meanwhile; the sync will re-read and retry",
            "6190" => "the QuickBooks subscription is not active",
            "6210" => "the accounting period is closed; reopen it or change the closing date",
            "120" | "3100" => "reconnect QuickBooks (authorization lost)",
            _ if self.is_authentication() => {
                "reconnect QuickBooks if refreshing the token does not help"
            }
            _ if self.is_retryable() => "QuickBooks is busy or failing; the sync will retry",
            _ => "see the QuickBooks message",
        }
    }
}

impl fmt::Display for QboError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QuickBooks answered HTTP {}", self.status)?;
        // A bare 5xx from a gateway has no Fault body: say nothing rather than "error : ".
        for e in self
            .errors
            .iter()
            .filter(|e| !(e.code.is_empty() && e.message.is_empty()))
        {
            write!(f, "; error {}: {}", e.code, e.message)?;
            if !e.detail.is_empty() {
                write!(f, " ({})", e.detail)?;
            }
            if let Some(el) = e.element.as_deref().filter(|s| !s.is_empty()) {
                write!(f, " [element {el}]")?;
            }
        }
        write!(f, ". What to do: {}", self.advice())?;
        if let Some(t) = &self.intuit_tid {
            write!(f, " (intuit_tid {t})")?;
        }
        Ok(())
    }
}

impl std::error::Error for QboError {}

fn get_ci<'a>(
    o: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Option<&'a serde_json::Value> {
    o.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn text_of(v: Option<&serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The `intuit_tid` header (either spelling, any case).
pub fn intuit_tid(resp: &HttpResponse) -> Option<String> {
    header_value(&resp.headers, "intuit_tid")
        .or_else(|| header_value(&resp.headers, "intuit-tid"))
        .map(str::to_string)
}

/// Reads a fault from a body in either shape (`Fault.Error[]` or the 401 `fault.error[]`).
/// `None` when the body carries no fault.
pub fn parse_fault_body(status: u16, tid: Option<String>, body: &[u8]) -> Option<QboError> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let fault = get_ci(v.as_object()?, "fault")?.as_object()?;
    let errors = get_ci(fault, "error")
        .and_then(|e| e.as_array())
        .map(|list| {
            list.iter()
                .filter_map(|e| e.as_object())
                .map(|e| FaultError {
                    code: text_of(get_ci(e, "code")),
                    message: text_of(get_ci(e, "message")),
                    detail: text_of(get_ci(e, "detail")),
                    element: get_ci(e, "element")
                        .and_then(|x| x.as_str())
                        .map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(QboError {
        status,
        intuit_tid: tid,
        fault_type: get_ci(fault, "type")
            .and_then(|t| t.as_str())
            .map(str::to_string),
        errors,
    })
}

/// Checks a response: any `Fault` (even with HTTP 200) or a non-2xx status is an error.
pub fn check_response(resp: &HttpResponse) -> Result<(), QboError> {
    let tid = intuit_tid(resp);
    if let Some(f) = parse_fault_body(resp.status, tid.clone(), &resp.body) {
        return Err(f);
    }
    if resp.is_success() {
        return Ok(());
    }
    let body = String::from_utf8_lossy(&resp.body);
    Err(QboError {
        status: resp.status,
        intuit_tid: tid,
        fault_type: None,
        errors: vec![FaultError {
            code: String::new(),
            message: body.chars().take(200).collect(),
            detail: String::new(),
            element: None,
        }],
    })
}

/// A decoding problem in an otherwise successful response, as a [`QboError`] (code `decode`).
fn decode_error(resp: &HttpResponse, path: String, message: String) -> QboError {
    QboError {
        status: resp.status,
        intuit_tid: intuit_tid(resp),
        fault_type: Some("DecodeError".into()),
        errors: vec![FaultError {
            code: "decode".into(),
            message: format!("could not read the response at `{path}`: {message}"),
            detail: String::new(),
            element: Some(path),
        }],
    }
}

/// Reads a single-entity envelope (`{"Invoice": {...}, "time": …}`).
pub fn parse_entity<T: DeserializeOwned>(resp: &HttpResponse, entity: &str) -> Result<T, QboError> {
    check_response(resp)?;
    let v: serde_json::Value = serde_json::from_slice(&resp.body)
        .map_err(|e| decode_error(resp, "$".into(), e.to_string()))?;
    let inner = v.get(entity).cloned().ok_or_else(|| {
        decode_error(
            resp,
            entity.into(),
            format!("no `{entity}` in the response"),
        )
    })?;
    serde_path_to_error::deserialize(inner).map_err(|e| {
        decode_error(
            resp,
            format!("{entity}.{}", e.path()),
            e.inner().to_string(),
        )
    })
}

/// A query page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryPage<T> {
    pub entities: Vec<T>,
    pub start_position: Option<u64>,
    pub max_results: Option<u64>,
    pub total_count: Option<u64>,
}

/// Reads a `QueryResponse`; an absent entity key means no matches.
pub fn parse_query<T: DeserializeOwned>(
    resp: &HttpResponse,
    entity: &str,
) -> Result<QueryPage<T>, QboError> {
    check_response(resp)?;
    let v: serde_json::Value = serde_json::from_slice(&resp.body)
        .map_err(|e| decode_error(resp, "$".into(), e.to_string()))?;
    let q = v
        .get("QueryResponse")
        .ok_or_else(|| decode_error(resp, "QueryResponse".into(), "missing".into()))?;
    let entities = match q.get(entity) {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(list) => serde_path_to_error::deserialize(list.clone()).map_err(|e| {
            decode_error(
                resp,
                format!("QueryResponse.{entity}{}", e.path()),
                e.inner().to_string(),
            )
        })?,
    };
    let n = |k: &str| q.get(k).and_then(|x| x.as_u64());
    Ok(QueryPage {
        entities,
        start_position: n("startPosition"),
        max_results: n("maxResults"),
        total_count: n("totalCount"),
    })
}
