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

    /// The values at `keys`, in their order, read in one round trip where the host can
    /// (`wasi:keyvalue/batch`'s `get-many`). Not a snapshot: each key is read as by
    /// [`Host::kv_get`]. Worth it only where several keys are needed at the same moment.
    fn kv_get_many(&mut self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        keys.iter().map(|k| self.kv_get(k)).collect()
    }

    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError>;

    /// Writes every `(key, value)` of `entries` in one round trip where the host can
    /// (`wasi:keyvalue/batch`'s `set-many`). Not atomic: as if each were written by
    /// [`Host::kv_set`], in order (a failure may leave the earlier ones written).
    fn kv_set_many(&mut self, entries: &[(&str, &[u8])]) -> Result<(), KvError> {
        entries.iter().try_for_each(|(k, v)| self.kv_set(k, v))
    }

    fn kv_delete(&mut self, key: &str) -> Result<(), KvError>;

    /// Deletes every key of `keys` in one round trip where the host can
    /// (`wasi:keyvalue/batch`'s `delete-many`). Not atomic: as if each were deleted by
    /// [`Host::kv_delete`].
    fn kv_delete_many(&mut self, keys: &[&str]) -> Result<(), KvError> {
        keys.iter().try_for_each(|k| self.kv_delete(k))
    }

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

        fn kv_get_many(
            &mut self,
            keys: &[&str],
        ) -> Result<Vec<Option<Vec<u8>>>, $crate::host::KvError> {
            self.inner.kv_get_many(keys)
        }

        fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), $crate::host::KvError> {
            self.inner.kv_set(key, value)
        }

        fn kv_set_many(&mut self, entries: &[(&str, &[u8])]) -> Result<(), $crate::host::KvError> {
            self.inner.kv_set_many(entries)
        }

        fn kv_delete(&mut self, key: &str) -> Result<(), $crate::host::KvError> {
            self.inner.kv_delete(key)
        }

        fn kv_delete_many(&mut self, keys: &[&str]) -> Result<(), $crate::host::KvError> {
            self.inner.kv_delete_many(keys)
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

/// A host that has read a few keys ahead, in one round trip ([`Host::kv_get_many`]), for a
/// step that is about to read them one by one: each key's first read is answered from what
/// was read ahead, every later read goes to the store. What was read ahead is good only
/// until the step talks to the outside or waits: the first request or sleep drops all of
/// it, and a write to a key drops that key. So an answer is never older than the key-value
/// calls made since the read ahead, which a plain read could not tell apart from the store
/// changing just after it.
pub struct Prefetched<'h> {
    inner: &'h mut dyn Host,
    ready: std::collections::HashMap<String, Option<Vec<u8>>>,
}

impl<'h> Prefetched<'h> {
    /// Reads `keys` ahead. A failed read ahead is not an error: every read then goes to the
    /// store, which reports the failure where it matters.
    pub fn new<K: AsRef<str>>(inner: &'h mut dyn Host, keys: &[K]) -> Self {
        let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        let ready = match inner.kv_get_many(&keys) {
            Ok(values) => keys.iter().map(|k| k.to_string()).zip(values).collect(),
            Err(_) => std::collections::HashMap::new(),
        };
        Prefetched { inner, ready }
    }

    /// Whether `key` was read ahead and not yet used (for tests).
    pub fn holds(&self, key: &str) -> bool {
        self.ready.contains_key(key)
    }
}

impl Host for Prefetched<'_> {
    fn now(&self) -> DateTime<Utc> {
        self.inner.now()
    }

    fn random_bytes(&mut self, buf: &mut [u8]) {
        self.inner.random_bytes(buf)
    }

    fn config(&mut self, name: &str) -> Option<String> {
        self.inner.config(name)
    }

    fn http(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        self.ready.clear();
        self.inner.http(request)
    }

    fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        match self.ready.remove(key) {
            Some(value) => Ok(value),
            None => self.inner.kv_get(key),
        }
    }

    fn kv_get_many(&mut self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        // Answered from what was read ahead only when every key was (each once, as `kv_get`).
        let all_ready = keys
            .iter()
            .enumerate()
            .all(|(i, k)| self.ready.contains_key(*k) && !keys[..i].contains(k));
        if all_ready {
            return Ok(keys.iter().filter_map(|k| self.ready.remove(*k)).collect());
        }
        for k in keys {
            self.ready.remove(*k);
        }
        self.inner.kv_get_many(keys)
    }

    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.ready.remove(key);
        self.inner.kv_set(key, value)
    }

    fn kv_set_many(&mut self, entries: &[(&str, &[u8])]) -> Result<(), KvError> {
        for (k, _) in entries {
            self.ready.remove(*k);
        }
        self.inner.kv_set_many(entries)
    }

    fn kv_delete(&mut self, key: &str) -> Result<(), KvError> {
        self.ready.remove(key);
        self.inner.kv_delete(key)
    }

    fn kv_delete_many(&mut self, keys: &[&str]) -> Result<(), KvError> {
        for k in keys {
            self.ready.remove(*k);
        }
        self.inner.kv_delete_many(keys)
    }

    fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.ready.remove(key);
        self.inner.kv_increment(key, delta)
    }

    fn kv_cas(&mut self, key: &str, expected: &[u8], new: &[u8]) -> Result<CasOutcome, KvError> {
        self.ready.remove(key);
        self.inner.kv_cas(key, expected, new)
    }

    fn sleep_ms(&mut self, ms: u64) {
        self.ready.clear();
        self.inner.sleep_ms(ms)
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        self.inner.log(level, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;
    use crate::testing::FakeHost;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_key_read_ahead_answers_its_first_read_only_and_nothing_survives_a_request_or_a_write() {
        let mut h = FakeHost::new(t0());
        h.route("http://up.test", |_| Ok(HttpResponse::new(200, "ok")));
        for k in ["a", "b", "c", "d"] {
            h.kv_set(k, k.as_bytes()).unwrap();
        }
        let mut p = Prefetched::new(&mut h, &["a", "b", "c", "missing"]);
        // Another instance changes `a` after the read ahead: the first read gives what was
        // read ahead (as a plain read a moment earlier would), the next one the store's.
        p.inner.kv_set("a", b"A2").unwrap();
        assert_eq!(p.kv_get("a").unwrap().as_deref(), Some(&b"a"[..]));
        assert_eq!(p.kv_get("a").unwrap().as_deref(), Some(&b"A2"[..]));
        assert_eq!(p.kv_get("missing").unwrap(), None);
        assert!(!p.holds("missing"));
        // A write through it drops the key.
        p.kv_set("b", b"B2").unwrap();
        assert_eq!(p.kv_get("b").unwrap().as_deref(), Some(&b"B2"[..]));
        // A request drops everything.
        assert!(p.holds("c"));
        p.http(&HttpRequest::new(Method::Get, "http://up.test/x"))
            .unwrap();
        assert!(!p.holds("c"));
        p.inner.kv_set("c", b"C2").unwrap();
        assert_eq!(p.kv_get("c").unwrap().as_deref(), Some(&b"C2"[..]));
        // A key not read ahead goes to the store.
        assert_eq!(p.kv_get("d").unwrap().as_deref(), Some(&b"d"[..]));
    }
}
