//! The connector's variables (CONTRACT §2), read through the host and validated once per request.

use crate::host::Host;

/// Defaults from the contract.
pub const DEFAULT_BIGCOMMERCE_API_BASE: &str = "https://api.bigcommerce.com";
pub const DEFAULT_QBO_API_BASE: &str = "https://quickbooks.api.intuit.com";
pub const DEFAULT_QBO_OAUTH_BASE: &str = "https://oauth.platform.intuit.com";
pub const DEFAULT_QBO_AUTHORIZE_URL: &str = "https://appcenter.intuit.com/connect/oauth2";
pub const DEFAULT_RETRY_BASE_SECONDS: u64 = 60;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
pub const DEFAULT_SWEEP_INTERVAL_SECONDS: u64 = 300;

/// A variable that is required but has no value, or has a value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("variable `{name}` is not set: set it in spin.toml or as SPIN_VARIABLE_{upper}")]
    Missing { name: &'static str, upper: String },
    #[error("variable `{name}` is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl SettingsError {
    fn missing(name: &'static str) -> Self {
        SettingsError::Missing {
            name,
            upper: name.to_ascii_uppercase(),
        }
    }
}

/// The secret variables (CONTRACT §2). Their values are used as given, except that trailing
/// whitespace is dropped: a secret mounted from a file usually ends in a newline, and keeping
/// it would make every comparison fail (401 everywhere) without saying why.
pub const SECRET_VARIABLES: &[&str] = &[
    "bigcommerce_access_token",
    "bigcommerce_webhook_secret",
    "bigcommerce_client_secret",
    "qbo_client_secret",
    "qbo_refresh_token",
    "encryption_key",
    "encryption_key_previous",
    "admin_token",
];

/// Reads a variable, treating an empty value as unset (Spin variables cannot be "absent" once
/// declared). Secret variables lose their trailing whitespace (see [`SECRET_VARIABLES`]).
pub fn optional(host: &mut dyn Host, name: &str) -> Option<String> {
    let value = host.config(name).filter(|v| !v.trim().is_empty())?;
    if SECRET_VARIABLES.contains(&name) {
        Some(value.trim_end().to_string())
    } else {
        Some(value)
    }
}

/// Reads a required variable.
pub fn required(host: &mut dyn Host, name: &'static str) -> Result<String, SettingsError> {
    optional(host, name).ok_or_else(|| SettingsError::missing(name))
}

fn number<T: std::str::FromStr>(
    host: &mut dyn Host,
    name: &'static str,
    default: T,
) -> Result<T, SettingsError> {
    match optional(host, name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| SettingsError::Invalid {
            name,
            reason: format!("`{v}` is not a whole number"),
        }),
    }
}

/// Retry knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    pub base_seconds: u64,
    pub max_attempts: u32,
}

impl RetrySettings {
    pub fn read(host: &mut dyn Host) -> Result<Self, SettingsError> {
        let base_seconds = number(host, "retry_base_seconds", DEFAULT_RETRY_BASE_SECONDS)?;
        let max_attempts = number(host, "max_attempts", DEFAULT_MAX_ATTEMPTS)?;
        if max_attempts == 0 {
            return Err(SettingsError::Invalid {
                name: "max_attempts",
                reason: "must be at least 1".into(),
            });
        }
        Ok(RetrySettings {
            base_seconds,
            max_attempts,
        })
    }
}

/// How to reach BigCommerce.
#[derive(Clone, PartialEq, Eq)]
pub struct BigCommerceSettings {
    pub api_base: String,
    pub store_hash: String,
    pub access_token: String,
}

impl std::fmt::Debug for BigCommerceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigCommerceSettings")
            .field("api_base", &self.api_base)
            .field("store_hash", &self.store_hash)
            .field("access_token", &"[redacted]")
            .finish()
    }
}

impl BigCommerceSettings {
    pub fn read(host: &mut dyn Host) -> Result<Self, SettingsError> {
        Ok(BigCommerceSettings {
            api_base: trim_base(
                optional(host, "bigcommerce_api_base")
                    .unwrap_or_else(|| DEFAULT_BIGCOMMERCE_API_BASE.into()),
            ),
            store_hash: required(host, "bigcommerce_store_hash")?,
            access_token: required(host, "bigcommerce_access_token")?,
        })
    }
}

/// How to reach QuickBooks Online.
#[derive(Clone, PartialEq, Eq)]
pub struct QuickBooksSettings {
    pub api_base: String,
    pub oauth_base: String,
    pub authorize_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub realm_id: Option<String>,
    pub bootstrap_refresh_token: Option<String>,
    pub redirect_uri: Option<String>,
}

impl std::fmt::Debug for QuickBooksSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuickBooksSettings")
            .field("api_base", &self.api_base)
            .field("client_id", &self.client_id)
            .field("realm_id", &self.realm_id)
            .finish_non_exhaustive()
    }
}

impl QuickBooksSettings {
    pub fn read(host: &mut dyn Host) -> Result<Self, SettingsError> {
        Ok(QuickBooksSettings {
            api_base: trim_base(
                optional(host, "qbo_api_base").unwrap_or_else(|| DEFAULT_QBO_API_BASE.into()),
            ),
            oauth_base: trim_base(
                optional(host, "qbo_oauth_base").unwrap_or_else(|| DEFAULT_QBO_OAUTH_BASE.into()),
            ),
            authorize_url: optional(host, "qbo_authorize_url")
                .unwrap_or_else(|| DEFAULT_QBO_AUTHORIZE_URL.into()),
            client_id: required(host, "qbo_client_id")?,
            client_secret: required(host, "qbo_client_secret")?,
            realm_id: optional(host, "qbo_realm_id"),
            bootstrap_refresh_token: optional(host, "qbo_refresh_token"),
            redirect_uri: optional(host, "qbo_redirect_uri"),
        })
    }
}

fn trim_base(s: String) -> String {
    s.trim().trim_end_matches('/').to_string()
}

/// `sweep_interval_seconds`: how often retry-due also sweeps for changes no webhook announced
/// (`None` = the sweep is off, the value `0`).
pub fn sweep_interval(host: &mut dyn Host) -> Result<Option<u64>, SettingsError> {
    let secs = number(
        host,
        "sweep_interval_seconds",
        DEFAULT_SWEEP_INTERVAL_SECONDS,
    )?;
    Ok((secs > 0).then_some(secs))
}

/// `qbo_pacing`: whether the connector keeps itself inside QuickBooks' per-minute limit (`on`,
/// the default). `off` is for a QuickBooks stand-in without limits (a benchmark of the
/// connector's own overhead), never for a real company: the 10-at-a-time slots and the wait
/// queue stay, and a 429 is still honoured.
pub fn qbo_pacing(host: &mut dyn Host) -> Result<bool, SettingsError> {
    match optional(host, "qbo_pacing").as_deref().map(str::trim) {
        None | Some("") | Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(other) => Err(SettingsError::Invalid {
            name: "qbo_pacing",
            reason: format!("`{other}` is neither `on` nor `off`"),
        }),
    }
}

/// `public_base_url`, checked: an absolute `https://` URL (plain `http://` only for a loopback
/// host, for local runs), without query or fragment; returned without a trailing slash.
pub fn public_base_url(host: &mut dyn Host) -> Result<String, SettingsError> {
    let raw = optional(host, "public_base_url").ok_or(SettingsError::Invalid {
        name: "public_base_url",
        reason: "it is not set: set it to the connector's public https address (for example \
                 https://connector.example.com), the one BigCommerce can reach"
            .into(),
    })?;
    check_public_base_url(raw.trim()).map_err(|reason| SettingsError::Invalid {
        name: "public_base_url",
        reason,
    })
}

/// The checks of [`public_base_url`] on a value.
pub fn check_public_base_url(url: &str) -> Result<String, String> {
    let trimmed = url.trim_end_matches('/');
    let (scheme, rest) = trimmed
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not an absolute URL: write it as https://host"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    if host.is_empty() || authority.contains('@') {
        return Err(format!(
            "`{url}` has no host name: write it as https://host"
        ));
    }
    if rest.contains('?') || rest.contains('#') {
        return Err(format!(
            "`{url}` has a query or fragment: give only the base address"
        ));
    }
    let loopback = host == "localhost" || host == "::1" || host.starts_with("127.");
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(trimmed.to_string()),
        "http" if loopback => Ok(trimmed.to_string()),
        "http" => Err(format!(
            "`{url}` is plain http: BigCommerce delivers webhooks only over https (port 443); \
             use the https address (http is allowed only for localhost)"
        )),
        other => Err(format!("`{url}` uses `{other}`: use https")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_base_url_must_be_https_except_on_loopback() {
        assert_eq!(
            check_public_base_url("https://connector.example.com/").as_deref(),
            Ok("https://connector.example.com")
        );
        assert!(check_public_base_url("http://127.0.0.1:3000").is_ok());
        assert!(check_public_base_url("http://localhost:3000").is_ok());
        assert!(check_public_base_url("http://[::1]:3000").is_ok());
        let plain = check_public_base_url("http://connector.example.com").unwrap_err();
        assert!(plain.contains("https"), "{plain}");
        assert!(check_public_base_url("connector.example.com").is_err());
        assert!(check_public_base_url("https://").is_err());
        assert!(check_public_base_url("https://x.example?a=1").is_err());
        assert!(check_public_base_url("ftp://x.example").is_err());
    }
}
