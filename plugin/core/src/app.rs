//! The connector's HTTP surface (CONTRACT §3): routing, authentication, and what work a
//! request leaves behind to do after its response has been sent.

use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::host::Host;
use crate::http::{HttpResponse, header_value};
use crate::settings::{self, SettingsError};

/// Largest request body the connector accepts (webhooks, mapping): 64 KiB.
pub const MAX_BODY: usize = 64 * 1024;

/// KV key of the mapping set with `PUT /admin/mapping`.
pub const MAPPING_KEY: &str = "config/mapping";

/// An incoming request, as the adapter read it. `body` holds at most `MAX_BODY + 1` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.path_and_query.split('?').next().unwrap_or("/")
    }

    /// The raw query string, if any.
    pub fn query(&self) -> Option<&str> {
        self.path_and_query.split_once('?').map(|(_, q)| q)
    }

    /// A query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query()?.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    /// A header, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
}

/// Work a request leaves behind, run after the response is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {}

/// A JSON error body: `{"error": code, "message": message}`.
pub fn error_response(status: u16, code: &str, message: &str) -> HttpResponse {
    HttpResponse::json(status, &json!({"error": code, "message": message}))
}

fn settings_error(e: &SettingsError) -> HttpResponse {
    error_response(500, "configuration", &e.to_string())
}

fn method_not_allowed(req: &Request, allowed: &str) -> HttpResponse {
    let mut resp = error_response(
        405,
        "method_not_allowed",
        &format!("{} is not supported on {}; use {allowed}", req.method, req.path()),
    );
    resp.headers.push(("allow".into(), allowed.into()));
    resp
}

/// Routes one request. Returns the response and any work to do after sending it.
pub fn handle(req: &Request, host: &mut dyn Host) -> (HttpResponse, Option<Work>) {
    if req.body.len() > MAX_BODY {
        return (error_response(413, "payload_too_large", "request bodies are limited to 64 KiB"), None);
    }
    let path = req.path().trim_end_matches('/');
    let path = if path.is_empty() { "/" } else { path };
    let response = match path {
        "/health" => match req.method.as_str() {
            "GET" | "HEAD" => HttpResponse::json(200, &json!({"status": "ok"})),
            _ => method_not_allowed(req, "GET"),
        },
        p if p.starts_with("/admin/") => match authorize_admin(req, host) {
            Err(resp) => resp,
            Ok(()) => admin(req, p, host),
        },
        _ => error_response(404, "not_found", &format!("no route for {} {}", req.method, req.path())),
    };
    (response, None)
}

/// Runs work left by [`handle`].
pub fn run(work: Work, _host: &mut dyn Host) {
    match work {}
}

/// `Authorization: Bearer <admin_token>`, compared in constant time.
fn authorize_admin(req: &Request, host: &mut dyn Host) -> Result<(), HttpResponse> {
    let expected = settings::required(host, "admin_token").map_err(|e| settings_error(&e))?;
    let presented = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim);
    let unauthorized = || {
        let mut r = error_response(401, "unauthorized", "admin routes need `Authorization: Bearer <admin_token>`");
        r.headers.push(("www-authenticate".into(), "Bearer".into()));
        r
    };
    let Some(presented) = presented else { return Err(unauthorized()) };
    // Hash both sides so the comparison time does not depend on the token's length either.
    use sha2::{Digest, Sha256};
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    if bool::from(a.ct_eq(&b)) { Ok(()) } else { Err(unauthorized()) }
}

fn admin(req: &Request, path: &str, host: &mut dyn Host) -> HttpResponse {
    match path {
        "/admin/mapping" => match req.method.as_str() {
            "GET" => get_mapping(host),
            "PUT" => put_mapping(req, host),
            _ => method_not_allowed(req, "GET, PUT"),
        },
        _ => error_response(404, "not_found", &format!("no route for {} {}", req.method, req.path())),
    }
}

/// The mapping in force: the one stored by `PUT /admin/mapping`, else the `mapping` variable,
/// else the built-in default.
pub fn current_mapping(host: &mut dyn Host) -> Result<Value, HttpResponse> {
    match host.kv_get(MAPPING_KEY) {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes)
            .map_err(|e| error_response(500, "storage", &format!("the stored mapping is corrupt: {e}; PUT a new one"))),
        Ok(None) => match settings::optional(host, "mapping") {
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                error_response(500, "configuration", &format!("variable `mapping` is not valid JSON: {e}"))
            }),
            None => Ok(mapping_glue::default_json()),
        },
        Err(e) => Err(error_response(503, "storage", &format!("{e}; retry shortly"))),
    }
}

fn get_mapping(host: &mut dyn Host) -> HttpResponse {
    match current_mapping(host) {
        Ok(v) => HttpResponse::json(200, &v),
        Err(resp) => resp,
    }
}

fn put_mapping(req: &Request, host: &mut dyn Host) -> HttpResponse {
    let config = match mapping_glue::parse(&req.body) {
        Ok(c) => c,
        Err(problems) => {
            let list: Vec<Value> =
                problems.iter().map(|p| json!({"path": p.path, "message": p.message})).collect();
            return HttpResponse::json(
                400,
                &json!({
                    "error": "invalid_mapping",
                    "message": format!("the mapping has {} problem(s); fix them and PUT it again", list.len()),
                    "problems": list,
                }),
            );
        }
    };
    let normalized = config;
    let bytes = serde_json::to_vec(&normalized).unwrap_or_default();
    match host.kv_set(MAPPING_KEY, &bytes) {
        Ok(()) => HttpResponse::json(200, &normalized),
        Err(e) => error_response(503, "storage", &format!("{e}; the mapping was not saved, retry")),
    }
}

/// Until the mapping engine lands: JSON syntax only. Replaced by `mapping::MappingConfig`.
mod mapping_glue {
    use serde_json::Value;

    pub struct Problem {
        pub path: String,
        pub message: String,
    }

    pub fn default_json() -> Value {
        serde_json::json!({"version": 1, "invoice": {"doc_number": "{order_id}", "default_item": "BigCommerce Sales", "rules": []}})
    }

    pub fn parse(body: &[u8]) -> Result<Value, Vec<Problem>> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| vec![Problem { path: "$".into(), message: format!("not valid JSON: {e}") }])?;
        if v.get("version") != Some(&Value::from(1)) {
            return Err(vec![Problem { path: "$.version".into(), message: "must be 1".into() }]);
        }
        Ok(v)
    }
}
