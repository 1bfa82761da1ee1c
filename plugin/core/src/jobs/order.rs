//! The order job: a BigCommerce order kept in sync with its QuickBooks invoice — fetch,
//! map, resolve, then create or update (with a `requestid`, found again after a crash).

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::books::customer::{self, CustomerSource};
use crate::books::mapping::{self, GuestMode, MappingConfig, OrderContext};
use crate::host::Host;
use crate::jobs::{Done, Job};
use crate::models::bigcommerce::{self, CatalogProduct, Order, OrderId, OrderProduct, ProductId};
use crate::models::quickbooks::{self, request_id};
use crate::sync::connection::{self, Vault};
use crate::sync::failure::{Failure, Service};
use crate::sync::resolve::{self, Matched};
use crate::sync::store;
use crate::sync::upstream::{EntityCall, QboFailure, Upstreams, id_and_token};

fn qf(e: QboFailure) -> Failure {
    e.failure
}

/// Why the order cannot become an invoice: a mapping problem for the operator to fix, or
/// amounts the connector cannot compute with (BigCommerce's data, not the mapping).
fn mapping_failure(e: mapping::MappingError) -> Failure {
    match e {
        mapping::MappingError::AmountTooLarge { .. } => {
            Failure::unreadable(Service::BigCommerce, &e.to_string())
        }
        other => Failure::mapping(&other.to_string()),
    }
}

/// An order fetched from BigCommerce with what mapping needs.
pub struct FetchedOrder {
    pub raw: Value,
    pub order: Order,
    pub lines: Vec<OrderProduct>,
}

/// Most pages of line items read for one order (250 lines each): a store that keeps
/// answering full pages cannot keep a job paging forever.
pub const MAX_LINE_PAGES: u32 = 40;

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
        for page in 1..=MAX_LINE_PAGES + 1 {
            if page > MAX_LINE_PAGES {
                return Err(Failure::unreadable(
                    Service::BigCommerce,
                    &format!(
                        "order {id} has more than {} line items (every page came back full): the \
                         connector reads at most that many; check the order in BigCommerce",
                        MAX_LINE_PAGES * 250
                    ),
                ));
            }
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
    let config = store::mapping_config(host)?;
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
    let exact = mapping::plan_exact(&config, &ctx).map_err(mapping_failure)?;
    // Totals are checked before anything is resolved or created in QuickBooks.
    mapping::check_totals(&fetched.order, &fetched.lines).map_err(mapping_failure)?;
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
            connection::connection_failure(&e)
        }
    })?;
    let refs = resolve::refs(host, up, &access.realm_id, &exact, dry_run).map_err(qf)?;
    let source = invoice_customer_source(&config, &fetched);
    let customer = resolve::customer(host, up, &source, dry_run).map_err(qf)?;
    let draft = mapping::build_invoice(&config, &ctx, &refs, &customer.0.qbo_id)
        .map_err(mapping_failure)?;
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

/// Runs the order job for `job.rec`.
pub(crate) fn run(
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
            match up.qbo_entity(host, "invoice", "Invoice", EntityCall::Read { id: &qbo_id }) {
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
        match up.qbo_entity(
            host,
            "invoice",
            "Invoice",
            EntityCall::Update {
                body: &body,
                request_id: &rid,
            },
        ) {
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
                    .qbo_entity(host, "invoice", "Invoice", EntityCall::Read { id: qbo_id })
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
    match up.qbo_entity(
        host,
        "invoice",
        "Invoice",
        EntityCall::Create {
            body: &prepared.invoice,
            request_id: &rid,
        },
    ) {
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
