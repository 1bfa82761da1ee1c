//! QuickBooks request builders: `minorversion`, `requestid`, sparse updates, queries, and
//! deterministic request ids.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::http::{HttpRequest, Method};

/// The minor version sent on every call (1–74 are ignored since August 2025).
pub const MINOR_VERSION: u32 = 75;

/// Characters left as-is in the query parameter: RFC 3986 unreserved ones.
pub(super) const QUERY_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(super) fn base_url(api_base: &str, realm: &str) -> String {
    let realm = percent_encoding::utf8_percent_encode(realm, QUERY_ENCODE);
    format!("{}/v3/company/{realm}", api_base.trim_end_matches('/'))
}

fn authed(method: Method, url: String, access_token: &str) -> HttpRequest {
    HttpRequest::new(method, url)
        .header("Authorization", format!("Bearer {access_token}"))
        .header("Accept", "application/json")
}

/// `GET /v3/company/{realm}/query?query=…` (the whole statement URL-encoded).
pub fn query(api_base: &str, realm: &str, access_token: &str, statement: &str) -> HttpRequest {
    let q = percent_encoding::utf8_percent_encode(statement, QUERY_ENCODE);
    authed(
        Method::Get,
        format!(
            "{}/query?query={q}&minorversion={MINOR_VERSION}",
            base_url(api_base, realm)
        ),
        access_token,
    )
}

/// A body that could not be encoded (never happens for the models here).
fn json_bytes<T: Serialize>(body: &T) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_default()
}

fn lower_entity(entity: &str) -> String {
    entity.to_ascii_lowercase()
}

/// Create: `POST /v3/company/{realm}/{entity}?minorversion=75&requestid={request_id}`.
/// Retrying with the same `request_id` returns the original response instead of creating again.
pub fn create<T: Serialize>(
    api_base: &str,
    realm: &str,
    access_token: &str,
    entity: &str,
    body: &T,
    request_id: &str,
) -> HttpRequest {
    let rid = percent_encoding::utf8_percent_encode(request_id, QUERY_ENCODE);
    let mut r = authed(
        Method::Post,
        format!(
            "{}/{}?minorversion={MINOR_VERSION}&requestid={rid}",
            base_url(api_base, realm),
            lower_entity(entity)
        ),
        access_token,
    );
    r.body = json_bytes(body);
    r.header("Content-Type", "application/json")
}

/// Sparse update: the body must carry `Id` and `SyncToken`; `"sparse": true` is added if the
/// body does not set it, so only the fields sent change.
pub fn sparse_update<T: Serialize>(
    api_base: &str,
    realm: &str,
    access_token: &str,
    entity: &str,
    body: &T,
    request_id: &str,
) -> HttpRequest {
    let mut r = create(api_base, realm, access_token, entity, body, request_id);
    let has_sparse = serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .is_some_and(|v| v.get("sparse").is_some());
    if !has_sparse && r.body.first() == Some(&b'{') {
        // Splice rather than re-encode, so amounts keep their exact text.
        let rest = r.body.split_off(1);
        r.body.extend_from_slice(br#""sparse":true"#);
        if rest.first() != Some(&b'}') {
            r.body.push(b',');
        }
        r.body.extend_from_slice(&rest);
    }
    r
}

/// An operation on an existing entity (`void`, `delete`):
/// `POST /v3/company/{realm}/{entity}?operation={op}&minorversion=75&requestid={request_id}`
/// with `{"Id", "SyncToken"}`.
pub fn operation<T: Serialize>(
    api_base: &str,
    realm: &str,
    access_token: &str,
    entity: &str,
    op: &str,
    body: &T,
    request_id: &str,
) -> HttpRequest {
    let rid = percent_encoding::utf8_percent_encode(request_id, QUERY_ENCODE);
    let op = percent_encoding::utf8_percent_encode(op, QUERY_ENCODE);
    let mut r = authed(
        Method::Post,
        format!(
            "{}/{}?operation={op}&minorversion={MINOR_VERSION}&requestid={rid}",
            base_url(api_base, realm),
            lower_entity(entity)
        ),
        access_token,
    );
    r.body = json_bytes(body);
    r.header("Content-Type", "application/json")
}

/// Read: `GET /v3/company/{realm}/{entity}/{id}`.
pub fn read(
    api_base: &str,
    realm: &str,
    access_token: &str,
    entity: &str,
    id: &str,
) -> HttpRequest {
    let id = percent_encoding::utf8_percent_encode(id, QUERY_ENCODE);
    authed(
        Method::Get,
        format!(
            "{}/{}/{id}?minorversion={MINOR_VERSION}",
            base_url(api_base, realm),
            lower_entity(entity)
        ),
        access_token,
    )
}

/// `GET /v3/company/{realm}/companyinfo/{realm}`.
pub fn company_info(api_base: &str, realm: &str, access_token: &str) -> HttpRequest {
    read(api_base, realm, access_token, "companyinfo", realm)
}

/// A deterministic `requestid` (≤ 50 characters) for one logical write: a readable prefix
/// from the parts, then a SHA-256 prefix over all of them, so the same parts always give the
/// same id and different parts practically never collide.
pub fn request_id(parts: &[&str]) -> String {
    let readable: String = parts
        .iter()
        .take(3)
        .map(|p| {
            p.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
        })
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let readable: String = readable.chars().take(24).collect();
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let digest = hex::encode(h.finalize());
    if readable.is_empty() {
        digest[..24].to_string()
    } else {
        format!("{readable}-{}", &digest[..24])
    }
}
