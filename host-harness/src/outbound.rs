//! Outbound HTTP: the manifest's `allowed_outbound_hosts`, enforced in `send_request`.
//!
//! Entries follow Spin's form `scheme://host[:port]` where the scheme, the host (or a
//! `*.` prefix of it) and the port may be `*`; a missing port means the scheme's default.
//! A request to anything else is refused with `HTTP-request-denied` and a log line naming
//! the destination, before any connection is made.

use std::sync::Arc;

use anyhow::{anyhow, bail};
use wasmtime_wasi_http::WasiHttpHooks;

/// One allowed destination pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    scheme: Option<String>,
    host: HostMatch,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    Exact(String),
    Suffix(String),
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl HostPattern {
    /// Parses an expanded entry such as `https://api.example.com` or `http://127.0.0.1:*`.
    pub fn parse(entry: &str) -> anyhow::Result<Self> {
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or_else(|| anyhow!("allowed_outbound_hosts entry `{entry}` needs a scheme, e.g. https://"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        if rest.len() > authority.len() && rest[authority.len()..].trim_matches('/').len() > 0 {
            bail!("allowed_outbound_hosts entry `{entry}` must not contain a path");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, Some(p)),
            _ => (authority, None),
        };
        let scheme = (scheme != "*").then(|| scheme.to_ascii_lowercase());
        let port = match port {
            Some("*") => None,
            Some(p) => Some(p.parse::<u16>().map_err(|_| anyhow!("bad port in `{entry}`"))?),
            None => match scheme.as_deref() {
                Some(s) => Some(default_port(s).ok_or_else(|| anyhow!("`{entry}` needs a port"))?),
                None => bail!("`{entry}`: a wildcard scheme needs an explicit port"),
            },
        };
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostMatch::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostMatch::Suffix(format!(".{suffix}"))
        } else if host.is_empty() {
            bail!("allowed_outbound_hosts entry `{entry}` has no host");
        } else {
            HostMatch::Exact(host)
        };
        Ok(HostPattern { scheme, host, port })
    }

    /// Whether a request to `scheme://host:port` is allowed by this entry.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s.eq_ignore_ascii_case(scheme));
        let host = host.to_ascii_lowercase();
        let host_ok = match &self.host {
            HostMatch::Any => true,
            HostMatch::Exact(h) => *h == host,
            HostMatch::Suffix(s) => host.ends_with(s.as_str()),
        };
        scheme_ok && host_ok && self.port.is_none_or(|p| p == port)
    }
}

/// The allow-list shared by all instances.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    patterns: Arc<Vec<HostPattern>>,
}

impl AllowList {
    pub fn new(patterns: Vec<HostPattern>) -> Self {
        AllowList { patterns: Arc::new(patterns) }
    }

    /// Whether `uri` may be called.
    pub fn allows_uri(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("https");
        let Some(host) = uri.host() else { return false };
        let Some(port) = uri.port_u16().or_else(|| default_port(scheme)) else { return false };
        self.patterns.iter().any(|p| p.allows(scheme, host, port))
    }
}

/// The `wasi:http` hooks: forbid what the allow-list does not name.
#[derive(Debug, Clone, Default)]
pub struct OutboundHooks {
    pub allow: AllowList,
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                )>,
            > + Send,
    > {
        _ = fut;
        let allowed = self.allow.allows_uri(request.uri());
        Box::new(async move {
            use http_body_util::BodyExt;
            if !allowed {
                tracing::warn!(
                    destination = %request.uri(),
                    "refused outbound request: destination is not in allowed_outbound_hosts"
                );
                return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
            }
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((res.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(entry: &str, url: &str) -> bool {
        AllowList::new(vec![HostPattern::parse(entry).unwrap()]).allows_uri(&url.parse().unwrap())
    }

    #[test]
    fn entries_match_like_spin() {
        assert!(allows("https://api.bigcommerce.com", "https://api.bigcommerce.com/stores/x"));
        assert!(!allows("https://api.bigcommerce.com", "http://api.bigcommerce.com/stores/x"));
        assert!(!allows("https://api.bigcommerce.com", "https://api.bigcommerce.com:8443/x"));
        assert!(allows("http://127.0.0.1:4000", "http://127.0.0.1:4000/v3"));
        assert!(!allows("http://127.0.0.1:4000", "http://127.0.0.1:4001/v3"));
        assert!(allows("http://127.0.0.1:*", "http://127.0.0.1:4001/v3"));
        assert!(allows("https://*.intuit.com", "https://oauth.platform.intuit.com/x"));
        assert!(!allows("https://*.intuit.com", "https://intuit.com.evil.example/x"));
        assert!(allows("*://*:*", "http://anything:1/"));
        assert!(HostPattern::parse("api.example.com").is_err());
        assert!(HostPattern::parse("https://api.example.com/path").is_err());
    }
}
