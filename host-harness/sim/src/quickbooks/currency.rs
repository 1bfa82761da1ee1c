//! The company's currencies, as strict as QuickBooks: one home currency; foreign currencies only
//! with multicurrency on and each currency enabled (`CompanyCurrency`); one currency per
//! customer, fixed at creation; a transaction in its customer's currency, with an
//! `ExchangeRate` (home units per foreign unit) that QuickBooks fills from its own rates when
//! none is sent.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::store::{Db, Fault};

type Obj = Map<String, Value>;

/// The company's currency set-up (`QboSimConfig::currencies`).
#[derive(Debug, Clone, PartialEq)]
pub struct Currencies {
    /// Home currency (ISO code).
    pub home: String,
    /// Multicurrency turned on (it cannot be turned off again in QuickBooks).
    pub multicurrency: bool,
    /// Foreign currencies added to the company's currency list.
    pub enabled: Vec<String>,
    /// QuickBooks' own rates (home per foreign unit), used when a transaction sends none.
    pub rates: BTreeMap<String, Decimal>,
}

impl Default for Currencies {
    /// A US company without multicurrency.
    fn default() -> Self {
        Currencies {
            home: "USD".into(),
            multicurrency: false,
            enabled: Vec::new(),
            rates: BTreeMap::new(),
        }
    }
}

impl Currencies {
    /// A multicurrency company with home `home` and `enabled` foreign currencies.
    pub fn multicurrency(home: &str, enabled: &[&str]) -> Self {
        Currencies {
            home: home.into(),
            multicurrency: true,
            enabled: enabled.iter().map(|c| c.to_string()).collect(),
            rates: BTreeMap::new(),
        }
    }
}

fn name(code: &str) -> &'static str {
    match code {
        "USD" => "United States Dollar",
        "EUR" => "Euro",
        "GBP" => "British Pound Sterling",
        "CAD" => "Canadian Dollar",
        "AUD" => "Australian Dollar",
        "JPY" => "Japanese Yen",
        _ => "Currency",
    }
}

/// A `CurrencyRef` value.
pub(crate) fn currency_ref(code: &str) -> Value {
    json!({"value": code, "name": name(code)})
}

/// The `CompanyCurrency` records of the enabled foreign currencies (what a query lists).
pub(crate) fn seed(db: &mut Db, created: &str) {
    if !db.currencies.multicurrency {
        return;
    }
    for code in db.currencies.enabled.clone() {
        let record = json!({"Code": code, "Name": name(&code), "Active": true});
        db.insert_raw("CompanyCurrency", record, created);
    }
}

fn code_of(o: &Obj) -> Option<String> {
    o.get("CurrencyRef")
        .and_then(|c| c.get("value"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Whether the company may use `code`: its home currency, or an enabled foreign one.
fn check_allowed(db: &Db, code: &str) -> Result<(), Fault> {
    let c = &db.currencies;
    if code == c.home {
        return Ok(());
    }
    if !c.multicurrency {
        return Err(Fault::business(format!(
            "Currency {code} is not allowed: multicurrency is not enabled for this company (home currency {}).",
            c.home
        )));
    }
    if !c.enabled.iter().any(|e| e == code) {
        return Err(Fault::business(format!(
            "Currency {code} is not in the company's currency list: add it under Currencies first."
        )));
    }
    Ok(())
}

/// A customer's currency: the home currency when none is sent; a foreign one must be allowed.
pub(crate) fn check_customer(db: &Db, c: &mut Obj) -> Result<(), Fault> {
    let code = code_of(c).unwrap_or_else(|| db.currencies.home.clone());
    check_allowed(db, &code)?;
    c.insert("CurrencyRef".into(), currency_ref(&code));
    Ok(())
}

/// A transaction's currency: allowed, equal to its customer's (when `customer` is given), and
/// with an `ExchangeRate` when foreign (QuickBooks' own rate when none is sent).
pub(crate) fn check_transaction(
    db: &Db,
    o: &mut Obj,
    customer: Option<&Value>,
) -> Result<(), Fault> {
    let home = db.currencies.home.clone();
    let code = code_of(o).unwrap_or_else(|| home.clone());
    check_allowed(db, &code)?;
    if let Some(customer) = customer {
        let theirs = customer
            .get("CurrencyRef")
            .and_then(|c| c.get("value"))
            .and_then(Value::as_str)
            .unwrap_or(&home);
        if theirs != code {
            return Err(Fault::business(format!(
                "The currency of the transaction ({code}) must match the customer's currency ({theirs})."
            ))
            .at("CurrencyRef"));
        }
    }
    o.insert("CurrencyRef".into(), currency_ref(&code));
    if code == home {
        if let Some(r) = o.get("ExchangeRate").filter(|v| !v.is_null())
            && super::exact::dec(r) != Some(Decimal::ONE)
        {
            return Err(Fault::business(
                "ExchangeRate must be 1 for a transaction in the home currency.",
            )
            .at("ExchangeRate"));
        }
        return Ok(());
    }
    let rate = match o.get("ExchangeRate") {
        None | Some(Value::Null) => db
            .currencies
            .rates
            .get(&code)
            .copied()
            .unwrap_or(Decimal::ONE),
        Some(v) => super::exact::dec(v)
            .ok_or_else(|| Fault::business("ExchangeRate must be a number.").at("ExchangeRate"))?,
    };
    if rate <= Decimal::ZERO {
        return Err(Fault::business("ExchangeRate must be greater than 0.").at("ExchangeRate"));
    }
    o.insert("ExchangeRate".into(), super::exact::dec_value(rate));
    Ok(())
}
