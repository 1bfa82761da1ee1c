//! Checking a mapping's names against the QuickBooks company before it is saved
//! (`PUT /admin/mapping`, CONTRACT §4): every item, income account, class and tax code the
//! mapping names must exist. Lookups go through the per-realm name cache of `resolve`, so a
//! name found once costs nothing the next time.
//!
//! The names checked are those §4 lists: `invoice.default_item`, `default_class`, the rules'
//! `item` / `account` / `class`, the shipping/handling/wrapping/fee items, the discount
//! account, the tax item (mode `line`) and `tax.codes`. The §11 additions (`payments`,
//! `refunds.item`) are checked on the first order that needs them, as §11 says.

use serde::Serialize;

use crate::books::mapping::{MappingConfig, TaxMode};
use crate::host::Host;
use crate::sync::connection::{self, Vault};
use crate::sync::failure::{Failure, FailureKind};
use crate::sync::resolve;
use crate::sync::upstream::{self, Upstreams};

/// A name the company lacks, with where the mapping uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnknownName {
    /// JSON path in the mapping, e.g. `$.invoice.rules[0].item`.
    pub path: String,
    /// `Item`, `Account`, `Class` or `TaxCode`.
    pub entity: &'static str,
    pub name: String,
}

/// Every `(path, entity, name)` the mapping names that the company must have.
pub fn named_in(config: &MappingConfig) -> Vec<(String, &'static str, String)> {
    let inv = &config.invoice;
    let mut out: Vec<(String, &'static str, String)> = vec![(
        "$.invoice.default_item".into(),
        "Item",
        inv.default_item.clone(),
    )];
    if let Some(c) = &inv.default_class {
        out.push(("$.invoice.default_class".into(), "Class", c.clone()));
    }
    for (i, r) in inv.rules.iter().enumerate() {
        let p = format!("$.invoice.rules[{i}]");
        if let Some(n) = &r.item {
            out.push((format!("{p}.item"), "Item", n.clone()));
        }
        if let Some(n) = &r.account {
            out.push((format!("{p}.account"), "Account", n.clone()));
        }
        if let Some(n) = &r.class {
            out.push((format!("{p}.class"), "Class", n.clone()));
        }
    }
    for (key, target) in [
        ("shipping", &inv.shipping),
        ("handling", &inv.handling),
        ("wrapping", &inv.wrapping),
        ("fees", &inv.fees),
    ] {
        if let Some(t) = target {
            out.push((format!("$.invoice.{key}.item"), "Item", t.item.clone()));
        }
    }
    if let Some(d) = &inv.discount {
        out.push((
            "$.invoice.discount.account".into(),
            "Account",
            d.account.clone(),
        ));
    }
    if inv.tax.mode == TaxMode::Line
        && let Some(t) = &inv.tax.item
    {
        out.push(("$.invoice.tax.item".into(), "Item", t.clone()));
    }
    for (class, code) in &inv.tax.codes {
        out.push((
            format!("$.invoice.tax.codes.{class}"),
            "TaxCode",
            code.clone(),
        ));
    }
    out
}

/// The names the company lacks, or `None` when QuickBooks is not connected (nothing can be
/// checked; the mapping is accepted as before). A failure other than "not found" (QuickBooks
/// unreachable, throttled) is returned: the caller must not save an unchecked mapping.
pub fn unknown_names(
    host: &mut dyn Host,
    config: &MappingConfig,
) -> Result<Option<Vec<UnknownName>>, Failure> {
    let Ok(up) = upstream::upstreams(host) else {
        return Ok(None);
    };
    let access = match connection::access(
        host,
        &Vault {
            keyring: &up.keyring,
        },
        &up.qbo,
        false,
    ) {
        Ok(a) => a,
        Err(e) if e.needs_reauth() => return Ok(None),
        Err(e) => return Err(connection::connection_failure(&e)),
    };
    check(host, &up, &access.realm_id, config).map(Some)
}

fn check(
    host: &mut dyn Host,
    up: &Upstreams,
    realm: &str,
    config: &MappingConfig,
) -> Result<Vec<UnknownName>, Failure> {
    let mut unknown = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (path, entity, name) in named_in(config) {
        let known = if seen.contains(&(entity, name.clone())) {
            !unknown
                .iter()
                .any(|u: &UnknownName| u.entity == entity && u.name == name)
        } else {
            seen.insert((entity, name.clone()));
            match resolve::named(host, up, realm, entity, &name) {
                Ok(_) => true,
                Err(e) if e.failure.kind == FailureKind::Mapping => false,
                Err(e) => return Err(e.failure),
            }
        };
        if !known {
            unknown.push(UnknownName { path, entity, name });
        }
    }
    Ok(unknown)
}
