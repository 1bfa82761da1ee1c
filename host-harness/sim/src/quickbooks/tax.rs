//! Company profiles and how each computes tax on a sales form, as QuickBooks does:
//! - [`CompanyProfile::UsAst`] (the default): a US company with automated sales tax. A form
//!   posted without a `TxnTaxDetail.TotalTax` override gets QuickBooks' own tax, at
//!   [`US_AST_RATE_PERCENT`], on every line not coded `NON` (the double tax a connector that
//!   posts tax as a line causes); with the override, the total is lines − discount + override.
//!   `GlobalTaxCalculation` is refused (it is for non-US companies only).
//! - [`CompanyProfile::UkVat`]: a UK company with VAT. Every sales line must carry a
//!   `TaxCodeRef` naming an existing TaxCode; `GlobalTaxCalculation` is `TaxExcluded` (the
//!   default), `TaxInclusive` or `NotApplicable`; tax is each code's TaxRate applied to its
//!   lines (after a discount, spread pro rata) unless `TxnTaxDetail.TotalTax` overrides it.
//!   A line's `Amount` is always its net amount, as QuickBooks stores it; under `TaxInclusive`
//!   the tax is computed from each line's amount *with* tax (`TaxInclusiveAmt` when sent, else
//!   the net amount grossed up at its rate) — the rate's share of the gross — and the total is
//!   net − discount + tax either way.

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Value, json};

use super::exact::dec;
use super::store::{Db, Fault};

/// Rate (percent) the US profile's automated sales tax charges.
pub const US_AST_RATE_PERCENT: Decimal = Decimal::from_parts(825, 0, 0, false, 2);

/// Which kind of company the simulator is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompanyProfile {
    /// US company with automated sales tax (the default; the demo runs on it).
    #[default]
    UsAst,
    /// UK company registered for VAT.
    UkVat,
}

impl CompanyProfile {
    /// The currencies a company of this profile starts with: `configured`, except that the UK
    /// company's home currency is GBP unless a test configured its currencies itself.
    pub fn currencies(self, configured: &super::Currencies) -> super::Currencies {
        if self == CompanyProfile::UkVat && *configured == super::Currencies::default() {
            super::Currencies {
                home: "GBP".into(),
                ..super::Currencies::default()
            }
        } else {
            configured.clone()
        }
    }

    /// `us_ast` or `uk_vat`.
    pub fn from_name(name: &str) -> Option<CompanyProfile> {
        match name.trim().to_ascii_lowercase().as_str() {
            "us_ast" | "us" => Some(CompanyProfile::UsAst),
            "uk_vat" | "uk" => Some(CompanyProfile::UkVat),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CompanyProfile::UsAst => "us_ast",
            CompanyProfile::UkVat => "uk_vat",
        }
    }
}

/// A sales line's tax standing, gathered while the lines are validated.
pub(crate) struct TaxedLine {
    /// The net amount (`Amount`).
    pub amount: Decimal,
    /// Percent; zero for untaxed lines.
    pub rate: Decimal,
    /// `TaxInclusiveAmt`, when the line states its amount with tax.
    pub inclusive: Option<Decimal>,
}

fn round2(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// The rate (percent) of TaxCode `code`: the sum of its sales TaxRates.
fn code_rate(db: &Db, code: &Value) -> Decimal {
    let details = code
        .pointer("/SalesTaxRateList/TaxRateDetail")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    details
        .iter()
        .filter_map(|d| d.pointer("/TaxRateRef/value").and_then(Value::as_str))
        .filter_map(|id| db.find("TaxRate", id))
        .filter_map(|r| r.get("RateValue").and_then(dec))
        .sum()
}

/// Checks a sales line's `TaxCodeRef` for the company's profile, fills it in where QuickBooks
/// does, and says at which rate the line is taxed.
pub(crate) fn line_tax_code(
    db: &Db,
    detail: &mut serde_json::Map<String, Value>,
    element: &str,
    line_no: usize,
    amount: Decimal,
) -> Result<TaxedLine, Fault> {
    let inclusive = match detail.get("TaxInclusiveAmt") {
        None | Some(Value::Null) => None,
        Some(v) => Some(dec(v).ok_or_else(|| {
            Fault::business(format!("Line {line_no}: TaxInclusiveAmt must be a number."))
                .at(&format!("{element}.SalesItemLineDetail.TaxInclusiveAmt"))
        })?),
    };
    let code = detail
        .get("TaxCodeRef")
        .and_then(|r| r.get("value"))
        .and_then(Value::as_str)
        .map(str::to_string);
    match db.profile {
        CompanyProfile::UsAst => {
            let rate = match code.as_deref() {
                None => {
                    // Automated sales tax: lines are taxable unless coded otherwise.
                    detail.insert("TaxCodeRef".into(), json!({"value": "TAX"}));
                    US_AST_RATE_PERCENT
                }
                Some("TAX") => US_AST_RATE_PERCENT,
                Some("NON") => Decimal::ZERO,
                Some(other) => {
                    return Err(Fault::invalid_ref(
                        &format!("{element}.TaxCodeRef"),
                        "TaxCode",
                        other,
                    ));
                }
            };
            Ok(TaxedLine {
                amount,
                rate,
                inclusive,
            })
        }
        CompanyProfile::UkVat => {
            let Some(id) = code else {
                return Err(Fault::new(
                    "6000",
                    "A business validation error has occurred while processing your request",
                    format!(
                        "Business Validation Error: Make sure all your transactions have a VAT rate before you save. (line {line_no} has no TaxCodeRef)"
                    ),
                )
                .at(&format!("{element}.SalesItemLineDetail.TaxCodeRef")));
            };
            let Some(tc) = db
                .find("TaxCode", &id)
                .filter(|t| t.get("Active") != Some(&Value::Bool(false)))
            else {
                return Err(Fault::invalid_ref(
                    &format!("{element}.TaxCodeRef"),
                    "TaxCode",
                    &id,
                ));
            };
            let rate = code_rate(db, tc);
            if let Some(name) = tc.get("Name") {
                detail.insert("TaxCodeRef".into(), json!({"value": id, "name": name}));
            }
            Ok(TaxedLine {
                amount,
                rate,
                inclusive,
            })
        }
    }
}

/// `GlobalTaxCalculation` as the profile allows it (the value to store, if any).
pub(crate) fn global_tax_calculation(
    db: &Db,
    form: &serde_json::Map<String, Value>,
) -> Result<Option<&'static str>, Fault> {
    let sent = form.get("GlobalTaxCalculation");
    match db.profile {
        CompanyProfile::UsAst => match sent {
            None => Ok(None),
            Some(_) => Err(Fault::business(
                "GlobalTaxCalculation is not supported for companies in the US; remove it.",
            )
            .at("GlobalTaxCalculation")),
        },
        CompanyProfile::UkVat => match sent.and_then(Value::as_str) {
            None if sent.is_none() => Ok(Some("TaxExcluded")),
            Some("TaxExcluded") => Ok(Some("TaxExcluded")),
            Some("TaxInclusive") => Ok(Some("TaxInclusive")),
            Some("NotApplicable") => Ok(Some("NotApplicable")),
            _ => Err(Fault::new(
                "2170",
                "Invalid Enumeration",
                format!(
                    "Invalid Enumeration : {}",
                    sent.map(Value::to_string).unwrap_or_default()
                ),
            )
            .at("GlobalTaxCalculation")),
        },
    }
}

/// The form's tax and total: `(tax, total)` from its lines, discount, the override (if sent)
/// and how amounts are read.
pub(crate) fn totals(
    lines: &[TaxedLine],
    subtotal: Decimal,
    discount: Decimal,
    override_tax: Option<Decimal>,
    global: Option<&str>,
) -> (Decimal, Decimal) {
    let net = subtotal - discount;
    let factor = if subtotal.is_zero() {
        Decimal::ONE
    } else {
        net / subtotal
    };
    match global {
        Some("NotApplicable") => (Decimal::ZERO, net),
        Some("TaxInclusive") => {
            let computed: Decimal = lines
                .iter()
                .map(|l| {
                    let gross = l.inclusive.unwrap_or_else(|| {
                        round2(l.amount * (Decimal::ONE_HUNDRED + l.rate) / Decimal::ONE_HUNDRED)
                    });
                    gross * factor * l.rate / (Decimal::ONE_HUNDRED + l.rate)
                })
                .sum();
            let tax = override_tax.unwrap_or(round2(computed));
            (tax, net + tax)
        }
        Some(_) => {
            let computed: Decimal = lines
                .iter()
                .map(|l| l.amount * factor * l.rate / Decimal::ONE_HUNDRED)
                .sum();
            let tax = override_tax.unwrap_or(round2(computed));
            (tax, net + tax)
        }
        // US automated sales tax: on the taxable lines before the discount.
        None => {
            let computed: Decimal = lines
                .iter()
                .map(|l| l.amount * l.rate / Decimal::ONE_HUNDRED)
                .sum();
            let tax = override_tax.unwrap_or(round2(computed));
            (tax, net + tax)
        }
    }
}
