//! Finding QuickBooks ids: mapping names (items, accounts, classes) here, customers in
//! [`crate::sync::customers`] (re-exported, so `resolve::customer` and friends stay the one
//! place jobs look up QuickBooks ids).
//!
//! Names are resolved once per realm and cached in KV (a look-up in flight is shared by
//! concurrent jobs).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::books::mapping::{Plan, ResolvedRefs};
use crate::host::Host;
use crate::models::quickbooks::{self, request_id};
use crate::sync::failure::{Failure, FailureKind};
use crate::sync::store;
use crate::sync::upstream::{EntityCall, QboFailure, Upstreams, id_and_token};

/// Placeholder id used by a dry run for something that would be created.
pub const WOULD_CREATE: &str = "(would be created)";

pub(crate) fn q(entity: &str, field: &str, value: &str) -> Result<String, QboFailure> {
    quickbooks::select_where_eq(entity, field, value).map_err(|e| {
        QboFailure::from(Failure::mapping(&format!(
            "the name '{value}' cannot be looked up in QuickBooks: {e}"
        )))
    })
}

/// Where the QuickBooks id of `name` (an `item`, `class`, `account`, `account-item`, …) is
/// cached for `realm`; `lease/{key}` marks a look-up of it in flight.
pub fn cache_key(realm: &str, kind: &str, name: &str) -> String {
    let digest = hex::encode(&Sha256::digest(name.as_bytes())[..12]);
    format!("cache/qbo/{realm}/{kind}/{digest}")
}

#[derive(Serialize, Deserialize)]
struct CachedId {
    id: String,
    name: String,
}

pub(crate) fn cached(host: &mut dyn Host, key: &str) -> Option<String> {
    store::cache_get::<CachedId>(host, key)
        .ok()
        .flatten()
        .map(|c| c.id)
}

pub(crate) fn remember(host: &mut dyn Host, key: &str, id: &str, name: &str) {
    // A cache write that fails only costs a lookup next time.
    let _ = store::cache_set(
        host,
        key,
        &CachedId {
            id: id.to_string(),
            name: name.to_string(),
        },
    );
}

pub(crate) fn not_found(kind: &str, name: &str) -> QboFailure {
    QboFailure::from(Failure::mapping(&format!(
        "{kind} '{name}' not found in QuickBooks: create it or change the mapping"
    )))
}

pub(crate) fn first_id(v: &[Value]) -> Option<String> {
    v.first()
        .and_then(|e| e.get("Id"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Where every name resolved in a realm is also kept together, so an order reads all its
/// names in one round trip: `cache/qbo/{realm}/names`, a map `"{kind}/{name}"` → id.
pub fn names_key(realm: &str) -> String {
    format!("cache/qbo/{realm}/names")
}

/// Most names the per-realm map holds (a mapping names a handful; the rest stay in their own
/// keys).
const MAX_NAMES_IN_MAP: usize = 500;

/// The names of a realm resolved so far, read once per job step, and the ones this step
/// resolved that the map did not hold yet.
struct Names {
    realm: String,
    known: std::collections::BTreeMap<String, String>,
    learned: bool,
}

impl Names {
    fn load(host: &mut dyn Host, realm: &str) -> Names {
        let known = store::cache_get(host, &names_key(realm))
            .ok()
            .flatten()
            .unwrap_or_default();
        Names {
            realm: realm.to_string(),
            known,
            learned: false,
        }
    }

    fn get(
        &mut self,
        host: &mut dyn Host,
        kind: &str,
        name: &str,
        find: Finder,
    ) -> Result<String, QboFailure> {
        let entry = format!("{kind}/{name}");
        if let Some(id) = self.known.get(&entry) {
            return Ok(id.clone());
        }
        let id = find(host, &cache_key(&self.realm, kind, name))?;
        if self.known.len() < MAX_NAMES_IN_MAP {
            self.known.insert(entry, id.clone());
            self.learned = true;
        }
        Ok(id)
    }

    /// Stores what was learned, merged into the map as it is now (a write lost to a
    /// concurrent one only costs a read of the name's own key later).
    fn save(self, host: &mut dyn Host) {
        if !self.learned {
            return;
        }
        let key = names_key(&self.realm);
        let mut now: std::collections::BTreeMap<String, String> = store::cache_get(host, &key)
            .ok()
            .flatten()
            .unwrap_or_default();
        for (k, v) in self.known {
            if now.len() >= MAX_NAMES_IN_MAP {
                break;
            }
            now.entry(k).or_insert(v);
        }
        let _ = store::cache_set(host, &key, &now);
    }
}

/// How a name missing from the map is found: from its own cache key, else in QuickBooks.
type Finder<'a> = &'a mut dyn FnMut(&mut dyn Host, &str) -> Result<String, QboFailure>;

/// Resolves every name in `plan` to a QuickBooks id.
pub fn refs(
    host: &mut dyn Host,
    up: &Upstreams,
    realm: &str,
    plan: &Plan,
    dry_run: bool,
) -> Result<ResolvedRefs, QboFailure> {
    let mut out = ResolvedRefs::default();
    let mut names = Names::load(host, realm);
    let result = (|| {
        for name in &plan.items {
            let id = names.get(host, "item", name, &mut |h, key| {
                lookup(h, up, key, "Item", name)
            })?;
            out.items.insert(name.clone(), id);
        }
        for name in &plan.classes {
            let id = names.get(host, "class", name, &mut |h, key| {
                lookup(h, up, key, "Class", name)
            })?;
            out.classes.insert(name.clone(), id);
        }
        for name in &plan.accounts {
            let id = if dry_run {
                // A dry run may answer "would be created": never remembered.
                let key = cache_key(realm, "account-item", name);
                account_item(host, up, realm, &key, name, true)?
            } else {
                names.get(host, "account-item", name, &mut |h, key| {
                    account_item(h, up, realm, key, name, false)
                })?
            };
            out.account_items.insert(name.clone(), id);
        }
        if let Some(name) = &plan.discount_account {
            let id = names.get(host, "account", name, &mut |h, key| {
                lookup(h, up, key, "Account", name)
            })?;
            out.discount_account = Some(id);
        }
        for name in &plan.tax_codes {
            let id = names.get(host, "taxcode", name, &mut |h, key| {
                lookup(h, up, key, "TaxCode", name)
            })?;
            out.tax_codes.insert(name.clone(), id);
        }
        Ok(())
    })();
    names.save(host);
    result.map(|()| out)
}

/// The id of the active `entity` (`Account`, `PaymentMethod`, `Item`, …) named `name`,
/// looked up once per realm and cached; an unknown name is a mapping failure naming it.
pub fn named(
    host: &mut dyn Host,
    up: &Upstreams,
    realm: &str,
    entity: &str,
    name: &str,
) -> Result<String, QboFailure> {
    let kind = entity.to_ascii_lowercase();
    let mut names = Names::load(host, realm);
    let id = names.get(host, &kind, name, &mut |h, key| {
        lookup(h, up, key, entity, name)
    });
    names.save(host);
    id
}

/// How long a worker resolving a name holds its marker if it dies (it needs one or two
/// QuickBooks requests, each ending within [`crate::http::UPSTREAM_DEADLINE_MS`]).
const RESOLVING_MS: i64 = 20_000;
/// How long other workers wait for that answer before giving up: a retryable failure (their
/// job runs again later and finds the name cached), never a second look-up of their own.
const RESOLVING_WAIT_MS: u64 = 5_000;

/// The cached id at `key`, else `resolve`'s answer — with one look-up in flight per name
/// across all workers and instances: the first takes a short marker (a lease on the name) and
/// asks QuickBooks; the others wait for its answer in the cache. A marker freed without an
/// answer (its look-up failed) is taken by the next waiter; one whose holder was throttled is
/// kept until it expires, so a throttled look-up is not repeated by everyone at once.
fn single_flight(
    host: &mut dyn Host,
    key: &str,
    name: &str,
    resolve: &mut dyn FnMut(&mut dyn Host) -> Result<String, QboFailure>,
) -> Result<String, QboFailure> {
    if let Some(id) = cached(host, key) {
        return Ok(id);
    }
    let marker = format!("lease/{key}");
    let mut waited = 0;
    let mut step = 20;
    loop {
        let taken = store::try_acquire(host, &marker, RESOLVING_MS).map_err(|e| {
            QboFailure::from(busy(&format!(
                "the look-up of '{name}' could not be coordinated ({e})"
            )))
        })?;
        if let Some(guard) = taken {
            // The previous holder may have answered between our miss and our taking it.
            let result = match cached(host, key) {
                Some(id) => Ok(id),
                None => resolve(host),
            };
            let throttled = matches!(&result, Err(e) if e.failure.kind == FailureKind::RateLimited);
            if !throttled {
                // A marker that cannot be released expires by itself.
                let _ = store::release(host, guard);
            }
            return result;
        }
        if waited >= RESOLVING_WAIT_MS {
            return Err(QboFailure::from(busy(&format!(
                "another worker is still looking up '{name}' in QuickBooks; this order is retried \
                 and then finds it resolved"
            ))));
        }
        host.sleep_ms(step);
        waited += step;
        step = (step * 2).min(200);
        if let Some(id) = cached(host, key) {
            return Ok(id);
        }
    }
}

fn lookup(
    host: &mut dyn Host,
    up: &Upstreams,
    key: &str,
    entity: &str,
    name: &str,
) -> Result<String, QboFailure> {
    single_flight(host, key, name, &mut |h| {
        let found: Vec<Value> = up.qbo_query(h, entity, &q(entity, "Name", name)?)?;
        let id = first_id(&found).ok_or_else(|| not_found(entity, name))?;
        remember(h, key, &id, name);
        Ok(id)
    })
}

/// The Service item that books sales to income account `name`: found by name, else created.
fn account_item(
    host: &mut dyn Host,
    up: &Upstreams,
    realm: &str,
    key: &str,
    name: &str,
    dry_run: bool,
) -> Result<String, QboFailure> {
    if dry_run {
        if let Some(id) = cached(host, key) {
            return Ok(id);
        }
        return find_account_item(host, up, realm, key, name, true);
    }
    single_flight(host, key, name, &mut |h| {
        find_account_item(h, up, realm, key, name, false)
    })
}

fn find_account_item(
    host: &mut dyn Host,
    up: &Upstreams,
    realm: &str,
    key: &str,
    name: &str,
    dry_run: bool,
) -> Result<String, QboFailure> {
    let accounts: Vec<Value> = up.qbo_query(host, "Account", &q("Account", "Name", name)?)?;
    let account = accounts.first().ok_or_else(|| not_found("Account", name))?;
    let account_id = account
        .get("Id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if account.get("AccountType").and_then(Value::as_str) != Some("Income") {
        return Err(QboFailure::from(Failure::mapping(&format!(
            "Account '{name}' is not an Income account in QuickBooks: map sales to an income account"
        ))));
    }
    let items: Vec<Value> = up.qbo_query(host, "Item", &q("Item", "Name", name)?)?;
    if let Some(item) = items.first() {
        let (id, _) = id_and_token(item);
        if !dry_run {
            remember(host, key, &id, name);
        }
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
    let created = up.qbo_entity(
        host,
        "item",
        "Item",
        EntityCall::Create {
            body: &body,
            request_id: &request_id(&["acct-item", realm, name]),
        },
    )?;
    let (id, _) = id_and_token(&created);
    remember(host, key, &id, name);
    Ok(id)
}

/// A retryable failure of the connector's own making (a lease held, a store hiccup).
pub(crate) fn busy(what: &str) -> Failure {
    Failure::storage(what)
}

pub use crate::sync::customers::*;
