//! The order's invoice: created, kept in step (sparse update, 5010 re-read), re-created once
//! when it was deleted in QuickBooks, and voided when the order is cancelled unpaid.

use super::*;

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
pub(super) fn void_invoice(
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

/// Lists the invoice just written on the record. The next save carries it — the first
/// payment's or refund's `write_planned` save (before its request leaves), else the run's
/// final save — so what follows is still built on a durable fact, one key-value write
/// cheaper. A worker that dies before then leaves the invoice's write pending on the record,
/// and the next run finds it by its lookup (DocNumber and marker) instead of writing again.
pub(super) fn record_invoice(
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
    Ok(())
}

/// Brings the current invoice in step with the order: `None` when nothing changed.
#[allow(clippy::too_many_arguments)]
pub(super) fn sync_invoice(
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
                written(prepared, &updated);
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

pub(super) fn create_invoice(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    prepared: &Prepared,
    order_id: u64,
    replacing: Option<&str>,
    generation: u32,
) -> Result<Done, Failure> {
    let rid = create_request_id(up, prepared, order_id, replacing, generation);
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
            written(prepared, &found);
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
            written(prepared, &created);
            let (id, token) = id_and_token(&created);
            Ok(Done::Posted {
                qbo_id: id,
                sync_token: token,
                requestid: Some(rid),
                digest: prepared.digest.clone(),
            })
        }
        Err(e) if e.has_code("6140") => {
            after_duplicate(host, up, job, prepared, order_id, generation, e)
        }
        Err(e) => Err(e.failure),
    }
}

/// The deterministic `requestid` of an invoice's create (the same for a single create and for
/// the invoice's item in a batch, so either path finds the other's planned write).
pub(in crate::jobs) fn create_request_id(
    up: &Upstreams,
    prepared: &Prepared,
    order_id: u64,
    replacing: Option<&str>,
    generation: u32,
) -> String {
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
    request_id(&parts)
}

/// QuickBooks refused the create as a duplicate DocNumber (6140): an invoice of this order
/// (DocNumber and marker) is brought to the order's content; any other holder of the number
/// fails the run with the fault.
pub(super) fn after_duplicate(
    host: &mut dyn Host,
    up: &Upstreams,
    job: &mut Job,
    prepared: &Prepared,
    order_id: u64,
    generation: u32,
    e: QboFailure,
) -> Result<Done, Failure> {
    match find_existing(host, up, prepared, order_id)? {
        Some(found) => {
            let (id, token) = id_and_token(&found);
            update_invoice(host, up, job, prepared, &id, &token, order_id, generation)
        }
        None => Err(e.failure),
    }
}

/// The outcome of a create a batch made: as a single create's.
pub(super) fn created(prepared: &Prepared, invoice: &Value, up: &Upstreams, order_id: u64) -> Done {
    written(prepared, invoice);
    let (id, token) = id_and_token(invoice);
    Done::Posted {
        qbo_id: id,
        sync_token: token,
        requestid: Some(create_request_id(up, prepared, order_id, None, 1)),
        digest: prepared.digest.clone(),
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

/// Keeps what QuickBooks says the invoice just written totals, for [`guard_total`].
fn written(prepared: &Prepared, invoice: &Value) {
    let tax = invoice
        .get("TxnTaxDetail")
        .and_then(|t| money_of(t, "TotalTax"));
    prepared
        .written_totals
        .set(Some((money_of(invoice, "TotalAmt"), tax)));
}

/// The total guard (CONTRACT §11): the invoice just written must total what BigCommerce
/// says. A difference fails the record with `total_mismatch`, both totals and QuickBooks' tax
/// in `last_error`; the invoice stays linked but its content is marked unknown, so a replay
/// after the fix updates that same invoice.
pub(super) fn guard_total(
    host: &mut dyn Host,
    job: &mut Job,
    prepared: &Prepared,
) -> Result<(), Failure> {
    let Some((Some(total), tax)) = prepared.written_totals.take() else {
        return Ok(());
    };
    if total == prepared.total {
        return Ok(());
    }
    let now = host.now();
    job.rec.note(
        "total_mismatch",
        json!({"qbo_id": job.rec.qbo_id, "quickbooks_total": total.to_qbo_string(),
               "quickbooks_tax": tax.map(|t| t.to_qbo_string()),
               "bigcommerce_total": prepared.total.to_qbo_string()}),
        now,
    );
    job.rec.content_digest = None;
    job.save(host)
        .map_err(|e| Failure::storage(&e.to_string()))?;
    Err(Failure::total_mismatch(
        "invoice",
        &prepared.total.to_qbo_string(),
        &total.to_qbo_string(),
        tax.map(|t| t.to_qbo_string()).as_deref(),
    ))
}
