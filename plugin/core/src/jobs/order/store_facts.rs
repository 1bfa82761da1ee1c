//! What the books need from the store itself: its time zone (invoice dates) and its default
//! currency (a foreign order, an order whose transactional currency is blank).
//!
//! The zone is the `store_timezone` variable when set; otherwise, like the default currency
//! when an order does not name it, it comes from BigCommerce's store profile (`GET /v2/store`),
//! read once and kept in KV ([`STORE_CACHE_KEY`]) for [`STORE_CACHE_MS`]. An order that needs
//! neither costs no call.

use serde::{Deserialize, Serialize};

use crate::books::mapping::{StoreFacts, ZoneSource, dates};
use crate::host::Host;
use crate::models::bigcommerce::{self, Order};
use crate::settings;
use crate::sync::failure::{Failure, Service};
use crate::sync::store;
use crate::sync::upstream::Upstreams;

/// Where the store profile's answer is cached.
pub const STORE_CACHE_KEY: &str = "cache/bc/store";
/// How long the cached profile is used before it is read again (a day).
pub const STORE_CACHE_MS: i64 = 24 * 60 * 60 * 1000;

/// The store profile fields the books use, as cached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedStore {
    pub timezone: String,
    pub currency: String,
    /// When it was read (ms since the epoch).
    pub fetched_at_ms: i64,
}

/// The store facts for `order`: the zone it is dated in and the store's default currency.
pub fn store_facts(
    host: &mut dyn Host,
    up: &Upstreams,
    order: &Order,
) -> Result<StoreFacts, Failure> {
    let variable = settings::optional(host, "store_timezone").unwrap_or_default();
    let needs_currency = order.default_currency_code.trim().is_empty()
        && order.store_default_currency_code.trim().is_empty();
    let needs_zone = variable.trim().is_empty();
    let profile = if needs_zone || needs_currency {
        Some(store_profile(host, up)?)
    } else {
        None
    };
    let zone = if needs_zone {
        let name = profile.as_ref().map(|p| p.timezone.as_str()).unwrap_or("");
        dates::parse_zone(name, ZoneSource::Store)
    } else {
        dates::parse_zone(&variable, ZoneSource::Variable)
    }
    .map_err(|e| Failure::mapping(&e.to_string()))?;
    Ok(StoreFacts {
        zone,
        default_currency: profile.map(|p| p.currency).unwrap_or_default(),
    })
}

/// The store profile, from the cache when fresh, else from BigCommerce.
fn store_profile(host: &mut dyn Host, up: &Upstreams) -> Result<CachedStore, Failure> {
    let now = host.now().timestamp_millis();
    if let Ok(Some(cached)) = store::cache_get::<CachedStore>(host, STORE_CACHE_KEY)
        && now.saturating_sub(cached.fetched_at_ms) < STORE_CACHE_MS
        && cached.fetched_at_ms <= now
    {
        return Ok(cached);
    }
    let bc = &up.bc;
    let request = bigcommerce::store(&bc.api_base, &bc.store_hash, &bc.access_token);
    let resp = match up.bc_send(host, &request) {
        Ok(r) => r,
        Err(f) if matches!(f.status, Some(401 | 403)) => {
            return Err(Failure::configuration(
                "BigCommerce refused GET /v2/store, where the store's time zone is read: set the \
                 store_timezone variable to the store's IANA zone (such as America/Los_Angeles), or give \
                 the store API account the Information & Settings read-only scope",
            ));
        }
        Err(f) => return Err(f),
    };
    let profile = bigcommerce::parse_store(&resp).map_err(|e| {
        Failure::unreadable(Service::BigCommerce, &format!("the store profile ({e})"))
    })?;
    let cached = CachedStore {
        timezone: profile.timezone.name.trim().to_string(),
        currency: profile.currency.trim().to_string(),
        fetched_at_ms: now,
    };
    // A cache that cannot be written costs one more read next time.
    let _ = store::cache_set(host, STORE_CACHE_KEY, &cached);
    Ok(cached)
}
