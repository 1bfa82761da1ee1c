//! Webhook registration (CONTRACT §8): the BigCommerce hooks the connector needs, created or
//! reactivated by `POST /admin/webhooks`, and their health for `GET /admin/status`.
//!
//! BigCommerce keeps one hook per scope and destination (and per API account), deactivates a
//! hook whose deliveries failed for about two days, and never replays what it did not deliver
//! meanwhile (reference §2.5) — so registration reactivates rather than recreates, and the
//! sweep catches up the gap. A wildcard hook (`store/order/*`) at the same destination counts
//! as covering the scopes below it, so a hand-made wildcard is not doubled.

use serde_json::{Value, json};

use crate::host::Host;
use crate::models::bigcommerce::{self, HookInfo, PAGE_LIMIT};
use crate::models::webhook::SECRET_HEADER;
use crate::settings::{self, BigCommerceSettings};
use crate::sync::failure::{self, Failure, Service};
use crate::sync::upstream::Upstreams;

/// The scopes the connector subscribes to.
pub const SCOPES: [&str; 9] = [
    "store/order/created",
    "store/order/updated",
    "store/order/statusUpdated",
    "store/order/archived",
    "store/order/refund/created",
    "store/customer/created",
    "store/customer/updated",
    "store/customer/deleted",
    "store/customer/address/updated",
];

/// Where BigCommerce should deliver: `{public_base_url}/webhooks/bigcommerce`.
pub fn destination(base: &str) -> String {
    format!("{}/webhooks/bigcommerce", base.trim_end_matches('/'))
}

/// Why registration could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HooksError {
    /// `public_base_url` is missing or unusable (a 400: the operator must set it).
    #[error("{0}")]
    Setup(String),
    /// A BigCommerce call failed.
    #[error("{message}")]
    Upstream { message: String, retryable: bool },
}

impl From<Failure> for HooksError {
    fn from(f: Failure) -> Self {
        HooksError::Upstream {
            retryable: f.is_retryable(),
            message: failure::explain(&f),
        }
    }
}

fn bc_upstreams(host: &mut dyn Host) -> Result<Upstreams, HooksError> {
    // Only BigCommerce is called: QuickBooks settings are not needed to register hooks.
    let bc = BigCommerceSettings::read(host).map_err(|e| HooksError::Setup(e.to_string()))?;
    let qbo = crate::settings::QuickBooksSettings {
        api_base: String::new(),
        oauth_base: String::new(),
        authorize_url: String::new(),
        client_id: String::new(),
        client_secret: String::new(),
        realm_id: None,
        bootstrap_refresh_token: None,
        redirect_uri: None,
    };
    // Never used: BigCommerce calls seal nothing.
    let keyring = crate::crypto::Keyring::from_bytes([0; 32], None);
    Ok(Upstreams {
        bc,
        qbo,
        keyring,
        access_memo: Default::default(),
    })
}

/// Every hook this API account has (all pages).
pub fn list(host: &mut dyn Host, up: &Upstreams) -> Result<Vec<HookInfo>, Failure> {
    let mut out = Vec::new();
    for page in 1..=40u32 {
        let resp = up.bc_send(
            host,
            &bigcommerce::hooks_page(
                &up.bc.api_base,
                &up.bc.store_hash,
                &up.bc.access_token,
                page,
            ),
        )?;
        let listed = bigcommerce::parse_hook_list(&resp).map_err(|e| {
            Failure::unreadable(Service::BigCommerce, &format!("the hook list ({e})"))
        })?;
        let more = listed.has_more(PAGE_LIMIT) && !listed.rows.is_empty();
        out.extend(listed.rows);
        if !more {
            break;
        }
    }
    Ok(out)
}

/// The hook delivering `scope` to `destination`: an exact one first, else a covering wildcard.
fn covering<'a>(hooks: &'a [HookInfo], scope: &str, destination: &str) -> Option<&'a HookInfo> {
    let at_destination = || hooks.iter().filter(|h| h.destination == destination);
    at_destination()
        .find(|h| h.scope == scope)
        .or_else(|| at_destination().find(|h| h.covers(scope)))
}

/// Creates what is missing and reactivates (and re-keys) what BigCommerce deactivated.
/// Idempotent: a second call changes nothing.
pub fn register(host: &mut dyn Host) -> Result<Value, HooksError> {
    let base = settings::public_base_url(host).map_err(|e| HooksError::Setup(e.to_string()))?;
    let secret = settings::required(host, "bigcommerce_webhook_secret")
        .map_err(|e| HooksError::Setup(e.to_string()))?;
    let up = bc_upstreams(host)?;
    let dest = destination(&base);
    let mut hooks = list(host, &up)?;
    let headers = [(SECRET_HEADER, secret.as_str())];
    let mut report = Vec::new();
    for scope in SCOPES {
        let existing = covering(&hooks, scope, &dest).cloned();
        let action = match existing {
            Some(h) if h.is_active && h.sends_header(SECRET_HEADER, &secret) => {
                report.push(json!({"scope": scope, "id": h.id, "hook_scope": h.scope,
                                   "is_active": true, "action": "unchanged"}));
                continue;
            }
            Some(h) => {
                let resp = up.bc_send(
                    host,
                    &bigcommerce::reactivate_hook(
                        &up.bc.api_base,
                        &up.bc.store_hash,
                        &up.bc.access_token,
                        h.id,
                        &headers,
                    ),
                )?;
                let updated = bigcommerce::parse_hook(&resp).map_err(|e| {
                    Failure::unreadable(Service::BigCommerce, &format!("a hook ({e})"))
                })?;
                let action = if h.is_active {
                    "updated"
                } else {
                    "reactivated"
                };
                hooks.retain(|x| x.id != h.id);
                hooks.push(updated.clone());
                (updated, action)
            }
            None => {
                let resp = up.bc_send(
                    host,
                    &bigcommerce::create_hook(
                        &up.bc.api_base,
                        &up.bc.store_hash,
                        &up.bc.access_token,
                        scope,
                        &dest,
                        &headers,
                    ),
                )?;
                let created = bigcommerce::parse_hook(&resp).map_err(|e| {
                    Failure::unreadable(Service::BigCommerce, &format!("a hook ({e})"))
                })?;
                hooks.push(created.clone());
                (created, "created")
            }
        };
        let (hook, action) = action;
        report.push(
            json!({"scope": scope, "id": hook.id, "hook_scope": hook.scope,
                           "is_active": hook.is_active, "action": action}),
        );
    }
    Ok(json!({"destination": dest, "hooks": report}))
}

/// The `webhooks` section of `GET /admin/status`: `ok` only when every scope has an active
/// hook at the destination that sends the secret; `error` says what to do otherwise.
pub fn status(host: &mut dyn Host) -> Value {
    let base = match settings::public_base_url(host) {
        Ok(b) => b,
        Err(e) => {
            return json!({"ok": false, "destination": null, "hooks": [], "missing": SCOPES,
                          "error": format!("{e}; then register the hooks with POST /admin/webhooks")});
        }
    };
    let dest = destination(&base);
    let fail = |message: String| json!({"ok": false, "destination": dest, "hooks": [], "missing": [], "error": message});
    let secret = settings::optional(host, "bigcommerce_webhook_secret").unwrap_or_default();
    let up = match bc_upstreams(host) {
        Ok(u) => u,
        Err(e) => return fail(e.to_string()),
    };
    let hooks = match list(host, &up) {
        Ok(h) => h,
        Err(f) => return fail(format!("cannot list the hooks: {}", failure::explain(&f))),
    };
    let mut listed = Vec::new();
    let mut missing = Vec::new();
    let mut inactive = Vec::new();
    let mut unkeyed = Vec::new();
    for scope in SCOPES {
        match covering(&hooks, scope, &dest) {
            None => missing.push(scope),
            Some(h) => {
                listed.push(json!({"scope": scope, "id": h.id, "is_active": h.is_active}));
                if !h.is_active {
                    inactive.push(scope);
                } else if !h.sends_header(SECRET_HEADER, &secret) {
                    unkeyed.push(scope);
                }
            }
        }
    }
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("no hook for {} at {dest}", missing.join(", ")));
    }
    if !inactive.is_empty() {
        problems.push(format!(
            "BigCommerce deactivated the hook(s) for {} (deliveries kept failing; nothing is delivered \
             while inactive, and the sweep catches up what was missed)",
            inactive.join(", ")
        ));
    }
    if !unkeyed.is_empty() {
        problems.push(format!(
            "the hook(s) for {} do not send the current bigcommerce_webhook_secret in {SECRET_HEADER}, so \
             their deliveries are refused",
            unkeyed.join(", ")
        ));
    }
    let error = (!problems.is_empty()).then(|| {
        format!(
            "{}: POST /admin/webhooks creates, reactivates and re-keys them",
            problems.join("; ")
        )
    });
    json!({"ok": problems.is_empty(), "destination": dest, "hooks": listed, "missing": missing,
           "error": error})
}
