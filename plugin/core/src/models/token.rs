//! QuickBooks Online OAuth 2.0 token lifecycle: requests to build, responses to parse and
//! the decisions (refresh now? which token wins at start-up? who may refresh?) — all
//! taking `now` as a parameter.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::http::{HttpRequest, Method};
use crate::secret::Secret;

/// Path of Intuit's token endpoint below `qbo_oauth_base`.
pub const TOKEN_PATH: &str = "/oauth2/v1/tokens/bearer";
/// Scope requested at consent.
pub const ACCOUNTING_SCOPE: &str = "com.intuit.quickbooks.accounting";
/// Refresh when the access token has less than this left.
pub const REFRESH_MARGIN: Duration = Duration::minutes(5);
/// Where an operator re-authorizes.
pub const CONNECT_PATH: &str = "/oauth/quickbooks/connect";

/// The QuickBooks credentials the connector holds (stored sealed, see `crypto`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSet {
    /// Bearer token for the Accounting API (about one hour).
    pub access_token: Secret<String>,
    /// When `access_token` expires.
    pub access_expires_at: DateTime<Utc>,
    /// The latest refresh token; Intuit rotates it, and the previous value dies.
    pub refresh_token: Secret<String>,
    /// Rolling (~100 days) expiry of the refresh token, when Intuit reported it.
    #[serde(default)]
    pub refresh_expires_at: Option<DateTime<Utc>>,
    /// Five-year hard cap of the refresh token, when Intuit reported it.
    #[serde(default)]
    pub refresh_hard_expires_at: Option<DateTime<Utc>>,
    /// QuickBooks company id (arrives only on the OAuth callback).
    #[serde(default)]
    pub realm_id: Option<String>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &self.access_token)
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh_token", &self.refresh_token)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .field("refresh_hard_expires_at", &self.refresh_hard_expires_at)
            .field("realm_id", &self.realm_id)
            .finish()
    }
}

impl TokenSet {
    /// A token set holding only a refresh token (bootstrap from `qbo_refresh_token`): the
    /// access token is empty and already expired, so the first use refreshes.
    pub fn from_refresh_token(refresh_token: &str, realm_id: Option<String>) -> TokenSet {
        TokenSet {
            access_token: Secret::new(String::new()),
            access_expires_at: DateTime::<Utc>::UNIX_EPOCH,
            refresh_token: Secret::new(refresh_token.to_string()),
            refresh_expires_at: None,
            refresh_hard_expires_at: None,
            realm_id,
        }
    }
}

/// Why a token request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The refresh token (or code) is expired, revoked or superseded: only a human can fix it.
    #[error(
        "QuickBooks refused the refresh token (invalid_grant: it expired, was revoked or was already rotated): \
         re-authorize at /oauth/quickbooks/connect"
    )]
    NeedsReauth,
    /// Client id/secret wrong.
    #[error(
        "QuickBooks rejected the app credentials (invalid_client): check qbo_client_id and qbo_client_secret \
         against the Intuit developer portal (development and production keys differ)"
    )]
    InvalidClient,
    /// Another OAuth error (`invalid_request`, `unsupported_grant_type`, …).
    #[error("QuickBooks token endpoint answered HTTP {status} {error}{}: check qbo_oauth_base, qbo_redirect_uri and the app settings", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rejected {
        status: u16,
        error: String,
        description: Option<String>,
    },
    /// Intuit is having trouble; try again later.
    #[error(
        "QuickBooks token endpoint is unavailable (HTTP {status}): the connector retries later"
    )]
    Unavailable { status: u16 },
    /// A 2xx without the expected fields.
    #[error(
        "QuickBooks token response is malformed ({0}): check that qbo_oauth_base points at Intuit's OAuth server"
    )]
    Malformed(String),
    /// No refresh token in the response and none to keep.
    #[error(
        "QuickBooks token response had no refresh_token and none is stored: re-authorize at /oauth/quickbooks/connect"
    )]
    NoRefreshToken,
}

impl TokenError {
    /// Whether trying again later can succeed without a human.
    pub fn is_retryable(&self) -> bool {
        matches!(self, TokenError::Unavailable { .. })
    }
}

/// True when there is no usable access token or it expires within [`REFRESH_MARGIN`].
pub fn needs_refresh(tokens: &Option<TokenSet>, now: DateTime<Utc>) -> bool {
    match tokens {
        None => true,
        Some(t) => {
            t.access_token.expose().is_empty() || t.access_expires_at - now <= REFRESH_MARGIN
        }
    }
}

fn token_url(oauth_base: &str) -> String {
    format!("{}{TOKEN_PATH}", oauth_base.trim_end_matches('/'))
}

fn token_request(
    oauth_base: &str,
    client_id: &str,
    client_secret: &str,
    form: String,
) -> HttpRequest {
    let basic = BASE64.encode(format!("{client_id}:{client_secret}"));
    let mut req = HttpRequest::new(Method::Post, token_url(oauth_base))
        .header("Authorization", format!("Basic {basic}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "application/json")
        .header("x-include-refresh-token-hard-expires-in", "true");
    req.body = form.into_bytes();
    req
}

/// `POST {base}/oauth2/v1/tokens/bearer` with `grant_type=refresh_token`.
pub fn refresh_request(
    oauth_base: &str,
    client_id: &str,
    client_secret: &str,
    refresh_token: &str,
) -> HttpRequest {
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "refresh_token")
        .append_pair("refresh_token", refresh_token)
        .finish();
    token_request(oauth_base, client_id, client_secret, form)
}

/// `POST {base}/oauth2/v1/tokens/bearer` with `grant_type=authorization_code`.
pub fn code_exchange_request(
    oauth_base: &str,
    client_id: &str,
    client_secret: &str,
    code: &str,
    redirect_uri: &str,
) -> HttpRequest {
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", redirect_uri)
        .finish();
    token_request(oauth_base, client_id, client_secret, form)
}

/// The browser consent URL (`qbo_authorize_url` plus query).
pub fn authorize_url(
    authorize_base: &str,
    client_id: &str,
    redirect_uri: &str,
    state: &str,
) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", client_id)
        .append_pair("response_type", "code")
        .append_pair("scope", ACCOUNTING_SCOPE)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("state", state)
        .finish();
    let sep = if authorize_base.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{authorize_base}{sep}{query}")
}

/// Seconds as a number or a numeric string (some clients see strings).
fn seconds(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX))),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn after(now: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
    // Clamped, and added with checked arithmetic, so a hostile or broken value (or a clock gone
    // wild) cannot overflow chrono.
    now.checked_add_signed(Duration::seconds(secs.clamp(0, 100 * 365 * 86_400)))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Interprets a token endpoint response.
///
/// Fields the response omits (refresh token, its expiries, realm) are carried over from
/// `previous`, because Intuit may leave them out and losing the refresh token would force
/// a re-authorization.
pub fn parse_token_response(
    status: u16,
    body: &[u8],
    now: DateTime<Utc>,
    previous: Option<&TokenSet>,
) -> Result<TokenSet, TokenError> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if !(200..300).contains(&status) {
        let error = json
            .as_ref()
            .and_then(|j| j.get("error"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let description = json
            .as_ref()
            .and_then(|j| j.get("error_description"))
            .and_then(Value::as_str)
            .map(|d| d.chars().take(200).collect::<String>());
        return Err(match error.as_deref() {
            Some("invalid_grant") => TokenError::NeedsReauth,
            Some("invalid_client") => TokenError::InvalidClient,
            _ if status == 401 => TokenError::InvalidClient,
            _ if status >= 500 || status == 429 => TokenError::Unavailable { status },
            Some(e) => TokenError::Rejected {
                status,
                error: e.to_string(),
                description,
            },
            None => TokenError::Rejected {
                status,
                error: "(no error code)".into(),
                description,
            },
        });
    }
    let json = json.ok_or_else(|| TokenError::Malformed("body is not JSON".into()))?;
    let access = json
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| TokenError::Malformed("access_token is missing".into()))?;
    let expires_in = match json.get("expires_in") {
        None => 3600,
        v => seconds(v)
            .ok_or_else(|| TokenError::Malformed("expires_in is not a number of seconds".into()))?,
    };
    let refresh = match json
        .get("refresh_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        Some(r) => r.to_string(),
        None => previous
            .map(|p| p.refresh_token.expose().clone())
            .ok_or(TokenError::NoRefreshToken)?,
    };
    let refresh_expires_at = seconds(json.get("x_refresh_token_expires_in"))
        .map(|s| after(now, s))
        .or_else(|| previous.and_then(|p| p.refresh_expires_at));
    let refresh_hard_expires_at = seconds(json.get("x_refresh_token_hard_expires_in"))
        .map(|s| after(now, s))
        .or_else(|| previous.and_then(|p| p.refresh_hard_expires_at));
    Ok(TokenSet {
        access_token: Secret::new(access.to_string()),
        access_expires_at: after(now, expires_in),
        refresh_token: Secret::new(refresh),
        refresh_expires_at,
        refresh_hard_expires_at,
        realm_id: previous.and_then(|p| p.realm_id.clone()),
    })
}

/// A short, non-reversible fingerprint of a refresh token (first 128 bits of SHA-256, hex),
/// so the connector can recognise the bootstrap value without storing it.
pub fn fingerprint(refresh_token: &str) -> String {
    let digest =
        Sha256::digest(format!("ml-connector/qbo_refresh_token/v1:{refresh_token}").as_bytes());
    hex::encode(&digest[..16])
}

/// What to do with a configured `qbo_refresh_token` at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootstrap {
    /// Adopt the configured token (first start, or the operator set a new one): store it,
    /// remember its fingerprint and clear any `needs_reauth` state.
    UseConfigured,
    /// Keep the (possibly rotated) token already in KV.
    KeepStored,
}

/// Applies the contract's bootstrap rule: the same configured value never overrides the
/// rotated token in KV; a different one supersedes it.
pub fn bootstrap_decision(configured: Option<&str>, stored_fingerprint: Option<&str>) -> Bootstrap {
    let Some(configured) = configured.map(str::trim).filter(|c| !c.is_empty()) else {
        return Bootstrap::KeepStored;
    };
    match stored_fingerprint {
        Some(fp) if fp == fingerprint(configured) => Bootstrap::KeepStored,
        _ => Bootstrap::UseConfigured,
    }
}

/// How long a refresh lease is held before others may take over (a crashed holder).
pub const LEASE_TTL_MS: i64 = 30_000;

const NONCE_BITS: u32 = 16;
/// Largest expiry a lease can carry (47 bits of milliseconds: about year 6400).
pub const MAX_EXPIRY_MS: i64 = (1 << (63 - NONCE_BITS)) - 1;

/// A single-flight lease for refreshing tokens across instances.
///
/// Stored as EXACTLY 8 bytes, a little-endian i64, because the key is created with Spin's
/// KV `increment(key, 0)` (atomic on every backend), and increment aborts on any other
/// value shape. `0` means free. The value packs the expiry in milliseconds (high 47 bits)
/// with 16 random bits, so two holders with the same expiry still write different values
/// and compare-and-swap can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Unix milliseconds after which the lease is free.
    pub expires_at_ms: i64,
    /// Random bits identifying the holder.
    pub nonce: u16,
}

impl Lease {
    /// Encodes a lease as the 8-byte value to compare-and-swap in.
    pub fn encode(expires_at_unix_ms: i64, nonce_bits: u16) -> [u8; 8] {
        Self {
            expires_at_ms: expires_at_unix_ms,
            nonce: nonce_bits,
        }
        .to_i64()
        .to_le_bytes()
    }

    /// The packed integer (what `increment(key, 0)` returns).
    pub fn to_i64(self) -> i64 {
        (self.expires_at_ms.clamp(1, MAX_EXPIRY_MS) << NONCE_BITS) | i64::from(self.nonce)
    }

    /// Unpacks an integer; `0` (or a negative, never written) is a free lease.
    pub fn from_i64(value: i64) -> Option<Lease> {
        if value <= 0 {
            return None;
        }
        Some(Lease {
            expires_at_ms: value >> NONCE_BITS,
            nonce: (value & 0xFFFF) as u16,
        })
    }

    /// Decodes a stored value. Anything that is not 8 bytes is `Err`: it was not written by
    /// this protocol.
    #[allow(clippy::result_unit_err)]
    pub fn decode(value: &[u8]) -> Result<Option<Lease>, ()> {
        let bytes: [u8; 8] = value.try_into().map_err(|_| ())?;
        Ok(Lease::from_i64(i64::from_le_bytes(bytes)))
    }

    /// The value a new holder writes: expiring [`LEASE_TTL_MS`] after `now`.
    pub fn acquire_value(now: DateTime<Utc>, nonce_bits: u16) -> [u8; 8] {
        Lease::encode(now.timestamp_millis() + LEASE_TTL_MS, nonce_bits)
    }

    /// The value that releases a lease.
    pub const FREE: [u8; 8] = [0; 8];
}

/// Whether a new holder may take the lease stored as `value`: free, expired, or malformed
/// (a malformed value would otherwise block refreshes forever; the caller's CAS replaces it).
pub fn lease_is_free(value: &[u8], now: DateTime<Utc>) -> bool {
    match Lease::decode(value) {
        Ok(None) | Err(()) => true,
        Ok(Some(lease)) => lease.expires_at_ms <= now.timestamp_millis(),
    }
}

/// Human-readable warnings about upcoming refresh-token expiry, for `/admin/status`.
pub fn expiry_warnings(tokens: &TokenSet, now: DateTime<Utc>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(at) = tokens.refresh_expires_at {
        if at <= now {
            out.push(format!(
                "the QuickBooks refresh token expired at {}: re-authorize at {CONNECT_PATH}",
                at.to_rfc3339()
            ));
        } else if at - now <= Duration::days(14) {
            out.push(format!(
                "the QuickBooks refresh token expires at {} ({} days left) because it has not been used: \
                 any sync refreshes it; otherwise re-authorize at {CONNECT_PATH}",
                at.to_rfc3339(),
                (at - now).num_days()
            ));
        }
    }
    if let Some(at) = tokens.refresh_hard_expires_at {
        if at <= now {
            out.push(format!(
                "the QuickBooks authorization reached its 5-year limit at {}: re-authorize at {CONNECT_PATH}",
                at.to_rfc3339()
            ));
        } else if at - now <= Duration::days(30) {
            out.push(format!(
                "the QuickBooks authorization reaches Intuit's 5-year limit at {} ({} days left): re-authorize at \
                 {CONNECT_PATH} before then",
                at.to_rfc3339(),
                (at - now).num_days()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::header_value;

    const QBO: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/quickbooks/"
    );

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{QBO}{name}")).unwrap()
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T15:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn tokens(access_expires_at: DateTime<Utc>) -> TokenSet {
        TokenSet {
            access_token: Secret::new("acc".into()),
            access_expires_at,
            refresh_token: Secret::new("ref-1".into()),
            refresh_expires_at: Some(t0() + Duration::days(100)),
            refresh_hard_expires_at: None,
            realm_id: Some("1234".into()),
        }
    }

    #[test]
    fn refresh_is_needed_without_tokens_or_within_five_minutes_of_expiry() {
        assert!(needs_refresh(&None, t0()));
        let set = Some(tokens(t0() + Duration::minutes(60)));
        assert!(!needs_refresh(&set, t0()));
        assert!(!needs_refresh(&set, t0() + Duration::minutes(54)));
        assert!(needs_refresh(&set, t0() + Duration::minutes(55)));
        assert!(needs_refresh(&set, t0() + Duration::minutes(61)));
        assert!(needs_refresh(
            &Some(TokenSet::from_refresh_token("r", None)),
            t0()
        ));
    }

    #[test]
    fn refresh_request_uses_basic_auth_and_a_form_body() {
        let req = refresh_request("https://oauth.example/", "cid", "csecret", "AB11/+=&x");
        assert_eq!(req.method, Method::Post);
        assert_eq!(req.url, "https://oauth.example/oauth2/v1/tokens/bearer");
        assert_eq!(
            header_value(&req.headers, "authorization"),
            Some("Basic Y2lkOmNzZWNyZXQ=")
        );
        assert_eq!(
            header_value(&req.headers, "content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(
            header_value(&req.headers, "accept"),
            Some("application/json")
        );
        assert_eq!(
            header_value(&req.headers, "x-include-refresh-token-hard-expires-in"),
            Some("true")
        );
        assert_eq!(
            String::from_utf8(req.body.clone()).unwrap(),
            "grant_type=refresh_token&refresh_token=AB11%2F%2B%3D%26x"
        );
        assert!(
            !format!("{req:?}").contains("AB11"),
            "Debug must not show the body"
        );
    }

    #[test]
    fn code_exchange_sends_code_and_redirect_uri() {
        let req = code_exchange_request(
            "https://o",
            "cid",
            "s",
            "c0de",
            "https://me.example/oauth/quickbooks/callback",
        );
        assert_eq!(
            String::from_utf8(req.body).unwrap(),
            "grant_type=authorization_code&code=c0de&redirect_uri=https%3A%2F%2Fme.example%2Foauth%2Fquickbooks%2Fcallback"
        );
    }

    #[test]
    fn authorize_url_carries_scope_state_and_encoded_redirect() {
        let url = authorize_url(
            "https://appcenter.intuit.com/connect/oauth2",
            "cid",
            "https://x/cb",
            "st 1",
        );
        assert_eq!(
            url,
            "https://appcenter.intuit.com/connect/oauth2?client_id=cid&response_type=code&\
             scope=com.intuit.quickbooks.accounting&redirect_uri=https%3A%2F%2Fx%2Fcb&state=st+1"
        );
    }

    #[test]
    fn sdk_refresh_response_parses_into_expiries_from_now() {
        let set = parse_token_response(
            200,
            &fixture("oauth_dotnet_sdk_success_refreshtoken_response.json"),
            t0(),
            None,
        )
        .unwrap();
        assert_eq!(set.access_expires_at, t0() + Duration::seconds(3600));
        assert_eq!(
            set.refresh_token.expose(),
            "L311478109728uVoOkDSUCl4s8FDRvjHR6kUKz0RHe3WtZQuBq"
        );
        assert_eq!(
            set.refresh_expires_at,
            Some(t0() + Duration::seconds(15_552_000))
        );
        assert_eq!(set.refresh_hard_expires_at, None);
        assert!(set.access_token.expose().starts_with("eyJlbmMi"));
    }

    #[test]
    fn expires_in_as_string_and_hard_expiry_are_accepted() {
        let body = br#"{"access_token":"a2","expires_in":"3600","refresh_token":"r2",
            "x_refresh_token_expires_in":"8726400","x_refresh_token_hard_expires_in":157680000}"#;
        let set = parse_token_response(200, body, t0(), Some(&tokens(t0()))).unwrap();
        assert_eq!(set.access_expires_at, t0() + Duration::hours(1));
        assert_eq!(
            set.refresh_hard_expires_at,
            Some(t0() + Duration::seconds(157_680_000))
        );
        assert_eq!(set.realm_id.as_deref(), Some("1234"), "realm carries over");
    }

    #[test]
    fn a_response_without_refresh_token_keeps_the_previous_one() {
        let body = br#"{"access_token":"a2","expires_in":3600}"#;
        let prev = tokens(t0());
        let set = parse_token_response(200, body, t0(), Some(&prev)).unwrap();
        assert_eq!(set.refresh_token.expose(), "ref-1");
        assert_eq!(set.refresh_expires_at, prev.refresh_expires_at);
        assert_eq!(
            parse_token_response(200, body, t0(), None).unwrap_err(),
            TokenError::NoRefreshToken
        );
    }

    #[test]
    fn invalid_grant_means_reauthorize() {
        let err = parse_token_response(400, &fixture("oauth_invalid_grant_400.json"), t0(), None)
            .unwrap_err();
        assert_eq!(err, TokenError::NeedsReauth);
        assert!(
            err.to_string()
                .contains("re-authorize at /oauth/quickbooks/connect")
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn other_token_errors_are_told_apart() {
        let e =
            parse_token_response(401, br#"{"error":"invalid_client"}"#, t0(), None).unwrap_err();
        assert_eq!(e, TokenError::InvalidClient);
        assert!(e.to_string().contains("qbo_client_secret"));
        let e = parse_token_response(
            400,
            &fixture("oauth_dotnet_sdk_failure_token_response.json"),
            t0(),
            None,
        )
        .unwrap_err();
        assert!(matches!(e, TokenError::Rejected { status: 400, .. }));
        let e = parse_token_response(503, b"<html>down</html>", t0(), None).unwrap_err();
        assert_eq!(e, TokenError::Unavailable { status: 503 });
        assert!(e.is_retryable());
        let e = parse_token_response(200, br#"{"expires_in":3600}"#, t0(), None).unwrap_err();
        assert!(matches!(e, TokenError::Malformed(_)));
    }

    #[test]
    fn debug_output_of_a_token_set_hides_tokens() {
        let text = format!("{:?}", tokens(t0()));
        assert!(!text.contains("acc\"") && !text.contains("ref-1"));
        assert!(text.contains("[redacted]"));
    }

    #[test]
    fn token_sets_round_trip_through_json_for_sealed_storage() {
        let set = tokens(t0());
        let back: TokenSet = serde_json::from_slice(&serde_json::to_vec(&set).unwrap()).unwrap();
        assert_eq!(back, set);
    }

    #[test]
    fn bootstrap_adopts_new_values_and_keeps_rotated_ones() {
        assert_eq!(
            bootstrap_decision(Some("R1"), None),
            Bootstrap::UseConfigured
        );
        let fp = fingerprint("R1");
        assert_eq!(fp.len(), 32);
        assert_ne!(fp, fingerprint("R2"));
        assert_eq!(
            bootstrap_decision(Some("R1"), Some(&fp)),
            Bootstrap::KeepStored
        );
        assert_eq!(
            bootstrap_decision(Some("R2"), Some(&fp)),
            Bootstrap::UseConfigured
        );
        assert_eq!(bootstrap_decision(None, Some(&fp)), Bootstrap::KeepStored);
        assert_eq!(bootstrap_decision(Some(""), None), Bootstrap::KeepStored);
    }

    #[test]
    fn leases_pack_into_eight_little_endian_bytes() {
        let now = t0();
        let v = Lease::acquire_value(now, 0xBEEF);
        assert_eq!(v.len(), 8);
        let lease = Lease::decode(&v).unwrap().unwrap();
        assert_eq!(
            lease,
            Lease {
                expires_at_ms: now.timestamp_millis() + LEASE_TTL_MS,
                nonce: 0xBEEF
            }
        );
        assert_eq!(Lease::from_i64(i64::from_le_bytes(v)), Some(lease));
        assert_ne!(Lease::acquire_value(now, 1), Lease::acquire_value(now, 2));
        assert_eq!(Lease::decode(&Lease::FREE), Ok(None));
        assert_eq!(Lease::decode(&0i64.to_le_bytes()), Ok(None));
        assert!(Lease::decode(b"abc").is_err());
        // Far-future expiries still fit (year ~5100); beyond the 47-bit range they saturate.
        let far = Lease::encode(100_000_000_000_000, 7);
        assert_eq!(
            Lease::decode(&far).unwrap().unwrap().expires_at_ms,
            100_000_000_000_000
        );
        let beyond = Lease::decode(&Lease::encode(i64::MAX, 7)).unwrap().unwrap();
        assert_eq!(beyond.expires_at_ms, MAX_EXPIRY_MS);
    }

    #[test]
    fn a_lease_is_free_when_zero_expired_or_malformed() {
        let now = t0();
        let held = Lease::acquire_value(now, 3);
        assert!(lease_is_free(&Lease::FREE, now));
        assert!(!lease_is_free(&held, now));
        assert!(!lease_is_free(
            &held,
            now + Duration::milliseconds(LEASE_TTL_MS - 1)
        ));
        assert!(lease_is_free(
            &held,
            now + Duration::milliseconds(LEASE_TTL_MS)
        ));
        assert!(lease_is_free(b"garbage", now));
    }

    #[test]
    fn expiry_warnings_appear_within_their_windows() {
        let mut set = tokens(t0());
        set.refresh_expires_at = Some(t0() + Duration::days(15));
        set.refresh_hard_expires_at = Some(t0() + Duration::days(31));
        assert!(expiry_warnings(&set, t0()).is_empty());
        let later = t0() + Duration::days(2);
        let w = expiry_warnings(&set, later);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("13 days left"));
        assert!(w[1].contains("5-year limit") && w[1].contains("29 days left"));
        let w = expiry_warnings(&set, t0() + Duration::days(40));
        assert!(
            w.iter()
                .all(|m| m.contains("re-authorize at /oauth/quickbooks/connect"))
        );
        assert!(w[0].contains("expired"));
    }
}
