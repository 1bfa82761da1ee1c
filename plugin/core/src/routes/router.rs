//! The connector's HTTP surface (CONTRACT §3): routing, authentication, and what work a
//! request leaves behind to do after its response has been sent.

use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::host::{Host, LogLevel};
use crate::http::{HttpResponse, MAX_BODY, Request, error_response};
use crate::jobs::{bulk, order, run};
use crate::models::webhook::{self, EventKind};
use crate::settings::{self, SettingsError};
use crate::sync::pace::Paced;
use crate::sync::record::{Entity, State};
use crate::sync::store::{self, EventRef};
use crate::sync::upstream;

/// Work a request leaves behind, run after the response is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Sync one entity for the webhook just acknowledged.
    Sync {
        entity: Entity,
        id: String,
        event: EventRef,
    },
    /// A slice of bulk work: drain the backfill/sweep queue, list the next page (after
    /// `POST /admin/backfill` and every `POST /admin/retry-due`).
    Bulk,
}

fn settings_error(e: &SettingsError) -> HttpResponse {
    error_response(500, "configuration", &e.to_string())
}

fn method_not_allowed(req: &Request, allowed: &str) -> HttpResponse {
    let mut resp = error_response(
        405,
        "method_not_allowed",
        &format!(
            "{} is not supported on {}; use {allowed}",
            req.method,
            req.path()
        ),
    );
    resp.headers.push(("allow".into(), allowed.into()));
    resp
}

/// What the adapter does with a request before reading its body (see [`precheck`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precheck {
    /// Answer this now and do not read the body.
    Respond(HttpResponse),
    /// Read the body (at most `MAX_BODY + 1` bytes), then call [`handle`].
    ReadBody,
    /// Call [`handle`] without reading the body: the route does not use one.
    SkipBody,
}

/// Decides from the method, path and headers alone (`req.body` is not looked at) whether a
/// request may have its body read. A caller who has not authenticated never gets a body read:
/// a declared body over 64 KiB is refused (413), the webhook route checks its shared secret and
/// authenticated routes check the admin bearer first (the same answers [`handle`] gives), and
/// routes that need no credentials use no body. The adapter calls this before reading, so a
/// client that announces a body and never sends it cannot hold the connector up unauthenticated.
/// A new route that takes a body must be authenticated here too, or it will get none.
pub fn precheck(req: &Request, host: &mut dyn Host) -> Precheck {
    let declared = req
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Precheck::Respond(error_response(
            413,
            "payload_too_large",
            "request bodies are limited to 64 KiB",
        ));
    }
    let path = req.path().trim_end_matches('/');
    let refused_or_read = |r: Result<(), HttpResponse>| match r {
        Ok(()) => Precheck::ReadBody,
        Err(resp) => Precheck::Respond(resp),
    };
    match path {
        "/webhooks/bigcommerce" if req.method == "POST" => refused_or_read(
            settings::required(host, "bigcommerce_webhook_secret")
                .map_err(|e| settings_error(&e))
                .and_then(|secret| {
                    webhook::verify_shared_secret(&req.headers, &secret)
                        .map_err(|e| e.to_response())
                }),
        ),
        "/oauth/quickbooks/connect" => refused_or_read(authorize_admin(req, host)),
        // The console's files are public and take no body; its calls to /admin carry the token.
        p if super::console::owns(p) => Precheck::SkipBody,
        p if p.starts_with("/admin/") => refused_or_read(authorize_admin(req, host)),
        _ => Precheck::SkipBody,
    }
}

/// Routes one request. Returns the response and any work to do after sending it.
///
/// Every QuickBooks call made while handling it is counted for pacing ([`Paced`]).
pub fn handle(req: &Request, host: &mut dyn Host) -> (HttpResponse, Option<Work>) {
    let mut paced = Paced::new(host);
    handle_paced(req, &mut paced)
}

fn handle_paced(req: &Request, host: &mut dyn Host) -> (HttpResponse, Option<Work>) {
    if req.body.len() > MAX_BODY {
        return (
            error_response(
                413,
                "payload_too_large",
                "request bodies are limited to 64 KiB",
            ),
            None,
        );
    }
    let path = req.path().trim_end_matches('/');
    let path = if path.is_empty() { "/" } else { path };
    let response = match path {
        "/webhooks/bigcommerce" => return webhook_intake(req, host),
        "/health" => match req.method.as_str() {
            "GET" | "HEAD" => HttpResponse::json(200, &json!({"status": "ok"})),
            _ => method_not_allowed(req, "GET"),
        },
        "/oauth/quickbooks/connect" => match (req.method.as_str(), authorize_admin(req, host)) {
            ("GET", Ok(())) => crate::routes::oauth::connect(req, host),
            (_, Err(resp)) => resp,
            _ => method_not_allowed(req, "GET"),
        },
        // Authenticated by its single-use `state`, not the admin token (the browser comes back from Intuit).
        "/oauth/quickbooks/callback" => match req.method.as_str() {
            "GET" => crate::routes::oauth::callback(req, host),
            _ => method_not_allowed(req, "GET"),
        },
        p if super::console::owns(p) => super::console::serve(req, p),
        p if p.starts_with("/admin/") => match authorize_admin(req, host) {
            Err(resp) => resp,
            Ok(()) => {
                let resp = admin(req, p, host);
                // Retry-due and a started backfill leave a slice of bulk work behind.
                let bulk = req.method == "POST"
                    && resp.is_success()
                    && matches!(p, "/admin/retry-due" | "/admin/backfill");
                return (resp, bulk.then_some(Work::Bulk));
            }
        },
        _ => error_response(
            404,
            "not_found",
            &format!("no route for {} {}", req.method, req.path()),
        ),
    };
    (response, None)
}

/// Runs work left by [`handle`] (counting QuickBooks calls for pacing, like [`handle`]).
pub fn run(work: Work, host: &mut dyn Host) {
    let mut paced = Paced::new(host);
    let host: &mut dyn Host = &mut paced;
    match work {
        Work::Sync { entity, id, event } => {
            if let Err(e) = run::sync(host, entity, &id, run::Trigger::Event(event)) {
                // The guard entry filed at intake makes the scheduler pick this up later.
                host.log(
                    LogLevel::Warn,
                    &format!("{entity} {id}: could not run now ({e}); retry-due will"),
                );
            }
            // Capacity this job used is free again: run what waits for it.
            drain(host, DRAIN_AFTER_JOB_MS);
        }
        Work::Bulk => {
            drain(host, DRAIN_AFTER_RETRY_MS);
            if let Err(e) = bulk::slice(host, bulk::SLICE_MS) {
                host.log(
                    LogLevel::Warn,
                    &format!("bulk work stopped ({e}); the next retry-due goes on"),
                );
            }
        }
    }
}

/// How long the work after a webhook may go on running waiting work without handling any
/// (a drainer that handles work goes on, see [`run::drain_waiting`]).
const DRAIN_AFTER_JOB_MS: i64 = 20_000;
/// The same after retry-due (below its 15 s tick).
const DRAIN_AFTER_RETRY_MS: i64 = 12_000;

/// How long a drainer's lease outlives its budget (its last job may still be running).
const DRAINER_GRACE_MS: i64 = 30_000;

/// Runs work waiting for QuickBooks capacity (see [`run::drain_waiting`]), if there is any.
fn drain(host: &mut dyn Host, budget_ms: i64) {
    use crate::sync::limiter;
    let result = limiter::queue_is_empty(host).and_then(|empty| {
        if empty {
            return Ok(());
        }
        // A few drainers at once are enough to use the capacity; the rest leave it to them.
        let Some(drainer) =
            limiter::take_drainer(host, budget_ms + run::DRAIN_EXTENDS_MS + DRAINER_GRACE_MS)?
        else {
            return Ok(());
        };
        let drained = run::drain_waiting(host, budget_ms, drainer.lane).map(|_| ());
        store::release(host, drainer.guard)?;
        drained
    });
    if let Err(e) = result {
        host.log(
            LogLevel::Warn,
            &format!("waiting work not run now ({e}); the next retry-due goes on"),
        );
    }
}

/// `Authorization: Bearer <admin_token>`, compared in constant time.
fn authorize_admin(req: &Request, host: &mut dyn Host) -> Result<(), HttpResponse> {
    let expected = settings::required(host, "admin_token").map_err(|e| settings_error(&e))?;
    let presented = req
        .header("authorization")
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim);
    let unauthorized = || {
        let mut r = error_response(
            401,
            "unauthorized",
            "admin routes need `Authorization: Bearer <admin_token>`",
        );
        r.headers.push(("www-authenticate".into(), "Bearer".into()));
        r
    };
    let Some(presented) = presented else {
        return Err(unauthorized());
    };
    // Hash both sides so the comparison time does not depend on the token's length either.
    use sha2::{Digest, Sha256};
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    if bool::from(a.ct_eq(&b)) {
        Ok(())
    } else {
        Err(unauthorized())
    }
}

fn admin(req: &Request, path: &str, host: &mut dyn Host) -> HttpResponse {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["admin", "records"] => match req.method.as_str() {
            "GET" => list_records(req, host),
            _ => method_not_allowed(req, "GET"),
        },
        ["admin", "records", entity, id] => match req.method.as_str() {
            "GET" => with_entity(entity, id, |e, id| get_record(host, e, id)),
            _ => method_not_allowed(req, "GET"),
        },
        ["admin", "replay", entity, id] => match req.method.as_str() {
            "POST" => with_entity(entity, id, |e, id| replay(host, e, id)),
            _ => method_not_allowed(req, "POST"),
        },
        ["admin", "status"] => match req.method.as_str() {
            "GET" => crate::routes::status::status(host),
            _ => method_not_allowed(req, "GET"),
        },
        ["admin", "retry-due"] => match req.method.as_str() {
            "POST" => retry_due(host),
            _ => method_not_allowed(req, "POST"),
        },
        ["admin", "preview", "order", id] => match req.method.as_str() {
            "GET" => preview_order(host, id),
            _ => method_not_allowed(req, "GET"),
        },
        _ => admin_fixed(req, path, host),
    }
}

fn admin_fixed(req: &Request, path: &str, host: &mut dyn Host) -> HttpResponse {
    match path {
        "/admin/mapping" => match req.method.as_str() {
            "GET" => get_mapping(host),
            "PUT" => put_mapping(req, host),
            _ => method_not_allowed(req, "GET, PUT"),
        },
        "/admin/backfill" => match req.method.as_str() {
            "POST" => crate::routes::bulk::start_backfill(req, host),
            "GET" => crate::routes::bulk::get_backfill(host),
            "DELETE" => crate::routes::bulk::cancel_backfill(host),
            _ => method_not_allowed(req, "GET, POST, DELETE"),
        },
        "/admin/webhooks" => match req.method.as_str() {
            "POST" => crate::routes::bulk::register_webhooks(host),
            _ => method_not_allowed(req, "POST"),
        },
        _ => error_response(
            404,
            "not_found",
            &format!("no route for {} {}", req.method, req.path()),
        ),
    }
}

/// The mapping in force: the one stored by `PUT /admin/mapping`, else the `mapping` variable,
/// else the built-in default.
pub fn current_mapping(host: &mut dyn Host) -> Result<Value, HttpResponse> {
    match host.kv_get(store::MAPPING_KEY) {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).map_err(|e| {
            error_response(
                500,
                "storage",
                &format!("the stored mapping is corrupt: {e}; PUT a new one"),
            )
        }),
        Ok(None) => match settings::optional(host, "mapping") {
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                error_response(
                    500,
                    "configuration",
                    &format!("variable `mapping` is not valid JSON: {e}"),
                )
            }),
            None => Ok(
                serde_json::to_value(crate::books::mapping::MappingConfig::default())
                    .unwrap_or(Value::Null),
            ),
        },
        Err(e) => Err(error_response(
            503,
            "storage",
            &format!("{e}; retry shortly"),
        )),
    }
}

fn get_mapping(host: &mut dyn Host) -> HttpResponse {
    match current_mapping(host) {
        Ok(v) => HttpResponse::json(200, &v),
        Err(resp) => resp,
    }
}

fn put_mapping(req: &Request, host: &mut dyn Host) -> HttpResponse {
    let config = match crate::books::mapping::MappingConfig::parse(&req.body) {
        Ok(c) => c,
        Err(problems) => {
            let list: Vec<Value> = problems
                .iter()
                .map(|p| json!({"path": p.path, "message": p.message}))
                .collect();
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
    // Every name checked against the company when QuickBooks is connected (CONTRACT §4).
    match crate::sync::names::unknown_names(host, &config) {
        Ok(Some(unknown)) if !unknown.is_empty() => {
            let list: Vec<Value> = unknown
                .iter()
                .map(|u| {
                    json!({"path": u.path, "entity": u.entity, "name": u.name,
                           "message": format!("{} '{}' not found in QuickBooks: create it or use a name the company has", u.entity, u.name)})
                })
                .collect();
            let names: Vec<String> = unknown
                .iter()
                .map(|u| format!("{} '{}'", u.entity, u.name))
                .collect();
            return HttpResponse::json(
                400,
                &json!({
                    "error": "unknown_names",
                    "message": format!("the QuickBooks company has no {}; create them or fix the mapping, then PUT it again (nothing was saved)", names.join(", ")),
                    "problems": list,
                }),
            );
        }
        Ok(_) => {}
        Err(f) => {
            return error_response(
                503,
                "quickbooks_unavailable",
                &format!(
                    "the mapping's names could not be checked against QuickBooks ({}); nothing was saved: retry shortly",
                    f.explanation
                ),
            );
        }
    }
    let normalized = serde_json::to_value(&config).unwrap_or(Value::Null);
    let bytes = serde_json::to_vec(&normalized).unwrap_or_default();
    match host.kv_set(store::MAPPING_KEY, &bytes) {
        Ok(()) => HttpResponse::json(200, &normalized),
        Err(e) => error_response(
            503,
            "storage",
            &format!("{e}; the mapping was not saved, retry"),
        ),
    }
}

fn storage_error(e: &crate::host::KvError) -> HttpResponse {
    error_response(503, "storage", &format!("{e}; retry shortly"))
}

fn with_entity(
    entity: &str,
    id: &str,
    f: impl FnOnce(Entity, &str) -> HttpResponse,
) -> HttpResponse {
    let Some(e) = Entity::parse(entity) else {
        return error_response(
            404,
            "not_found",
            &format!("unknown entity `{entity}`: use order or customer"),
        );
    };
    match canonical_id(id) {
        Ok(id) => f(e, &id),
        Err(message) => error_response(
            400,
            "bad_request",
            &format!("{message} (a BigCommerce {entity} id)"),
        ),
    }
}

/// An entity id as webhooks name it: a positive whole number without leading zeros. `0250`
/// is refused rather than read as `250`: it would name a second record for the same entity, and
/// silently rewriting what the operator typed hides the mistake.
fn canonical_id(id: &str) -> Result<String, String> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{id}` is not an id: use digits only"));
    }
    match id.parse::<u64>() {
        Ok(0) | Err(_) => Err(format!(
            "`{id}` is not an id: ids are whole numbers from 1 to {}",
            u64::MAX
        )),
        Ok(n) if n.to_string() != id => Err(format!(
            "`{id}` is not written the way BigCommerce writes ids: use {n}"
        )),
        Ok(n) => Ok(n.to_string()),
    }
}

/// `POST /webhooks/bigcommerce`: authenticate, parse, record durably, acknowledge, then work.
fn webhook_intake(req: &Request, host: &mut dyn Host) -> (HttpResponse, Option<Work>) {
    if req.method != "POST" {
        return (method_not_allowed(req, "POST"), None);
    }
    let secret = match settings::required(host, "bigcommerce_webhook_secret") {
        Ok(s) => s,
        Err(e) => return (settings_error(&e), None),
    };
    if let Err(e) = webhook::verify_shared_secret(&req.headers, &secret) {
        return (e.to_response(), None);
    }
    if let Some(client_secret) = settings::optional(host, "bigcommerce_client_secret") {
        let now = host.now();
        if let Err(e) = webhook::verify_signature(&req.headers, &req.body, &client_secret, now) {
            return (e.to_response(), None);
        }
    }
    let event = match webhook::parse(&req.body) {
        Ok(ev) => ev,
        Err(e) => return (e.to_response(), None),
    };
    let (entity, id) = match &event.kind {
        EventKind::Order { id, .. } => (Entity::Order, id.to_string()),
        EventKind::Customer { id, .. } => (Entity::Customer, id.to_string()),
        EventKind::CustomerAddress { customer_id, .. } => {
            (Entity::Customer, customer_id.to_string())
        }
        EventKind::Ignored => {
            return (
                HttpResponse::json(200, &json!({"status": "ignored", "scope": event.scope})),
                None,
            );
        }
    };
    let event_ref = EventRef {
        scope: event.scope.clone(),
        hash: event.hash.clone(),
        created_at: event.created_at.map(|at| at.timestamp()),
    };
    if let Err(e) = run::accept_event(host, entity, &id, event_ref.clone()) {
        // Not recorded: make BigCommerce deliver it again.
        return (storage_error(&e), None);
    }
    let body = json!({"status": "accepted", "entity": entity.as_str(), "id": id});
    (
        HttpResponse::json(200, &body),
        Some(Work::Sync {
            entity,
            id,
            event: event_ref,
        }),
    )
}

fn list_records(req: &Request, host: &mut dyn Host) -> HttpResponse {
    let state = match req
        .query_param("status")
        .or_else(|| req.query_param("state"))
    {
        None => None,
        Some(s) => match State::parse(&s) {
            Some(st) => Some(st),
            None => {
                return error_response(
                    400,
                    "bad_request",
                    &format!(
                        "unknown status `{s}`: use pending, retrying, posted, failed, needs_reauth or skipped"
                    ),
                );
            }
        },
    };
    let entity = match req.query_param("entity") {
        None => None,
        Some(e) => match Entity::parse(&e) {
            Some(en) => Some(en),
            None => {
                return error_response(
                    400,
                    "bad_request",
                    &format!("unknown entity `{e}`: use order or customer"),
                );
            }
        },
    };
    let limit = match req.query_param("limit").map(|l| l.parse::<usize>()) {
        None => 50,
        Some(Ok(l)) if (1..=500).contains(&l) => l,
        Some(_) => {
            return error_response(
                400,
                "bad_request",
                "limit must be a whole number from 1 to 500",
            );
        }
    };
    match store::list_records(host, entity, state, limit, 5_000) {
        Ok((records, truncated)) => {
            HttpResponse::json(200, &json!({"records": records, "truncated": truncated}))
        }
        Err(e) => storage_error(&e),
    }
}

fn get_record(host: &mut dyn Host, entity: Entity, id: &str) -> HttpResponse {
    match store::load_record(host, entity, id) {
        Ok(Some(r)) => HttpResponse::json(200, &serde_json::to_value(&r).unwrap_or(Value::Null)),
        Ok(None) => error_response(
            404,
            "not_found",
            &format!("no sync record for {entity} {id}"),
        ),
        Err(e) => storage_error(&e),
    }
}

fn replay(host: &mut dyn Host, entity: Entity, id: &str) -> HttpResponse {
    match run::sync(host, entity, id, run::Trigger::Replay) {
        Ok(run::RunResult::Busy) => error_response(
            409,
            "busy",
            &format!("{entity} {id} is being synced right now; look at its record in a moment"),
        ),
        Ok(_) => get_record(host, entity, id),
        Err(e) => storage_error(&e),
    }
}

fn retry_due(host: &mut dyn Host) -> HttpResponse {
    match run::retry_due(host) {
        Ok(report) => HttpResponse::json(200, &serde_json::to_value(report).unwrap_or(Value::Null)),
        Err(e) => storage_error(&e),
    }
}

fn preview_order(host: &mut dyn Host, id: &str) -> HttpResponse {
    // A canonical id always parses.
    let order_id = match canonical_id(id) {
        Ok(id) => id.parse::<u64>().unwrap_or_default(),
        Err(message) => {
            return error_response(400, "bad_request", &format!("{message} (an order id)"));
        }
    };
    let posted = match store::load_record(host, Entity::Order, id) {
        Ok(rec) => rec.map(|r| r.documents()).unwrap_or_default(),
        Err(e) => return storage_error(&e),
    };
    let result = upstream::upstreams(host).and_then(|up| {
        let fetched = order::fetch_order(host, &up, order_id)?;
        let prepared = order::prepare_order(host, &up, fetched, true)?;
        let docs = order::preview_documents(host, &up, &prepared, &posted)?;
        Ok((prepared, docs))
    });
    match result {
        Ok((p, docs)) => HttpResponse::json(
            200,
            &json!({"order_id": order_id, "invoice": p.invoice, "total": p.draft_total, "digest": p.digest,
                    "customer": {"qbo_id": p.customer.0.qbo_id, "display_name": p.customer.0.display_name,
                                 "matched_by": p.customer.1.as_str()},
                    "documents": docs, "posted": false}),
        ),
        Err(f) => {
            let status = match f.status {
                Some(404) => 404,
                _ if f.is_retryable() => 502,
                _ => 422,
            };
            HttpResponse::json(
                status,
                &json!({"error": f.reason(), "message": crate::sync::failure::explain(&f)}),
            )
        }
    }
}
