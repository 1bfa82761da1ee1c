//! Payments: the checks on a Payment (customer, deposit account, lines linking invoices of
//! that customer, amounts within open balances) and how it comes off its invoices' balances.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::Obj;
use super::fields::{ref_id, resolve, str_of};
use super::sales::txn_date;
use crate::quickbooks::exact::{dec, dec_value};
use crate::quickbooks::store::{Db, Fault};

/// What payments have applied to invoice `id` so far.
pub(super) fn applied_payments(db: &Db, id: Option<&str>) -> Decimal {
    let Some(id) = id else {
        return Decimal::ZERO;
    };
    db.list("Payment")
        .iter()
        .flat_map(|p| p["Line"].as_array().cloned().unwrap_or_default())
        .filter(|l| {
            l["LinkedTxn"].as_array().is_some_and(|t| {
                t.iter()
                    .any(|x| x["TxnId"].as_str() == Some(id) && x["TxnType"] == "Invoice")
            })
        })
        .filter_map(|l| dec(&l["Amount"]))
        .sum()
}

/// Accounts money can be received into or paid from: bank and other current asset accounts
/// (Undeposited Funds is one), and other current liabilities (gift certificates and store
/// credit owed).
pub(super) fn check_money_account(account: &Value, element: &str) -> Result<(), Fault> {
    let ty = account["AccountType"].as_str().unwrap_or_default();
    if matches!(
        ty,
        "Bank" | "Other Current Asset" | "Other Current Liability"
    ) {
        Ok(())
    } else {
        Err(Fault::business(format!(
            "{element} must be a bank, other current asset or other current liability account; the referenced account is of type {ty}."
        ))
        .at(element))
    }
}

pub(super) fn check_ref_num(o: &Obj) -> Result<(), Fault> {
    if let Some(r) = str_of(o, "PaymentRefNum") {
        let n = r.chars().count();
        if n > 21 {
            return Err(Fault::length("PaymentRefNum", 21, n));
        }
    }
    Ok(())
}

pub(super) fn validate_payment(
    db: &mut Db,
    p: &mut Obj,
    self_id: Option<&str>,
) -> Result<(), Fault> {
    if self_id.is_some() {
        return Err(Fault::unsupported_operation(
            "Updating a Payment is not supported by the simulator (the connector never does).",
        ));
    }
    if !p.contains_key("CustomerRef") {
        return Err(Fault::required("CustomerRef", "CustomerRef"));
    }
    resolve(
        db,
        p,
        "CustomerRef",
        "Customer",
        "DisplayName",
        "CustomerRef",
    )?;
    let customer = ref_id(p, "CustomerRef").unwrap_or_default();
    let Some(total) = p.get("TotalAmt").and_then(dec) else {
        return Err(Fault::required("TotalAmt", "TotalAmt"));
    };
    if total.is_sign_negative() && !total.is_zero() {
        return Err(Fault::business("TotalAmt must not be negative.").at("TotalAmt"));
    }
    match resolve(
        db,
        p,
        "DepositToAccountRef",
        "Account",
        "Name",
        "DepositToAccountRef",
    )? {
        Some(account) => check_money_account(&account, "DepositToAccountRef")?,
        None => {
            // Omitted: QuickBooks deposits to Undeposited Funds.
            if let Some(uf) = db
                .list("Account")
                .iter()
                .find(|a| a["AccountSubType"] == "UndepositedFunds")
            {
                let uf = json!({"value": uf["Id"], "name": uf["Name"]});
                p.insert("DepositToAccountRef".into(), uf);
            }
        }
    }
    resolve(
        db,
        p,
        "PaymentMethodRef",
        "PaymentMethod",
        "Name",
        "PaymentMethodRef",
    )?;
    check_ref_num(p)?;
    // A payment is in its customer's currency, as QuickBooks requires.
    let payer = db.find("Customer", &customer).cloned();
    crate::quickbooks::currency::check_transaction(db, p, payer.as_ref())?;
    let mut applied = Decimal::ZERO;
    let lines = p
        .get("Line")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.into_iter().enumerate() {
        let element = format!("Line[{i}]");
        let Value::Object(l) = line else {
            return Err(Fault::required(&element, "Line object"));
        };
        let Some(amount) = l.get("Amount").and_then(dec) else {
            return Err(Fault::required(&format!("{element}.Amount"), "Amount"));
        };
        if amount <= Decimal::ZERO {
            return Err(Fault::business(format!(
                "Line {}: Amount must be positive.",
                i + 1
            )));
        }
        let links = l
            .get("LinkedTxn")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if links.len() != 1 {
            return Err(Fault::business(format!(
                "Line {}: a payment line must link exactly one transaction (LinkedTxn).",
                i + 1
            )));
        }
        let link = &links[0];
        let txn_type = link["TxnType"].as_str().unwrap_or_default();
        if txn_type != "Invoice" {
            return Err(Fault::business(format!(
                "Line {}: the simulator applies payments to invoices only, not {txn_type:?}.",
                i + 1
            )));
        }
        let txn_id = link["TxnId"].as_str().unwrap_or_default();
        let Some(invoice) = db.find("Invoice", txn_id) else {
            return Err(Fault::invalid_ref(
                &format!("{element}.LinkedTxn"),
                "Invoice",
                txn_id,
            ));
        };
        if db.voided.contains(txn_id) {
            return Err(Fault::business(format!(
                "Line {}: invoice {txn_id} is voided; a payment cannot be applied to it.",
                i + 1
            )));
        }
        if invoice["CustomerRef"]["value"].as_str() != Some(customer.as_str()) {
            return Err(Fault::business(format!(
                "Line {}: invoice {txn_id} belongs to another customer; a payment can only be applied to its own customer's invoices.",
                i + 1
            )));
        }
        let open = invoice.get("Balance").and_then(dec).unwrap_or_default();
        if amount > open {
            return Err(Fault::business(format!(
                "Line {}: the amount {amount} is more than invoice {txn_id}'s open balance {open}.",
                i + 1
            )));
        }
        applied += amount;
        out.push(Value::Object(l));
    }
    if applied > total {
        return Err(Fault::business(format!(
            "The amounts applied ({applied}) are more than the payment's TotalAmt ({total})."
        )));
    }
    p.insert("Line".into(), Value::Array(out));
    p.insert("UnappliedAmt".into(), dec_value(total - applied));
    p.insert("TotalAmt".into(), dec_value(total));
    p.insert(
        "TxnDate".into(),
        json!(txn_date(p)?.format("%Y-%m-%d").to_string()),
    );
    p.entry("ProcessPayment").or_insert(json!(false));
    if let Some(note) = str_of(p, "PrivateNote")
        && note.chars().count() > 4000
    {
        return Err(Fault::length("PrivateNote", 4000, note.chars().count()));
    }
    Ok(())
}

/// A payment's applied amounts come off its invoices' balances, and each invoice lists it.
pub(super) fn apply_payment(db: &mut Db, payment: &Value) {
    let pid = payment["Id"].as_str().unwrap_or_default().to_string();
    for line in payment["Line"].as_array().cloned().unwrap_or_default() {
        let amount = dec(&line["Amount"]).unwrap_or_default();
        let Some(txn_id) = line["LinkedTxn"][0]["TxnId"].as_str() else {
            continue;
        };
        let Some(idx) = db.position("Invoice", txn_id) else {
            continue;
        };
        let mut inv = db.list("Invoice")[idx].clone();
        let balance = dec(&inv["Balance"]).unwrap_or_default() - amount;
        inv["Balance"] = dec_value(balance);
        inv["HomeBalance"] = dec_value(balance);
        let mut linked = inv["LinkedTxn"].as_array().cloned().unwrap_or_default();
        linked.push(json!({"TxnId": pid, "TxnType": "Payment"}));
        inv["LinkedTxn"] = Value::Array(linked);
        db.replace("Invoice", idx, inv);
    }
}
