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
use crate::secret::Secret;
use crate::settings::QuickBooksSettings;
use crate::store;
use crate::token::{self, Bootstrap, TokenError, TokenSet};

const TOKENS_KEY: &str = "cred/qbo/tokens";
const BOOTSTRAP_FP_KEY: &str = "cred/qbo/bootstrap-fingerprint";
const STATE_KEY: &str = "cred/qbo/state";
const REFRESH_LEASE_KEY: &str = "lease/qbo-refresh";
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
        matches!(self, ConnectionError::Token(TokenError::NeedsReauth) | ConnectionError::NotConnected(_))
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
        let Some(sealed) = host.kv_get(key)? else { return Ok(None) };
        let opened = crypto::open(self.keyring, key, &sealed)?;
        if opened.needs_reseal {
            self.write(host, key, &opened.plaintext)?;
        }
        Ok(Some(opened.plaintext))
    }

    /// Seals and writes a value (the KV key is the associated data).
    pub fn write(&self, host: &mut dyn Host, key: &str, plaintext: &[u8]) -> Result<(), ConnectionError> {
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
    set_state(host, &ConnectionState { needs_reauth: true, since: Some(now), reason: Some(reason.to_string()) })
}

/// Whether the configured `qbo_refresh_token` is new (first start, or the operator
/// re-authorized out of band) and must replace what KV holds.
fn bootstrap_pending(host: &mut dyn Host, settings: &QuickBooksSettings) -> Result<bool, KvError> {
    let stored_fp = host.kv_get(BOOTSTRAP_FP_KEY)?.map(|b| String::from_utf8_lossy(&b).into_owned());
    Ok(token::bootstrap_decision(settings.bootstrap_refresh_token.as_deref(), stored_fp.as_deref()) == Bootstrap::UseConfigured)
}

/// Adopts the configured bootstrap token. Only called while holding the refresh lease, so it
/// can never overwrite a refresh token another instance has just rotated.
fn adopt_bootstrap(host: &mut dyn Host, vault: &Vault, settings: &QuickBooksSettings) -> Result<(), ConnectionError> {
    let configured = settings.bootstrap_refresh_token.clone().unwrap_or_default();
    let previous = read_tokens(host, vault).ok().flatten();
    let realm = settings.realm_id.clone().or_else(|| previous.and_then(|p| p.realm_id));
    store_tokens(host, vault, &TokenSet::from_refresh_token(configured.trim(), realm))?;
    host.kv_set(BOOTSTRAP_FP_KEY, token::fingerprint(configured.trim()).as_bytes())?;
    // A new bootstrap token is the operator re-authorizing out of band.
    set_state(host, &ConnectionState::default())?;
    Ok(())
}

/// Reads the stored tokens.
pub fn load_tokens(host: &mut dyn Host, vault: &Vault) -> Result<Option<TokenSet>, ConnectionError> {
    read_tokens(host, vault)
}

fn read_tokens(host: &mut dyn Host, vault: &Vault) -> Result<Option<TokenSet>, ConnectionError> {
    match vault.read(host, TOKENS_KEY)? {
        None => Ok(None),
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
            ConnectionError::NotConnected(format!("stored QuickBooks tokens are unreadable ({e}); re-authorize"))
        })?)),
    }
}

/// Stores tokens sealed.
pub fn store_tokens(host: &mut dyn Host, vault: &Vault, tokens: &TokenSet) -> Result<(), ConnectionError> {
    let bytes = serde_json::to_vec(tokens).map_err(|e| ConnectionError::NotConnected(e.to_string()))?;
    vault.write(host, TOKENS_KEY, &bytes)
}

/// Stores tokens from a completed OAuth connect and clears `needs_reauth`.
pub fn connected(host: &mut dyn Host, vault: &Vault, tokens: &TokenSet) -> Result<(), ConnectionError> {
    store_tokens(host, vault, tokens)?;
    set_state(host, &ConnectionState::default())?;
    Ok(())
}

fn realm_of(settings: &QuickBooksSettings, tokens: &TokenSet) -> Result<String, ConnectionError> {
    settings.realm_id.clone().or_else(|| tokens.realm_id.clone()).ok_or_else(|| {
        ConnectionError::NotConnected(
            "no QuickBooks company (realm) is known: set qbo_realm_id or connect at /oauth/quickbooks/connect".into(),
        )
    })
}

/// A valid access token: the stored one, or a fresh one (refreshing at most once across all
/// instances at a time). `force` refreshes even if the stored token looks valid (after a 401).
pub fn access(host: &mut dyn Host, vault: &Vault, settings: &QuickBooksSettings, force: bool) -> Result<Access, ConnectionError> {
    let bootstrap = bootstrap_pending(host, settings)?;
    if !bootstrap && state(host)?.needs_reauth {
        // Known dead: don't ask Intuit again until someone re-authorizes.
        return Err(ConnectionError::NotConnected(
            "QuickBooks authorization was lost (invalid_grant): re-authorize at /oauth/quickbooks/connect".into(),
        ));
    }
    let tokens = if bootstrap { None } else { read_tokens(host, vault)? };
    let now = host.now();
    let stale_access = match &tokens {
        Some(t) if !force && !token::needs_refresh(&Some(t.clone()), now) => {
            let realm_id = realm_of(settings, t)?;
            return Ok(Access { token: t.access_token.clone(), realm_id });
        }
        Some(t) => t.access_token.expose().clone(),
        None if bootstrap => String::new(),
        None => {
            return Err(ConnectionError::NotConnected(
                "no QuickBooks tokens: connect at /oauth/quickbooks/connect or set qbo_refresh_token".into(),
            ));
        }
    };
    let Some(lease) = store::acquire(host, REFRESH_LEASE_KEY, REFRESH_LEASE_MS, REFRESH_WAIT_MS)? else {
        return Err(ConnectionError::Token(TokenError::Unavailable { status: 0 }));
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
    }
    // Another instance may have refreshed while we waited: use its token.
    let tokens = read_tokens(host, vault)?
        .ok_or_else(|| ConnectionError::NotConnected("no QuickBooks tokens: connect at /oauth/quickbooks/connect".into()))?;
    let now = host.now();
    if tokens.access_token.expose() != stale_access && !token::needs_refresh(&Some(tokens.clone()), now) {
        let realm_id = realm_of(settings, &tokens)?;
        return Ok(Access { token: tokens.access_token, realm_id });
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
            Ok(Access { token: fresh.access_token, realm_id })
        }
        Err(TokenError::NeedsReauth) => {
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
    let response = host.http(&build(&access.realm_id, access.token.expose())).map_err(CallError::Transport)?;
    if response.status != 401 {
        return Ok(response);
    }
    let access = access_after_401(host, vault, settings)?;
    host.http(&build(&access.realm_id, access.token.expose())).map_err(CallError::Transport)
}

fn access_after_401(host: &mut dyn Host, vault: &Vault, settings: &QuickBooksSettings) -> Result<Access, CallError> {
    access(host, vault, settings, true).map_err(CallError::Connection)
}

/// The realm id currently in use, if known.
pub fn realm_id(host: &mut dyn Host, vault: &Vault, settings: &QuickBooksSettings) -> Result<Option<String>, ConnectionError> {
    Ok(settings.realm_id.clone().or(read_tokens(host, vault)?.and_then(|t| t.realm_id)))
}

/// Stored token expiries, for `/admin/status`.
pub fn expiries(host: &mut dyn Host, vault: &Vault) -> Result<Option<TokenSet>, ConnectionError> {
    read_tokens(host, vault)
}

/// Records the configured `qbo_refresh_token` (if any) as already bootstrapped, so that a
/// value set before an OAuth connect never replaces the fresher tokens that connect stored.
/// Setting a *different* value later still supersedes them (the contract's bootstrap rule).
pub fn supersede_bootstrap(host: &mut dyn Host, settings: &QuickBooksSettings) -> Result<(), KvError> {
    match settings.bootstrap_refresh_token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        Some(configured) => host.kv_set(BOOTSTRAP_FP_KEY, token::fingerprint(configured).as_bytes()),
        None => Ok(()),
    }
}
