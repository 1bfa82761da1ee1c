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
use crate::host::Host;
use crate::jobs::{Done, Job};
use crate::models::bigcommerce::{
    self, CatalogProduct, Order, OrderId, OrderProduct, ProductId, Refund,
};
use crate::models::money::Money;
use crate::models::quickbooks::{self, LinkedTxn, PaymentLine, Ref, SalesReturn, request_id};
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
    /// What the invoice totals.
    pub total: Money,
    pub customer: (resolve::CustomerLink, Matched),
    /// What mapping the other documents needs: the rules, catalog data, customer group, realm.
    pub config: MappingConfig,
    pub catalog: HashMap<ProductId, CatalogProduct>,
    pub customer_group_id: Option<u64>,
    pub realm_id: String,
}

impl Prepared {
    /// Gives the invoice another DocNumber (the invoice of an order reopened after a void).
    pub fn set_doc_number(&mut self, doc_number: &str) {
        self.invoice["DocNumber"] = json!(doc_number);
        self.doc_number = Some(doc_number.to_string());
        self.digest = customer::content_digest(&self.invoice);
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
        total: draft.total,
        fetched,
        invoice,
        digest,
        customer,
        config,
        catalog,
        customer_group_id: group,
        realm_id: access.realm_id.clone(),
    })
}

/// Runs the order job for `job.rec`: the invoice, then the documents that follow it.
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
        json!({"status_id": fetched.order.status_id, "total_inc_tax": fetched.order.total_inc_tax.to_string(),
               "payment_status": fetched.order.payment_status, "lines": fetched.lines.len()}),
        now,
    );
    let docs = job.rec.documents();
    // What happens to the invoice does not depend on how it maps; decide that first, so an
    // order that will not be (re)invoiced costs no mapping.
    let provisional = OrderFacts::new(&fetched.order, fetched.order.total_inc_tax);
    match documents::invoice_action(&provisional, &docs) {
        InvoiceAction::Skip(reason) => return Ok(Done::Skipped(reason)),
        InvoiceAction::Keep(reason @ (KeepReason::Archived | KeepReason::Voided)) => {
            let note = match reason {
                KeepReason::Archived => "archived in BigCommerce; the invoice is left as it is",
                _ => "the invoice was voided and the order is still cancelled; nothing to do",
            };
            keep_noted(job, reason.as_str(), note, now);
            return Ok(Done::Unchanged);
        }
        InvoiceAction::Void => return void_invoice(host, up, job, id),
        _ => {}
    }
    let mut prepared = prepare_order(host, up, fetched, false)?;
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
    let mut wrote = false;
    match action {
        InvoiceAction::Create { generation } => {
            let base = prepared.doc_number.clone();
            if let Some(base) = base
                && generation > 1
            {
                let d = documents::invoice_doc_number(&base, generation)
                    .map_err(|e| Failure::mapping(&e.to_string()))?;
                prepared.set_doc_number(&d);
            }
            let done = create_invoice(host, up, job, &prepared, id, None, generation)?;
            record_invoice(host, job, &prepared, &done, generation)?;
            wrote = true;
        }
        InvoiceAction::Sync | InvoiceAction::Keep(KeepReason::CancelledAfterPayment) => {
            let current = documents::current_invoice(&docs).cloned();
            if let Some(d) = current.as_ref().and_then(|c| c.doc_number.clone())
                && prepared.doc_number.as_deref() != Some(d.as_str())
            {
                prepared.set_doc_number(&d);
            }
            let generation = current.as_ref().map_or(1, |c| generation_of(&c.source));
            if let Some(done) = sync_invoice(host, up, job, &prepared, id, replay, generation)? {
                record_invoice(host, job, &prepared, &done, generation)?;
                wrote = true;
            }
        }
        InvoiceAction::Skip(_) | InvoiceAction::Keep(_) | InvoiceAction::Void => {}
    }
    let docs = job.rec.documents();
    let plan =
        documents::plan(&facts, &docs, None, None).map_err(|e| Failure::mapping(&e.to_string()))?;
    if !plan.payments.is_empty() {
        let accounts = payment_refs(host, up, &prepared, &plan.payments)?;
        for p in &plan.payments {
            post_payment(host, up, job, &prepared, p, &accounts)?;
            wrote = true;
        }
    }
    let hinted = job.rec.refunds_due || replay;
    if documents::may_have_refunds(&prepared.fetched.order, hinted) {
        wrote |= post_refunds(host, up, job, &prepared, &facts)?;
    }
    if action == InvoiceAction::Keep(KeepReason::CancelledAfterPayment) {
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

/// QuickBooks ids of the accounts and payment methods the planned payments need, resolved
/// before any payment is written (a missing one fails the run with its name).
struct PaymentRefs {
    accounts: HashMap<&'static str, String>,
    methods: HashMap<String, String>,
}

fn payment_refs(
    host: &mut dyn Host,
    up: &Upstreams,
    prepared: &Prepared,
    payments: &[PlannedPayment],
) -> Result<PaymentRefs, Failure> {
    let cfg = &prepared.config.payments;
    let realm = prepared.realm_id.clone();
    let mut out = PaymentRefs {
        accounts: HashMap::new(),
        methods: HashMap::new(),
    };
    for p in payments {
        let (key, name) = match p.account {
            PaymentAccount::Deposit => ("payments.deposit_account", &cfg.deposit_account),
            PaymentAccount::GiftCertificate => (
                "payments.gift_certificate_account",
                &cfg.gift_certificate_account,
            ),
            PaymentAccount::StoreCredit => {
                ("payments.store_credit_account", &cfg.store_credit_account)
            }
        };
        if !out.accounts.contains_key(key) {
            let id = resolve::named(host, up, &realm, "Account", name)
                .map_err(|e| named_in_mapping(e, key))?;
            out.accounts.insert(key, id);
        }
        if let Some(method) = p.method.as_ref()
            && let Some(qbo_method) = cfg.methods.get(method)
            && !out.methods.contains_key(method)
        {
            let id = resolve::named(host, up, &realm, "PaymentMethod", qbo_method)
                .map_err(|e| named_in_mapping(e, &format!("payments.methods.{method}")))?;
            out.methods.insert(method.clone(), id);
        }
    }
    Ok(out)
}

/// A name lookup failure that says which mapping key holds the name.
fn named_in_mapping(e: QboFailure, key: &str) -> Failure {
    let mut f = e.failure;
    if f.reason() == "mapping" {
        f.explanation = format!("{} (mapping key {key})", f.explanation);
    }
    f
}

fn account_key(account: PaymentAccount) -> &'static str {
    match account {
        PaymentAccount::Deposit => "payments.deposit_account",
        PaymentAccount::GiftCertificate => "payments.gift_certificate_account",
        PaymentAccount::StoreCredit => "payments.store_credit_account",
    }
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

/// Creates one payment (once: a write planned before and not confirmed is looked up first).
fn post_payment(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    prepared: &Prepared,
    p: &PlannedPayment,
    refs: &PaymentRefs,
) -> Result<(), Failure> {
    let order_id = prepared.fetched.order.id.0;
    let docs = job.rec.documents();
    let Some(invoice) = documents::current_invoice(&docs).cloned() else {
        return Err(Failure::mapping(
            "a payment has no invoice to apply to (connector bug: report it)",
        ));
    };
    let customer = prepared.customer.0.qbo_id.clone();
    let date = txn_date(prepared);
    let date_text = date.map(|d| d.format("%Y-%m-%d").to_string());
    if job.rec.pending.contains_key(p.source) {
        let mut conditions = vec![("CustomerRef", customer.as_str())];
        if let Some(d) = date_text.as_deref() {
            conditions.push(("TxnDate", d));
        }
        if let Some(found) =
            find_document(host, up, DocKind::Payment, order_id, p.source, &conditions)?
        {
            let (id, token) = id_and_token(&found);
            let doc = Document {
                sync_token: Some(token),
                amount: money_of(&found, "TotalAmt").or(Some(p.amount)),
                ..Document::new(DocKind::Payment, id, p.source)
            };
            let now = host.now();
            job.rec.document_written(doc, "document_adopted", None, now);
            return job.save(host).map_err(|e| Failure::storage(&e.to_string()));
        }
    }
    let label = match p.source {
        documents::GIFT_CERTIFICATE => "paid with gift certificates",
        documents::STORE_CREDIT => "paid with store credit",
        _ => "paid through the payment gateway",
    };
    let body = quickbooks::Payment {
        customer_ref: Ref::id(customer),
        total_amt: p.amount,
        txn_date: date,
        currency_ref: prepared
            .invoice
            .get("CurrencyRef")
            .and_then(|c| serde_json::from_value(c.clone()).ok()),
        private_note: Some(format!(
            "BigCommerce order #{order_id}: {label}. {}",
            documents::document_marker(order_id, p.source)
        )),
        deposit_to_account_ref: refs
            .accounts
            .get(account_key(p.account))
            .cloned()
            .map(Ref::id),
        payment_method_ref: p
            .method
            .as_ref()
            .and_then(|m| refs.methods.get(m))
            .cloned()
            .map(Ref::id),
        payment_ref_num: p.ref_num.clone(),
        line: vec![PaymentLine {
            amount: p.amount,
            linked_txn: vec![LinkedTxn {
                txn_id: invoice.qbo_id.clone(),
                txn_type: "Invoice".into(),
            }],
        }],
    };
    let body = serde_json::to_value(&body).unwrap_or(Value::Null);
    let order = order_id.to_string();
    let amount = p.amount.to_qbo_string();
    let rid = request_id(&[
        "pay",
        &up.bc.store_hash,
        &order,
        p.source,
        &invoice.qbo_id,
        &amount,
    ]);
    let now = host.now();
    job.rec.document_planned(p.source, &rid, now);
    // The requestid is durable before the request leaves: a retry after a crash reuses it.
    job.save(host)
        .map_err(|e| Failure::storage(&e.to_string()))?;
    let created = up
        .qbo_entity(
            host,
            DocKind::Payment.path(),
            DocKind::Payment.as_str(),
            EntityCall::Create {
                body: &body,
                request_id: &rid,
            },
        )
        .map_err(qf)?;
    let (id, token) = id_and_token(&created);
    let doc = Document {
        sync_token: Some(token),
        amount: Some(p.amount),
        ..Document::new(DocKind::Payment, id, p.source)
    };
    let now = host.now();
    job.rec
        .document_written(doc, "document_created", Some(&rid), now);
    job.save(host).map_err(|e| Failure::storage(&e.to_string()))
}

/// Whether QuickBooks shows this invoice as voided (zero amounts, `Voided` note).
fn is_voided(invoice: &Value, posted_total: Option<Money>) -> bool {
    let note_says = invoice
        .get("PrivateNote")
        .and_then(Value::as_str)
        .is_some_and(|n| n.contains("Voided"));
    let zero = money_of(invoice, "TotalAmt").is_some_and(|t| t.is_zero());
    zero && (note_says || posted_total.is_some_and(|t| !t.is_zero()))
}

/// Voids the current invoice (cancelled or declined, nothing paid): once, even when the
/// answer to an earlier void was lost.
fn void_invoice(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    order_id: u64,
) -> Result<Done, Failure> {
    let docs = job.rec.documents();
    let Some(current) = documents::current_invoice(&docs).cloned() else {
        return Ok(Done::Unchanged);
    };
    let key = format!("void:{}", current.source);
    let mut token = current.sync_token.clone().unwrap_or_default();
    if job.rec.pending.contains_key(&key) || token.is_empty() {
        // An earlier void may have gone through: look before voiding again.
        match up.qbo_entity(
            host,
            "invoice",
            "Invoice",
            EntityCall::Read {
                id: &current.qbo_id,
            },
        ) {
            Ok(inv) => {
                let t = id_and_token(&inv).1;
                if is_voided(&inv, current.total) {
                    let now = host.now();
                    job.rec.document_voided(&current.source, &t, None, now);
                    return finish_run(job, true);
                }
                token = t;
            }
            Err(e) if is_gone(&e) => return voided_elsewhere(host, job, &current),
            Err(e) => return Err(e.failure),
        }
    }
    let order = order_id.to_string();
    for attempt in 0..2 {
        let rid = request_id(&["void", &up.bc.store_hash, &order, &current.qbo_id, &token]);
        let now = host.now();
        job.rec.document_planned(&key, &rid, now);
        job.save(host)
            .map_err(|e| Failure::storage(&e.to_string()))?;
        let body = json!({"Id": current.qbo_id, "SyncToken": token});
        match up.qbo_entity(
            host,
            "invoice",
            "Invoice",
            EntityCall::Operation {
                op: "void",
                body: &body,
                request_id: &rid,
            },
        ) {
            Ok(v) => {
                let t = id_and_token(&v).1;
                let now = host.now();
                job.rec
                    .document_voided(&current.source, &t, Some(&rid), now);
                return finish_run(job, true);
            }
            // Edited in QuickBooks meanwhile (or voided by the lost first attempt): re-read.
            Err(e) if e.has_code("5010") && attempt == 0 => {
                let inv = up
                    .qbo_entity(
                        host,
                        "invoice",
                        "Invoice",
                        EntityCall::Read {
                            id: &current.qbo_id,
                        },
                    )
                    .map_err(qf)?;
                token = id_and_token(&inv).1;
                if is_voided(&inv, current.total) {
                    let now = host.now();
                    job.rec.document_voided(&current.source, &token, None, now);
                    return finish_run(job, true);
                }
            }
            Err(e) if is_gone(&e) => return voided_elsewhere(host, job, &current),
            Err(e) => return Err(e.failure),
        }
    }
    Err(Failure::mapping(
        "QuickBooks kept reporting a stale SyncToken while voiding the invoice; replay the order",
    ))
}

/// The invoice to void no longer exists in QuickBooks (deleted there): there is nothing left to
/// void; the record says so.
fn voided_elsewhere(
    host: &mut dyn Host,
    job: &mut Job,
    current: &Document,
) -> Result<Done, Failure> {
    let now = host.now();
    let token = current.sync_token.clone().unwrap_or_default();
    job.rec.document_voided(&current.source, &token, None, now);
    job.rec.note(
        "invoice_missing",
        json!({"qbo_id": current.qbo_id, "note": "the invoice was deleted in QuickBooks, so there is nothing to void"}),
        now,
    );
    finish_run(job, true)
}

/// Posts a document for every BigCommerce refund not posted yet. Every refund is mapped and
/// checked before the first one is written. Returns whether anything was written.
fn post_refunds(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    prepared: &Prepared,
    facts: &OrderFacts,
) -> Result<bool, Failure> {
    let order_id = prepared.fetched.order.id.0;
    let refunds = fetch_refunds(host, up, order_id)?;
    let docs = job.rec.documents();
    let Some(invoice) = documents::current_invoice(&docs).cloned() else {
        return Ok(false);
    };
    // A record from before documents were listed knows its invoice only by id; its number
    // is the order's rendered DocNumber.
    let doc_number = invoice.doc_number.clone().or(prepared.doc_number.clone());
    let plan = documents::plan(facts, &docs, Some(&refunds), doc_number.as_deref())
        .map_err(|e| Failure::mapping(&e.to_string()))?;
    if plan.refunds.is_empty() {
        job.rec.refunds_due = false;
        return Ok(false);
    }
    let ctx = prepared.context();
    let config = &prepared.config;
    let mut drafts = Vec::with_capacity(plan.refunds.len());
    for planned in &plan.refunds {
        let Some(refund) = refunds.iter().find(|r| r.id == planned.refund_id) else {
            continue;
        };
        let names = mapping::refund_names(config, &ctx, refund)
            .map_err(|e| Failure::mapping(&e.to_string()))?;
        let refs = resolve::refs(host, up, &prepared.realm_id, &names, false).map_err(qf)?;
        let draft = mapping::build_refund(config, &ctx, &refs, refund)
            .map_err(|e| Failure::mapping(&e.to_string()))?;
        let account = if planned.kind == DocKind::RefundReceipt {
            let (key, name) = if refund.is_store_credit() {
                (
                    "payments.store_credit_account",
                    &config.payments.store_credit_account,
                )
            } else {
                ("payments.deposit_account", &config.payments.deposit_account)
            };
            Some(
                resolve::named(host, up, &prepared.realm_id, "Account", name)
                    .map_err(|e| named_in_mapping(e, key))?,
            )
        } else {
            None
        };
        let method = match (planned.kind, facts.payment_method.as_str()) {
            (DocKind::RefundReceipt, m) if !refund.is_store_credit() => {
                match config.payments.methods.get(m) {
                    Some(name) => Some(
                        resolve::named(host, up, &prepared.realm_id, "PaymentMethod", name)
                            .map_err(|e| named_in_mapping(e, &format!("payments.methods.{m}")))?,
                    ),
                    None => None,
                }
            }
            _ => None,
        };
        let body = SalesReturn {
            doc_number: planned.doc_number.clone(),
            txn_date: refund
                .created
                .map(|c| c.date_naive())
                .or(txn_date(prepared)),
            currency_ref: prepared
                .invoice
                .get("CurrencyRef")
                .and_then(|c| serde_json::from_value(c.clone()).ok()),
            private_note: Some(format!(
                "BigCommerce order #{order_id}, refund {}{}. {}",
                refund.id,
                if refund.reason.trim().is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({})",
                        refund.reason.trim().chars().take(200).collect::<String>()
                    )
                },
                documents::document_marker(order_id, &planned.source)
            )),
            line: draft.lines.clone(),
            txn_tax_detail: draft.txn_tax_detail.clone(),
            customer_ref: Ref::id(prepared.customer.0.qbo_id.clone()),
            customer_memo: None,
            deposit_to_account_ref: account.map(Ref::id),
            payment_method_ref: method.map(Ref::id),
        };
        drafts.push((planned.clone(), draft.total, body));
    }
    let mut wrote = false;
    for (planned, total, body) in drafts {
        post_refund(host, up, job, order_id, &planned, total, &body)?;
        wrote = true;
    }
    job.rec.refunds_due = false;
    job.save(host)
        .map_err(|e| Failure::storage(&e.to_string()))?;
    Ok(wrote)
}

/// Creates one refund document (once: a write planned before and not confirmed is looked up
/// by DocNumber and marker first).
fn post_refund(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    order_id: u64,
    planned: &PlannedRefund,
    total: Money,
    body: &SalesReturn,
) -> Result<(), Failure> {
    let kind = planned.kind;
    let record = |job: &mut Job, found: &Value, step: &str, rid: Option<&str>, now| {
        let (id, token) = id_and_token(found);
        let doc = Document {
            sync_token: Some(token),
            doc_number: planned.doc_number.clone(),
            amount: Some(total),
            ..Document::new(kind, id, planned.source.clone())
        };
        job.rec.document_written(doc, step, rid, now);
    };
    if job.rec.pending.contains_key(&planned.source)
        && let Some(doc_number) = planned.doc_number.as_deref()
        && let Some(found) = find_document(
            host,
            up,
            kind,
            order_id,
            &planned.source,
            &[("DocNumber", doc_number)],
        )?
    {
        let now = host.now();
        record(job, &found, "document_adopted", None, now);
        return job.save(host).map_err(|e| Failure::storage(&e.to_string()));
    }
    let body = serde_json::to_value(body).unwrap_or(Value::Null);
    let order = order_id.to_string();
    let rid = request_id(&[
        "refund",
        &up.bc.store_hash,
        &order,
        &planned.source,
        &total.to_qbo_string(),
    ]);
    let now = host.now();
    job.rec.document_planned(&planned.source, &rid, now);
    job.save(host)
        .map_err(|e| Failure::storage(&e.to_string()))?;
    let created = match up.qbo_entity(
        host,
        kind.path(),
        kind.as_str(),
        EntityCall::Create {
            body: &body,
            request_id: &rid,
        },
    ) {
        Ok(v) => v,
        // A document with this number exists: ours (adopt it) or someone else's (fail).
        Err(e) if e.has_code("6140") => match planned.doc_number.as_deref() {
            Some(doc_number) => find_document(
                host,
                up,
                kind,
                order_id,
                &planned.source,
                &[("DocNumber", doc_number)],
            )?
            .ok_or(e.failure)?,
            None => return Err(e.failure),
        },
        Err(e) => return Err(e.failure),
    };
    let check = money_of(&created, "TotalAmt");
    let now = host.now();
    record(job, &created, "document_created", Some(&rid), now);
    if let Some(t) = check
        && t != total
    {
        job.rec.note(
            "total_mismatch",
            json!({"qbo_id": created.get("Id"), "quickbooks_total": t.to_qbo_string(), "bigcommerce_total": total.to_qbo_string()}),
            now,
        );
    }
    job.save(host).map_err(|e| Failure::storage(&e.to_string()))
}

/// Brings the current invoice's state and balance up to date with its payments.
fn refresh_standing(host: &mut dyn Host, job: &mut Job) -> Result<(), Failure> {
    let docs = job.rec.documents();
    let Some(current) = documents::current_invoice(&docs).cloned() else {
        return Ok(());
    };
    if current.state == Some(InvoiceState::Voided) {
        return Ok(());
    }
    let Some(total) = current.total else {
        return Ok(());
    };
    let (state, balance) = documents::invoice_standing(total, &docs);
    if current.state == Some(state) && current.balance == Some(balance) {
        return Ok(());
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
    job.save(host).map_err(|e| Failure::storage(&e.to_string()))
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

/// Lists the invoice just written on the record and saves it, so what follows (payments,
/// refunds) is built on a durable fact.
fn record_invoice(
    host: &mut dyn Host,
    job: &mut Job,
    prepared: &Prepared,
    done: &Done,
    generation: u32,
) -> Result<(), Failure> {
    let Done::Posted {
        qbo_id,
        sync_token,
        requestid,
        digest,
    } = done
    else {
        return Ok(());
    };
    let source = documents::invoice_source(generation);
    let before = job.rec.documents();
    let existed = documents::posted(&before, &source).is_some_and(|d| &d.qbo_id == qbo_id);
    let mut doc = documents::posted(&before, &source)
        .filter(|d| &d.qbo_id == qbo_id)
        .cloned()
        .unwrap_or_else(|| Document::new(DocKind::Invoice, qbo_id.clone(), source.clone()));
    doc.sync_token = Some(sync_token.clone());
    doc.doc_number = prepared.doc_number.clone();
    let (state, balance) = documents::invoice_standing(prepared.total, &before);
    let edited_after_payment = existed
        && doc.total.is_some_and(|t| t != prepared.total)
        && before.iter().any(|d| d.kind == DocKind::Payment);
    doc.total = Some(prepared.total);
    doc.state = Some(state);
    doc.balance = Some(balance);
    let now = host.now();
    if edited_after_payment {
        // An edit changed what the shopper owes on a paid invoice: say so.
        job.rec.note(
            "balance_changed",
            json!({"qbo_id": qbo_id, "total": prepared.total.to_qbo_string(),
            "paid": documents::payments_total(&before).to_qbo_string(),
            "balance": balance.to_qbo_string(),
            "note": if balance.is_negative() {
                "the order now totals less than was paid: refund the difference in BigCommerce"
            } else {
                "the order now totals more than was paid: the invoice has an open balance"
            }}),
            now,
        );
    }
    job.rec.content_digest = Some(digest.clone());
    job.rec.requestid = None;
    let step = if existed {
        "document_updated"
    } else {
        "document_created"
    };
    job.rec
        .document_written(doc, step, requestid.as_deref(), now);
    job.save(host).map_err(|e| Failure::storage(&e.to_string()))
}

/// Brings the current invoice in step with the order: `None` when nothing changed.
#[allow(clippy::too_many_arguments)]
fn sync_invoice(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    prepared: &Prepared,
    id: u64,
    replay: bool,
    generation: u32,
) -> Result<Option<Done>, Failure> {
    let Some(qbo_id) = job.rec.qbo_id.clone() else {
        return create_invoice(host, up, job, prepared, id, None, generation).map(Some);
    };
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
                return recreate(host, up, job, prepared, id, generation).map(Some);
            }
            Err(e) => return Err(e.failure),
        }
    }
    // Same content, and (on a replay) nobody changed the invoice in QuickBooks: nothing to do.
    if !edited_in_quickbooks && job.rec.content_digest.as_deref() == Some(prepared.digest.as_str())
    {
        return Ok(None);
    }
    update_invoice(
        host,
        up,
        job,
        prepared,
        &qbo_id,
        &sync_token,
        id,
        generation,
    )
    .map(Some)
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
    order_id: u64,
    generation: u32,
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
                return recreate(host, up, job, prepared, order_id, generation);
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
    order_id: u64,
    generation: u32,
) -> Result<Done, Failure> {
    let now = host.now();
    let old = job.rec.qbo_id.take();
    job.rec.qbo_sync_token = None;
    job.rec.note(
        "recreating",
        json!({"deleted_qbo_id": old, "note": "the linked invoice no longer exists in QuickBooks; creating it once more with a new requestid"}),
        now,
    );
    let replacing = old.unwrap_or_default();
    create_invoice(
        host,
        up,
        job,
        prepared,
        order_id,
        Some(&replacing),
        generation,
    )
}

fn create_invoice(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    prepared: &Prepared,
    order_id: u64,
    replacing: Option<&str>,
    generation: u32,
) -> Result<Done, Failure> {
    let order = order_id.to_string();
    let store_hash = up.bc.store_hash.as_str();
    let generation_part = format!("gen{generation}");
    let mut parts = vec!["bc", store_hash, order.as_str(), prepared.digest.as_str()];
    if let Some(r) = replacing {
        parts.push(r);
    }
    if generation > 1 {
        parts.push(&generation_part);
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
        return update_invoice(host, up, job, prepared, &id, &token, order_id, generation);
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
                update_invoice(host, up, job, prepared, &id, &token, order_id, generation)
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

/// The order's refunds from BigCommerce, oldest first.
pub fn fetch_refunds(
    host: &mut dyn Host,
    up: &Upstreams,
    order_id: u64,
) -> Result<Vec<Refund>, Failure> {
    let bc = &up.bc;
    let resp = up.bc_send(
        host,
        &bigcommerce::order_refunds(
            &bc.api_base,
            &bc.store_hash,
            &bc.access_token,
            OrderId(order_id),
        ),
    )?;
    bigcommerce::parse_refunds(&resp).map_err(|e| {
        Failure::unreadable(
            Service::BigCommerce,
            &format!("the refunds of order {order_id} ({e})"),
        )
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
