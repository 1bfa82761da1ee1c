//! Finding QuickBooks ids: mapping names (items, accounts, classes) and customers.
//!
//! Names are resolved once per realm and cached in KV. Customers are matched in the
//! contract's order — stored link, then email, then exact name with no email — and created
//! otherwise, walking the deterministic DisplayName candidates past any 6240 name clash.
//! One implementation serves invoices (the order's customer) and customer webhooks.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::customer::{self, CustomerSource};
use crate::host::Host;
use crate::mapping::{Plan, ResolvedRefs};
use crate::quickbooks::{self, request_id};
use crate::record::Failure;
use crate::store;
use crate::upstream::{QboFailure, Upstreams, id_and_token};

/// Placeholder id used by a dry run for something that would be created.
pub const WOULD_CREATE: &str = "(would be created)";

fn q(entity: &str, field: &str, value: &str) -> Result<String, QboFailure> {
    quickbooks::select_where_eq(entity, field, value).map_err(|e| {
        QboFailure::from(Failure::mapping(&format!("the name '{value}' cannot be looked up in QuickBooks: {e}")))
    })
}

fn cache_key(realm: &str, kind: &str, name: &str) -> String {
    let digest = hex::encode(&Sha256::digest(name.as_bytes())[..12]);
    format!("cache/qbo/{realm}/{kind}/{digest}")
}

#[derive(Serialize, Deserialize)]
struct CachedId {
    id: String,
    name: String,
}

fn cached(host: &mut dyn Host, key: &str) -> Option<String> {
    store::cache_get::<CachedId>(host, key).ok().flatten().map(|c| c.id)
}

fn remember(host: &mut dyn Host, key: &str, id: &str, name: &str) {
    // A cache write that fails only costs a lookup next time.
    let _ = store::cache_set(host, key, &CachedId { id: id.to_string(), name: name.to_string() });
}

fn not_found(kind: &str, name: &str) -> QboFailure {
    QboFailure::from(Failure::mapping(&format!(
        "{kind} '{name}' not found in QuickBooks: create it or change the mapping"
    )))
}

fn first_id(v: &[Value]) -> Option<String> {
    v.first().and_then(|e| e.get("Id")).and_then(Value::as_str).map(str::to_string)
}

/// Resolves every name in `plan` to a QuickBooks id.
pub fn refs(host: &mut dyn Host, up: &Upstreams, realm: &str, plan: &Plan, dry_run: bool) -> Result<ResolvedRefs, QboFailure> {
    let mut out = ResolvedRefs::default();
    for name in &plan.items {
        out.items.insert(name.clone(), lookup(host, up, realm, "Item", "item", name)?);
    }
    for name in &plan.classes {
        out.classes.insert(name.clone(), lookup(host, up, realm, "Class", "class", name)?);
    }
    for name in &plan.accounts {
        out.account_items.insert(name.clone(), account_item(host, up, realm, name, dry_run)?);
    }
    if let Some(name) = &plan.discount_account {
        out.discount_account = Some(lookup(host, up, realm, "Account", "account", name)?);
    }
    Ok(out)
}

fn lookup(host: &mut dyn Host, up: &Upstreams, realm: &str, entity: &str, kind: &str, name: &str) -> Result<String, QboFailure> {
    let key = cache_key(realm, kind, name);
    if let Some(id) = cached(host, &key) {
        return Ok(id);
    }
    let found: Vec<Value> = up.qbo_query(host, entity, &q(entity, "Name", name)?)?;
    let id = first_id(&found).ok_or_else(|| not_found(entity, name))?;
    remember(host, &key, &id, name);
    Ok(id)
}

/// The Service item that books sales to income account `name`: found by name, else created.
fn account_item(host: &mut dyn Host, up: &Upstreams, realm: &str, name: &str, dry_run: bool) -> Result<String, QboFailure> {
    let key = cache_key(realm, "account-item", name);
    if let Some(id) = cached(host, &key) {
        return Ok(id);
    }
    let accounts: Vec<Value> = up.qbo_query(host, "Account", &q("Account", "Name", name)?)?;
    let account = accounts.first().ok_or_else(|| not_found("Account", name))?;
    let account_id = account.get("Id").and_then(Value::as_str).unwrap_or_default().to_string();
    if account.get("AccountType").and_then(Value::as_str) != Some("Income") {
        return Err(QboFailure::from(Failure::mapping(&format!(
            "Account '{name}' is not an Income account in QuickBooks: map sales to an income account"
        ))));
    }
    let items: Vec<Value> = up.qbo_query(host, "Item", &q("Item", "Name", name)?)?;
    if let Some(item) = items.first() {
        let (id, _) = id_and_token(item);
        remember(host, &key, &id, name);
        return Ok(id);
    }
    if dry_run {
        return Ok(WOULD_CREATE.to_string());
    }
    let body = json!({
        "Name": name,
        "Type": "Service",
        "IncomeAccountRef": {"value": account_id},
        "Description": format!("BigCommerce sales booked to {name} (created by ml-connector)"),
    });
    let created = up.qbo_create(host, "item", "Item", &body, &request_id(&["acct-item", realm, name]))?;
    let (id, _) = id_and_token(&created);
    remember(host, &key, &id, name);
    Ok(id)
}

/// Where the BigCommerce→QuickBooks customer link lives.
pub fn link_key(source: &CustomerSource) -> String {
    match source.bc_customer_id {
        Some(id) if id > 0 => format!("link/customer/{id}"),
        _ if !source.email.trim().is_empty() => {
            let email = source.email.trim().to_lowercase();
            format!("link/guest/{}", hex::encode(&Sha256::digest(email.as_bytes())[..16]))
        }
        // A roll-up customer (guest mode `single`): known by its name.
        _ => {
            let name = source.display_name_candidates().first().cloned().unwrap_or_default();
            format!("link/name/{}", hex::encode(&Sha256::digest(name.as_bytes())[..16]))
        }
    }
}

/// A stored link to a QuickBooks customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerLink {
    pub qbo_id: String,
    pub sync_token: String,
    pub display_name: String,
    /// Digest of the payload last written, so unchanged customers cost no write.
    pub digest: String,
}

/// Reads a stored link.
pub fn load_link(host: &mut dyn Host, key: &str) -> Option<CustomerLink> {
    store::cache_get(host, key).ok().flatten()
}

/// Stores a link.
pub fn save_link(host: &mut dyn Host, key: &str, link: &CustomerLink) -> Result<(), QboFailure> {
    store::cache_set(host, key, link).map_err(|e| QboFailure::from(Failure::mapping(&e.to_string())))
}

/// How a customer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    Link,
    Email,
    Name,
    Created,
}

impl Matched {
    pub fn as_str(self) -> &'static str {
        match self {
            Matched::Link => "link",
            Matched::Email => "email",
            Matched::Name => "name",
            Matched::Created => "created",
        }
    }
}

/// Finds or creates the QuickBooks customer for `source` (the contract's matching order).
/// A dry run finds but never creates.
pub fn customer(
    host: &mut dyn Host,
    up: &Upstreams,
    source: &CustomerSource,
    dry_run: bool,
) -> Result<(CustomerLink, Matched), QboFailure> {
    let key = link_key(source);
    if let Some(link) = load_link(host, &key) {
        return Ok((link, Matched::Link));
    }
    let candidates = source.display_name_candidates();
    let email = source.email.trim();
    if !email.is_empty() {
        let stmt = format!("{} AND Active IN (true, false)", q("Customer", "PrimaryEmailAddr", email)?);
        let found: Vec<Value> = up.qbo_query(host, "Customer", &stmt)?;
        if let Some(c) = found.first() {
            return adopt(host, &key, c, Matched::Email, dry_run);
        }
    }
    if let Some(base) = candidates.first() {
        let stmt = format!("{} AND Active IN (true, false)", q("Customer", "DisplayName", base)?);
        let found: Vec<Value> = up.qbo_query(host, "Customer", &stmt)?;
        if let Some(c) = found.iter().find(|c| c.get("PrimaryEmailAddr").is_none()) {
            return adopt(host, &key, c, Matched::Name, dry_run);
        }
    }
    if dry_run {
        let name = candidates.first().cloned().unwrap_or_default();
        let link = CustomerLink { qbo_id: WOULD_CREATE.into(), sync_token: String::new(), display_name: name, digest: String::new() };
        return Ok((link, Matched::Created));
    }
    let identity = source
        .bc_customer_id
        .filter(|id| *id > 0)
        .map(|id| id.to_string())
        .unwrap_or_else(|| source.email.trim().to_lowercase());
    let mut last = None;
    for name in &candidates {
        let payload = customer::customer_payload_named(source, name);
        match up.qbo_create(host, "customer", "Customer", &payload, &request_id(&["cust", &identity, name])) {
            Ok(created) => {
                let (qbo_id, sync_token) = id_and_token(&created);
                let link = CustomerLink { qbo_id, sync_token, display_name: name.clone(), digest: customer::content_digest(&payload) };
                save_link(host, &key, &link)?;
                return Ok((link, Matched::Created));
            }
            // The name is taken (by a customer, vendor or employee, active or not): next candidate.
            Err(e) if e.has_code("6240") => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| QboFailure::from(Failure::mapping("the customer has no usable name or email"))))
}

fn adopt(host: &mut dyn Host, key: &str, c: &Value, how: Matched, dry_run: bool) -> Result<(CustomerLink, Matched), QboFailure> {
    let (qbo_id, sync_token) = id_and_token(c);
    let display_name = c.get("DisplayName").and_then(Value::as_str).unwrap_or_default().to_string();
    let link = CustomerLink { qbo_id, sync_token, display_name, digest: String::new() };
    if !dry_run {
        save_link(host, key, &link)?;
    }
    Ok((link, how))
}
