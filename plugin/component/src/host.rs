//! [`ml_core::host::Host`] over WASI: wasi:http for outbound calls, wasi:keyvalue for state,
//! wasi:config for variables, wasi:clocks and wasi:random for time and randomness.

use chrono::{DateTime, Utc};
use ml_core::host::{CasOutcome, Host, KvError, LogLevel};
use ml_core::http::{HttpRequest, HttpResponse, TransportError};
use wasi::clocks::monotonic_clock;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasi::io::poll::poll;

use crate::bindings::wasi::config::store as config;
use crate::bindings::wasi::keyvalue::{atomics, batch, store};

/// The label Spin always provides (ARCHITECTURE decision 4).
const BUCKET: &str = "default";
/// Upstream calls that take longer than these are timeouts (retried later). They come from
/// the core, whose leases are sized above them: the whole request, response body included, is
/// cut off at `UPSTREAM_DEADLINE_MS` by this adapter itself, whatever the host honours.
const MS: u64 = 1_000_000;
const CONNECT_TIMEOUT_NS: u64 = ml_core::http::UPSTREAM_CONNECT_TIMEOUT_MS * MS;
const FIRST_BYTE_TIMEOUT_NS: u64 = ml_core::http::UPSTREAM_FIRST_BYTE_TIMEOUT_MS * MS;
const BETWEEN_BYTES_TIMEOUT_NS: u64 = ml_core::http::UPSTREAM_BETWEEN_BYTES_TIMEOUT_MS * MS;
const DEADLINE_NS: u64 = ml_core::http::UPSTREAM_DEADLINE_MS * MS;
/// Upstream responses larger than this are cut off (an order is a few KiB).
const MAX_UPSTREAM_BODY: usize = 4 << 20;

/// The WASI-backed host. The bucket is opened lazily, once per request.
pub struct WasiHost {
    bucket: Option<store::Bucket>,
    /// `get-many` failed once in this instance: every later read of many keys is made key by
    /// key (see [`Host::kv_get_many`] below).
    batch_failed: bool,
}

impl WasiHost {
    pub fn new() -> Self {
        WasiHost {
            bucket: None,
            batch_failed: false,
        }
    }

    fn bucket(&mut self) -> Result<&store::Bucket, KvError> {
        if self.bucket.is_none() {
            let b = store::open(BUCKET)
                .map_err(|e| KvError(format!("cannot open key-value store `{BUCKET}`: {e:?}")))?;
            self.bucket = Some(b);
        }
        Ok(self.bucket.as_ref().expect("opened above"))
    }
}

fn kv_err(e: store::Error) -> KvError {
    KvError(match e {
        store::Error::NoSuchStore => "no such key-value store".to_string(),
        store::Error::AccessDenied => "access to the key-value store was denied".to_string(),
        store::Error::Other(m) => m,
    })
}

/// Reads up to `limit` bytes of an upstream response body, giving up at `deadline`
/// (monotonic-clock nanoseconds).
fn read_body_until(
    body: IncomingBody,
    limit: usize,
    deadline: u64,
) -> Result<Vec<u8>, TransportError> {
    let stream = body
        .stream()
        .map_err(|()| TransportError::Other("body stream unavailable".into()))?;
    let mut out = Vec::new();
    let mut timed_out = false;
    while out.len() < limit {
        let ready = {
            let data = stream.subscribe();
            let timer = monotonic_clock::subscribe_instant(deadline);
            poll(&[&data, &timer])
        };
        if !ready.contains(&0) {
            timed_out = true;
            break;
        }
        let want = (limit - out.len()).min(64 * 1024) as u64;
        match stream.read(want) {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(wasi::io::streams::StreamError::LastOperationFailed(e)) => {
                return Err(TransportError::Other(e.to_debug_string()));
            }
        }
    }
    drop(stream);
    drop(body);
    if timed_out {
        return Err(TransportError::Timeout);
    }
    Ok(out)
}

/// Why a body could not be read.
pub struct ReadError {
    /// The host gave up waiting for the rest of the body (a deadline passed).
    pub timed_out: bool,
    pub message: String,
}

/// Reads up to `limit` bytes of an incoming body.
pub fn read_body(body: IncomingBody, limit: usize) -> Result<Vec<u8>, ReadError> {
    let stream = body.stream().map_err(|()| ReadError {
        timed_out: false,
        message: "body stream unavailable".to_string(),
    })?;
    let mut out = Vec::new();
    while out.len() < limit {
        let want = (limit - out.len()).min(64 * 1024) as u64;
        match stream.blocking_read(want) {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(wasi::io::streams::StreamError::LastOperationFailed(e)) => {
                // A host may fail a body stream with an error that carries no `error-code`
                // (wasmtime's does): then its text is all there is to tell a timeout by.
                return Err(match wasi::http::types::http_error_code(&e) {
                    Some(code) => ReadError {
                        timed_out: matches!(transport_error(&code), TransportError::Timeout),
                        message: format!("{code:?}"),
                    },
                    None => {
                        let message = e.to_debug_string();
                        let lower = message.to_ascii_lowercase();
                        ReadError {
                            timed_out: lower.contains("timeout") || lower.contains("timed out"),
                            message,
                        }
                    }
                });
            }
        }
    }
    drop(stream);
    drop(body);
    Ok(out)
}

fn transport_error(code: &ErrorCode) -> TransportError {
    match code {
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => TransportError::Timeout,
        ErrorCode::ConnectionRefused
        | ErrorCode::DestinationNotFound
        | ErrorCode::DestinationUnavailable
        | ErrorCode::DnsTimeout
        | ErrorCode::DnsError(_)
        | ErrorCode::ConnectionTerminated => TransportError::Connect(format!("{code:?}")),
        ErrorCode::HttpRequestDenied => {
            TransportError::Refused("the destination is not in allowed_outbound_hosts".into())
        }
        other => TransportError::Other(format!("{other:?}")),
    }
}

fn send(request: &HttpRequest) -> Result<HttpResponse, TransportError> {
    let deadline = monotonic_clock::now().saturating_add(DEADLINE_NS);
    let url = url_parts(&request.url)
        .ok_or_else(|| TransportError::Other(format!("bad URL {}", request.url)))?;
    let headers = Fields::new();
    for (k, v) in &request.headers {
        headers
            .append(k, v.as_bytes())
            .map_err(|e| TransportError::Other(format!("header {k}: {e:?}")))?;
    }
    if !request.body.is_empty() {
        let _ = headers.append("content-length", request.body.len().to_string().as_bytes());
    }
    let out = OutgoingRequest::new(headers);
    let method = match request.method {
        ml_core::http::Method::Get => Method::Get,
        ml_core::http::Method::Post => Method::Post,
        ml_core::http::Method::Put => Method::Put,
        ml_core::http::Method::Delete => Method::Delete,
    };
    let bad = |what: &str| TransportError::Other(format!("invalid {what} in {}", request.url));
    out.set_method(&method).map_err(|()| bad("method"))?;
    out.set_scheme(Some(&url.scheme))
        .map_err(|()| bad("scheme"))?;
    out.set_authority(Some(&url.authority))
        .map_err(|()| bad("authority"))?;
    out.set_path_with_query(Some(&url.path_and_query))
        .map_err(|()| bad("path"))?;
    let body = out.body().map_err(|()| bad("body"))?;
    let options = RequestOptions::new();
    let _ = options.set_connect_timeout(Some(CONNECT_TIMEOUT_NS));
    let _ = options.set_first_byte_timeout(Some(FIRST_BYTE_TIMEOUT_NS));
    let _ = options.set_between_bytes_timeout(Some(BETWEEN_BYTES_TIMEOUT_NS));
    let pending = wasi::http::outgoing_handler::handle(out, Some(options))
        .map_err(|e| transport_error(&e))?;
    if !request.body.is_empty() {
        let stream = body.write().map_err(|()| bad("body stream"))?;
        for chunk in request.body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| TransportError::Other(format!("writing request body: {e:?}")))?;
        }
        drop(stream);
    }
    OutgoingBody::finish(body, None).map_err(|e| transport_error(&e))?;
    let answered = {
        let response = pending.subscribe();
        let timer = monotonic_clock::subscribe_instant(deadline);
        poll(&[&response, &timer]).contains(&0)
    };
    if !answered {
        // Dropping the pending response abandons the request.
        return Err(TransportError::Timeout);
    }
    let response = match pending.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(e))) => return Err(transport_error(&e)),
        Some(Err(())) | None => return Err(TransportError::Other("response already taken".into())),
    };
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let body = match response.consume() {
        Ok(b) => read_body_until(b, MAX_UPSTREAM_BODY, deadline)?,
        Err(()) => Vec::new(),
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

struct UrlParts {
    scheme: Scheme,
    authority: String,
    path_and_query: String,
}

fn url_parts(url: &str) -> Option<UrlParts> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => match rest.find('?') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        },
    };
    let path_and_query = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    Some(UrlParts {
        scheme,
        authority: authority.to_string(),
        path_and_query,
    })
}

impl Host for WasiHost {
    fn now(&self) -> DateTime<Utc> {
        let t = wasi::clocks::wall_clock::now();
        DateTime::from_timestamp(t.seconds as i64, t.nanoseconds).unwrap_or_default()
    }

    fn random_bytes(&mut self, buf: &mut [u8]) {
        let bytes = wasi::random::random::get_random_bytes(buf.len() as u64);
        buf.copy_from_slice(&bytes[..buf.len()]);
    }

    fn config(&mut self, name: &str) -> Option<String> {
        match config::get(name) {
            Ok(v) => v,
            Err(e) => {
                // Spin reports a required variable without a value as an upstream error: for
                // the core that is "not set", and the core's message names the variable.
                let msg = match e {
                    config::Error::Upstream(m) | config::Error::Io(m) => m,
                };
                eprintln!("ml-connector: variable `{name}` is unavailable: {msg}");
                None
            }
        }
    }

    fn http(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        send(request)
    }

    fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.bucket()?.get(key).map_err(kv_err)
    }

    fn kv_get_many(&mut self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let owned: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let found = if self.batch_failed {
            None
        } else {
            match batch::get_many(self.bucket()?, &owned) {
                Ok(found) => Some(found),
                Err(e) => {
                    // Some stores fail `get-many` where `get` works (Spin's Redis store sends
                    // it as `KEYS`, which takes one argument): the keys are read one by one.
                    self.batch_failed = true;
                    eprintln!(
                        "ml-connector Warn: reading several keys at once failed ({}); reading \
                         them one by one",
                        kv_err(e)
                    );
                    None
                }
            }
        };
        let Some(found) = found else {
            return keys.iter().map(|k| self.kv_get(k)).collect();
        };
        // Entries are matched by key, not by position: Spin's SQLite store answers only the
        // keys it holds, in no particular order, and each key once. A key left out is absent.
        let by_key: std::collections::HashMap<String, Option<Vec<u8>>> =
            found.into_iter().collect();
        Ok(keys
            .iter()
            .map(|k| by_key.get(*k).cloned().flatten())
            .collect())
    }

    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.bucket()?.set(key, value).map_err(kv_err)
    }

    fn kv_set_many(&mut self, entries: &[(&str, &[u8])]) -> Result<(), KvError> {
        if entries.is_empty() {
            return Ok(());
        }
        if !self.batch_failed {
            let owned: Vec<(String, Vec<u8>)> = entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect();
            if batch::set_many(self.bucket()?, &owned).is_ok() {
                return Ok(());
            }
        }
        // A store that cannot write many keys at once may still write them one by one.
        entries.iter().try_for_each(|(k, v)| self.kv_set(k, v))
    }

    fn kv_delete(&mut self, key: &str) -> Result<(), KvError> {
        self.bucket()?.delete(key).map_err(kv_err)
    }

    fn kv_delete_many(&mut self, keys: &[&str]) -> Result<(), KvError> {
        if keys.is_empty() {
            return Ok(());
        }
        if !self.batch_failed {
            let owned: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            if batch::delete_many(self.bucket()?, &owned).is_ok() {
                return Ok(());
            }
        }
        // A store that cannot delete many keys at once may still delete them one by one.
        keys.iter().try_for_each(|k| self.kv_delete(k))
    }

    fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        let bucket = self.bucket()?;
        atomics::increment(bucket, key, delta).map_err(kv_err)
    }

    fn kv_cas(&mut self, key: &str, expected: &[u8], new: &[u8]) -> Result<CasOutcome, KvError> {
        let bucket = self.bucket()?;
        let cas = atomics::Cas::new(bucket, key).map_err(kv_err)?;
        let current = cas.current().map_err(kv_err)?;
        if current.as_deref() != Some(expected) {
            return Ok(CasOutcome::Conflict(current));
        }
        match atomics::swap(cas, new) {
            Ok(()) => Ok(CasOutcome::Swapped),
            Err(atomics::CasError::CasFailed(fresh)) => {
                Ok(CasOutcome::Conflict(fresh.current().map_err(kv_err)?))
            }
            Err(atomics::CasError::StoreError(e)) => Err(kv_err(e)),
        }
    }

    fn sleep_ms(&mut self, ms: u64) {
        wasi::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        eprintln!("ml-connector {level:?}: {message}");
    }
}
