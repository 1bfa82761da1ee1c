//! The QuickBooks OAuth 2.0 authorization-code flow: `GET /oauth/quickbooks/connect` sends the
//! operator to Intuit's consent page with a single-use `state`, and
//! `GET /oauth/quickbooks/callback` checks that state, exchanges the code and stores the tokens
//! sealed.
//!
//! The `state` is the only thing that ties a callback to a connect the admin started, so it is
//! treated like a credential: only its SHA-256 names the KV key, the stored value is sealed, and
//! a compare-and-swap consumes it so two racing callbacks cannot both use it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::crypto::{self, Keyring};
use crate::host::{CasOutcome, Host, LogLevel};
use crate::http::HttpResponse;
use crate::http::{Request, error_response};
use crate::models::token::{self, CONNECT_PATH, TokenError};
use crate::settings::{self, QuickBooksSettings};
use crate::sync::connection::{self, Vault};
use crate::sync::store;

/// How long a connect link stays usable.
pub const STATE_TTL: Duration = Duration::minutes(10);
/// Random bytes in a `state` (URL-safe base64 without padding: 43 characters).
pub const STATE_BYTES: usize = 32;
/// Prefix of the KV keys holding pending states.
pub const STATE_KEY_PREFIX: &str = "oauth/state/";
/// The log naming pending states, newest last; only the newest [`MAX_PENDING_STATES`] stay.
const STATE_LOG: &str = "oauth/states";
/// Connect links that stay usable at once: starting one more retires the oldest (its state is
/// deleted), so states nobody completes never pile up.
pub const MAX_PENDING_STATES: i64 = 16;

/// Written over a state while it is being consumed; never opens as a sealed value.
const CONSUMED: &[u8] = b"consumed";

/// What a pending `state` remembers (sealed in KV).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PendingState {
    created_at: DateTime<Utc>,
}

/// The KV key of a state: its SHA-256, so the key itself does not reveal the state.
pub fn state_key(state: &str) -> String {
    format!(
        "{STATE_KEY_PREFIX}{}",
        hex::encode(Sha256::digest(state.as_bytes()))
    )
}

fn wants_json(req: &Request) -> bool {
    req.header("accept")
        .is_some_and(|a| a.to_ascii_lowercase().contains("application/json"))
}

/// Responses of this flow carry codes or consent links: never cache them, never leak them
/// through `Referer`.
fn private(mut resp: HttpResponse) -> HttpResponse {
    resp.headers
        .push(("cache-control".into(), "no-store".into()));
    resp.headers
        .push(("referrer-policy".into(), "no-referrer".into()));
    resp
}

fn config_error(message: &str) -> HttpResponse {
    private(error_response(500, "configuration", message))
}

fn storage_error(e: &dyn std::fmt::Display) -> HttpResponse {
    private(error_response(
        503,
        "storage",
        &format!("{e}; try again at {CONNECT_PATH} shortly"),
    ))
}

fn keyring(host: &mut dyn Host) -> Result<Keyring, HttpResponse> {
    Keyring::from_config(
        settings::optional(host, "encryption_key").as_deref(),
        settings::optional(host, "encryption_key_previous").as_deref(),
    )
    .map_err(|e| config_error(&e.to_string()))
}

fn redirect_uri(qbo: &QuickBooksSettings) -> Result<String, HttpResponse> {
    let Some(uri) = qbo.redirect_uri.as_deref().map(str::trim) else {
        return Err(config_error(
            "variable `qbo_redirect_uri` is not set: set it (SPIN_VARIABLE_QBO_REDIRECT_URI) to this connector's \
             public URL ending in /oauth/quickbooks/callback, and register the same URL as a Redirect URI of the \
             Intuit app",
        ));
    };
    if !(uri.starts_with("https://") || uri.starts_with("http://")) {
        return Err(config_error(&format!(
            "variable `qbo_redirect_uri` is `{uri}`, not an absolute http(s) URL: set it to this connector's public \
             URL ending in /oauth/quickbooks/callback"
        )));
    }
    Ok(uri.to_string())
}

/// `GET /oauth/quickbooks/connect` (admin already checked by the router): a 302 to Intuit's
/// consent page carrying a fresh single-use `state`, or `200 {"authorize_url": …}` when the
/// client asks for JSON.
pub fn connect(req: &Request, host: &mut dyn Host) -> HttpResponse {
    let qbo = match QuickBooksSettings::read(host) {
        Ok(q) => q,
        Err(e) => return config_error(&e.to_string()),
    };
    let redirect = match redirect_uri(&qbo) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let keyring = match keyring(host) {
        Ok(k) => k,
        Err(resp) => return resp,
    };
    let mut raw = [0u8; STATE_BYTES];
    host.random_bytes(&mut raw);
    let state = URL_SAFE_NO_PAD.encode(raw);
    let pending = PendingState {
        created_at: host.now(),
    };
    let bytes = serde_json::to_vec(&pending).unwrap_or_default();
    let key = state_key(&state);
    if let Err(e) = (Vault { keyring: &keyring }).write(host, &key, &bytes) {
        return storage_error(&e);
    }
    // Remember it, retiring the oldest pending state (deleting a used one again is harmless).
    let retire = &mut |host: &mut dyn Host, old: String| host.kv_delete(&old);
    if let Err(e) = store::append_bounded(host, STATE_LOG, &key, MAX_PENDING_STATES, retire) {
        return storage_error(&e);
    }
    let url = token::authorize_url(&qbo.authorize_url, &qbo.client_id, &redirect, &state);
    if wants_json(req) {
        return private(HttpResponse::json(
            200,
            &json!({"authorize_url": url, "expires_in": STATE_TTL.num_seconds()}),
        ));
    }
    let mut resp = HttpResponse::new(302, format!("Redirecting to QuickBooks: {url}\n"));
    resp.headers.push(("location".into(), url));
    resp.headers
        .push(("content-type".into(), "text/plain; charset=utf-8".into()));
    private(resp)
}

/// Why a `state` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StateProblem {
    /// Unknown, already used or expired: the operator starts again.
    Unusable,
    /// KV or crypto failure.
    Storage(String),
}

/// Checks a `state` and consumes it whatever the outcome, so it can never be used twice.
fn consume_state(host: &mut dyn Host, keyring: &Keyring, state: &str) -> Result<(), StateProblem> {
    if state.is_empty() || state.len() > 256 {
        return Err(StateProblem::Unusable);
    }
    let key = state_key(state);
    let sealed = match host.kv_get(&key) {
        Ok(Some(v)) => v,
        Ok(None) => return Err(StateProblem::Unusable),
        Err(e) => return Err(StateProblem::Storage(e.to_string())),
    };
    // Only the instance whose swap succeeds may go on: a racing replay loses here.
    match host.kv_cas(&key, &sealed, CONSUMED) {
        Ok(CasOutcome::Swapped) => {}
        Ok(CasOutcome::Conflict(_)) => return Err(StateProblem::Unusable),
        Err(e) => return Err(StateProblem::Storage(e.to_string())),
    }
    if let Err(e) = host.kv_delete(&key) {
        // The value is already the tombstone, which never opens: the state stays unusable.
        host.log(
            LogLevel::Warn,
            &format!("could not delete a used OAuth state: {e}"),
        );
    }
    let opened = crypto::open(keyring, &key, &sealed).map_err(|e| match e {
        // A state sealed by something else, or under a key since removed: start again.
        crypto::CryptoError::CannotDecrypt | crypto::CryptoError::NotSealed => {
            StateProblem::Unusable
        }
        other => StateProblem::Storage(other.to_string()),
    })?;
    let pending: PendingState =
        serde_json::from_slice(&opened.plaintext).map_err(|_| StateProblem::Unusable)?;
    if host.now() >= pending.created_at + STATE_TTL {
        return Err(StateProblem::Unusable);
    }
    Ok(())
}

fn state_rejected() -> HttpResponse {
    private(error_response(
        400,
        "invalid_state",
        &format!("the connect link expired or was already used: start again at {CONNECT_PATH}"),
    ))
}

fn intuit_declined(error: &str, description: Option<&str>) -> HttpResponse {
    if error == "access_denied" {
        return private(error_response(
            403,
            "access_denied",
            &format!(
                "the QuickBooks admin declined the connection, so nothing was stored: to connect, start again at \
                 {CONNECT_PATH} and choose Connect on Intuit's page"
            ),
        ));
    }
    let detail = description
        .map(|d| {
            format!(
                " ({})",
                crate::sync::failure::sanitize(&d.chars().take(200).collect::<String>())
            )
        })
        .unwrap_or_default();
    let code: String = error
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    private(error_response(
        400,
        "authorization_failed",
        &format!(
            "Intuit ended the authorization with `{code}`{detail}: check qbo_client_id and that qbo_redirect_uri is \
             registered for the Intuit app, then start again at {CONNECT_PATH}"
        ),
    ))
}

fn exchange_failed(e: &TokenError) -> HttpResponse {
    let (status, code, message) = match e {
        TokenError::NeedsReauth => (
            400,
            "invalid_grant",
            format!(
                "QuickBooks refused the authorization code (invalid_grant: it expired, was already used, or \
                 qbo_redirect_uri differs from the one used at consent): start again at {CONNECT_PATH}"
            ),
        ),
        TokenError::Unavailable { status } => (
            503,
            "upstream_unavailable",
            format!(
                "the QuickBooks token endpoint is unavailable (HTTP {status}): start again at {CONNECT_PATH} in a moment"
            ),
        ),
        other => (502, "token_exchange_failed", other.to_string()),
    };
    private(error_response(status, code, &message))
}

fn valid_realm(realm: &str) -> bool {
    !realm.is_empty() && realm.len() <= 32 && realm.chars().all(|c| c.is_ascii_digit())
}

/// `GET /oauth/quickbooks/callback?code&state&realmId` (or `?error=…&state=…`): consumes the
/// state, exchanges the code, stores the tokens sealed with the company id and clears
/// `needs_reauth`. Responses never contain tokens.
pub fn callback(req: &Request, host: &mut dyn Host) -> HttpResponse {
    let qbo = match QuickBooksSettings::read(host) {
        Ok(q) => q,
        Err(e) => return config_error(&e.to_string()),
    };
    let keyring = match keyring(host) {
        Ok(k) => k,
        Err(resp) => return resp,
    };
    let state = req.query_param("state").unwrap_or_default();
    let state_result = consume_state(host, &keyring, &state);
    if let Some(error) = req.query_param("error") {
        // Consent was refused or failed: nothing to exchange, and the state is spent either way.
        return intuit_declined(&error, req.query_param("error_description").as_deref());
    }
    match state_result {
        Ok(()) => {}
        Err(StateProblem::Unusable) => return state_rejected(),
        Err(StateProblem::Storage(e)) => return storage_error(&e),
    }
    let Some(code) = req.query_param("code").filter(|c| !c.is_empty()) else {
        return private(error_response(
            400,
            "bad_request",
            &format!(
                "the callback has no `code`: open {CONNECT_PATH} to start the connection from the beginning"
            ),
        ));
    };
    let realm = req.query_param("realmId").unwrap_or_default();
    if !valid_realm(&realm) {
        return private(error_response(
            400,
            "bad_request",
            &format!(
                "the callback has no valid `realmId` (QuickBooks company id): start again at {CONNECT_PATH} and pick \
                 a QuickBooks company"
            ),
        ));
    }
    if let Some(configured) = qbo.realm_id.as_deref().filter(|r| *r != realm) {
        // Tokens are per company: storing them while qbo_realm_id names another company would
        // make every call fail with an authorization error.
        return private(error_response(
            409,
            "realm_mismatch",
            &format!(
                "you connected QuickBooks company {realm}, but variable `qbo_realm_id` is {configured}: connect \
                 company {configured} instead, or clear qbo_realm_id, then start again at {CONNECT_PATH}"
            ),
        ));
    }
    let redirect = match redirect_uri(&qbo) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let request = token::code_exchange_request(
        &qbo.oauth_base,
        &qbo.client_id,
        &qbo.client_secret,
        &code,
        &redirect,
    );
    let response = match host.http(&request) {
        Ok(r) => r,
        Err(e) => {
            return private(error_response(
                502,
                "upstream_unreachable",
                &format!(
                    "the QuickBooks token endpoint could not be reached ({e}): check qbo_oauth_base and \
                     allowed_outbound_hosts, then start again at {CONNECT_PATH}"
                ),
            ));
        }
    };
    let now = host.now();
    let mut tokens = match token::parse_token_response(response.status, &response.body, now, None) {
        Ok(t) => t,
        Err(e) => {
            host.log(
                LogLevel::Warn,
                &format!("QuickBooks code exchange failed: {e}"),
            );
            return exchange_failed(&e);
        }
    };
    tokens.realm_id = Some(realm.clone());
    let vault = Vault { keyring: &keyring };
    if let Err(e) = connection::connected_superseding(host, &vault, &tokens, &qbo) {
        return storage_error(&e);
    }
    host.log(
        LogLevel::Info,
        &format!("QuickBooks connected (company {realm})"),
    );
    let message = format!("QuickBooks connected (company {realm})");
    if wants_json(req) {
        return private(HttpResponse::json(
            200,
            &json!({"status": "connected", "realm_id": realm, "message": message}),
        ));
    }
    // `realm` is digits only (checked above), so it is safe to put in HTML as is.
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>QuickBooks connected</title></head>\
         <body><h1>{message}</h1><p>The connector can now post to QuickBooks. \
         <a href=\"/admin/ui#/status\">Back to the console</a> (<code>GET /admin/status</code> shows the connection).</p></body></html>\n"
    );
    let mut resp = HttpResponse::new(200, html);
    resp.headers
        .push(("content-type".into(), "text/html; charset=utf-8".into()));
    private(resp)
}

#[cfg(test)]
mod tests;
