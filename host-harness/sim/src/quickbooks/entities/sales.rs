//! Sales forms: Invoice, RefundReceipt and CreditMemo — customer, lines (Qty × UnitPrice =
//! Amount, one discount line), DocNumber, tax, currency, dates and the totals and balances
//! QuickBooks computes.

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Value, json};

use super::Obj;
use super::fields::{ref_id, resolve, str_of};
use super::payments::{applied_payments, check_money_account, check_ref_num};
use crate::quickbooks::exact::{self, dec, dec_value, int_value};
use crate::quickbooks::store::{Db, Fault};
use crate::quickbooks::tax;

pub(super) fn money(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

pub(super) fn pref_bool(db: &Db, section: &str, key: &str) -> bool {
    db.list("Preferences")
        .first()
        .and_then(|p| p.get(section))
        .and_then(|s| s.get(key))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

pub(super) fn validate_invoice(
    db: &mut Db,
    inv: &mut Obj,
    self_id: Option<&str>,
) -> Result<(), Fault> {
    if let Some(id) = self_id
        && db.voided.contains(id)
    {
        return Err(Fault::business(
            "This invoice has been voided; a voided transaction cannot be edited.",
        ));
    }
    let total = validate_sales_form(db, "Invoice", inv, self_id)?;
    let applied = applied_payments(db, self_id);
    if total < applied {
        return Err(Fault::business(format!(
            "The invoice total {total} would be less than the {applied} already received for it; unapply or delete the payment first."
        )));
    }
    let balance = total - applied;
    inv.insert("Balance".into(), dec_value(balance));
    inv.insert("HomeBalance".into(), dec_value(balance));
    if !inv.contains_key("DueDate") {
        let txn_date = str_of(inv, "TxnDate").unwrap_or_default().to_string();
        if let Ok(d) = chrono::NaiveDate::parse_from_str(&txn_date, "%Y-%m-%d") {
            let due = d + chrono::Days::new(30);
            inv.insert("DueDate".into(), json!(due.format("%Y-%m-%d").to_string()));
        }
    }
    for (k, d) in [
        ("EmailStatus", json!("NotSet")),
        ("PrintStatus", json!("NeedToPrint")),
        ("LinkedTxn", json!([])),
        ("AllowIPNPayment", json!(false)),
        ("AllowOnlinePayment", json!(false)),
        ("AllowOnlineCreditCardPayment", json!(false)),
        ("AllowOnlineACHPayment", json!(false)),
    ] {
        inv.entry(k).or_insert(d);
    }
    Ok(())
}

pub(super) fn validate_refund_receipt(
    db: &mut Db,
    r: &mut Obj,
    self_id: Option<&str>,
) -> Result<(), Fault> {
    if !r.contains_key("DepositToAccountRef") {
        return Err(Fault::required(
            "DepositToAccountRef",
            "DepositToAccountRef (the account the refund is paid from)",
        ));
    }
    let account = resolve(
        db,
        r,
        "DepositToAccountRef",
        "Account",
        "Name",
        "DepositToAccountRef",
    )?
    .unwrap_or_default();
    check_money_account(&account, "DepositToAccountRef")?;
    resolve(
        db,
        r,
        "PaymentMethodRef",
        "PaymentMethod",
        "Name",
        "PaymentMethodRef",
    )?;
    check_ref_num(r)?;
    validate_sales_form(db, "RefundReceipt", r, self_id)?;
    r.insert("Balance".into(), int_value(0));
    r.entry("PrintStatus").or_insert(json!("NotSet"));
    r.entry("EmailStatus").or_insert(json!("NotSet"));
    Ok(())
}

pub(super) fn validate_credit_memo(
    db: &mut Db,
    c: &mut Obj,
    self_id: Option<&str>,
) -> Result<(), Fault> {
    let total = validate_sales_form(db, "CreditMemo", c, self_id)?;
    c.insert("Balance".into(), dec_value(total));
    c.insert("RemainingCredit".into(), dec_value(total));
    c.entry("PrintStatus").or_insert(json!("NeedToPrint"));
    c.entry("EmailStatus").or_insert(json!("NotSet"));
    Ok(())
}

pub(super) fn txn_date(o: &Obj) -> Result<chrono::NaiveDate, Fault> {
    let today = crate::quickbooks::store::company_now().date_naive();
    match str_of(o, "TxnDate") {
        None => Ok(today),
        Some(s) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
            Fault::new(
                "2010",
                "Request has invalid or unsupported property",
                format!("Invalid date {s}: use YYYY-MM-DD"),
            )
            .at("TxnDate")
        }),
    }
}

/// Checks and completes a sales form (invoice, refund receipt, credit memo): customer, lines
/// (Qty × UnitPrice = Amount, one discount line), DocNumber, tax, currency, date. Returns its
/// total.
pub(super) fn validate_sales_form(
    db: &mut Db,
    entity: &str,
    inv: &mut Obj,
    self_id: Option<&str>,
) -> Result<Decimal, Fault> {
    if !inv.contains_key("CustomerRef") {
        return Err(Fault::required("CustomerRef", "CustomerRef"));
    }
    let customer = resolve(
        db,
        inv,
        "CustomerRef",
        "Customer",
        "DisplayName",
        "CustomerRef",
    )?
    .unwrap_or_default();
    let lines_in = match inv.get("Line") {
        Some(Value::Array(l)) if !l.is_empty() => l.clone(),
        _ => return Err(Fault::required("Line", "Line")),
    };
    if let Some(doc) = inv.get("DocNumber") {
        let Some(doc) = doc.as_str().filter(|_| exact::num_text(doc).is_none()) else {
            return Err(Fault::business("DocNumber must be a string.").at("DocNumber"));
        };
        let n = doc.chars().count();
        if n > 21 {
            return Err(Fault::length("DocNumber", 21, n));
        }
        if doc == "AUTO_GENERATE" {
            inv.remove("DocNumber");
        } else if db.reject_duplicate_doc_number
            && let Some(other) = db
                .list(entity)
                .iter()
                .find(|v| v["DocNumber"].as_str() == Some(doc) && v["Id"].as_str() != self_id)
        {
            return Err(Fault::new(
                "6140",
                "Duplicate Document Number Error",
                format!(
                    "Duplicate Document Number Error : You must specify a different number. This number has already been used. DocNumber={doc} is assigned to TxnType={entity} with TxnId={}",
                    other["Id"].as_str().unwrap_or_default()
                ),
            ));
        }
    }
    if !inv.contains_key("DocNumber") && self_id.is_none() {
        db.next_doc_number += 1;
        inv.insert(
            "DocNumber".into(),
            Value::String(db.next_doc_number.to_string()),
        );
    }
    let global = tax::global_tax_calculation(db, inv)?;
    let mut taxed: Vec<tax::TaxedLine> = Vec::new();
    let mut lines: Vec<Value> = Vec::new();
    let mut subtotal = Decimal::ZERO;
    let mut discount = Decimal::ZERO;
    let mut discount_lines = 0;
    for (i, line) in lines_in.into_iter().enumerate() {
        let element = format!("Line[{i}]");
        let Value::Object(mut l) = line else {
            return Err(Fault::required(&element, "Line object"));
        };
        let detail_type = str_of(&l, "DetailType").map(str::to_string);
        let Some(detail_type) = detail_type else {
            return Err(Fault::required(
                &format!("{element}.DetailType"),
                "DetailType",
            ));
        };
        match detail_type.as_str() {
            "SubTotalLineDetail" => continue,
            "SalesItemLineDetail" => {
                let Some(mut d) = l
                    .get("SalesItemLineDetail")
                    .and_then(Value::as_object)
                    .cloned()
                else {
                    return Err(Fault::required(
                        &format!("{element}.SalesItemLineDetail"),
                        "SalesItemLineDetail",
                    ));
                };
                let Some(amount) = l.get("Amount").and_then(dec) else {
                    return Err(Fault::business(format!(
                        "Line {} has no Amount; every sales line needs one.",
                        i + 1
                    ))
                    .at(&element));
                };
                match ref_id(&d, "ItemRef").as_deref() {
                    None => {
                        return Err(Fault::required(
                            &format!("{element}.SalesItemLineDetail.ItemRef"),
                            "ItemRef",
                        ));
                    }
                    Some("SHIPPING_ITEM_ID") => {
                        if !pref_bool(db, "SalesFormsPrefs", "AllowShipping") {
                            return Err(Fault::invalid_ref(
                                &format!("{element}.ItemRef"),
                                "Item",
                                "SHIPPING_ITEM_ID",
                            ));
                        }
                    }
                    Some(_) => {
                        resolve(db, &mut d, "ItemRef", "Item", "Name", "ItemRef")?;
                    }
                }
                if d.contains_key("ClassRef")
                    && !pref_bool(db, "AccountingInfoPrefs", "ClassTrackingPerTxnLine")
                {
                    return Err(Fault::business(
                        "Class tracking per line is off in this company; remove ClassRef from lines.",
                    ));
                }
                resolve(db, &mut d, "ClassRef", "Class", "Name", "ClassRef")?;
                resolve(
                    db,
                    &mut d,
                    "ItemAccountRef",
                    "Account",
                    "Name",
                    "ItemAccountRef",
                )?;
                taxed.push(tax::line_tax_code(db, &mut d, &element, i + 1, amount)?);
                let qty = d.get("Qty").map(|q| dec(q).ok_or(q));
                let price = d.get("UnitPrice").map(|p| dec(p).ok_or(p));
                match (qty, price) {
                    (Some(Ok(q)), Some(Ok(p))) => {
                        let expected = money(q * p);
                        if expected != amount {
                            return Err(Fault::business(format!(
                                "Line {}: Amount {amount} is not equal to Qty {q} * UnitPrice {p} = {expected}. Supplied value:{amount}",
                                i + 1
                            ))
                            .at(&format!("{element}.Amount")));
                        }
                    }
                    (Some(Err(_)), _) | (_, Some(Err(_))) => {
                        return Err(Fault::business(format!(
                            "Line {}: Qty and UnitPrice must be numbers.",
                            i + 1
                        )));
                    }
                    (Some(Ok(q)), None) if !q.is_zero() => {
                        d.insert("UnitPrice".into(), dec_value((amount / q).normalize()));
                    }
                    _ => {}
                }
                subtotal += amount;
                l.insert("SalesItemLineDetail".into(), Value::Object(d));
            }
            "DiscountLineDetail" => {
                discount_lines += 1;
                if discount_lines > 1 {
                    return Err(Fault::business(
                        "Only one discount line is allowed per transaction.",
                    ));
                }
                if !pref_bool(db, "SalesFormsPrefs", "AllowDiscount") {
                    return Err(Fault::business(
                        "Discounts are turned off in this company's sales form settings.",
                    ));
                }
                let Some(mut d) = l
                    .get("DiscountLineDetail")
                    .and_then(Value::as_object)
                    .cloned()
                else {
                    return Err(Fault::required(
                        &format!("{element}.DiscountLineDetail"),
                        "DiscountLineDetail",
                    ));
                };
                resolve(
                    db,
                    &mut d,
                    "DiscountAccountRef",
                    "Account",
                    "Name",
                    "DiscountAccountRef",
                )?;
                resolve(db, &mut d, "ClassRef", "Class", "Name", "ClassRef")?;
                let percent_based = d
                    .get("PercentBased")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let amount = if percent_based {
                    let Some(pct) = d.get("DiscountPercent").and_then(dec) else {
                        return Err(Fault::required(
                            &format!("{element}.DiscountLineDetail.DiscountPercent"),
                            "DiscountPercent",
                        ));
                    };
                    let a = money(subtotal * pct / Decimal::ONE_HUNDRED);
                    l.insert("Amount".into(), dec_value(a));
                    a
                } else {
                    let Some(a) = l.get("Amount").and_then(dec) else {
                        return Err(Fault::business(format!(
                            "Discount line {} has no Amount.",
                            i + 1
                        ))
                        .at(&element));
                    };
                    a
                };
                if amount.is_sign_negative() {
                    return Err(Fault::business("A discount Amount must not be negative."));
                }
                discount += amount;
                l.insert("DiscountLineDetail".into(), Value::Object(d));
            }
            "DescriptionOnly" => {}
            other => {
                return Err(Fault::new(
                    "2170",
                    "Invalid Enumeration",
                    format!("Invalid Enumeration : {other}"),
                )
                .at(&format!("{element}.DetailType")));
            }
        }
        if let Some(desc) = str_of(&l, "Description")
            && desc.chars().count() > 4000
        {
            return Err(Fault::length(
                &format!("{element}.Description"),
                4000,
                desc.chars().count(),
            ));
        }
        l.insert("Id".into(), Value::String((lines.len() + 1).to_string()));
        l.insert("LineNum".into(), int_value(lines.len() as i64 + 1));
        lines.push(Value::Object(l));
    }
    if lines.is_empty() {
        return Err(Fault::required(
            "Line",
            "Line (a line other than SubTotalLineDetail)",
        ));
    }
    lines.push(exact::normalize(
        json!({"Amount": "", "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}}),
    ));
    if let Some(last) = lines.last_mut() {
        last["Amount"] = dec_value(subtotal);
    }
    let mut tax_detail = inv
        .get("TxnTaxDetail")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let override_tax = match tax_detail.get("TotalTax") {
        Some(t) => {
            Some(dec(t).ok_or_else(|| Fault::business("TxnTaxDetail.TotalTax must be a number."))?)
        }
        None => None,
    };
    let (tax, total) = tax::totals(&taxed, subtotal, discount, override_tax, global);
    tax_detail.insert("TotalTax".into(), dec_value(tax));
    inv.insert("TxnTaxDetail".into(), Value::Object(tax_detail));
    if let Some(g) = global {
        inv.insert("GlobalTaxCalculation".into(), json!(g));
    }
    if total.is_sign_negative() && !total.is_zero() {
        return Err(Fault::business(format!(
            "Transaction total {total} cannot be negative."
        )));
    }
    inv.insert("Line".into(), Value::Array(lines));
    inv.insert("TotalAmt".into(), dec_value(total));
    resolve(db, inv, "ClassRef", "Class", "Name", "ClassRef")?;
    crate::quickbooks::currency::check_transaction(db, inv, Some(&customer))?;
    let date = txn_date(inv)?;
    inv.insert("TxnDate".into(), json!(date.format("%Y-%m-%d").to_string()));
    if !inv.contains_key("BillAddr")
        && let Some(addr) = customer.get("BillAddr")
    {
        inv.insert("BillAddr".into(), addr.clone());
    }
    inv.entry("ApplyTaxAfterDiscount").or_insert(json!(false));
    if let Some(note) = str_of(inv, "PrivateNote")
        && note.chars().count() > 4000
    {
        return Err(Fault::length("PrivateNote", 4000, note.chars().count()));
    }
    Ok(total)
}
