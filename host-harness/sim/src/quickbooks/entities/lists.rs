//! Name-list entities: Customer, Item, Account and Class — required names, uniqueness,
//! references and the fields QuickBooks fills in.

use serde_json::{Value, json};

use super::Obj;
use super::fields::{home_currency, name_taken, resolve, str_of, valid_email};
use crate::quickbooks::exact::int_value;
use crate::quickbooks::store::{Db, Fault};

/// `Classification` QuickBooks derives from an `AccountType`.
pub(crate) fn classification(account_type: &str) -> &'static str {
    match account_type {
        "Income" | "Other Income" => "Revenue",
        "Expense" | "Other Expense" | "Cost of Goods Sold" => "Expense",
        "Bank" | "Accounts Receivable" | "Other Current Asset" | "Fixed Asset" | "Other Asset" => {
            "Asset"
        }
        "Accounts Payable" | "Credit Card" | "Other Current Liability" | "Long Term Liability" => {
            "Liability"
        }
        _ => "Equity",
    }
}

const ACCOUNT_TYPES: &[(&str, &str)] = &[
    ("Bank", "Checking"),
    ("Accounts Receivable", "AccountsReceivable"),
    ("Other Current Asset", "OtherCurrentAssets"),
    ("Fixed Asset", "OtherFixedAssets"),
    ("Other Asset", "OtherLongTermAssets"),
    ("Accounts Payable", "AccountsPayable"),
    ("Credit Card", "CreditCard"),
    ("Other Current Liability", "OtherCurrentLiabilities"),
    ("Long Term Liability", "OtherLongTermLiabilities"),
    ("Equity", "OwnersEquity"),
    ("Income", "SalesOfProductIncome"),
    ("Other Income", "OtherMiscellaneousIncome"),
    ("Expense", "OtherMiscellaneousServiceCost"),
    ("Other Expense", "OtherMiscellaneousExpense"),
    ("Cost of Goods Sold", "SuppliesMaterialsCogs"),
];

pub(super) fn assign_address_ids(db: &mut Db, o: &mut Obj) {
    for k in ["BillAddr", "ShipAddr"] {
        if let Some(a) = o.get_mut(k).and_then(Value::as_object_mut)
            && !a.contains_key("Id")
        {
            db.next_id += 1;
            a.insert("Id".into(), Value::String(db.next_id.to_string()));
        }
    }
}

pub(super) fn validate_customer(
    db: &mut Db,
    c: &mut Obj,
    self_id: Option<&str>,
) -> Result<(), Fault> {
    let display = match str_of(c, "DisplayName")
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(d) => d.to_string(),
        None => {
            if c.contains_key("DisplayName") && self_id.is_some() {
                return Err(Fault::required(
                    "DisplayName",
                    "DisplayName (it cannot be removed)",
                ));
            }
            let parts: Vec<&str> = ["Title", "GivenName", "MiddleName", "FamilyName", "Suffix"]
                .iter()
                .filter_map(|k| str_of(c, k).map(str::trim).filter(|s| !s.is_empty()))
                .collect();
            if parts.is_empty() {
                return Err(Fault::required(
                    "DisplayName",
                    "Name (one of DisplayName, Title, GivenName, MiddleName, FamilyName, Suffix)",
                ));
            }
            parts.join(" ")
        }
    };
    if display.contains(':') {
        return Err(Fault::business(format!(
            "The name \"{display}\" contains a colon (:), which QuickBooks reserves for sub-customer paths. Remove the colon."
        ))
        .at("DisplayName"));
    }
    if display.chars().count() > 500 {
        return Err(Fault::length("DisplayName", 500, display.chars().count()));
    }
    for k in [
        "GivenName",
        "MiddleName",
        "FamilyName",
        "Suffix",
        "Title",
        "CompanyName",
    ] {
        if let Some(s) = str_of(c, k) {
            let n = s.chars().count();
            let max = if k == "CompanyName" {
                100
            } else if k == "Title" || k == "Suffix" {
                16
            } else {
                100
            };
            if n > max {
                return Err(Fault::length(k, max, n));
            }
        }
    }
    if name_taken(
        db,
        &["Customer", "Vendor", "Employee"],
        "DisplayName",
        &display,
        self_id.map(|i| ("Customer", i)),
    ) {
        return Err(Fault::duplicate_name());
    }
    if let Some(email) = c.get("PrimaryEmailAddr") {
        let addr = email
            .get("Address")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !addr.is_empty() && !valid_email(addr) {
            return Err(Fault::new(
                "2210",
                "Invalid Email Address format",
                format!("Email Address does not conform to the syntax rules of RFC 822. Supplied value:{addr}"),
            )
            .at("PrimaryEmailAddr"));
        }
    }
    c.insert("DisplayName".into(), Value::String(display.clone()));
    c.insert("FullyQualifiedName".into(), Value::String(display.clone()));
    c.entry("PrintOnCheckName")
        .or_insert(Value::String(display));
    for (k, d) in [
        ("Taxable", json!(true)),
        ("Job", json!(false)),
        ("BillWithParent", json!(false)),
        ("Balance", int_value(0)),
        ("BalanceWithJobs", int_value(0)),
        ("PreferredDeliveryMethod", json!("Print")),
        ("Active", json!(true)),
    ] {
        c.entry(k).or_insert(d);
    }
    crate::quickbooks::currency::check_customer(db, c)?;
    assign_address_ids(db, c);
    Ok(())
}

pub(super) fn validate_item(db: &mut Db, it: &mut Obj, self_id: Option<&str>) -> Result<(), Fault> {
    let Some(name) = str_of(it, "Name")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
    else {
        return Err(Fault::required("Name", "Name"));
    };
    if name.contains(':') {
        return Err(Fault::business(format!(
            "The item name \"{name}\" contains a colon (:), which is reserved for sub-items."
        ))
        .at("Name"));
    }
    if name.chars().count() > 100 {
        return Err(Fault::length("Name", 100, name.chars().count()));
    }
    if name_taken(db, &["Item"], "Name", &name, self_id.map(|i| ("Item", i))) {
        return Err(Fault::duplicate_name());
    }
    let ty = str_of(it, "Type").unwrap_or("NonInventory").to_string();
    if !["Service", "NonInventory", "Inventory", "Category", "Group"].contains(&ty.as_str()) {
        return Err(Fault::new(
            "2170",
            "Invalid Enumeration",
            format!("Invalid Enumeration : {ty}"),
        )
        .at("Type"));
    }
    if ["Service", "NonInventory", "Inventory"].contains(&ty.as_str()) {
        if !it.contains_key("IncomeAccountRef") {
            return Err(Fault::required("IncomeAccountRef", "IncomeAccountRef"));
        }
        let acct = resolve(
            db,
            it,
            "IncomeAccountRef",
            "Account",
            "Name",
            "IncomeAccountRef",
        )?;
        let acct_ty = acct
            .as_ref()
            .and_then(|a| a["AccountType"].as_str())
            .unwrap_or_default();
        if acct_ty != "Income" && acct_ty != "Other Income" {
            return Err(Fault::business(format!(
                "IncomeAccountRef must be an Income account; the referenced account is of type {acct_ty}."
            ))
            .at("IncomeAccountRef"));
        }
    }
    for k in ["ExpenseAccountRef", "AssetAccountRef"] {
        resolve(db, it, k, "Account", "Name", k)?;
    }
    resolve(db, it, "ClassRef", "Class", "Name", "ClassRef")?;
    it.insert("Name".into(), Value::String(name.clone()));
    it.insert("FullyQualifiedName".into(), Value::String(name));
    it.insert("Type".into(), Value::String(ty));
    for (k, d) in [
        ("Active", json!(true)),
        ("Taxable", json!(false)),
        ("UnitPrice", int_value(0)),
        ("TrackQtyOnHand", json!(false)),
    ] {
        it.entry(k).or_insert(d);
    }
    Ok(())
}

pub(super) fn validate_account(
    db: &mut Db,
    a: &mut Obj,
    self_id: Option<&str>,
) -> Result<(), Fault> {
    let Some(name) = str_of(a, "Name")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
    else {
        return Err(Fault::required("Name", "Name"));
    };
    if name.contains(':') || name.contains('"') {
        return Err(Fault::business(format!(
            "The account name \"{name}\" contains \" or :, which are not allowed."
        ))
        .at("Name"));
    }
    if name.chars().count() > 100 {
        return Err(Fault::length("Name", 100, name.chars().count()));
    }
    if name_taken(
        db,
        &["Account"],
        "Name",
        &name,
        self_id.map(|i| ("Account", i)),
    ) {
        return Err(Fault::duplicate_name());
    }
    let Some(ty) = str_of(a, "AccountType").map(str::to_string) else {
        return Err(Fault::required("AccountType", "AccountType"));
    };
    let Some((_, default_sub)) = ACCOUNT_TYPES.iter().find(|(t, _)| *t == ty) else {
        return Err(Fault::new(
            "2170",
            "Invalid Enumeration",
            format!("Invalid Enumeration : {ty}"),
        )
        .at("AccountType"));
    };
    a.entry("AccountSubType").or_insert(json!(default_sub));
    a.insert("Classification".into(), json!(classification(&ty)));
    a.insert("FullyQualifiedName".into(), Value::String(name));
    for (k, d) in [
        ("Active", json!(true)),
        ("SubAccount", json!(false)),
        ("CurrentBalance", int_value(0)),
        ("CurrentBalanceWithSubAccounts", int_value(0)),
        ("CurrencyRef", home_currency(db)),
    ] {
        a.entry(k).or_insert(d);
    }
    Ok(())
}

pub(super) fn validate_class(db: &mut Db, c: &mut Obj, self_id: Option<&str>) -> Result<(), Fault> {
    let Some(name) = str_of(c, "Name")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
    else {
        return Err(Fault::required("Name", "Name"));
    };
    if name_taken(db, &["Class"], "Name", &name, self_id.map(|i| ("Class", i))) {
        return Err(Fault::duplicate_name());
    }
    c.insert("FullyQualifiedName".into(), Value::String(name));
    c.entry("SubClass").or_insert(json!(false));
    c.entry("Active").or_insert(json!(true));
    Ok(())
}
