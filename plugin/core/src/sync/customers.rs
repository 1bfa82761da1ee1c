//! Matching customers: a BigCommerce customer (or guest) to its QuickBooks customer.
//!
//! Customers are matched in the contract's order — stored link, then email, then exact name
//! with no email — and created otherwise, walking the deterministic DisplayName candidates
//! past any 6240 name clash. One implementation serves invoices (the order's customer) and
//! customer webhooks. Re-exported by [`crate::sync::resolve`].

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::books::customer::{self, CustomerSource};
use crate::host::Host;
use crate::models::quickbooks::request_id;
use crate::sync::failure::Failure;
use crate::sync::lease::{self, Held, LeasedHost};
use crate::sync::resolve::{WOULD_CREATE, busy, cache_key, cached, first_id, q, remember};
use crate::sync::store;
use crate::sync::upstream::{EntityCall, QboFailure, Upstreams, id_and_token};

/// Where the BigCommerce→QuickBooks customer link lives.
pub fn link_key(source: &CustomerSource) -> String {
    // A foreign-currency customer is a customer of its own (CONTRACT §11).
    match &source.currency {
        None => home_link_key(source),
        Some(code) => format!("{}/{code}", home_link_key(source)),
    }
}

fn home_link_key(source: &CustomerSource) -> String {
    match source.bc_customer_id {
        Some(id) if id > 0 => format!("link/customer/{id}"),
        _ if !source.email.trim().is_empty() => {
            let email = source.email.trim().to_lowercase();
            format!(
                "link/guest/{}",
                hex::encode(&Sha256::digest(email.as_bytes())[..16])
            )
        }
        // A roll-up customer (guest mode `single`): known by its name.
        _ => {
            let name = source
                .display_name_candidates()
                .first()
                .cloned()
                .unwrap_or_default();
            format!(
                "link/name/{}",
                hex::encode(&Sha256::digest(name.as_bytes())[..16])
            )
        }
    }
}

/// A stored link to a QuickBooks customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerLink {
    pub qbo_id: String,
    pub sync_token: String,
    pub display_name: String,
    /// [`customer::source_digest`] of what was last written, so unchanged customers cost no
    /// write. Empty for a customer adopted by a match: it has never been written by us.
    pub digest: String,
    /// The QuickBooks customer is inactive: found so by a match (and not yet reactivated),
    /// or made so because the BigCommerce customer was deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inactive: bool,
}

/// Reads a stored link.
pub fn load_link(host: &mut dyn Host, key: &str) -> Option<CustomerLink> {
    store::cache_get(host, key).ok().flatten()
}

/// Stores a link.
pub fn save_link(host: &mut dyn Host, key: &str, link: &CustomerLink) -> Result<(), QboFailure> {
    store::cache_set(host, key, link).map_err(|e| {
        QboFailure::from(busy(&format!(
            "the customer link could not be stored ({e})"
        )))
    })
}

/// How a customer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    /// Through the stored BigCommerce→QuickBooks link.
    Link,
    /// An existing customer (active or not) with the same email.
    Email,
    /// An existing customer with exactly the base DisplayName and no email.
    Name,
    /// None existed: created.
    Created,
}

impl Matched {
    /// The audit spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Matched::Link => "link",
            Matched::Email => "email",
            Matched::Name => "name",
            Matched::Created => "created",
        }
    }
}

/// How long a link lease lasts if its holder dies. Its holder renews it before each QuickBooks
/// call (`sync::lease`), so it outlives one call ([`crate::http::UPSTREAM_DEADLINE_MS`]).
pub const LINK_LEASE_MS: i64 = 20_000;
/// How long a job waits for another worker creating the same customer.
const LINK_LEASE_WAIT_MS: u64 = 10_000;
/// Numbered DisplayNames (` 2`, ` 3`, …) tried once every contract candidate is taken.
const MAX_NUMBERED_NAMES: u32 = 20;

/// Finds or creates the QuickBooks customer for `source` (the contract's matching order) —
/// the one implementation behind invoices and customer webhooks. A customer matched by email
/// or name while inactive is reactivated, so an invoice can reference it. A dry run finds
/// but never writes.
pub fn customer(
    host: &mut dyn Host,
    up: &Upstreams,
    source: &CustomerSource,
    dry_run: bool,
) -> Result<(CustomerLink, Matched), QboFailure> {
    let (mut link, how) = find_or_create(host, up, source, dry_run)?;
    if link.inactive && how != Matched::Link && !dry_run {
        link = reactivate(host, up, &link_key(source), &link)?;
    }
    Ok((link, how))
}

/// [`customer()`] without the reactivation: the customer job folds `Active: true` into its own
/// sparse update (one write instead of two). A link found inactive keeps `inactive: true`.
pub fn find_or_create(
    host: &mut dyn Host,
    up: &Upstreams,
    source: &CustomerSource,
    dry_run: bool,
) -> Result<(CustomerLink, Matched), QboFailure> {
    let key = link_key(source);
    if let Some(link) = load_link(host, &key) {
        return Ok((link, Matched::Link));
    }
    if dry_run {
        return find_or_plan(host, up, source, &key, true);
    }
    // An order and a customer event for the same customer run under different entity leases:
    // this lease makes check-link → create → save-link one step for everyone.
    let lease_key = format!("lease/{key}");
    let guard = store::acquire(host, &lease_key, LINK_LEASE_MS, LINK_LEASE_WAIT_MS)
        .map_err(|e| {
            QboFailure::from(busy(&format!(
                "the customer lease could not be taken ({e})"
            )))
        })?
        .ok_or_else(|| {
            QboFailure::from(busy(
                "another worker is still creating this customer in QuickBooks",
            ))
        })?;
    let held = Held::new(guard, LINK_LEASE_MS, host.now());
    let result = {
        // Renewed before every QuickBooks call; a holder that lost it sends nothing more.
        let mut leased = LeasedHost::new(host, held.clone());
        match load_link(&mut leased, &key) {
            // The previous holder created it while we waited.
            Some(link) => Ok((link, Matched::Link)),
            None => find_or_plan(&mut leased, up, source, &key, false),
        }
    };
    // A lease that cannot be released expires by itself.
    let _ = lease::release(host, &held);
    result
}

/// The `requestid` of the create that names the customer `name`: the same customer and name
/// always give the same id, so two workers racing to create it produce one customer.
pub fn create_request_id(source: &CustomerSource, name: &str) -> String {
    let identity = source
        .bc_customer_id
        .filter(|id| *id > 0)
        .map(|id| id.to_string())
        .unwrap_or_else(|| source.email.trim().to_lowercase());
    request_id(&["cust", &identity, name])
}

/// Every DisplayName creation may try, in order: the contract's candidates, then the last one
/// numbered, so a 6240 never ends the sync.
pub fn display_names_to_try(source: &CustomerSource) -> Vec<String> {
    let mut names = source.display_name_candidates();
    if let Some(last) = names.last().cloned() {
        names.extend((2..=MAX_NUMBERED_NAMES).map(|n| format!("{last} {n}")));
    }
    names
}

fn active(c: &Value) -> bool {
    c.get("Active").and_then(Value::as_bool).unwrap_or(true)
}

/// The best of several customers sharing an email: an active one, then the oldest id.
fn pick(found: &[Value]) -> Option<&Value> {
    let id = |c: &Value| {
        c.get("Id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    };
    found.iter().min_by_key(|c| (!active(c), id(c)))
}

fn by_email(host: &mut dyn Host, up: &Upstreams, email: &str) -> Result<Vec<Value>, QboFailure> {
    if email.contains('\\') {
        // How QuickBooks escapes a backslash in a query is undocumented, and a guess could match
        // someone else: such an address is never searched for. Matching goes on by name, and a
        // new customer carries the address as BigCommerce has it.
        return Ok(Vec::new());
    }
    let stmt = format!(
        "{} AND Active IN (true, false)",
        q("Customer", "PrimaryEmailAddr", email)?
    );
    up.qbo_query(host, "Customer", &stmt)
}

fn by_name(host: &mut dyn Host, up: &Upstreams, name: &str) -> Result<Vec<Value>, QboFailure> {
    let stmt = format!(
        "{} AND Active IN (true, false)",
        q("Customer", "DisplayName", name)?
    );
    up.qbo_query(host, "Customer", &stmt)
}

fn find_or_plan(
    host: &mut dyn Host,
    up: &Upstreams,
    source: &CustomerSource,
    key: &str,
    dry_run: bool,
) -> Result<(CustomerLink, Matched), QboFailure> {
    let candidates = source.display_name_candidates();
    let email = source.email.trim();
    if !email.is_empty() {
        let found = in_currency(by_email(host, up, email)?, source);
        if let Some(c) = pick(&found) {
            return adopt(host, key, c, Matched::Email, dry_run);
        }
    }
    if let Some(base) = candidates.first() {
        let found = in_currency(by_name(host, up, base)?, source);
        if let Some(c) = found.iter().find(|c| c.get("PrimaryEmailAddr").is_none()) {
            return adopt(host, key, c, Matched::Name, dry_run);
        }
    }
    if dry_run {
        let name = candidates.first().cloned().unwrap_or_default();
        let link = CustomerLink {
            qbo_id: WOULD_CREATE.into(),
            sync_token: String::new(),
            display_name: name,
            digest: String::new(),
            inactive: false,
        };
        return Ok((link, Matched::Created));
    }
    create(host, up, source, key)
}

fn create(
    host: &mut dyn Host,
    up: &Upstreams,
    source: &CustomerSource,
    key: &str,
) -> Result<(CustomerLink, Matched), QboFailure> {
    let digest = customer::source_digest(source);
    let mut last = None;
    for name in display_names_to_try(source) {
        let payload = customer::customer_payload_named(source, &name);
        match up.qbo_entity(
            host,
            "customer",
            "Customer",
            EntityCall::Create {
                body: &payload,
                request_id: &create_request_id(source, &name),
            },
        ) {
            Ok(created) => {
                let (qbo_id, sync_token) = id_and_token(&created);
                let link = CustomerLink {
                    qbo_id,
                    sync_token,
                    display_name: name,
                    digest,
                    inactive: false,
                };
                save_link(host, key, &link)?;
                return Ok((link, Matched::Created));
            }
            // Taken by a customer, vendor or employee, active or not — or by a worker that
            // created this very customer a moment ago (another instance, a lost link).
            Err(e) if e.has_code("6240") => {
                if let Some(found) = created_meanwhile(host, up, source, &name)? {
                    return adopt(host, key, &found, Matched::Email, false);
                }
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        QboFailure::from(Failure::mapping("the customer has no usable name or email"))
    }))
}

/// The customers that can take `source`'s invoices: those in its foreign currency when it has
/// one; else all but the connector's foreign-currency customers (a `CurrencyRef` of `{code}`
/// and a DisplayName ending ` ({code})`), so a home-currency order never adopts one.
fn in_currency(found: Vec<Value>, source: &CustomerSource) -> Vec<Value> {
    let code = |c: &Value| {
        c.pointer("/CurrencyRef/value")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match &source.currency {
        Some(want) => found
            .into_iter()
            .filter(|c| code(c).as_deref() == Some(want.as_str()))
            .collect(),
        None => found
            .into_iter()
            .filter(|c| {
                let name = c.get("DisplayName").and_then(Value::as_str).unwrap_or("");
                !code(c).is_some_and(|k| name.ends_with(&format!(" ({k})")))
            })
            .collect(),
    }
}

/// Whether the company has currency `code` enabled (a `CompanyCurrency`), looked up once per
/// realm and cached; one it lacks is a mapping failure that says what to do.
pub fn currency_enabled(
    host: &mut dyn Host,
    up: &Upstreams,
    realm: &str,
    code: &str,
) -> Result<(), QboFailure> {
    let key = cache_key(realm, "currency", code);
    if cached(host, &key).is_some() {
        return Ok(());
    }
    let found: Vec<Value> = up
        .qbo_query(
            host,
            "CompanyCurrency",
            &q("CompanyCurrency", "Code", code)?,
        )
        .map_err(|e| {
            // A company without multicurrency may refuse the query itself.
            if e.failure.is_retryable() {
                e
            } else {
                not_enabled(code)
            }
        })?;
    let id = first_id(&found).ok_or_else(|| not_enabled(code))?;
    remember(host, &key, &id, code);
    Ok(())
}

fn not_enabled(code: &str) -> QboFailure {
    QboFailure::from(Failure::mapping(&format!(
        "the order is in {code}, a currency the QuickBooks company has not enabled: turn on \
         Multicurrency (Account and Settings → Advanced → Currency) and add {code} to the currency \
         list, then replay the order"
    )))
}

/// After a 6240: the customer itself, if someone created it since we looked (same email, or
/// the clashing name carries our note for this BigCommerce customer).
fn created_meanwhile(
    host: &mut dyn Host,
    up: &Upstreams,
    source: &CustomerSource,
    name: &str,
) -> Result<Option<Value>, QboFailure> {
    let email = source.email.trim();
    if !email.is_empty() {
        let found = by_email(host, up, email)?;
        if let Some(c) = pick(&found) {
            return Ok(Some(c.clone()));
        }
    }
    if source.bc_customer_id.is_some_and(|id| id > 0) {
        let note = customer::customer_payload_named(source, name)
            .get("Notes")
            .cloned();
        let found = by_name(host, up, name)?;
        return Ok(found.into_iter().find(|c| c.get("Notes") == note.as_ref()));
    }
    Ok(None)
}

fn adopt(
    host: &mut dyn Host,
    key: &str,
    c: &Value,
    how: Matched,
    dry_run: bool,
) -> Result<(CustomerLink, Matched), QboFailure> {
    let (qbo_id, sync_token) = id_and_token(c);
    let display_name = c
        .get("DisplayName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let link = CustomerLink {
        qbo_id,
        sync_token,
        display_name,
        digest: String::new(),
        inactive: !active(c),
    };
    if !dry_run {
        save_link(host, key, &link)?;
    }
    Ok((link, how))
}

/// Sparse-updates customer `qbo_id` with `fields` (everything but `Id`/`SyncToken`/`sparse`),
/// starting from SyncToken `token`; a stale token (5010) is re-read and the update retried once.
/// Returns QuickBooks' customer and the `requestid` that wrote it.
pub fn sparse_update(
    host: &mut dyn Host,
    up: &Upstreams,
    qbo_id: &str,
    token: &str,
    fields: &Value,
    rid_parts: &[&str],
) -> Result<(Value, String), QboFailure> {
    let mut token = token.to_string();
    for attempt in 0..2 {
        let mut body = fields.clone();
        body["Id"] = json!(qbo_id);
        body["SyncToken"] = json!(token);
        body["sparse"] = json!(true);
        let mut parts = vec!["cust-upd", qbo_id, token.as_str()];
        parts.extend_from_slice(rid_parts);
        let rid = request_id(&parts);
        match up.qbo_entity(
            host,
            "customer",
            "Customer",
            EntityCall::Update {
                body: &body,
                request_id: &rid,
            },
        ) {
            Ok(updated) => return Ok((updated, rid)),
            // Someone edited the customer in QuickBooks meanwhile: take its current SyncToken.
            Err(e) if e.has_code("5010") && attempt == 0 => {
                let current = up.qbo_entity(
                    host,
                    "customer",
                    "Customer",
                    EntityCall::Read { id: qbo_id },
                )?;
                token = id_and_token(&current).1;
            }
            Err(e) => return Err(e),
        }
    }
    Err(QboFailure::from(busy(
        "QuickBooks kept reporting a stale SyncToken for the customer",
    )))
}

fn reactivate(
    host: &mut dyn Host,
    up: &Upstreams,
    key: &str,
    link: &CustomerLink,
) -> Result<CustomerLink, QboFailure> {
    let (updated, _) = sparse_update(
        host,
        up,
        &link.qbo_id,
        &link.sync_token,
        &json!({"Active": true}),
        &["reactivate"],
    )?;
    let link = CustomerLink {
        sync_token: id_and_token(&updated).1,
        inactive: false,
        ..link.clone()
    };
    save_link(host, key, &link)?;
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_currency_of_a_customer_has_its_own_link() {
        let home = CustomerSource {
            bc_customer_id: Some(7),
            ..CustomerSource::default()
        };
        let euro = CustomerSource {
            currency: Some("EUR".into()),
            ..home.clone()
        };
        assert_eq!(link_key(&home), "link/customer/7");
        assert_eq!(link_key(&euro), "link/customer/7/EUR");
    }

    #[test]
    fn matching_keeps_to_the_orders_currency() {
        let found = vec![
            json!({"Id": "1", "DisplayName": "Ana Diaz", "CurrencyRef": {"value": "USD"}}),
            json!({"Id": "2", "DisplayName": "Ana Diaz (EUR)", "CurrencyRef": {"value": "EUR"}}),
            json!({"Id": "3", "DisplayName": "Old Ana"}),
        ];
        let ids = |v: Vec<Value>| -> Vec<String> {
            v.iter()
                .map(|c| c["Id"].as_str().unwrap().to_string())
                .collect()
        };
        let home = CustomerSource::default();
        assert_eq!(ids(in_currency(found.clone(), &home)), ["1", "3"]);
        let euro = CustomerSource {
            currency: Some("EUR".into()),
            ..CustomerSource::default()
        };
        assert_eq!(ids(in_currency(found, &euro)), ["2"]);
    }
}
