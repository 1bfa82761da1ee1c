//! The QuickBooks connection: sealed tokens in KV, refresh single-flight across instances,
//! and API calls that refresh once on a 401.
//!
//! Order of operations on a refresh matters: the rotated refresh token is sealed and stored
//! *before* the new access token is used, so a crash can never leave KV holding a refresh
//! token Intuit has already superseded.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto::{self, Keyring};
use crate::host::{Host, KvError};
use crate::http::{HttpRequest, HttpResponse, TransportError};
use crate::models::token::{self, Bootstrap, TokenError, TokenSet};
use crate::secret::Secret;
use crate::settings::QuickBooksSettings;
use crate::sync::failure::{self, Failure, Service};
use crate::sync::store;

const TOKENS_KEY: &str = "cred/qbo/tokens";
const BOOTSTRAP_FP_KEY: &str = "cred/qbo/bootstrap-fingerprint";
const STATE_KEY: &str = "cred/qbo/state";

/// The keys reading the QuickBooks access reads when its credentials are in order (for a
/// caller that reads them ahead, [`crate::host::Prefetched`]).
pub fn access_keys() -> [&'static str; 3] {
    [BOOTSTRAP_FP_KEY, STATE_KEY, TOKENS_KEY]
}
/// Held by whoever writes the token set: a refresh, an OAuth connect, a re-seal.
const REFRESH_LEASE_KEY: &str = "lease/qbo-refresh";
/// Outlives what its holder does: one token request (at most
/// [`crate::http::UPSTREAM_DEADLINE_MS`]) and a few KV writes.
const REFRESH_LEASE_MS: i64 = 30_000;
/// How long a loser waits for the winner's refresh.
const REFRESH_WAIT_MS: u64 = 15_000;

/// Whether QuickBooks authorization is known to be lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionState {
    pub needs_reauth: bool,
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Why QuickBooks cannot be called right now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("QuickBooks is not connected: {0}")]
    NotConnected(String),
    #[error("{0}")]
    Crypto(#[from] crypto::CryptoError),
    #[error("{0}")]
    Kv(#[from] KvError),
    #[error("the QuickBooks token endpoint could not be reached: {0}")]
    Transport(TransportError),
}

impl ConnectionError {
    /// True when only a human re-authorizing can fix it.
    pub fn needs_reauth(&self) -> bool {
        matches!(
            self,
            ConnectionError::Token(TokenError::NeedsReauth) | ConnectionError::NotConnected(_)
        )
    }
}

/// A usable access token and the company it is for.
#[derive(Debug, Clone)]
pub struct Access {
    pub token: Secret<String>,
    pub realm_id: String,
}

/// Reads and seals credentials in KV.
pub struct Vault<'k> {
    pub keyring: &'k Keyring,
}

impl Vault<'_> {
    fn nonce(host: &mut dyn Host) -> [u8; 24] {
        let mut n = [0u8; 24];
        host.random_bytes(&mut n);
        n
    }

    /// Reads and opens a sealed value; re-seals it under the current key after a rotation.
    pub fn read(&self, host: &mut dyn Host, key: &str) -> Result<Option<Vec<u8>>, ConnectionError> {
        let Some(sealed) = host.kv_get(key)? else {
            return Ok(None);
        };
        let opened = crypto::open(self.keyring, key, &sealed)?;
        if opened.needs_reseal {
            self.reseal(host, key, &sealed, &opened.plaintext)?;
        }
        Ok(Some(opened.plaintext))
    }

    /// Re-seals a value read under the previous key — under the credential lease, and only if
    /// the key still holds what was read: another instance may have stored a rotated refresh
    /// token since, and writing the old one back would lose the authorization. Best effort:
    /// when the lease is busy (a refresh is running, which re-seals anyway) a later read does it.
    fn reseal(
        &self,
        host: &mut dyn Host,
        key: &str,
        read: &[u8],
        plaintext: &[u8],
    ) -> Result<(), ConnectionError> {
        let Some(lease) = store::try_acquire(host, REFRESH_LEASE_KEY, REFRESH_LEASE_MS)? else {
            return Ok(());
        };
        let result = match host.kv_get(key) {
            Ok(Some(current)) if current == read => self.write(host, key, plaintext),
            Ok(_) => Ok(()),
            Err(e) => Err(e.into()),
        };
        let _ = store::release(host, lease);
        result
    }

    /// Seals and writes a value (the KV key is the associated data).
    pub fn write(
        &self,
        host: &mut dyn Host,
        key: &str,
        plaintext: &[u8],
    ) -> Result<(), ConnectionError> {
        let nonce = Self::nonce(host);
        host.kv_set(key, &crypto::seal(self.keyring, key, nonce, plaintext))?;
        Ok(())
    }
}

/// Connection state (needs re-authorization or not).
pub fn state(host: &mut dyn Host) -> Result<ConnectionState, KvError> {
    Ok(store::cache_get(host, STATE_KEY)?.unwrap_or_default())
}

fn set_state(host: &mut dyn Host, state: &ConnectionState) -> Result<(), KvError> {
    store::cache_set(host, STATE_KEY, state)
}

/// Marks the connection as needing re-authorization.
pub fn mark_needs_reauth(host: &mut dyn Host, reason: &str) -> Result<(), KvError> {
    let now = host.now();
    let current = state(host)?;
    if current.needs_reauth {
        return Ok(());
    }
    set_state(
        host,
        &ConnectionState {
            needs_reauth: true,
            since: Some(now),
            reason: Some(reason.to_string()),
        },
    )
}

/// Whether the configured `qbo_refresh_token` is new (first start, or the operator
/// re-authorized out of band) and must replace what KV holds.
fn bootstrap_pending(host: &mut dyn Host, settings: &QuickBooksSettings) -> Result<bool, KvError> {
    let stored_fp = host
        .kv_get(BOOTSTRAP_FP_KEY)?
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    Ok(token::bootstrap_decision(
        settings.bootstrap_refresh_token.as_deref(),
        stored_fp.as_deref(),
    ) == Bootstrap::UseConfigured)
}

/// Adopts the configured bootstrap token. Only called while holding the refresh lease, so it
/// can never overwrite a refresh token another instance has just rotated.
fn adopt_bootstrap(
    host: &mut dyn Host,
    vault: &Vault,
    settings: &QuickBooksSettings,
) -> Result<(), ConnectionError> {
    let configured = settings.bootstrap_refresh_token.clone().unwrap_or_default();
    let previous = read_tokens(host, vault).ok().flatten();
    let realm = settings
        .realm_id
        .clone()
        .or_else(|| previous.and_then(|p| p.realm_id));
    store_tokens(
        host,
        vault,
        &TokenSet::from_refresh_token(configured.trim(), realm),
    )?;
    host.kv_set(
        BOOTSTRAP_FP_KEY,
        token::fingerprint(configured.trim()).as_bytes(),
    )?;
    // A new bootstrap token is the operator re-authorizing out of band.
    set_state(host, &ConnectionState::default())?;
    Ok(())
}

/// Reads the stored tokens.
pub fn load_tokens(
    host: &mut dyn Host,
    vault: &Vault,
) -> Result<Option<TokenSet>, ConnectionError> {
    read_tokens(host, vault)
}

fn read_tokens(host: &mut dyn Host, vault: &Vault) -> Result<Option<TokenSet>, ConnectionError> {
    match vault.read(host, TOKENS_KEY)? {
        None => Ok(None),
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
            ConnectionError::NotConnected(format!(
                "stored QuickBooks tokens are unreadable ({e}); re-authorize"
            ))
        })?)),
    }
}

/// Stores tokens sealed.
pub fn store_tokens(
    host: &mut dyn Host,
    vault: &Vault,
    tokens: &TokenSet,
) -> Result<(), ConnectionError> {
    let bytes =
        serde_json::to_vec(tokens).map_err(|e| ConnectionError::NotConnected(e.to_string()))?;
    vault.write(host, TOKENS_KEY, &bytes)
}

/// Stores tokens from a completed OAuth connect and clears `needs_reauth`, holding the
/// refresh lease: a refresh running elsewhere finishes first, so its tokens (from the old
/// grant) can never land after these.
pub fn connected(
    host: &mut dyn Host,
    vault: &Vault,
    tokens: &TokenSet,
) -> Result<(), ConnectionError> {
    connect_holding_lease(host, vault, tokens, None)
}

/// [`connected`], also recording the configured `qbo_refresh_token` as superseded (see
/// [`supersede_bootstrap`]) under the same lease, so no instance adopts it in between.
pub fn connected_superseding(
    host: &mut dyn Host,
    vault: &Vault,
    tokens: &TokenSet,
    settings: &QuickBooksSettings,
) -> Result<(), ConnectionError> {
    connect_holding_lease(host, vault, tokens, Some(settings))
}

fn connect_holding_lease(
    host: &mut dyn Host,
    vault: &Vault,
    tokens: &TokenSet,
    superseding: Option<&QuickBooksSettings>,
) -> Result<(), ConnectionError> {
    let Some(lease) = store::acquire(host, REFRESH_LEASE_KEY, REFRESH_LEASE_MS, REFRESH_WAIT_MS)?
    else {
        return Err(ConnectionError::Kv(KvError(
            "another instance kept the QuickBooks tokens busy (a refresh that did not finish)"
                .into(),
        )));
    };
    let result = store_tokens(host, vault, tokens)
        .and_then(|()| Ok(set_state(host, &ConnectionState::default())?))
        .and_then(|()| match superseding {
            Some(settings) => Ok(supersede_bootstrap(host, settings)?),
            None => Ok(()),
        });
    let _ = store::release(host, lease);
    result
}

fn authorization_lost() -> ConnectionError {
    ConnectionError::NotConnected(
        "QuickBooks authorization was lost (invalid_grant): re-authorize at /oauth/quickbooks/connect".into(),
    )
}

fn realm_of(settings: &QuickBooksSettings, tokens: &TokenSet) -> Result<String, ConnectionError> {
    settings.realm_id.clone().or_else(|| tokens.realm_id.clone()).ok_or_else(|| {
        ConnectionError::NotConnected(
            "no QuickBooks company (realm) is known: set qbo_realm_id or connect at /oauth/quickbooks/connect".into(),
        )
    })
}

/// Which access token, if any, is known not to work.
#[derive(Debug, Clone, Copy)]
enum Rejected<'a> {
    /// None: a stored token that is not near expiry is used as is.
    Nothing,
    /// Whatever is stored now (a caller forcing a refresh).
    Stored,
    /// This token got a 401. A *different* stored token is another instance's fresh refresh,
    /// and refreshing again would only burn a rotation (and a call) per concurrent job.
    This(&'a str),
}

impl Rejected<'_> {
    fn allows(&self, stored: &TokenSet, now: DateTime<Utc>) -> bool {
        let fresh = !token::needs_refresh(&Some(stored.clone()), now);
        match self {
            Rejected::Nothing => fresh,
            Rejected::Stored => false,
            Rejected::This(bad) => fresh && stored.access_token.expose() != bad,
        }
    }
}

/// A valid access token: the stored one, or a fresh one (refreshing at most once across all
/// instances at a time). `force` refreshes even if the stored token looks valid.
pub fn access(
    host: &mut dyn Host,
    vault: &Vault,
    settings: &QuickBooksSettings,
    force: bool,
) -> Result<Access, ConnectionError> {
    obtain(
        host,
        vault,
        settings,
        if force {
            Rejected::Stored
        } else {
            Rejected::Nothing
        },
    )
}

/// A valid access token other than `rejected` (which QuickBooks just answered 401 to): the
/// stored one when another instance has already replaced it, else a fresh one.
pub fn access_replacing(
    host: &mut dyn Host,
    vault: &Vault,
    settings: &QuickBooksSettings,
    rejected: &str,
) -> Result<Access, ConnectionError> {
    obtain(host, vault, settings, Rejected::This(rejected))
}

fn obtain(
    host: &mut dyn Host,
    vault: &Vault,
    settings: &QuickBooksSettings,
    rejected: Rejected,
) -> Result<Access, ConnectionError> {
    let bootstrap = bootstrap_pending(host, settings)?;
    if !bootstrap && state(host)?.needs_reauth {
        // Known dead: don't ask Intuit again until someone re-authorizes.
        return Err(authorization_lost());
    }
    let tokens = if bootstrap {
        None
    } else {
        read_tokens(host, vault)?
    };
    let now = host.now();
    let stale_access = match &tokens {
        Some(t) if rejected.allows(t, now) => {
            let realm_id = realm_of(settings, t)?;
            return Ok(Access {
                token: t.access_token.clone(),
                realm_id,
            });
        }
        Some(t) => match rejected {
            Rejected::This(bad) => bad.to_string(),
            _ => t.access_token.expose().clone(),
        },
        None if bootstrap => String::new(),
        None => {
            return Err(ConnectionError::NotConnected(
                "no QuickBooks tokens: connect at /oauth/quickbooks/connect or set qbo_refresh_token".into(),
            ));
        }
    };
    let Some(lease) = store::acquire(host, REFRESH_LEASE_KEY, REFRESH_LEASE_MS, REFRESH_WAIT_MS)?
    else {
        return Err(ConnectionError::Token(TokenError::Unavailable {
            status: 0,
        }));
    };
    let result = refresh_holding_lease(host, vault, settings, &stale_access);
    let _ = store::release(host, lease);
    result
}

fn refresh_holding_lease(
    host: &mut dyn Host,
    vault: &Vault,
    settings: &QuickBooksSettings,
    stale_access: &str,
) -> Result<Access, ConnectionError> {
    if bootstrap_pending(host, settings)? {
        adopt_bootstrap(host, vault, settings)?;
    } else if state(host)?.needs_reauth {
        // The instance we waited for got invalid_grant with this very refresh token: asking
        // again would only add another invalid_grant to Intuit's logs.
        return Err(authorization_lost());
    }
    // Another instance may have refreshed while we waited: use its token.
    let tokens = read_tokens(host, vault)?.ok_or_else(|| {
        ConnectionError::NotConnected(
            "no QuickBooks tokens: connect at /oauth/quickbooks/connect".into(),
        )
    })?;
    let now = host.now();
    if tokens.access_token.expose() != stale_access
        && !token::needs_refresh(&Some(tokens.clone()), now)
    {
        let realm_id = realm_of(settings, &tokens)?;
        return Ok(Access {
            token: tokens.access_token,
            realm_id,
        });
    }
    let request = token::refresh_request(
        &settings.oauth_base,
        &settings.client_id,
        &settings.client_secret,
        tokens.refresh_token.expose(),
    );
    let response = host.http(&request).map_err(ConnectionError::Transport)?;
    let now = host.now();
    match token::parse_token_response(response.status, &response.body, now, Some(&tokens)) {
        Ok(fresh) => {
            // Persist the rotated refresh token before anything uses the new access token.
            store_tokens(host, vault, &fresh)?;
            if state(host)?.needs_reauth {
                set_state(host, &ConnectionState::default())?;
            }
            let realm_id = realm_of(settings, &fresh)?;
            Ok(Access {
                token: fresh.access_token,
                realm_id,
            })
        }
        Err(TokenError::NeedsReauth) => {
            // A slow token call can outlive the refresh lease: another instance may have
            // rotated the refresh token meanwhile, and this refusal is about the superseded
            // one, not about the connection.
            if let Some(current) = read_tokens(host, vault)?
                && current.refresh_token.expose() != tokens.refresh_token.expose()
            {
                if !token::needs_refresh(&Some(current.clone()), now) {
                    let realm_id = realm_of(settings, &current)?;
                    return Ok(Access {
                        token: current.access_token,
                        realm_id,
                    });
                }
                return Err(ConnectionError::Token(TokenError::Unavailable {
                    status: response.status,
                }));
            }
            mark_needs_reauth(host, "QuickBooks refused the refresh token (invalid_grant)")?;
            Err(ConnectionError::Token(TokenError::NeedsReauth))
        }
        Err(e) => Err(ConnectionError::Token(e)),
    }
}

/// An API call failed before QuickBooks answered, or the connection is unusable.
#[derive(Debug)]
pub enum CallError {
    Connection(ConnectionError),
    Transport(TransportError),
}

/// Calls the Accounting API: builds the request with a valid token, and on a 401 refreshes
/// once and retries once.
pub fn call(
    host: &mut dyn Host,
    vault: &Vault,
    settings: &QuickBooksSettings,
    build: &dyn Fn(&str, &str) -> HttpRequest,
) -> Result<HttpResponse, CallError> {
    let access = access(host, vault, settings, false).map_err(CallError::Connection)?;
    let response = host
        .http(&build(&access.realm_id, access.token.expose()))
        .map_err(CallError::Transport)?;
    if response.status != 401 {
        return Ok(response);
    }
    let access = access_replacing(host, vault, settings, access.token.expose())
        .map_err(CallError::Connection)?;
    host.http(&build(&access.realm_id, access.token.expose()))
        .map_err(CallError::Transport)
}

/// The realm id currently in use, if known.
pub fn realm_id(
    host: &mut dyn Host,
    vault: &Vault,
    settings: &QuickBooksSettings,
) -> Result<Option<String>, ConnectionError> {
    Ok(settings
        .realm_id
        .clone()
        .or(read_tokens(host, vault)?.and_then(|t| t.realm_id)))
}

/// Stored token expiries, for `/admin/status`.
pub fn expiries(host: &mut dyn Host, vault: &Vault) -> Result<Option<TokenSet>, ConnectionError> {
    read_tokens(host, vault)
}

/// Records the configured `qbo_refresh_token` (if any) as already bootstrapped, so that a
/// value set before an OAuth connect never replaces the fresher tokens that connect stored.
/// Setting a *different* value later still supersedes them (the contract's bootstrap rule).
pub fn supersede_bootstrap(
    host: &mut dyn Host,
    settings: &QuickBooksSettings,
) -> Result<(), KvError> {
    match settings
        .bootstrap_refresh_token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(configured) => {
            host.kv_set(BOOTSTRAP_FP_KEY, token::fingerprint(configured).as_bytes())
        }
        None => Ok(()),
    }
}

/// A QuickBooks connection problem that is not lost authorization.
pub fn connection_failure(e: &ConnectionError) -> Failure {
    match e {
        ConnectionError::Token(t) => Failure::from_token_error(t),
        ConnectionError::Kv(k) => Failure::storage(&k.to_string()),
        ConnectionError::Transport(t) => failure::classify_transport(Service::QuickBooks, t),
        other => Failure::configuration(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HttpResponse;
    use crate::testing::FakeHost;
    use base64::Engine as _;
    use chrono::Duration;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T15:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn host() -> FakeHost {
        let mut h = FakeHost::new(t0());
        h.set_config("qbo_client_id", "cid")
            .set_config("qbo_client_secret", "csecret")
            .set_config("qbo_realm_id", "1234")
            .set_config("qbo_api_base", "https://qbo.test")
            .set_config("qbo_oauth_base", "https://oauth.test")
            .set_config(
                "encryption_key",
                &base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
            );
        h
    }

    fn keyring() -> Keyring {
        Keyring::from_bytes([7u8; 32], None)
    }

    fn tokens(access: &str, refresh: &str) -> TokenSet {
        TokenSet {
            access_token: Secret::new(access.into()),
            access_expires_at: t0() + Duration::hours(1),
            refresh_token: Secret::new(refresh.into()),
            refresh_expires_at: None,
            refresh_hard_expires_at: None,
            realm_id: Some("1234".into()),
        }
    }

    fn route_refresh(h: &mut FakeHost) {
        h.route("POST /oauth2/v1/tokens/bearer", |_| {
            Ok(HttpResponse::json(
                200,
                &serde_json::json!({"token_type": "bearer", "access_token": "ACCESS-3", "expires_in": 3600,
                                    "refresh_token": "REFRESH-3", "x_refresh_token_expires_in": 8_726_400}),
            ))
        });
    }

    #[test]
    fn a_401_on_a_token_another_instance_already_replaced_uses_the_replacement_without_refreshing()
    {
        let mut h = host();
        let kr = keyring();
        let vault = Vault { keyring: &kr };
        let qbo = QuickBooksSettings::read(&mut h).unwrap();
        // This job sent ACCESS-1 and got a 401; meanwhile another job refreshed to ACCESS-2.
        connected(&mut h, &vault, &tokens("ACCESS-2", "REFRESH-2")).unwrap();
        route_refresh(&mut h);
        let access = access_replacing(&mut h, &vault, &qbo, "ACCESS-1").unwrap();
        assert_eq!(access.token.expose(), "ACCESS-2");
        assert_eq!(
            h.calls_to("/oauth2/v1/tokens/bearer"),
            0,
            "no second refresh for the same expiry"
        );
    }

    #[test]
    fn a_401_on_the_stored_token_refreshes_once_and_stores_the_rotated_refresh_token() {
        let mut h = host();
        let kr = keyring();
        let vault = Vault { keyring: &kr };
        let qbo = QuickBooksSettings::read(&mut h).unwrap();
        connected(&mut h, &vault, &tokens("ACCESS-2", "REFRESH-2")).unwrap();
        route_refresh(&mut h);
        let access = access_replacing(&mut h, &vault, &qbo, "ACCESS-2").unwrap();
        assert_eq!(access.token.expose(), "ACCESS-3");
        assert_eq!(h.calls_to("/oauth2/v1/tokens/bearer"), 1);
        let stored = load_tokens(&mut h, &vault).unwrap().unwrap();
        assert_eq!(stored.refresh_token.expose(), "REFRESH-3");
    }

    #[test]
    fn a_forced_refresh_still_refreshes_a_token_that_looks_valid() {
        let mut h = host();
        let kr = keyring();
        let vault = Vault { keyring: &kr };
        let qbo = QuickBooksSettings::read(&mut h).unwrap();
        connected(&mut h, &vault, &tokens("ACCESS-2", "REFRESH-2")).unwrap();
        route_refresh(&mut h);
        assert_eq!(
            access(&mut h, &vault, &qbo, true).unwrap().token.expose(),
            "ACCESS-3"
        );
        assert_eq!(
            access(&mut h, &vault, &qbo, false).unwrap().token.expose(),
            "ACCESS-3"
        );
        assert_eq!(h.calls_to("/oauth2/v1/tokens/bearer"), 1);
    }
    #[test]
    fn re_sealing_after_a_key_rotation_never_overwrites_tokens_another_instance_just_stored() {
        let mut h = host();
        let old = Keyring::from_bytes([9u8; 32], None);
        connected(
            &mut h,
            &Vault { keyring: &old },
            &tokens("ACCESS-1", "REFRESH-1"),
        )
        .unwrap();
        // `encryption_key` is now [7; 32], `encryption_key_previous` the old [9; 32].
        let rotated = Keyring::from_bytes([7u8; 32], Some([9u8; 32]));
        // Right after this instance reads the old value, another one stores rotated tokens.
        let mut fired = false;
        h.after_get(TOKENS_KEY, move |h| {
            if !fired {
                fired = true;
                let kr = Keyring::from_bytes([7u8; 32], None);
                store_tokens(h, &Vault { keyring: &kr }, &tokens("ACCESS-2", "REFRESH-2")).unwrap();
            }
        });
        let vault = Vault { keyring: &rotated };
        vault.read(&mut h, TOKENS_KEY).unwrap().unwrap();
        let stored = load_tokens(&mut h, &vault).unwrap().unwrap();
        assert_eq!(
            stored.refresh_token.expose(),
            "REFRESH-2",
            "the re-seal did not put the superseded refresh token back"
        );
    }

    #[test]
    fn re_sealing_after_a_key_rotation_writes_the_value_under_the_current_key() {
        let mut h = host();
        let old = Keyring::from_bytes([9u8; 32], None);
        connected(
            &mut h,
            &Vault { keyring: &old },
            &tokens("ACCESS-1", "REFRESH-1"),
        )
        .unwrap();
        let rotated = Keyring::from_bytes([7u8; 32], Some([9u8; 32]));
        load_tokens(&mut h, &Vault { keyring: &rotated })
            .unwrap()
            .unwrap();
        let current_only = keyring();
        let stored = load_tokens(
            &mut h,
            &Vault {
                keyring: &current_only,
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(stored.refresh_token.expose(), "REFRESH-1");
    }

    #[test]
    fn the_refresh_lease_outlives_a_token_request_and_waiting_for_it_fits_in_a_job_lease() {
        assert!(REFRESH_LEASE_MS >= crate::http::UPSTREAM_DEADLINE_MS as i64 + 5_000);
        assert!((REFRESH_WAIT_MS as i64) < store::ENTITY_LEASE_MS);
    }

    #[test]
    fn an_invalid_grant_for_a_refresh_token_another_instance_already_rotated_keeps_the_connection()
    {
        let mut h = host();
        let kr = keyring();
        let vault = Vault { keyring: &kr };
        let qbo = QuickBooksSettings::read(&mut h).unwrap();
        connected(&mut h, &vault, &tokens("ACCESS-2", "REFRESH-2")).unwrap();
        // Our refresh lease expires during a slow token call: another instance refreshes with
        // the same refresh token first and stores the rotated one, so Intuit refuses ours.
        let mut fired = false;
        h.after_get(TOKENS_KEY, move |h| {
            if !fired {
                fired = true;
                let kr = keyring();
                store_tokens(h, &Vault { keyring: &kr }, &tokens("ACCESS-9", "REFRESH-9")).unwrap();
            }
        });
        h.route("POST /oauth2/v1/tokens/bearer", |_| {
            Ok(HttpResponse::json(
                400,
                &serde_json::json!({"error": "invalid_grant"}),
            ))
        });
        let access = refresh_holding_lease(&mut h, &vault, &qbo, "ACCESS-2").unwrap();
        assert_eq!(access.token.expose(), "ACCESS-9");
        assert!(
            !state(&mut h).unwrap().needs_reauth,
            "the connection is not lost"
        );
        let stored = load_tokens(&mut h, &vault).unwrap().unwrap();
        assert_eq!(stored.refresh_token.expose(), "REFRESH-9");
    }

    #[test]
    fn a_refresh_waiter_after_an_invalid_grant_does_not_ask_intuit_again() {
        let mut h = host();
        let kr = keyring();
        let vault = Vault { keyring: &kr };
        let qbo = QuickBooksSettings::read(&mut h).unwrap();
        connected(&mut h, &vault, &tokens("ACCESS-2", "REFRESH-2")).unwrap();
        route_refresh(&mut h);
        // The lease holder before us was refused (invalid_grant) while we waited for the lease.
        mark_needs_reauth(&mut h, "test: refused").unwrap();
        let err = refresh_holding_lease(&mut h, &vault, &qbo, "ACCESS-2").unwrap_err();
        assert!(err.needs_reauth(), "{err}");
        assert!(
            err.to_string().contains("/oauth/quickbooks/connect"),
            "{err}"
        );
        assert_eq!(h.calls_to("/oauth2/v1/tokens/bearer"), 0);
    }
}
