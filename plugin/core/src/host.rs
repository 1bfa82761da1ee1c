//! The port through which jobs reach the outside world.
//!
//! The component implements [`Host`] with WASI calls; tests implement it in memory with a
//! simulated clock. Keeping every effect behind this one trait is what lets the core stay
//! free of I/O while still sequencing multi-step work.

use chrono::{DateTime, Utc};

use crate::http::{HttpRequest, HttpResponse, TransportError};

/// A key-value failure reported by the host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key-value store error: {0}")]
pub struct KvError(pub String);

/// The outcome of a compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    /// The new value was written.
    Swapped,
    /// Someone else changed the key first; this is its value now.
    Conflict(Option<Vec<u8>>),
}

/// Everything a job may ask of its host.
pub trait Host {
    /// The current time. Jobs read time only through this.
    fn now(&self) -> DateTime<Utc>;

    /// Fills `buf` with cryptographically secure random bytes.
    fn random_bytes(&mut self, buf: &mut [u8]);

    /// Reads a configuration variable (`None` when not defined).
    fn config(&mut self, name: &str) -> Option<String>;

    /// Performs one outbound HTTP request.
    fn http(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError>;

    fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError>;
    fn kv_delete(&mut self, key: &str) -> Result<(), KvError>;

    /// Atomically adds `delta` to the little-endian i64 at `key` (absent = 0) and returns the
    /// sum. Only ever used on keys that hold such counters: Spin's SQLite store aborts on
    /// anything else.
    fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError>;

    /// Replaces the value at `key` with `new` only if it is still `expected`.
    ///
    /// `expected` must be `Some`: Spin's SQLite store turns a swap from "absent" into an
    /// unconditional upsert, so no protocol in the core relies on creating a key this way
    /// (keys are created with [`Host::kv_increment`] instead, which is atomic everywhere).
    fn kv_cas(&mut self, key: &str, expected: &[u8], new: &[u8]) -> Result<CasOutcome, KvError>;

    /// Blocks for a short while (used only while waiting for another instance's lease).
    fn sleep_ms(&mut self, ms: u64);

    /// Writes a diagnostic line to the host's log. Never pass credentials.
    fn log(&mut self, level: LogLevel, message: &str);
}

/// Inside `impl Host for Wrapper`: the methods a wrapper around `self.inner: &mut dyn Host`
/// passes straight through, i.e. all but `http` and `sleep_ms`, which wrappers exist to change
/// (and write themselves).
macro_rules! pass_through_to_inner {
    () => {
        fn now(&self) -> chrono::DateTime<chrono::Utc> {
            self.inner.now()
        }

        fn random_bytes(&mut self, buf: &mut [u8]) {
            self.inner.random_bytes(buf)
        }

        fn config(&mut self, name: &str) -> Option<String> {
            self.inner.config(name)
        }

        fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, $crate::host::KvError> {
            self.inner.kv_get(key)
        }

        fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), $crate::host::KvError> {
            self.inner.kv_set(key, value)
        }

        fn kv_delete(&mut self, key: &str) -> Result<(), $crate::host::KvError> {
            self.inner.kv_delete(key)
        }

        fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, $crate::host::KvError> {
            self.inner.kv_increment(key, delta)
        }

        fn kv_cas(
            &mut self,
            key: &str,
            expected: &[u8],
            new: &[u8],
        ) -> Result<$crate::host::CasOutcome, $crate::host::KvError> {
            self.inner.kv_cas(key, expected, new)
        }

        fn log(&mut self, level: $crate::host::LogLevel, message: &str) {
            self.inner.log(level, message)
        }
    };
}
pub(crate) use pass_through_to_inner;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}
