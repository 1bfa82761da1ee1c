//! The QuickBooks company's own settings the books depend on: its `Preferences` and
//! `CompanyInfo` (country, sales tax / VAT, home currency), read once per realm and cached at
//! `cache/qbo/{realm}/company` (a reconnect to another realm reads the new company's; a
//! reconnect to the same realm keeps it). The decisions taken from them live in `books::tax`.

use serde_json::Value;

use crate::books::mapping::{MappingConfig, TaxMode};
use crate::books::tax::{self, CompanyTax};
use crate::host::Host;
use crate::sync::failure::{Failure, Service};
use crate::sync::store;
use crate::sync::upstream::{EntityCall, QboFailure, Upstreams};

/// Where a realm's company tax facts are cached.
pub fn cache_key(realm: &str) -> String {
    format!("cache/qbo/{realm}/company")
}

/// The company's tax facts: from the cache, else `select * from Preferences` and
/// `GET /companyinfo/{realm}` (two calls, once per realm).
pub fn company_tax(
    host: &mut dyn Host,
    up: &Upstreams,
    realm: &str,
) -> Result<CompanyTax, QboFailure> {
    let key = cache_key(realm);
    if let Ok(Some(c)) = store::cache_get::<CompanyTax>(host, &key) {
        return Ok(c);
    }
    let prefs: Vec<Value> = up.qbo_query(host, "Preferences", "select * from Preferences")?;
    let Some(prefs) = prefs.into_iter().next() else {
        return Err(QboFailure::from(Failure::unreadable(
            Service::QuickBooks,
            "the company's Preferences (the query answered none)",
        )));
    };
    let info = up.qbo_entity(
        host,
        "companyinfo",
        "CompanyInfo",
        EntityCall::Read { id: realm },
    )?;
    let company = CompanyTax::from_entities(&prefs, &info);
    // A cache write that fails only costs two reads next time.
    let _ = store::cache_set(host, &key, &company);
    Ok(company)
}

/// The mapping with `tax.mode` `auto` decided for this company (other modes cost no call).
pub fn effective_mapping(
    host: &mut dyn Host,
    up: &Upstreams,
    realm: &str,
    config: MappingConfig,
) -> Result<MappingConfig, QboFailure> {
    if config.invoice.tax.mode != TaxMode::Auto {
        return Ok(config);
    }
    let company = company_tax(host, up, realm)?;
    Ok(tax::effective(&config, &company))
}
