//! The order's payments: one QuickBooks `Payment` per payment source (gateway, gift
//! certificate, store credit), linked to the invoice, with accounts and methods from the
//! mapping's `payments` section.

use super::*;

/// QuickBooks ids of the accounts and payment methods the planned payments need, resolved
/// before any payment is written (a missing one fails the run with its name).
pub(super) struct PaymentRefs {
    accounts: HashMap<&'static str, String>,
    methods: HashMap<String, String>,
}

pub(super) fn payment_refs(
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

fn account_key(account: PaymentAccount) -> &'static str {
    match account {
        PaymentAccount::Deposit => "payments.deposit_account",
        PaymentAccount::GiftCertificate => "payments.gift_certificate_account",
        PaymentAccount::StoreCredit => "payments.store_credit_account",
    }
}

/// Creates one payment (once: a write planned before and not confirmed is looked up first).
pub(super) fn post_payment(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    prepared: &Prepared,
    p: &PlannedPayment,
    refs: &PaymentRefs,
) -> Result<(), Failure> {
    if job.rec.pending.contains_key(p.source)
        && adopt_posted(host, up, job, prepared, p.source, p.amount)?
    {
        return Ok(());
    }
    let staged = payment_request(up, job, prepared, p, refs)?;
    plan_payment(job, &staged, host.now());
    // The requestid is durable before the request leaves: a retry after a crash reuses it.
    job.save(host)
        .map_err(|e| Failure::storage(&e.to_string()))?;
    create_staged(host, up, job, &staged)
}

/// Sends a staged payment's create (with its planned `requestid`) and records it.
fn create_staged(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    s: &StagedPayment,
) -> Result<(), Failure> {
    let created = up
        .qbo_entity(
            host,
            DocKind::Payment.path(),
            DocKind::Payment.as_str(),
            EntityCall::Create {
                body: &s.body,
                request_id: &s.rid,
            },
        )
        .map_err(qf)?;
    record_payment(host, job, s, &created)
}

/// A payment ready to be created: its body and the `requestid` it carries.
pub(crate) struct StagedPayment {
    pub(crate) source: &'static str,
    amount: Money,
    pub(crate) body: Value,
    pub(crate) rid: String,
}

/// Looks for a payment whose earlier write was not confirmed: found, it is recorded as
/// posted (`true`); not found, it is still to be written (`false`).
fn adopt_posted(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    prepared: &Prepared,
    source: &str,
    amount: Money,
) -> Result<bool, Failure> {
    let order_id = prepared.fetched.order.id.0;
    let customer = prepared.customer.0.qbo_id.clone();
    let date_text = txn_date(prepared).map(|d| d.format("%Y-%m-%d").to_string());
    let mut conditions = vec![("CustomerRef", customer.as_str())];
    if let Some(d) = date_text.as_deref() {
        conditions.push(("TxnDate", d));
    }
    let Some(found) = find_document(host, up, DocKind::Payment, order_id, source, &conditions)?
    else {
        return Ok(false);
    };
    let (id, token) = id_and_token(&found);
    let doc = Document {
        sync_token: Some(token),
        amount: money_of(&found, "TotalAmt").or(Some(amount)),
        ..Document::new(DocKind::Payment, id, source)
    };
    let now = host.now();
    job.rec.document_written(doc, "document_adopted", None, now);
    update_standing(job);
    job.save(host)
        .map_err(|e| Failure::storage(&e.to_string()))?;
    Ok(true)
}

/// The payment's body, linked to the current invoice, and its `requestid`.
fn payment_request(
    up: &Upstreams,
    job: &Job,
    prepared: &Prepared,
    p: &PlannedPayment,
    refs: &PaymentRefs,
) -> Result<StagedPayment, Failure> {
    let order_id = prepared.fetched.order.id.0;
    let docs = job.rec.documents();
    let Some(invoice) = documents::current_invoice(&docs).cloned() else {
        return Err(Failure::mapping(
            "a payment has no invoice to apply to (connector bug: report it)",
        ));
    };
    let label = match p.source {
        documents::GIFT_CERTIFICATE => "paid with gift certificates",
        documents::STORE_CREDIT => "paid with store credit",
        _ => "paid through the payment gateway",
    };
    let body = quickbooks::Payment {
        customer_ref: Ref::id(prepared.customer.0.qbo_id.clone()),
        total_amt: p.amount,
        txn_date: txn_date(prepared),
        currency_ref: prepared
            .invoice
            .get("CurrencyRef")
            .and_then(|c| serde_json::from_value(c.clone()).ok()),
        // A foreign-currency order: its invoice's currency, rate and per-currency customer.
        exchange_rate: prepared.exchange_rate(),
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
    Ok(StagedPayment {
        source: p.source,
        amount: p.amount,
        body: serde_json::to_value(&body).unwrap_or(Value::Null),
        rid,
    })
}

/// Puts the payment's `requestid` on the record (saved by the caller before it is sent).
fn plan_payment(job: &mut Job, staged: &StagedPayment, now: DateTime<Utc>) {
    job.rec.document_planned(staged.source, &staged.rid, now);
}

/// Records a payment QuickBooks created.
fn record_payment(
    host: &mut dyn Host,
    job: &mut Job,
    staged: &StagedPayment,
    created: &Value,
) -> Result<(), Failure> {
    let (id, token) = id_and_token(created);
    let doc = Document {
        sync_token: Some(token),
        amount: Some(staged.amount),
        ..Document::new(DocKind::Payment, id, staged.source)
    };
    let now = host.now();
    job.rec
        .document_written(doc, "document_created", Some(&staged.rid), now);
    update_standing(job);
    job.save(host).map_err(|e| Failure::storage(&e.to_string()))
}

/// The payments of an order whose invoice a batch just created, made ready for the next batch:
/// each one's `requestid` saved on the record. `None` when they were posted here instead, one
/// by one (an earlier run planned one of them: that one is looked up first), or there are none.
pub(super) fn stage_payments(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    prepared: &Prepared,
    payments: &[PlannedPayment],
) -> Result<Option<Vec<StagedPayment>>, Failure> {
    if payments.is_empty() {
        return Ok(None);
    }
    let refs = payment_refs(host, up, prepared, payments)?;
    if payments
        .iter()
        .any(|p| job.rec.pending.contains_key(p.source))
    {
        for p in payments {
            post_payment(host, up, job, prepared, p, &refs)?;
        }
        return Ok(None);
    }
    let staged = payments
        .iter()
        .map(|p| payment_request(up, job, prepared, p, &refs))
        .collect::<Result<Vec<_>, _>>()?;
    let now = host.now();
    for s in &staged {
        plan_payment(job, s, now);
    }
    job.save(host)
        .map_err(|e| Failure::storage(&e.to_string()))?;
    Ok(Some(staged))
}

/// Files what a batch said about each staged payment: a created one is recorded, one whose
/// outcome is unknown is looked up and, when not found, created on its own, and one left out
/// of the batch is created on its own (each with its planned `requestid`). Every payment is settled this way before the first fault, if any, fails the
/// run (its retry looks up what it planned).
pub(super) fn settle_payments(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    prepared: &Prepared,
    staged: Vec<(StagedPayment, BatchOutcome)>,
) -> Result<(), Failure> {
    let mut first_failure = None;
    for (s, outcome) in staged {
        let settled = match outcome {
            BatchOutcome::Created(v) => record_payment(host, job, &s, &v),
            BatchOutcome::Unknown => post_unknown(host, up, job, prepared, &s),
            BatchOutcome::NotSent => create_staged(host, up, job, &s),
            BatchOutcome::Fault(e) => Err(e.failure),
            BatchOutcome::Failed(f) => Err(f),
        };
        if let Err(f) = settled {
            first_failure.get_or_insert(f);
        }
    }
    first_failure.map_or(Ok(()), Err)
}

/// A batched payment missing from the answer: looked up, and created on its own (with the
/// same `requestid`) only when QuickBooks does not have it.
fn post_unknown(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    prepared: &Prepared,
    s: &StagedPayment,
) -> Result<(), Failure> {
    if adopt_posted(host, up, job, prepared, s.source, s.amount)? {
        return Ok(());
    }
    create_staged(host, up, job, s)
}
