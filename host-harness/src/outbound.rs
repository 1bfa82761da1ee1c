//! Outbound HTTP: the manifest's `allowed_outbound_hosts`, enforced in `send_request`.
//!
//! Entries follow Spin's form `scheme://host[:port]` where the scheme, the host (or a
//! `*.` prefix of it) and the port may be `*`; a missing port means the scheme's default.
//! A request to anything else is refused with `HTTP-request-denied` and a log line naming
//! the destination, before any connection is made.
//!
//! Allowed requests go through one pooled client shared by all instances, so keep-alive
//! connections are reused across requests, as Spin does by default
//! (`connection_pooling = true`).
//!
//! Every request has deadlines ([`OutboundTimeouts`]): the guest's `wasi:http` request
//! options (connect, first-byte, between-bytes) are honoured, defaults fill in what it leaves
//! unset, and a total cap bounds the whole exchange, body included. A server that stops
//! sending in the middle of a body fails the guest's read with `connection-read-timeout`
//! instead of holding the instance.

use std::sync::Arc;
use std::time::Duration;

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
        let (scheme, rest) = entry.split_once("://").ok_or_else(|| {
            anyhow!("allowed_outbound_hosts entry `{entry}` needs a scheme, e.g. https://")
        })?;
        let authority = rest.split('/').next().unwrap_or_default();
        if rest.len() > authority.len() && !rest[authority.len()..].trim_matches('/').is_empty() {
            bail!("allowed_outbound_hosts entry `{entry}` must not contain a path");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, Some(p)),
            _ => (authority, None),
        };
        let scheme = (scheme != "*").then(|| scheme.to_ascii_lowercase());
        let port = match port {
            Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| anyhow!("bad port in `{entry}`"))?,
            ),
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
        let scheme_ok = self
            .scheme
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case(scheme));
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
        AllowList {
            patterns: Arc::new(patterns),
        }
    }

    /// Whether `uri` may be called.
    pub fn allows_uri(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("https");
        let Some(host) = uri.host() else { return false };
        let Some(port) = uri.port_u16().or_else(|| default_port(scheme)) else {
            return false;
        };
        self.patterns.iter().any(|p| p.allows(scheme, host, port))
    }
}

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// The client every instance's outbound requests go through.
pub type PooledClient = hyper_util::client::legacy::Client<Connector, wasmtime_wasi_http::WasiBody>;

/// A keep-alive, connection-pooling client for http and https (webpki roots).
pub fn pooled_client() -> PooledClient {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https)
}

/// Deadlines of outbound requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundTimeouts {
    /// Connecting, when the guest sets no `connect-timeout`.
    pub connect: Duration,
    /// Waiting for the response head, when the guest sets no `first-byte-timeout`.
    pub first_byte: Duration,
    /// Between two chunks of the response body, when the guest sets no
    /// `between-bytes-timeout`.
    pub between_bytes: Duration,
    /// The whole exchange, from sending to the last byte of the body, whatever the guest asks.
    pub total: Duration,
}

impl Default for OutboundTimeouts {
    fn default() -> Self {
        OutboundTimeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(30),
            between_bytes: Duration::from_secs(30),
            total: Duration::from_secs(120),
        }
    }
}

/// The `wasi:http` hooks: forbid what the allow-list does not name; send the rest through
/// the shared pooled client, within [`OutboundTimeouts`].
#[derive(Clone)]
pub struct OutboundHooks {
    pub allow: AllowList,
    pub client: PooledClient,
    pub timeouts: OutboundTimeouts,
}

impl std::fmt::Debug for OutboundHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundHooks")
            .field("allow", &self.allow)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
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
        use wasmtime_wasi_http::Error;
        _ = fut;
        let allowed = self.allow.allows_uri(request.uri());
        let client = self.client.clone();
        let defaults = self.timeouts;
        Box::new(async move {
            use http_body_util::BodyExt;
            if !allowed {
                tracing::warn!(
                    destination = %request.uri(),
                    "refused outbound request: destination is not in allowed_outbound_hosts"
                );
                return Err(Error::HttpRequestDenied);
            }
            let started = tokio::time::Instant::now();
            let end = started + defaults.total;
            let connect = options
                .and_then(|o| o.connect_timeout)
                .unwrap_or(defaults.connect);
            let first_byte = options
                .and_then(|o| o.first_byte_timeout)
                .unwrap_or(defaults.first_byte);
            let between_bytes = options
                .and_then(|o| o.between_bytes_timeout)
                .unwrap_or(defaults.between_bytes);
            // Connecting and waiting for the first byte share one deadline: with a pooled
            // connection there may be no connect step at all.
            let head_by = (started + connect + first_byte).min(end);
            let destination = request.uri().clone();
            let response = match tokio::time::timeout_at(head_by, client.request(request)).await {
                Err(_) => {
                    tracing::debug!(%destination, "outbound request: no response head in time");
                    return Err(Error::ConnectionReadTimeout);
                }
                Ok(Err(e)) if e.is_connect() => {
                    tracing::debug!("outbound connect failed: {e}");
                    return Err(Error::ConnectionRefused);
                }
                Ok(Err(e)) => {
                    tracing::debug!("outbound request failed: {e}");
                    return Err(Error::ConnectionTerminated);
                }
                Ok(Ok(r)) => r,
            };
            let response = response.map(|body| {
                crate::deadline::TimedBody::new(
                    body.map_err(Error::Hyper),
                    end,
                    Some(between_bytes),
                )
                .boxed_unsync()
            });
            let io: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async { Ok(()) });
            Ok((response, io))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use wasmtime_wasi_http::{Error, RequestOptions};

    /// A loopback server that answers one request with `head` and `sent` bytes of a 1000-byte
    /// body (or nothing at all when `head` is empty), then keeps the connection open, silent.
    async fn stalling_server(head: &'static str, sent: usize) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            if !head.is_empty() {
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&vec![b'x'; sent]).await;
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(socket);
        });
        addr
    }

    const HALF_BODY: &str = "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n";

    fn hooks(timeouts: OutboundTimeouts) -> OutboundHooks {
        OutboundHooks {
            allow: AllowList::new(vec![HostPattern::parse("http://127.0.0.1:*").unwrap()]),
            client: pooled_client(),
            timeouts,
        }
    }

    fn get(addr: std::net::SocketAddr) -> http::Request<wasmtime_wasi_http::WasiBody> {
        let body = http_body_util::Empty::new()
            .map_err(|never: std::convert::Infallible| -> Error { match never {} })
            .boxed_unsync();
        http::Request::get(format!("http://{addr}/v3/orders/1"))
            .body(body)
            .unwrap()
    }

    /// Sends through the hooks and reads the whole body; the error of whichever step failed.
    async fn fetch(
        hooks: &mut OutboundHooks,
        addr: std::net::SocketAddr,
        options: Option<RequestOptions>,
    ) -> Result<bytes::Bytes, Error> {
        let send = hooks.send_request(get(addr), options, Box::new(async { Ok(()) }));
        let (response, _io) = Box::into_pin(send).await?;
        Ok(response.into_body().collect().await?.to_bytes())
    }

    /// Bounds a test that would otherwise hang on a regression.
    async fn finishes<T>(f: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("the request finished instead of hanging")
    }

    fn never() -> OutboundTimeouts {
        let hour = Duration::from_secs(3600);
        OutboundTimeouts {
            connect: hour,
            first_byte: hour,
            between_bytes: hour,
            total: hour,
        }
    }

    #[tokio::test]
    async fn a_body_that_stalls_midway_fails_after_the_guests_between_bytes_timeout() {
        let addr = stalling_server(HALF_BODY, 500).await;
        let options = RequestOptions {
            between_bytes_timeout: Some(Duration::from_millis(300)),
            ..RequestOptions::default()
        };
        let err = finishes(fetch(&mut hooks(never()), addr, Some(options)))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ConnectionReadTimeout), "{err:?}");
    }

    #[tokio::test]
    async fn a_body_that_stalls_midway_fails_after_the_default_when_the_guest_sets_no_timeouts() {
        let addr = stalling_server(HALF_BODY, 500).await;
        let timeouts = OutboundTimeouts {
            between_bytes: Duration::from_millis(300),
            ..never()
        };
        let err = finishes(fetch(&mut hooks(timeouts), addr, None))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ConnectionReadTimeout), "{err:?}");
    }

    #[tokio::test]
    async fn the_total_cap_ends_a_stalled_body_even_when_the_guest_allows_longer() {
        let addr = stalling_server(HALF_BODY, 500).await;
        let timeouts = OutboundTimeouts {
            total: Duration::from_millis(300),
            ..never()
        };
        let options = RequestOptions {
            between_bytes_timeout: Some(Duration::from_secs(3600)),
            ..RequestOptions::default()
        };
        let err = finishes(fetch(&mut hooks(timeouts), addr, Some(options)))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ConnectionReadTimeout), "{err:?}");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_fails_after_the_guests_first_byte_timeout() {
        let addr = stalling_server("", 0).await;
        let options = RequestOptions {
            connect_timeout: Some(Duration::from_millis(100)),
            first_byte_timeout: Some(Duration::from_millis(200)),
            between_bytes_timeout: None,
        };
        let err = finishes(fetch(&mut hooks(never()), addr, Some(options)))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ConnectionReadTimeout), "{err:?}");
    }

    #[tokio::test]
    async fn a_whole_body_within_the_deadlines_arrives_intact() {
        let addr = stalling_server(HALF_BODY, 1000).await;
        let options = RequestOptions {
            between_bytes_timeout: Some(Duration::from_secs(30)),
            ..RequestOptions::default()
        };
        let body = finishes(fetch(&mut hooks(never()), addr, Some(options)))
            .await
            .unwrap();
        assert_eq!(body.len(), 1000);
    }

    fn allows(entry: &str, url: &str) -> bool {
        AllowList::new(vec![HostPattern::parse(entry).unwrap()]).allows_uri(&url.parse().unwrap())
    }

    #[test]
    fn entries_match_like_spin() {
        assert!(allows(
            "https://api.bigcommerce.com",
            "https://api.bigcommerce.com/stores/x"
        ));
        assert!(!allows(
            "https://api.bigcommerce.com",
            "http://api.bigcommerce.com/stores/x"
        ));
        assert!(!allows(
            "https://api.bigcommerce.com",
            "https://api.bigcommerce.com:8443/x"
        ));
        assert!(allows("http://127.0.0.1:4000", "http://127.0.0.1:4000/v3"));
        assert!(!allows("http://127.0.0.1:4000", "http://127.0.0.1:4001/v3"));
        assert!(allows("http://127.0.0.1:*", "http://127.0.0.1:4001/v3"));
        assert!(allows(
            "https://*.intuit.com",
            "https://oauth.platform.intuit.com/x"
        ));
        assert!(!allows(
            "https://*.intuit.com",
            "https://intuit.com.evil.example/x"
        ));
        assert!(allows("*://*:*", "http://anything:1/"));
        assert!(HostPattern::parse("api.example.com").is_err());
        assert!(HostPattern::parse("https://api.example.com/path").is_err());
    }
}
