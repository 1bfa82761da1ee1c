//! How a company books tax (CONTRACT §11): what its `Preferences` and `CompanyInfo` say, and
//! the pure decision of how BigCommerce's tax reaches its documents under `tax.mode` `auto`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::books::mapping::{MappingConfig, TaxMode};

/// The tax facts of a QuickBooks company, read once per realm and cached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompanyTax {
    /// `CompanyInfo.Country` (`US`, `GB`, `CA`, `AU`, …); empty when QuickBooks gave none.
    pub country: String,
    /// `Preferences.TaxPrefs.UsingSalesTax`: the company has sales tax / VAT set up.
    pub using_sales_tax: bool,
    /// `Preferences.TaxPrefs.PartnerTaxEnabled`: automated sales tax (US).
    pub partner_tax_enabled: bool,
    /// `Preferences.CurrencyPrefs.HomeCurrency`.
    pub home_currency: String,
    /// `Preferences.CurrencyPrefs.MultiCurrencyEnabled`.
    pub multi_currency: bool,
}

fn flag(v: &Value, section: &str, key: &str) -> bool {
    match v.get(section).and_then(|s| s.get(key)) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

impl CompanyTax {
    /// Reads the company's `Preferences` and `CompanyInfo` entities (as QuickBooks serves them).
    pub fn from_entities(preferences: &Value, company_info: &Value) -> CompanyTax {
        let currency = preferences
            .get("CurrencyPrefs")
            .and_then(|c| c.get("HomeCurrency"))
            .and_then(|h| h.get("value"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let country = company_info
            .get("Country")
            .and_then(Value::as_str)
            .filter(|c| !c.trim().is_empty())
            .or_else(|| {
                company_info
                    .get("CompanyAddr")
                    .and_then(|a| a.get("Country"))
                    .and_then(Value::as_str)
            })
            .unwrap_or_default();
        CompanyTax {
            country: country.trim().to_ascii_uppercase(),
            using_sales_tax: flag(preferences, "TaxPrefs", "UsingSalesTax"),
            partner_tax_enabled: flag(preferences, "TaxPrefs", "PartnerTaxEnabled"),
            home_currency: currency.trim().to_ascii_uppercase(),
            multi_currency: flag(preferences, "CurrencyPrefs", "MultiCurrencyEnabled"),
        }
    }

    /// A US company (QuickBooks' US edition: sales tax, not VAT/GST). An empty country is
    /// taken as US, the edition whose sales forms accept what every other mode sends.
    pub fn is_us(&self) -> bool {
        matches!(self.country.as_str(), "" | "US" | "USA" | "UNITED STATES")
    }
}

/// The tax mode a document is booked under: `line`, `txn_detail` and `none` as chosen;
/// `auto` as the company books tax —
/// - a US company with sales tax turned on (automated sales tax or manual): `txn_detail`, so
///   QuickBooks takes BigCommerce's tax instead of computing its own on top;
/// - a company outside the US with VAT/GST set up: [`TaxMode::Vat`] (a `TaxCodeRef` on every
///   line, `GlobalTaxCalculation`, BigCommerce's tax as the total tax);
/// - a company without sales tax: `line` (tax on the mapping's tax item), the only way the
///   invoice still carries what the shopper paid.
pub fn decide(mode: TaxMode, company: &CompanyTax) -> TaxMode {
    match mode {
        TaxMode::Auto if !company.using_sales_tax && !company.partner_tax_enabled => TaxMode::Line,
        TaxMode::Auto if company.is_us() => TaxMode::TxnDetail,
        TaxMode::Auto => TaxMode::Vat,
        other => other,
    }
}

/// `GlobalTaxCalculation` for a VAT/GST document: `TaxInclusive` for a tax-inclusive store,
/// else `TaxExcluded`. Either way the lines' `Amount` is the net amount (QuickBooks reads line
/// amounts as net; a tax-inclusive line states its gross in `TaxInclusiveAmt`) and
/// BigCommerce's tax is `TxnTaxDetail.TotalTax`, so the document totals BigCommerce's figures.
pub fn global_tax_calculation(mode: TaxMode, tax_inclusive: bool) -> Option<&'static str> {
    (mode == TaxMode::Vat).then_some(if tax_inclusive {
        "TaxInclusive"
    } else {
        "TaxExcluded"
    })
}

/// The mapping with `auto` replaced by the mode this company books tax under.
pub fn effective(config: &MappingConfig, company: &CompanyTax) -> MappingConfig {
    let mut c = config.clone();
    c.invoice.tax.mode = decide(config.invoice.tax.mode, company);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn company(country: &str, using: bool, partner: bool) -> CompanyTax {
        CompanyTax {
            country: country.into(),
            using_sales_tax: using,
            partner_tax_enabled: partner,
            ..CompanyTax::default()
        }
    }

    #[test]
    fn a_us_company_with_automated_sales_tax_gets_the_total_tax_override() {
        assert_eq!(
            decide(TaxMode::Auto, &company("US", true, true)),
            TaxMode::TxnDetail
        );
        assert_eq!(
            decide(TaxMode::Auto, &company("US", true, false)),
            TaxMode::TxnDetail
        );
    }

    #[test]
    fn a_company_with_vat_gets_tax_codes_on_its_lines() {
        assert_eq!(
            decide(TaxMode::Auto, &company("GB", true, false)),
            TaxMode::Vat
        );
        assert_eq!(
            decide(TaxMode::Auto, &company("AU", true, true)),
            TaxMode::Vat
        );
        assert_eq!(
            global_tax_calculation(TaxMode::Vat, false),
            Some("TaxExcluded")
        );
        assert_eq!(
            global_tax_calculation(TaxMode::Vat, true),
            Some("TaxInclusive")
        );
        assert_eq!(global_tax_calculation(TaxMode::TxnDetail, false), None);
        assert_eq!(global_tax_calculation(TaxMode::TxnDetail, true), None);
    }

    #[test]
    fn a_company_without_sales_tax_books_tax_as_a_line() {
        assert_eq!(
            decide(TaxMode::Auto, &company("US", false, false)),
            TaxMode::Line
        );
        assert_eq!(
            decide(TaxMode::Auto, &company("GB", false, false)),
            TaxMode::Line
        );
    }

    #[test]
    fn explicit_modes_are_kept_whatever_the_company() {
        for m in [TaxMode::Line, TaxMode::TxnDetail, TaxMode::None] {
            assert_eq!(decide(m, &company("GB", true, false)), m);
            assert_eq!(decide(m, &company("US", true, true)), m);
        }
    }

    #[test]
    fn preferences_and_company_info_are_read_as_quickbooks_serves_them() {
        let prefs = json!({"TaxPrefs": {"UsingSalesTax": true, "PartnerTaxEnabled": "false"},
                           "CurrencyPrefs": {"MultiCurrencyEnabled": true, "HomeCurrency": {"value": "gbp"}}});
        let info = json!({"CompanyName": "X", "Country": "GB"});
        let c = CompanyTax::from_entities(&prefs, &info);
        assert_eq!(
            c,
            CompanyTax {
                country: "GB".into(),
                using_sales_tax: true,
                partner_tax_enabled: false,
                home_currency: "GBP".into(),
                multi_currency: true,
            }
        );
        assert!(!c.is_us());
        let info = json!({"CompanyAddr": {"Country": "US"}});
        assert!(CompanyTax::from_entities(&prefs, &info).is_us());
    }

    #[test]
    fn tax_codes_fall_back_to_default() {
        let mut t = crate::books::mapping::TaxConfig::default();
        assert_eq!(t.code_for(Some("Clothing")), None);
        t.codes.insert("default".into(), "20.0% S".into());
        t.codes.insert("Zero rated".into(), "0.0% Z".into());
        assert_eq!(t.code_for(Some("Zero rated")), Some("0.0% Z"));
        assert_eq!(t.code_for(Some("Clothing")), Some("20.0% S"));
        assert_eq!(t.code_for(None), Some("20.0% S"));
    }
}
