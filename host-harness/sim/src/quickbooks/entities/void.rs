//! Voiding and deleting an invoice (`POST /invoice?operation=void|delete`).

use serde_json::{Value, json};

use super::payments::applied_payments;
use crate::quickbooks::exact::int_value;
use crate::quickbooks::store::{Db, Fault, envelope_time, meta_time};

pub(super) fn void_or_delete(db: &mut Db, op: &str, body: &Value) -> Result<Value, Fault> {
    let Some(id) = body.get("Id").and_then(Value::as_str) else {
        return Err(Fault::required("Id", "Id"));
    };
    let Some(sent) = body.get("SyncToken").and_then(Value::as_str) else {
        return Err(Fault::required("SyncToken", "SyncToken"));
    };
    let Some(idx) = db.position("Invoice", id) else {
        return Err(Fault::not_found("Id"));
    };
    let mut inv = db.list("Invoice")[idx].clone();
    let cur = inv["SyncToken"].as_str().unwrap_or("0").to_string();
    if sent != cur {
        return Err(Fault::stale(id, sent, &cur));
    }
    if !applied_payments(db, Some(id)).is_zero() {
        // [unverified] against Intuit; the safe side: a paid invoice is not voided or deleted
        // while a payment is applied to it.
        return Err(Fault::business(format!(
            "Invoice {id} has payments applied to it; delete or unapply the payments before you {op} it."
        )));
    }
    if op == "void" && db.voided.contains(id) {
        return Err(Fault::business(format!("Invoice {id} is already voided.")));
    }
    if op == "delete" {
        db.voided.remove(id);
        if let Some(list) = db.entities.get_mut("Invoice") {
            list.remove(idx);
        }
        return Ok(
            json!({"Invoice": {"domain": "QBO", "status": "Deleted", "Id": id}, "time": envelope_time()}),
        );
    }
    if let Some(lines) = inv.get_mut("Line").and_then(Value::as_array_mut) {
        for l in lines {
            l["Amount"] = int_value(0);
            if let Some(d) = l
                .get_mut("SalesItemLineDetail")
                .and_then(Value::as_object_mut)
            {
                d.remove("Qty");
                d.remove("UnitPrice");
            }
        }
    }
    for k in ["TotalAmt", "Balance", "HomeBalance"] {
        inv[k] = int_value(0);
    }
    inv["TxnTaxDetail"] = json!({"TotalTax": int_value(0)});
    let note = inv["PrivateNote"].as_str().unwrap_or_default().to_string();
    inv["PrivateNote"] = json!(if note.is_empty() {
        "Voided".to_string()
    } else {
        format!("Voided - {note}")
    });
    db.voided.insert(id.to_string());
    let next: u64 = cur.parse().unwrap_or(0) + 1;
    inv["SyncToken"] = json!(next.to_string());
    inv["MetaData"]["LastUpdatedTime"] = json!(meta_time());
    db.replace("Invoice", idx, inv.clone());
    Ok(json!({"Invoice": inv, "time": envelope_time()}))
}
