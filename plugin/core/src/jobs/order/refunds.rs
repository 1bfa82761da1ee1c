//! The order's refunds: one `RefundReceipt` (paid order) or `CreditMemo` (unpaid) per
//! BigCommerce refund, laid out with the invoice's rules.

use super::*;

/// Posts a document for every BigCommerce refund not posted yet. Every refund is mapped and
/// checked before the first one is written. Returns whether anything was written.
pub(super) fn post_refunds(
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
            // A foreign-currency order: its invoice's currency, rate and per-currency customer.
            exchange_rate: prepared.exchange_rate(),
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
            global_tax_calculation: draft.global_tax_calculation.clone(),
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
