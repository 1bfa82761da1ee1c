//! Entity rules, one file per responsibility: `post` dispatches a create, update, void or
//! delete to the entity's validator and stores the result; `reads` serves reads and queries.
//!
//! - `fields`: shared field helpers (known properties, references, names, email, home currency).
//! - `lists`: name-list entities (Customer, Item, Account, Class) and their server-filled fields.
//! - `sales`: sales forms (Invoice, RefundReceipt, CreditMemo): lines, discount, tax, totals, dates.
//! - `payments`: Payment checks and how a payment comes off its invoices' balances.
//! - `void`: voiding and deleting an invoice.
//! - `reads`: `GET /{entity}/{id}` and `GET /query`.

use serde_json::{Map, Value, json};

use super::store::{Db, Fault, envelope_time, meta_time};

mod fields;
mod lists;
mod payments;
mod reads;
mod sales;
mod void;

pub(crate) use lists::classification;
pub(crate) use reads::{read, run_query};

use fields::check_props;

type Obj = Map<String, Value>;

/// Fields a full update keeps from the stored record (read-only or server-owned).
const KEEP_ON_FULL_UPDATE: &[&str] = &[
    "Id",
    "SyncToken",
    "MetaData",
    "domain",
    "Balance",
    "BalanceWithJobs",
    "CurrencyRef",
    "HomeBalance",
];

/// Create (no `Id`) or update (`Id` + `SyncToken`; `"sparse": true` merges) of a record.
fn upsert(
    db: &mut Db,
    entity: &'static str,
    body: Value,
    validate: fn(&mut Db, &mut Obj, Option<&str>) -> Result<(), Fault>,
) -> Result<Value, Fault> {
    check_props(entity, &body)?;
    let Value::Object(mut incoming) = body else {
        return Err(Fault::new(
            "2010",
            "Request has invalid or unsupported property",
            format!("The body must be a JSON {entity} object"),
        ));
    };
    let now = meta_time();
    let id = incoming
        .get("Id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let Some(id) = id else {
        incoming.remove("sparse");
        incoming.remove("SyncToken");
        validate(db, &mut incoming, None)?;
        let id = db.new_id();
        incoming.insert("Id".into(), Value::String(id));
        incoming.insert("SyncToken".into(), json!("0"));
        incoming.insert("domain".into(), json!("QBO"));
        incoming.insert("sparse".into(), json!(false));
        incoming.insert(
            "MetaData".into(),
            json!({"CreateTime": now, "LastUpdatedTime": now}),
        );
        let v = Value::Object(incoming);
        db.push(entity, v.clone());
        return Ok(v);
    };
    if !id.chars().all(|c| c.is_ascii_digit()) || id.is_empty() {
        return Err(Fault::new(
            "2030",
            "Invalid ID",
            format!("Id should be a valid number. Supplied value:{id}"),
        )
        .at("Id"));
    }
    let Some(idx) = db.position(entity, &id) else {
        return Err(Fault::not_found("Id"));
    };
    let current = db.list(entity)[idx].clone();
    let Some(sent) = incoming
        .get("SyncToken")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Err(Fault::required("SyncToken", "SyncToken"));
    };
    let cur_token = current["SyncToken"].as_str().unwrap_or("0").to_string();
    if sent != cur_token {
        return Err(Fault::stale(&id, &sent, &cur_token));
    }
    let sparse = incoming
        .get("sparse")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let cur_obj = current.as_object().cloned().unwrap_or_default();
    let mut merged = if sparse {
        let mut m = cur_obj.clone();
        for (k, v) in incoming {
            m.insert(k, v);
        }
        m
    } else {
        let mut m = incoming;
        for k in KEEP_ON_FULL_UPDATE {
            if let Some(v) = cur_obj.get(*k) {
                m.insert((*k).to_string(), v.clone());
            }
        }
        m
    };
    if let (Some(old), Some(new)) = (cur_obj.get("CurrencyRef"), merged.get("CurrencyRef"))
        && old.get("value") != new.get("value")
    {
        return Err(Fault::business(
            "CurrencyRef cannot be changed after the record is created.",
        ));
    }
    validate(db, &mut merged, Some(&id))?;
    let next: u64 = cur_token.parse().unwrap_or(0) + 1;
    merged.insert("SyncToken".into(), Value::String(next.to_string()));
    merged.insert("sparse".into(), json!(false));
    merged.insert("domain".into(), json!("QBO"));
    let created = cur_obj
        .get("MetaData")
        .and_then(|m| m.get("CreateTime"))
        .cloned()
        .unwrap_or(json!(now));
    merged.insert(
        "MetaData".into(),
        json!({"CreateTime": created, "LastUpdatedTime": now}),
    );
    let v = Value::Object(merged);
    db.replace(entity, idx, v.clone());
    Ok(v)
}

/// `POST /{entity}` (create / update / `operation=void|delete`); returns the response body.
pub(crate) fn post(
    db: &mut Db,
    entity: &'static str,
    operation: Option<&str>,
    body: Value,
) -> Result<Value, Fault> {
    let v = match (entity, operation) {
        (_, None | Some("create") | Some("update")) => {
            let validate = match entity {
                "Customer" => lists::validate_customer,
                "Invoice" => sales::validate_invoice,
                "Payment" => payments::validate_payment,
                "RefundReceipt" => sales::validate_refund_receipt,
                "CreditMemo" => sales::validate_credit_memo,
                "Item" => lists::validate_item,
                "Account" => lists::validate_account,
                "Class" => lists::validate_class,
                _ => {
                    return Err(Fault::unsupported_operation(format!(
                        "Operation create/update is not supported for {entity} by the simulator."
                    )));
                }
            };
            let v = upsert(db, entity, body, validate)?;
            if entity == "Payment" {
                payments::apply_payment(db, &v);
            }
            v
        }
        ("Invoice", Some(op @ ("void" | "delete"))) => return void::void_or_delete(db, op, &body),
        (_, Some(op)) => {
            return Err(Fault::unsupported_operation(format!(
                "Operation {op} is not supported for {entity}."
            )));
        }
    };
    Ok(json!({entity: v, "time": envelope_time()}))
}
