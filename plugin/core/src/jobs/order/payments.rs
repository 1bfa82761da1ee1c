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
