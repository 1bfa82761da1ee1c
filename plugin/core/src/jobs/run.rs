//! Jobs: what happens to one BigCommerce entity, under its lease, from webhook to posted
//! QuickBooks document — and the scheduler entry points (`retry-due`, replay, preview).
//!
//! A job never trusts the event: it re-reads the current order/customer and reconciles.
//! Every step lands in the record's audit trail; every failure is classified into retry
//! later, needs a human, or needs re-authorization.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::books::customer::{self, CustomerSource};
use crate::books::mapping::{self, GuestMode, MappingConfig, OrderContext};
use crate::crypto::Keyring;
use crate::host::{Host, KvError, LogLevel};
use crate::models::bigcommerce::{self, CatalogProduct, Order, OrderId, OrderProduct, ProductId};
use crate::models::quickbooks::{self, request_id};
use crate::settings::{self, BigCommerceSettings, QuickBooksSettings, RetrySettings};
use crate::sync::connection::{self, Vault};
use crate::sync::record::{Entity, Failure, Service, State, SyncRecord};
use crate::sync::resolve::{self, Matched};
use crate::sync::store::{self, DueEntry, EventRef};
use crate::sync::upstream::{QboFailure, Upstreams, id_and_token};

/// How long a webhook's worker waits for another worker on the same entity.
const LEASE_WAIT_MS: u64 = 10_000;

/// Why a job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A webhook arrived (or its guard entry came due after a crash).
    Event(EventRef),
    /// The scheduler found the record due.
    Due,
    /// An operator asked for it (`POST /admin/replay/...`).
    Replay,
}

/// What a job run did, for `retry-due`/replay reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunResult {
    /// Ran; the record is now in this state.
    Ran(State),
    /// Nothing to do (duplicate event, not due).
    NothingToDo(State),
    /// Another worker holds the entity; it will be retried.
    Busy,
}

/// Reads the settings every job needs.
pub fn upstreams(host: &mut dyn Host) -> Result<Upstreams, Failure> {
    let bc = BigCommerceSettings::read(host).map_err(|e| Failure::configuration(&e.to_string()))?;
    let qbo = QuickBooksSettings::read(host).map_err(|e| Failure::configuration(&e.to_string()))?;
    let keyring = Keyring::from_config(
        settings::optional(host, "encryption_key").as_deref(),
        settings::optional(host, "encryption_key_previous").as_deref(),
    )
    .map_err(|e| Failure::configuration(&e.to_string()))?;
    Ok(Upstreams { bc, qbo, keyring })
}

/// The mapping in force (stored by `PUT /admin/mapping`, else the `mapping` variable, else the default).
pub fn mapping_config(host: &mut dyn Host) -> Result<MappingConfig, Failure> {
    let stored = host
        .kv_get(crate::routes::router::MAPPING_KEY)
        .map_err(|e| Failure::storage(&e.to_string()))?;
    let bytes = match stored {
        Some(b) => b,
        None => match settings::optional(host, "mapping") {
            Some(text) => text.into_bytes(),
            None => return Ok(MappingConfig::default()),
        },
    };
    MappingConfig::parse(&bytes).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        Failure::mapping(&format!(
            "the mapping is invalid: {}; fix it with PUT /admin/mapping",
            list.join("; ")
        ))
    })
}

/// Runs the entity's job now (waiting briefly for its lease).
pub fn sync(
    host: &mut dyn Host,
    entity: Entity,
    id: &str,
    trigger: Trigger,
) -> Result<RunResult, KvError> {
    sync_with_wait(host, entity, id, trigger, LEASE_WAIT_MS)
}

fn sync_with_wait(
    host: &mut dyn Host,
    entity: Entity,
    id: &str,
    trigger: Trigger,
    wait_ms: u64,
) -> Result<RunResult, KvError> {
    let key = store::entity_lease_key(entity, id);
    let Some(lease) = store::acquire(host, &key, store::ENTITY_LEASE_MS, wait_ms)? else {
        return Ok(RunResult::Busy);
    };
    let result = sync_locked(host, entity, id, trigger);
    store::release(host, lease)?;
    result
}

fn sync_locked(
    host: &mut dyn Host,
    entity: Entity,
    id: &str,
    trigger: Trigger,
) -> Result<RunResult, KvError> {
    let now = host.now();
    let loaded = store::load_record(host, entity, id)?;
    let previous = loaded.as_ref().map(|r| r.state);
    let mut rec = loaded.unwrap_or_else(|| SyncRecord::new(entity, id, now));
    match &trigger {
        Trigger::Event(ev) => {
            if !rec.received(&ev.scope, &ev.hash, ev.created_at, now) && previous.is_some() {
                return Ok(RunResult::NothingToDo(rec.state));
            }
            // A record waiting out a rate limit keeps its schedule; a parked one waits for
            // re-authorization. Either way the event is on record and the next run fetches
            // the current state, which includes it.
            if matches!(rec.state, State::Retrying | State::NeedsReauth) {
                store::save_record(host, &rec, previous)?;
                return Ok(RunResult::NothingToDo(rec.state));
            }
        }
        Trigger::Due => {
            let reauthorized = !connection::state(host)?.needs_reauth;
            // A `pending` record whose lease we just took has no live worker (it died after
            // the acknowledgement): run it now rather than wait for it to look stale.
            let orphaned = previous.is_some() && rec.state == State::Pending;
            if !rec.is_due(now, reauthorized) && !orphaned {
                return Ok(RunResult::NothingToDo(rec.state));
            }
            if rec.state == State::NeedsReauth {
                rec.reauthorized(now);
            }
        }
        Trigger::Replay => rec.replay_requested(now),
    }
    store::save_record(host, &rec, previous)?;
    let mut job = Job {
        rec,
        saved_state: None,
    };
    job.saved_state = Some(job.rec.state);
    let replay = trigger == Trigger::Replay;
    let outcome = match upstreams(host) {
        Err(f) => Err(f),
        Ok(up) => match entity {
            Entity::Order => order(host, &up, &mut job, replay),
            Entity::Customer => crate::jobs::customer::run(host, &up, &mut job.rec, replay),
        },
    };
    finish(host, &mut job, outcome)?;
    Ok(RunResult::Ran(job.rec.state))
}

struct Job {
    rec: SyncRecord,
    saved_state: Option<State>,
}

impl Job {
    fn save(&mut self, host: &mut dyn Host) -> Result<(), KvError> {
        store::save_record(host, &self.rec, self.saved_state)?;
        self.saved_state = Some(self.rec.state);
        Ok(())
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    Posted {
        qbo_id: String,
        sync_token: String,
        requestid: Option<String>,
        digest: String,
    },
    Unchanged,
    Skipped(String),
}

fn finish(
    host: &mut dyn Host,
    job: &mut Job,
    outcome: Result<Done, Failure>,
) -> Result<(), KvError> {
    let now = host.now();
    match outcome {
        Ok(Done::Posted {
            qbo_id,
            sync_token,
            requestid,
            digest,
        }) => {
            job.rec.content_digest = Some(digest);
            job.rec
                .posted(&qbo_id, &sync_token, requestid.as_deref(), now);
        }
        Ok(Done::Unchanged) => {
            let qbo_id = job.rec.qbo_id.clone().unwrap_or_default();
            let token = job.rec.qbo_sync_token.clone().unwrap_or_default();
            job.rec.posted(&qbo_id, &token, None, now);
            if let Some(last) = job.rec.audit.last_mut() {
                last.step = "unchanged".into();
            }
        }
        Ok(Done::Skipped(reason)) => job.rec.skipped(&reason, now),
        Err(failure) => {
            let retry = RetrySettings::read(host).unwrap_or(RetrySettings {
                base_seconds: settings::DEFAULT_RETRY_BASE_SECONDS,
                max_attempts: settings::DEFAULT_MAX_ATTEMPTS,
            });
            let mut jitter = [0u8; 4];
            host.random_bytes(&mut jitter);
            job.rec.attempt_failed(
                &failure,
                now,
                retry.max_attempts,
                retry.base_seconds,
                u32::from_le_bytes(jitter),
            );
            host.log(
                LogLevel::Warn,
                &format!(
                    "{} {}: {}",
                    job.rec.entity,
                    job.rec.id,
                    job.rec.last_error.clone().unwrap_or_default()
                ),
            );
        }
    }
    job.save(host)
}

/// A QuickBooks connection problem that is not lost authorization.
pub fn connection_failure(e: &connection::ConnectionError) -> Failure {
    match e {
        connection::ConnectionError::Token(t) => Failure::from_token_error(t),
        connection::ConnectionError::Kv(k) => Failure::storage(&k.to_string()),
        connection::ConnectionError::Transport(t) => {
            crate::sync::record::classify_transport(Service::QuickBooks, t)
        }
        other => Failure::configuration(&other.to_string()),
    }
}

fn qf(e: QboFailure) -> Failure {
    e.failure
}

/// An order fetched from BigCommerce with what mapping needs.
pub struct FetchedOrder {
    pub raw: Value,
    pub order: Order,
    pub lines: Vec<OrderProduct>,
}

/// Fetches the order with its line items: one request in the common case.
pub fn fetch_order(host: &mut dyn Host, up: &Upstreams, id: u64) -> Result<FetchedOrder, Failure> {
    let bc = &up.bc;
    let resp = up.bc_send(
        host,
        &bigcommerce::order_with_line_items(
            &bc.api_base,
            &bc.store_hash,
            &bc.access_token,
            OrderId(id),
        ),
    )?;
    let raw: Value = up.bc_decode(&resp, "order")?;
    let order: Order = up.bc_decode(&resp, "order")?;
    let mut lines = bigcommerce::line_items(&order);
    if order.consignments.is_none() {
        // An older store without consignments: the line items are a separate, paged resource.
        lines.clear();
        for page in 1.. {
            let resp = up.bc_send(
                host,
                &bigcommerce::order_products(
                    &bc.api_base,
                    &bc.store_hash,
                    &bc.access_token,
                    OrderId(id),
                    page,
                ),
            )?;
            let batch = bigcommerce::parse_order_products(&resp).map_err(|e| {
                Failure::unreadable(Service::BigCommerce, &format!("order lines ({e})"))
            })?;
            let full = batch.len() >= 250;
            lines.extend(batch);
            if !full {
                break;
            }
        }
    }
    Ok(FetchedOrder { raw, order, lines })
}

/// Catalog data for the products a rule needs, cached per product.
fn catalog(
    host: &mut dyn Host,
    up: &Upstreams,
    products: &[ProductId],
) -> Result<HashMap<ProductId, CatalogProduct>, Failure> {
    let mut out = HashMap::new();
    for &pid in products {
        let key = format!("cache/bc/product/{}", pid.0);
        if let Ok(Some(p)) = store::cache_get::<CatalogProduct>(host, &key) {
            out.insert(pid, p);
            continue;
        }
        let bc = &up.bc;
        let resp = up.bc_send(
            host,
            &bigcommerce::catalog_product(&bc.api_base, &bc.store_hash, &bc.access_token, pid),
        )?;
        let product = bigcommerce::parse_catalog_product(&resp).map_err(|e| {
            Failure::unreadable(Service::BigCommerce, &format!("product {} ({e})", pid.0))
        })?;
        let _ = store::cache_set(host, &key, &product);
        out.insert(pid, product);
    }
    Ok(out)
}

fn customer_group(
    host: &mut dyn Host,
    up: &Upstreams,
    customer_id: u64,
) -> Result<Option<u64>, Failure> {
    let bc = &up.bc;
    let resp = up.bc_send(
        host,
        &bigcommerce::customers_by_ids(
            &bc.api_base,
            &bc.store_hash,
            &bc.access_token,
            &[bigcommerce::CustomerId(customer_id)],
        ),
    )?;
    let customers = bigcommerce::parse_customers(&resp).map_err(|e| {
        Failure::unreadable(
            Service::BigCommerce,
            &format!("customer {customer_id} ({e})"),
        )
    })?;
    Ok(customers.first().map(|c| c.customer_group_id))
}

/// Who the invoice is for, per the contract's guest policy.
pub fn invoice_customer_source(config: &MappingConfig, fetched: &FetchedOrder) -> CustomerSource {
    let billing = fetched
        .raw
        .get("billing_address")
        .cloned()
        .unwrap_or(Value::Null);
    let shipping = fetched
        .raw
        .pointer("/consignments/shipping/0")
        .cloned()
        .or_else(|| fetched.raw.pointer("/shipping_addresses/0").cloned());
    let mut source = CustomerSource::from_billing_address(&billing, shipping.as_ref());
    if fetched.order.is_guest() {
        if config.customers.guest.mode == GuestMode::Single {
            let name = config
                .customers
                .guest
                .name
                .clone()
                .unwrap_or_else(|| "BigCommerce Guests".into());
            source = CustomerSource {
                company: name,
                ..CustomerSource::default()
            };
        }
    } else {
        source.bc_customer_id = Some(fetched.order.customer_id.0);
    }
    source
}

/// The invoice an order maps to, with everything resolved (a dry run creates nothing).
pub struct Prepared {
    pub fetched: FetchedOrder,
    pub invoice: Value,
    pub digest: String,
    pub doc_number: Option<String>,
    pub draft_total: String,
    pub customer: (resolve::CustomerLink, Matched),
}

/// Fetches, maps and resolves an order into the invoice body that would be sent.
pub fn prepare_order(
    host: &mut dyn Host,
    up: &Upstreams,
    fetched: FetchedOrder,
    dry_run: bool,
) -> Result<Prepared, Failure> {
    let config = mapping_config(host)?;
    let plan = mapping::plan(&config, &fetched.order, &fetched.lines);
    let catalog = catalog(host, up, &plan.catalog_products)?;
    let group = if plan.needs_customer_group && !fetched.order.is_guest() {
        customer_group(host, up, fetched.order.customer_id.0)?
    } else {
        None
    };
    let ctx = OrderContext {
        order: &fetched.order,
        lines: &fetched.lines,
        catalog: &catalog,
        customer_group_id: group,
    };
    let exact = mapping::plan_exact(&config, &ctx).map_err(|e| Failure::mapping(&e.to_string()))?;
    // Totals are checked before anything is resolved or created in QuickBooks.
    mapping::check_totals(&fetched.order, &fetched.lines)
        .map_err(|e| Failure::mapping(&e.to_string()))?;
    let access = connection::access(
        host,
        &Vault {
            keyring: &up.keyring,
        },
        &up.qbo,
        false,
    )
    .map_err(|e| {
        if e.needs_reauth() {
            Failure::needs_reauth(&e.to_string())
        } else if let connection::ConnectionError::Token(t) = &e {
            Failure::from_token_error(t)
        } else {
            connection_failure(&e)
        }
    })?;
    let refs = resolve::refs(host, up, &access.realm_id, &exact, dry_run).map_err(qf)?;
    let source = invoice_customer_source(&config, &fetched);
    let customer = resolve::customer(host, up, &source, dry_run).map_err(qf)?;
    let draft = mapping::build_invoice(&config, &ctx, &refs, &customer.0.qbo_id)
        .map_err(|e| Failure::mapping(&e.to_string()))?;
    let invoice = serde_json::to_value(&draft.invoice).unwrap_or(Value::Null);
    let digest = customer::content_digest(&invoice);
    Ok(Prepared {
        doc_number: draft.invoice.doc_number.clone(),
        draft_total: draft.total.to_string(),
        fetched,
        invoice,
        digest,
        customer,
    })
}

fn order(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    replay: bool,
) -> Result<Done, Failure> {
    let id: u64 = job
        .rec
        .id
        .parse()
        .map_err(|_| Failure::mapping(&format!("'{}' is not an order id", job.rec.id)))?;
    let fetched = fetch_order(host, up, id)?;
    let now = host.now();
    job.rec.note(
        "fetched",
        json!({"status_id": fetched.order.status_id, "total_inc_tax": fetched.order.total_inc_tax.to_string(), "lines": fetched.lines.len()}),
        now,
    );
    let status = fetched.order.status_id;
    if job.rec.qbo_id.is_none() {
        if status == 0 {
            return Ok(Done::Skipped(
                "incomplete order (status 0): it is invoiced once checkout completes".into(),
            ));
        }
        if fetched.order.is_deleted {
            return Ok(Done::Skipped(
                "the order was archived in BigCommerce before it was invoiced".into(),
            ));
        }
        if matches!(status, 5 | 6) {
            return Ok(Done::Skipped(format!(
                "the order is {} (status {status}): nothing to invoice",
                fetched.order.status
            )));
        }
    } else if fetched.order.is_deleted {
        job.rec.note(
            "archived",
            json!({"note": "archived in BigCommerce; the invoice is left as it is"}),
            now,
        );
        return Ok(Done::Unchanged);
    }
    let prepared = prepare_order(host, up, fetched, false)?;
    let now = host.now();
    job.rec.note(
        "mapped",
        json!({"digest": prepared.digest, "total": prepared.draft_total, "doc_number": prepared.doc_number,
               "customer": {"qbo_id": prepared.customer.0.qbo_id, "matched_by": prepared.customer.1.as_str()}}),
        now,
    );
    let store_hash = up.bc.store_hash.clone();
    if let Some(qbo_id) = job.rec.qbo_id.clone() {
        let mut sync_token = job.rec.qbo_sync_token.clone().unwrap_or_default();
        let mut edited_in_quickbooks = false;
        if replay {
            // Re-check QuickBooks: the linked invoice may have been changed or deleted there.
            match up.qbo_read(host, "invoice", "Invoice", &qbo_id) {
                Ok(current) => {
                    let current_token = id_and_token(&current).1;
                    edited_in_quickbooks =
                        job.rec.qbo_sync_token.as_deref() != Some(current_token.as_str());
                    sync_token = current_token;
                }
                Err(e) if is_gone(&e) => {
                    return recreate(host, up, job, &prepared, &store_hash, id);
                }
                Err(e) => return Err(e.failure),
            }
        }
        // Same content, and (on a replay) nobody changed the invoice in QuickBooks: nothing to do.
        if !edited_in_quickbooks
            && job.rec.content_digest.as_deref() == Some(prepared.digest.as_str())
        {
            return Ok(Done::Unchanged);
        }
        return update_invoice(
            host,
            up,
            job,
            &prepared,
            &qbo_id,
            &sync_token,
            &store_hash,
            id,
        );
    }
    create_invoice(host, up, job, &prepared, &store_hash, id, None)
}

fn is_gone(e: &QboFailure) -> bool {
    e.has_code("610") || e.failure.status == Some(404) || e.has_code("2030")
}

#[allow(clippy::too_many_arguments)]
fn update_invoice(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    prepared: &Prepared,
    qbo_id: &str,
    sync_token: &str,
    store_hash: &str,
    order_id: u64,
) -> Result<Done, Failure> {
    let mut token = sync_token.to_string();
    for attempt in 0..2 {
        let mut body = prepared.invoice.clone();
        body["Id"] = json!(qbo_id);
        body["SyncToken"] = json!(token);
        body["sparse"] = json!(true);
        let rid = request_id(&["upd", &order_id.to_string(), &token, &prepared.digest]);
        match up.qbo_update(host, "invoice", "Invoice", &body, &rid) {
            Ok(updated) => {
                let (id, new_token) = id_and_token(&updated);
                return Ok(Done::Posted {
                    qbo_id: id,
                    sync_token: new_token,
                    requestid: Some(rid),
                    digest: prepared.digest.clone(),
                });
            }
            // Someone edited the invoice in QuickBooks meanwhile: take its current SyncToken and retry once.
            Err(e) if e.has_code("5010") && attempt == 0 => {
                let current = up
                    .qbo_read(host, "invoice", "Invoice", qbo_id)
                    .map_err(qf)?;
                token = id_and_token(&current).1;
                let now = host.now();
                job.rec
                    .note("stale_sync_token", json!({"retrying_with": token}), now);
            }
            Err(e) if is_gone(&e) => {
                return recreate(host, up, job, prepared, store_hash, order_id);
            }
            Err(e) => return Err(e.failure),
        }
    }
    Err(Failure::mapping(
        "QuickBooks kept reporting a stale SyncToken; replay the order",
    ))
}

fn recreate(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    prepared: &Prepared,
    store_hash: &str,
    order_id: u64,
) -> Result<Done, Failure> {
    let now = host.now();
    let old = job.rec.qbo_id.take();
    job.rec.qbo_sync_token = None;
    job.rec.note(
        "recreating",
        json!({"deleted_qbo_id": old, "note": "the linked invoice no longer exists in QuickBooks; creating it once more with a new requestid"}),
        now,
    );
    let generation = old.unwrap_or_default();
    create_invoice(
        host,
        up,
        job,
        prepared,
        store_hash,
        order_id,
        Some(&generation),
    )
}

fn create_invoice(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    prepared: &Prepared,
    store_hash: &str,
    order_id: u64,
    replacing: Option<&str>,
) -> Result<Done, Failure> {
    let order = order_id.to_string();
    let mut parts = vec!["bc", store_hash, order.as_str(), prepared.digest.as_str()];
    if let Some(r) = replacing {
        parts.push(r);
    }
    let rid = request_id(&parts);
    // A write was planned before but never confirmed (crash, timeout): the invoice may exist.
    // Look it up rather than trust Intuit to still remember the requestid (how long it does
    // is undocumented).
    if let Some(planned) = job.rec.requestid.clone()
        && replacing.is_none()
        && let Some(found) = find_existing(host, up, prepared, order_id)?
    {
        let (id, token) = id_and_token(&found);
        let now = host.now();
        job.rec.note(
            "found_existing",
            json!({"qbo_id": id, "via": "DocNumber and PrivateNote marker"}),
            now,
        );
        if planned == rid {
            // It holds exactly this content.
            return Ok(Done::Posted {
                qbo_id: id,
                sync_token: token,
                requestid: Some(rid),
                digest: prepared.digest.clone(),
            });
        }
        // It holds the version sent then; bring it to the order's current content.
        return update_invoice(host, up, job, prepared, &id, &token, store_hash, order_id);
    }
    let now = host.now();
    job.rec.write_planned(&rid, now);
    // The requestid is durable before the request leaves: a retry after a crash reuses it.
    job.save(host)
        .map_err(|e| Failure::storage(&e.to_string()))?;
    match up.qbo_create(host, "invoice", "Invoice", &prepared.invoice, &rid) {
        Ok(created) => {
            let (id, token) = id_and_token(&created);
            Ok(Done::Posted {
                qbo_id: id,
                sync_token: token,
                requestid: Some(rid),
                digest: prepared.digest.clone(),
            })
        }
        Err(e) if e.has_code("6140") => match find_existing(host, up, prepared, order_id)? {
            Some(found) => {
                let (id, token) = id_and_token(&found);
                update_invoice(host, up, job, prepared, &id, &token, store_hash, order_id)
            }
            None => Err(e.failure),
        },
        Err(e) => Err(e.failure),
    }
}

/// An invoice for this order already in QuickBooks: same DocNumber and our PrivateNote marker.
fn find_existing(
    host: &mut dyn Host,
    up: &Upstreams,
    prepared: &Prepared,
    order_id: u64,
) -> Result<Option<Value>, Failure> {
    let Some(doc) = &prepared.doc_number else {
        return Ok(None);
    };
    let stmt = quickbooks::select_where_eq("Invoice", "DocNumber", doc)
        .map_err(|e| Failure::mapping(&e.to_string()))?;
    let found: Vec<Value> = up.qbo_query(host, "Invoice", &stmt).map_err(qf)?;
    Ok(found.into_iter().find(|inv| {
        inv.get("PrivateNote")
            .and_then(Value::as_str)
            .is_some_and(|n| mapping::note_has_marker(n, order_id))
    }))
}

/// What `POST /admin/retry-due` did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RetryReport {
    pub examined: usize,
    pub ran: usize,
    pub posted: usize,
    pub retrying: usize,
    pub failed: usize,
    pub needs_reauth: usize,
    pub skipped: usize,
    pub busy: usize,
    pub resumed_after_reauth: usize,
}

impl RetryReport {
    fn count(&mut self, r: &RunResult) {
        match r {
            RunResult::Ran(s) => {
                self.ran += 1;
                match s {
                    State::Posted => self.posted += 1,
                    State::Retrying => self.retrying += 1,
                    State::Failed => self.failed += 1,
                    State::NeedsReauth => self.needs_reauth += 1,
                    State::Skipped => self.skipped += 1,
                    State::Pending => {}
                }
            }
            RunResult::Busy => self.busy += 1,
            RunResult::NothingToDo(_) => {}
        }
    }
}

/// Most records one `retry-due` call runs.
pub const RETRY_BATCH: usize = 50;
/// Most due entries one call looks at (most are cheap checks of records already handled).
const DUE_SCAN: usize = 1_000;

/// Runs every due record (bounded), oldest first; then, when QuickBooks is authorized,
/// resumes records parked for re-authorization.
pub fn retry_due(host: &mut dyn Host) -> Result<RetryReport, KvError> {
    let mut report = RetryReport::default();
    let now = host.now();
    readopt_bootstrap(host);
    let entries = store::due_entries(host, now, DUE_SCAN)?;
    for due in entries {
        if report.ran >= RETRY_BATCH {
            break;
        }
        report.examined += 1;
        let trigger = match due.entry.event.clone() {
            Some(ev) => Trigger::Event(ev),
            None => Trigger::Due,
        };
        let result = run_due_entry(host, &due.entry, trigger)?;
        report.count(&result);
        if result == RunResult::Busy {
            // Its worker is still running; look again on the next call.
            break;
        }
        if due.markable {
            store::mark_due_done(host, due.minute, due.slot)?;
        }
    }
    if !connection::state(host)?.needs_reauth {
        for (slot, r) in store::parked_entries(host, RETRY_BATCH)? {
            report.examined += 1;
            let result = sync_with_wait(host, r.entity, &r.id, Trigger::Due, 0)?;
            if result == RunResult::Busy {
                report.busy += 1;
                break;
            }
            if matches!(result, RunResult::Ran(_)) {
                report.resumed_after_reauth += 1;
            }
            report.count(&result);
            if result == RunResult::Ran(State::NeedsReauth) {
                // Still not authorized after all: stop resuming; a later call tries again.
                break;
            }
            store::mark_parked_done(host, slot)?;
        }
    }
    Ok(report)
}

/// While re-authorization is needed, a newly configured `qbo_refresh_token` is the operator
/// re-authorizing out of band: adopting it (with a refresh) clears `needs_reauth`, so parked
/// records resume on this very call.
fn readopt_bootstrap(host: &mut dyn Host) {
    let parked = connection::state(host)
        .map(|s| s.needs_reauth)
        .unwrap_or(false);
    if parked && let Ok(up) = upstreams(host) {
        let _ = connection::access(
            host,
            &Vault {
                keyring: &up.keyring,
            },
            &up.qbo,
            false,
        );
    }
}

fn run_due_entry(
    host: &mut dyn Host,
    entry: &DueEntry,
    trigger: Trigger,
) -> Result<RunResult, KvError> {
    if let Trigger::Event(ev) = &trigger {
        // The event's own worker usually handled it already: then this is only a check.
        if let Some(rec) = store::load_record(host, entry.entity, &entry.id)?
            && rec.has_seen(&ev.key())
        {
            let now = host.now();
            let reauthorized = !connection::state(host)?.needs_reauth;
            // Still `pending` (its worker may have died mid-job): `Trigger::Due` runs it if the
            // lease is free, and reports busy if the worker is alive.
            if !rec.is_due(now, reauthorized) && rec.state != State::Pending {
                return Ok(RunResult::NothingToDo(rec.state));
            }
            return sync_with_wait(host, entry.entity, &entry.id, Trigger::Due, 0);
        }
    }
    sync_with_wait(host, entry.entity, &entry.id, trigger, 0)
}

/// Files the guard entry for a webhook: if the worker dies after the acknowledgement, the
/// scheduler finds the event 30 s later.
pub fn accept_event(
    host: &mut dyn Host,
    entity: Entity,
    id: &str,
    event: EventRef,
) -> Result<(), KvError> {
    let at = host.now() + chrono::Duration::seconds(30);
    store::schedule(
        host,
        &DueEntry {
            entity,
            id: id.to_string(),
            at,
            event: Some(event),
        },
    )
}
