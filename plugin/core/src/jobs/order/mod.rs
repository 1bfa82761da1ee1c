//! The order job: a BigCommerce order kept in step with its QuickBooks documents (CONTRACT
//! §7) — fetch, plan ([`crate::books::documents`]), map, resolve, then write the invoice, its
//! payments, its refunds or its void, each once: every write carries a `requestid` stored
//! before it is sent, and a write left unconfirmed is looked up in QuickBooks before it is
//! sent again.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};

use crate::books::customer::{self, CustomerSource};
use crate::books::documents::{
    self, DocKind, Document, InvoiceAction, InvoiceState, KeepReason, OrderFacts, PaymentAccount,
    PlannedPayment, PlannedRefund,
};
use crate::books::mapping::{self, GuestMode, MappingConfig, OrderContext};
use crate::host::{Host, Prefetched};
use crate::jobs::{Done, Job};
use crate::models::bigcommerce::{
    self, CatalogProduct, Order, OrderId, OrderProduct, ProductId, Refund,
};
use crate::models::money::Money;
use crate::models::quickbooks::{self, LinkedTxn, PaymentLine, Ref, SalesReturn, request_id};
use crate::sync::company;
use crate::sync::connection;
use crate::sync::customers;
use crate::sync::failure::{Failure, Service};
use crate::sync::resolve::{self, Matched};
use crate::sync::store;
use crate::sync::upstream::{EntityCall, QboFailure, Upstreams, id_and_token};

mod fetch;
mod invoice;
mod kept;
mod payments;
mod refunds;
mod store_facts;
mod tax_classes;

pub use fetch::{FetchedOrder, fetch_order};
use fetch::{catalog, customer_group};
use invoice::{create_invoice, guard_total, record_invoice, sync_invoice, void_invoice};
use kept::{keepable_raw, kept_order, settle_kept};
pub use kept::{kept_order_key, note_changed};
pub(crate) use payments::StagedPayment;
use payments::{payment_refs, post_payment};
pub use refunds::fetch_refunds;
use refunds::post_refunds;
pub use store_facts::{CachedStore, STORE_CACHE_KEY, store_facts};

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

/// A name lookup failure that says which mapping key holds the name.
fn named_in_mapping(e: QboFailure, key: &str) -> Failure {
    let mut f = e.failure;
    if f.reason() == "mapping" {
        f.explanation = format!("{} (mapping key {key})", f.explanation);
    }
    f
}

/// Most pages of line items read for one order (250 lines each): a store that keeps
/// answering full pages cannot keep a job paging forever.
pub const MAX_LINE_PAGES: u32 = 40;

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
    /// What the invoice totals.
    pub total: Money,
    pub customer: (resolve::CustomerLink, Matched),
    /// What mapping the other documents needs: the rules, catalog data, customer group, realm.
    pub config: MappingConfig,
    pub catalog: HashMap<ProductId, CatalogProduct>,
    pub customer_group_id: Option<u64>,
    pub realm_id: String,
    /// QuickBooks' `TotalAmt` and `TxnTaxDetail.TotalTax` for the invoice just written,
    /// checked by the total guard ([`invoice::guard_total`]).
    pub written_totals: std::cell::Cell<Option<(Option<Money>, Option<Money>)>>,
}

impl Prepared {
    /// Gives the invoice another DocNumber (the invoice of an order reopened after a void).
    pub fn set_doc_number(&mut self, doc_number: &str) {
        self.invoice["DocNumber"] = json!(doc_number);
        self.doc_number = Some(doc_number.to_string());
        self.digest = customer::content_digest(&self.invoice);
    }

    /// The invoice's `ExchangeRate` (a foreign-currency order), which its payments and refund
    /// documents carry too.
    pub fn exchange_rate(&self) -> Option<rust_decimal::Decimal> {
        let v = self.invoice.get("ExchangeRate")?;
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
            .parse()
            .ok()
    }

    /// The mapping context of the order.
    pub fn context(&self) -> OrderContext<'_> {
        OrderContext {
            order: &self.fetched.order,
            lines: &self.fetched.lines,
            catalog: &self.catalog,
            customer_group_id: self.customer_group_id,
        }
    }
}

/// Fetches, maps and resolves an order into the invoice body that would be sent.
pub fn prepare_order(
    host: &mut dyn Host,
    up: &Upstreams,
    mut fetched: FetchedOrder,
    dry_run: bool,
) -> Result<Prepared, Failure> {
    // What mapping a known customer's order reads, read in one round trip.
    let ahead = keys_read_by_prepare(up, &fetched);
    let host: &mut dyn Host = &mut Prefetched::new(host, &ahead);
    let config = store::mapping_config(host)?;
    // BigCommerce's own identity is checked before QuickBooks is asked anything.
    mapping::check_totals(&fetched.order, &fetched.lines).map_err(mapping_failure)?;
    let store = store_facts(host, up, &fetched.order)?;
    let currency =
        mapping::currency::order_currency(&fetched.order, &store).map_err(mapping_failure)?;
    let access = up.access(host).map_err(|e| {
        if e.needs_reauth() {
            Failure::needs_reauth(&e.to_string())
        } else if let connection::ConnectionError::Token(t) = &e {
            Failure::from_token_error(t)
        } else {
            connection::connection_failure(&e)
        }
    })?;
    // Tax mode `auto` becomes the mode this company books tax under (CONTRACT §11).
    let config = company::effective_mapping(host, up, &access.realm_id, config).map_err(qf)?;
    // A VAT/GST company codes each line by its BigCommerce tax class.
    tax_classes::attach_tax_classes(host, up, &config, &mut fetched.order)?;
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
    let refs = resolve::refs(host, up, &access.realm_id, &exact, dry_run).map_err(qf)?;
    let mut source = invoice_customer_source(&config, &fetched);
    if let Some(foreign) = currency.as_ref().filter(|c| c.is_foreign()) {
        resolve::currency_enabled(host, up, &access.realm_id, &foreign.code).map_err(qf)?;
        source.currency = Some(foreign.code.clone());
    }
    let customer = resolve::customer(host, up, &source, dry_run).map_err(qf)?;
    let draft = mapping::build_invoice_for(&config, &ctx, &refs, &customer.0.qbo_id, &store)
        .map_err(mapping_failure)?;
    let invoice = serde_json::to_value(&draft.invoice).unwrap_or(Value::Null);
    let digest = customer::content_digest(&invoice);
    Ok(Prepared {
        doc_number: draft.invoice.doc_number.clone(),
        draft_total: draft.total.to_string(),
        total: draft.total,
        fetched,
        invoice,
        digest,
        customer,
        config,
        catalog,
        customer_group_id: group,
        realm_id: access.realm_id.clone(),
        written_totals: std::cell::Cell::new(None),
    })
}

/// The keys [`prepare_order`] reads when nothing needs fetching: the mapping, the store's
/// cached facts, the QuickBooks credentials, the company's cached tax facts and names, and a
/// registered customer's link. (An order in a foreign currency links its customer under
/// another key, which it reads itself.)
fn keys_read_by_prepare(up: &Upstreams, fetched: &FetchedOrder) -> Vec<String> {
    let mut keys = vec![
        store::MAPPING_KEY.to_string(),
        store_facts::STORE_CACHE_KEY.to_string(),
    ];
    keys.extend(connection::access_keys().map(str::to_string));
    if let Some(realm) = &up.qbo.realm_id {
        keys.push(company::cache_key(realm));
        keys.push(resolve::names_key(realm));
    }
    if !fetched.order.is_guest() {
        keys.push(customers::link_key(&CustomerSource {
            bc_customer_id: Some(fetched.order.customer_id.0),
            ..CustomerSource::default()
        }));
    }
    keys
}

/// Runs the order job for `job.rec`: the invoice, then the documents that follow it.
pub(crate) fn run(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    replay: bool,
) -> Result<Done, Failure> {
    let (id, fetched) = start(host, up, job)?;
    let raw = keepable_raw(&fetched);
    let result = run_fetched(host, up, job, replay, id, fetched);
    settle_kept(host, job, id, raw, replay, &result);
    result
}

/// The order's id and the order as this run reads it: kept by the failed run this retry
/// follows, else fetched.
fn start(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
) -> Result<(u64, FetchedOrder), Failure> {
    let id: u64 = job
        .rec
        .id
        .parse()
        .map_err(|_| Failure::mapping(&format!("'{}' is not an order id", job.rec.id)))?;
    let kept = if job.due {
        kept_order(host, &job.rec, id)
    } else {
        None
    };
    let reused = kept.is_some();
    let fetched = match kept {
        Some(f) => f,
        None => fetch_order(host, up, id)?,
    };
    job.rec.source_modified = fetched.order.date_modified;
    let now = host.now();
    job.rec.note(
        "fetched",
        json!({"status_id": fetched.order.status_id, "total_inc_tax": fetched.order.total_inc_tax.to_string(),
               "payment_status": fetched.order.payment_status, "lines": fetched.lines.len(),
               "kept": reused}),
        now,
    );
    Ok((id, fetched))
}

/// An order staged for a batch ([`stage`]): mapped, its invoice a plain first create whose
/// `requestid` is not yet on its record.
pub(crate) struct StagedCreate {
    pub(crate) id: u64,
    pub(crate) prepared: Prepared,
    raw: Option<Value>,
}

impl StagedCreate {
    /// The invoice's body and the `requestid` a single create would carry.
    pub(crate) fn invoice(&self, up: &Upstreams) -> (&Value, String) {
        (
            &self.prepared.invoice,
            invoice::create_request_id(up, &self.prepared, self.id, None, 1),
        )
    }
}

/// How [`stage`] left an order.
pub(crate) enum Staged {
    /// The run ended (nothing to create, a failure, or a plan that is not a plain create and
    /// ran the single path to its end).
    Finished(Result<Done, Failure>),
    /// Ready for the batch: the invoice's create is all that is left before the documents
    /// that follow it.
    Create(Box<StagedCreate>),
}

/// The first half of a run for the batch path (a due run, never a replay): read and map the
/// order; an order whose invoice is a plain first create with no earlier write planned stops
/// there ([`Staged::Create`]), every other one runs to its end as [`run`] would.
pub(crate) fn stage(host: &mut dyn Host, up: &Upstreams, job: &mut Job) -> Staged {
    let (id, fetched) = match start(host, up, job) {
        Ok(f) => f,
        Err(f) => return Staged::Finished(Err(f)),
    };
    let raw = keepable_raw(&fetched);
    let result = match map_fetched(host, up, job, id, fetched) {
        Ok(Mapped::Ready {
            prepared,
            action: InvoiceAction::Create { generation: 1 },
        }) if job.rec.requestid.is_none() && prepared.doc_number.is_some() => {
            return Staged::Create(Box::new(StagedCreate {
                id,
                prepared: *prepared,
                raw,
            }));
        }
        Ok(Mapped::Ready {
            mut prepared,
            action,
        }) => write_documents(host, up, job, false, id, &mut prepared, action, None),
        Ok(Mapped::Done(d)) => Ok(d),
        Err(f) => Err(f),
    };
    settle_kept(host, job, id, raw, false, &result);
    Staged::Finished(result)
}

/// What a batch said about a staged order's invoice.
pub(crate) enum BatchOutcome {
    /// Created: QuickBooks' invoice.
    Created(Value),
    /// The item's own fault, handled as the single create's would be.
    Fault(QboFailure),
    /// Not known (the item is missing from the answer): looked up by DocNumber and marker
    /// before it is created once more, as after a lost single answer.
    Unknown,
    /// The batch request failed as a whole (throttled, 5xx, transport): the run fails with it;
    /// its retry looks the invoice up before it writes.
    Failed(Failure),
    /// Not sent in a batch (no batch window came free): written on its own.
    NotSent,
}

/// How [`complete`] left an order.
pub(crate) enum Completed {
    /// The run ended.
    Finished(Result<Done, Failure>),
    /// The invoice is posted and the order's payments are ready for the next batch.
    Payments(Box<StagedPayments>),
}

/// An order whose invoice is posted, with its payments staged for a batch ([`complete`]).
pub(crate) struct StagedPayments {
    id: u64,
    prepared: Prepared,
    raw: Option<Value>,
    pub(crate) payments: Vec<StagedPayment>,
}

/// The second half of a staged run: the invoice as the batch left it. The order's payments
/// come back staged for a batch of their own ([`Completed::Payments`], finished by
/// [`complete_payments`]); an order with none runs to its end (refunds, standing), filed as
/// [`run`] files it.
pub(crate) fn complete(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    staged: StagedCreate,
    outcome: BatchOutcome,
) -> Completed {
    let StagedCreate {
        id,
        mut prepared,
        raw,
    } = staged;
    let action = InvoiceAction::Create { generation: 1 };
    let created = match outcome {
        BatchOutcome::Created(v) => Ok(Some(invoice::created(&prepared, &v, up, id))),
        BatchOutcome::Fault(e) if e.has_code("6140") => {
            invoice::after_duplicate(host, up, job, &prepared, id, 1, e).map(Some)
        }
        BatchOutcome::Fault(e) => Err(e.failure),
        BatchOutcome::Unknown | BatchOutcome::NotSent => Ok(None),
        BatchOutcome::Failed(f) => Err(f),
    };
    let staged = created.and_then(|created| {
        write_invoice(host, up, job, false, id, &mut prepared, &action, created)?;
        let payments = planned_payments(job, &prepared)?;
        payments::stage_payments(host, up, job, &prepared, &payments)
    });
    let result = match staged {
        Ok(Some(payments)) => {
            return Completed::Payments(Box::new(StagedPayments {
                id,
                prepared,
                raw,
                payments,
            }));
        }
        Ok(None) => finish_documents(host, up, job, false, &prepared, &action, true),
        Err(f) => Err(f),
    };
    settle_kept(host, job, id, raw, false, &result);
    Completed::Finished(result)
}

/// The end of a staged run whose payments went out in a batch: each payment filed as the batch
/// left it ([`BatchOutcome`], in the order of [`StagedPayments::payments`]), then the refunds
/// and standing, as [`run`] files them.
pub(crate) fn complete_payments(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    staged: StagedPayments,
    outcomes: Vec<BatchOutcome>,
) -> Result<Done, Failure> {
    let StagedPayments {
        id,
        prepared,
        raw,
        payments,
    } = staged;
    let action = InvoiceAction::Create { generation: 1 };
    let result = payments::settle_payments(
        host,
        up,
        job,
        &prepared,
        payments.into_iter().zip(outcomes).collect(),
    )
    .and_then(|()| finish_documents(host, up, job, false, &prepared, &action, true));
    settle_kept(host, job, id, raw, false, &result);
    result
}

/// Records that the batch path is about to send the staged invoice: its `requestid` is
/// durable before the batch leaves, so a lost answer is looked up before any second write.
pub(crate) fn plan_staged(
    host: &mut dyn Host,
    job: &mut Job,
    request_id: &str,
) -> Result<(), Failure> {
    let now = host.now();
    job.rec.write_planned(request_id, now);
    job.save(host).map_err(|e| Failure::storage(&e.to_string()))
}

/// The run once the order is read.
fn run_fetched(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    replay: bool,
    id: u64,
    fetched: FetchedOrder,
) -> Result<Done, Failure> {
    match map_fetched(host, up, job, id, fetched)? {
        Mapped::Done(d) => Ok(d),
        Mapped::Ready {
            mut prepared,
            action,
        } => write_documents(host, up, job, replay, id, &mut prepared, action, None),
    }
}

/// An order read and, unless its plan ends the run, mapped.
enum Mapped {
    Done(Done),
    Ready {
        prepared: Box<Prepared>,
        action: InvoiceAction,
    },
}

/// Decides what happens to the invoice and maps the order when it is to be written.
fn map_fetched(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    id: u64,
    fetched: FetchedOrder,
) -> Result<Mapped, Failure> {
    let now = host.now();
    let docs = job.rec.documents();
    // What happens to the invoice does not depend on how it maps; decide that first, so an
    // order that will not be (re)invoiced costs no mapping.
    let provisional = OrderFacts::new(&fetched.order, fetched.order.total_inc_tax);
    match documents::invoice_action(&provisional, &docs) {
        InvoiceAction::Skip(reason) => return Ok(Mapped::Done(Done::Skipped(reason))),
        InvoiceAction::Keep(reason @ (KeepReason::Archived | KeepReason::Voided)) => {
            let note = match reason {
                KeepReason::Archived => "archived in BigCommerce; the invoice is left as it is",
                _ => "the invoice was voided and the order is still cancelled; nothing to do",
            };
            keep_noted(job, reason.as_str(), note, now);
            return Ok(Mapped::Done(Done::Unchanged));
        }
        InvoiceAction::Void => return void_invoice(host, up, job, id).map(Mapped::Done),
        _ => {}
    }
    let prepared = prepare_order(host, up, fetched, false)?;
    let now = host.now();
    job.rec.note(
        "mapped",
        json!({"digest": prepared.digest, "total": prepared.draft_total, "doc_number": prepared.doc_number,
               "customer": {"qbo_id": prepared.customer.0.qbo_id, "matched_by": prepared.customer.1.as_str()}}),
        now,
    );
    let facts = OrderFacts::new(&prepared.fetched.order, prepared.total);
    let action = documents::invoice_action(&facts, &docs);
    if action == InvoiceAction::Sync {
        clear_keep_note(job);
    }
    Ok(Mapped::Ready {
        prepared: Box::new(prepared),
        action,
    })
}

/// Writes the invoice per `action` (or takes `created`, the invoice a batch created), then the
/// documents that follow it.
#[allow(clippy::too_many_arguments)]
fn write_documents(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    replay: bool,
    id: u64,
    prepared: &mut Prepared,
    action: InvoiceAction,
    created: Option<Done>,
) -> Result<Done, Failure> {
    let mut wrote = write_invoice(host, up, job, replay, id, prepared, &action, created)?;
    let payments = planned_payments(job, prepared)?;
    if !payments.is_empty() {
        let accounts = payment_refs(host, up, prepared, &payments)?;
        for p in &payments {
            post_payment(host, up, job, prepared, p, &accounts)?;
            wrote = true;
        }
    }
    finish_documents(host, up, job, replay, prepared, &action, wrote)
}

/// Writes the invoice per `action` (or takes `created`): whether anything was written.
#[allow(clippy::too_many_arguments)]
fn write_invoice(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    replay: bool,
    id: u64,
    prepared: &mut Prepared,
    action: &InvoiceAction,
    created: Option<Done>,
) -> Result<bool, Failure> {
    let docs = job.rec.documents();
    match *action {
        InvoiceAction::Create { generation } => {
            let base = prepared.doc_number.clone();
            if let Some(base) = base
                && generation > 1
            {
                let d = documents::invoice_doc_number(&base, generation)
                    .map_err(|e| Failure::mapping(&e.to_string()))?;
                prepared.set_doc_number(&d);
            }
            let done = match created {
                Some(done) => done,
                None => create_invoice(host, up, job, prepared, id, None, generation)?,
            };
            record_invoice(host, job, prepared, &done, generation)?;
            guard_total(host, job, prepared)?;
            Ok(true)
        }
        InvoiceAction::Sync | InvoiceAction::Keep(KeepReason::CancelledAfterPayment) => {
            let current = documents::current_invoice(&docs).cloned();
            if let Some(d) = current.as_ref().and_then(|c| c.doc_number.clone())
                && prepared.doc_number.as_deref() != Some(d.as_str())
            {
                prepared.set_doc_number(&d);
            }
            let generation = current.as_ref().map_or(1, |c| generation_of(&c.source));
            match sync_invoice(host, up, job, prepared, id, replay, generation)? {
                Some(done) => {
                    record_invoice(host, job, prepared, &done, generation)?;
                    guard_total(host, job, prepared)?;
                    Ok(true)
                }
                None => Ok(false),
            }
        }
        InvoiceAction::Skip(_) | InvoiceAction::Keep(_) | InvoiceAction::Void => Ok(false),
    }
}

/// The payments the order needs now that its invoice is written.
fn planned_payments(job: &Job, prepared: &Prepared) -> Result<Vec<PlannedPayment>, Failure> {
    let facts = OrderFacts::new(&prepared.fetched.order, prepared.total);
    let docs = job.rec.documents();
    documents::plan(&facts, &docs, None, None)
        .map(|plan| plan.payments)
        .map_err(|e| Failure::mapping(&e.to_string()))
}

/// What follows the invoice and its payments: refunds, the keep note, the invoice's standing.
fn finish_documents(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    replay: bool,
    prepared: &Prepared,
    action: &InvoiceAction,
    mut wrote: bool,
) -> Result<Done, Failure> {
    let facts = OrderFacts::new(&prepared.fetched.order, prepared.total);
    let hinted = job.rec.refunds_due || replay;
    if documents::may_have_refunds(&prepared.fetched.order, hinted) {
        wrote |= post_refunds(host, up, job, prepared, &facts)?;
    }
    if *action == InvoiceAction::Keep(KeepReason::CancelledAfterPayment) {
        let now = host.now();
        keep_noted(
            job,
            KeepReason::CancelledAfterPayment.as_str(),
            "cancelled or declined in BigCommerce after a payment was posted: the invoice stays; a refund, when BigCommerce issues one, posts its own document",
            now,
        );
    }
    refresh_standing(host, job)?;
    finish_run(job, wrote)
}

/// The `TxnDate` of the invoice, used by every document of the order.
fn txn_date(prepared: &Prepared) -> Option<NaiveDate> {
    prepared
        .invoice
        .get("TxnDate")
        .and_then(Value::as_str)
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
}

/// A document of this order found in QuickBooks: the `kind` entities matching `conditions`
/// whose `PrivateNote` carries the document's marker.
fn find_document(
    host: &mut dyn Host,
    up: &Upstreams,
    kind: DocKind,
    order_id: u64,
    source: &str,
    conditions: &[(&str, &str)],
) -> Result<Option<Value>, Failure> {
    let stmt = quickbooks::select_where_all(kind.as_str(), conditions)
        .map_err(|e| Failure::mapping(&e.to_string()))?;
    let found: Vec<Value> = up.qbo_query(host, kind.as_str(), &stmt).map_err(qf)?;
    Ok(found.into_iter().find(|d| {
        d.get("PrivateNote")
            .and_then(Value::as_str)
            .is_some_and(|n| documents::note_has_document_marker(n, order_id, source))
    }))
}

fn money_of(v: &Value, key: &str) -> Option<Money> {
    match v.get(key)? {
        Value::Number(n) => n.to_string().parse().ok(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Brings the current invoice's state and balance up to date with its payments, and saves the
/// record when they changed.
fn refresh_standing(host: &mut dyn Host, job: &mut Job) -> Result<(), Failure> {
    if !update_standing(job) {
        return Ok(());
    }
    job.save(host).map_err(|e| Failure::storage(&e.to_string()))
}

/// Brings the current invoice's state and balance up to date with its payments, in the record
/// only (the caller saves it): whether they changed. A payment's own save carries it, so the
/// record never shows a payment beside an invoice still `open` for it.
fn update_standing(job: &mut Job) -> bool {
    let docs = job.rec.documents();
    let Some(current) = documents::current_invoice(&docs).cloned() else {
        return false;
    };
    if current.state == Some(InvoiceState::Voided) {
        return false;
    }
    let Some(total) = current.total else {
        return false;
    };
    let (state, balance) = documents::invoice_standing(total, &docs);
    if current.state == Some(state) && current.balance == Some(balance) {
        return false;
    }
    job.rec.documents = docs;
    if let Some(d) = job
        .rec
        .documents
        .iter_mut()
        .find(|d| d.source == current.source)
    {
        d.state = Some(state);
        d.balance = Some(balance);
    }
    true
}

/// Notes why the invoice is left as it is, once: the note stays on the invoice document (and
/// is cleared by [`clear_keep_note`] when the order moves on).
fn keep_noted(job: &mut Job, step: &str, note: &str, now: DateTime<Utc>) {
    let mut docs = job.rec.documents();
    let Some(current) = docs.iter_mut().rev().find(|d| d.kind == DocKind::Invoice) else {
        return;
    };
    if current.note.as_deref() == Some(step) {
        return;
    }
    current.note = Some(step.to_string());
    job.rec.documents = docs;
    job.rec.note(step, json!({ "note": note }), now);
}

/// The order is invoiced normally again: an earlier keep note no longer applies.
fn clear_keep_note(job: &mut Job) {
    let mut docs = job.rec.documents();
    if let Some(current) = docs.iter_mut().rev().find(|d| d.kind == DocKind::Invoice)
        && current.note.take().is_some()
    {
        job.rec.documents = docs;
    }
}

/// The generation of an invoice source (`order` → 1, `order/2` → 2).
fn generation_of(source: &str) -> u32 {
    source
        .strip_prefix("order/")
        .and_then(|g| g.parse().ok())
        .unwrap_or(1)
}

/// How the run ends for the record: `Posted` with the current invoice when something was
/// written, else `Unchanged`.
fn finish_run(job: &Job, wrote: bool) -> Result<Done, Failure> {
    if !wrote {
        return Ok(Done::Unchanged);
    }
    Ok(Done::Posted {
        qbo_id: job.rec.qbo_id.clone().unwrap_or_default(),
        sync_token: job.rec.qbo_sync_token.clone().unwrap_or_default(),
        requestid: None,
        digest: job.rec.content_digest.clone().unwrap_or_default(),
    })
}

/// The documents an order would get (a dry run: nothing is written). Documents already
/// posted are listed with their QuickBooks id and `"action": "posted"`.
pub fn preview_documents(
    host: &mut dyn Host,
    up: &Upstreams,
    prepared: &Prepared,
    posted: &[Document],
) -> Result<Vec<Value>, Failure> {
    let order = &prepared.fetched.order;
    let facts = OrderFacts::new(order, prepared.total);
    let refunds = if documents::may_have_refunds(order, false) {
        Some(fetch_refunds(host, up, order.id.0)?)
    } else {
        None
    };
    let current = documents::current_invoice(posted);
    let doc_number = current
        .and_then(|c| c.doc_number.clone())
        .or_else(|| prepared.doc_number.clone());
    let plan = documents::plan(&facts, posted, refunds.as_deref(), doc_number.as_deref())
        .map_err(|e| Failure::mapping(&e.to_string()))?;
    let mut out: Vec<Value> = posted
        .iter()
        .map(|d| {
            let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
            v["action"] = json!("posted");
            v
        })
        .collect();
    let invoice = match &plan.invoice {
        InvoiceAction::Create { generation } => {
            let d = match &prepared.doc_number {
                Some(base) => Some(
                    documents::invoice_doc_number(base, *generation)
                        .map_err(|e| Failure::mapping(&e.to_string()))?,
                ),
                None => None,
            };
            Some(json!({"type": "Invoice", "source": documents::invoice_source(*generation),
                        "doc_number": d, "total": prepared.total.to_qbo_string(), "action": "create"}))
        }
        InvoiceAction::Sync => current.map(|c| {
            json!({"type": "Invoice", "source": c.source, "qbo_id": c.qbo_id, "doc_number": c.doc_number,
                   "total": prepared.total.to_qbo_string(), "action": "update_if_changed"})
        }),
        InvoiceAction::Void => current.map(|c| {
            json!({"type": "Invoice", "source": c.source, "qbo_id": c.qbo_id, "action": "void"})
        }),
        InvoiceAction::Keep(reason) => current.map(|c| {
            json!({"type": "Invoice", "source": c.source, "qbo_id": c.qbo_id, "action": "keep",
                   "note": reason.as_str()})
        }),
        InvoiceAction::Skip(reason) => {
            Some(json!({"type": "Invoice", "action": "skip", "note": reason}))
        }
    };
    out.extend(invoice);
    for p in &plan.payments {
        out.push(
            json!({"type": "Payment", "source": p.source, "amount": p.amount.to_qbo_string(),
                        "payment_ref_num": p.ref_num, "action": "create"}),
        );
    }
    for r in &plan.refunds {
        out.push(
            json!({"type": r.kind.as_str(), "source": r.source, "doc_number": r.doc_number,
                        "amount": r.amount.to_qbo_string(), "action": "create"}),
        );
    }
    Ok(out)
}
