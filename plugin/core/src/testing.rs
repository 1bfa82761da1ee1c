//! An in-memory [`Host`] for deterministic tests of jobs: a simulated clock that only moves
//! when told to (or when a job sleeps), KV with real compare-and-swap, canned HTTP
//! responses by route, a request log, and a seeded random source.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, Utc};

use crate::host::{CasOutcome, Host, KvError, LogLevel};
use crate::http::{HttpRequest, HttpResponse, TransportError};

type Responder = Box<dyn FnMut(&HttpRequest) -> Result<HttpResponse, TransportError>>;
/// Something the rest of the world does at a chosen moment (another instance writing, …).
type Hook = Box<dyn FnMut(&mut FakeHost)>;

/// A scripted host.
pub struct FakeHost {
    pub now: DateTime<Utc>,
    pub kv: BTreeMap<String, Vec<u8>>,
    pub config: BTreeMap<String, String>,
    /// Every request sent, in order.
    pub requests: Vec<HttpRequest>,
    pub logs: Vec<(LogLevel, String)>,
    routes: Vec<(String, Responder)>,
    queued: VecDeque<(String, Result<HttpResponse, TransportError>)>,
    seed: u64,
    sleep_hook: Option<Hook>,
    get_hooks: Vec<(String, Option<Hook>)>,
}

impl FakeHost {
    /// A host at `now` with no configuration.
    pub fn new(now: DateTime<Utc>) -> Self {
        FakeHost {
            now,
            kv: BTreeMap::new(),
            config: BTreeMap::new(),
            requests: Vec::new(),
            logs: Vec::new(),
            routes: Vec::new(),
            queued: VecDeque::new(),
            seed: 0x9E37_79B9_7F4A_7C15,
            sleep_hook: None,
            get_hooks: Vec::new(),
        }
    }

    /// Runs `hook` after every sleep (what happens elsewhere while a job waits).
    pub fn on_sleep(&mut self, hook: impl FnMut(&mut FakeHost) + 'static) -> &mut Self {
        self.sleep_hook = Some(Box::new(hook));
        self
    }

    /// Runs `hook` right after every read of `key` (another instance writing just after this
    /// one read). Hooks do not fire while a hook runs.
    pub fn after_get(&mut self, key: &str, hook: impl FnMut(&mut FakeHost) + 'static) -> &mut Self {
        self.get_hooks.push((key.to_string(), Some(Box::new(hook))));
        self
    }

    /// Sets a configuration variable.
    pub fn set_config(&mut self, name: &str, value: &str) -> &mut Self {
        self.config.insert(name.to_string(), value.to_string());
        self
    }

    /// Answers every request whose URL contains `needle` (and whose method matches, when the
    /// needle starts with `"GET "`/`"POST "`…) with `respond`. Later routes win.
    pub fn route(
        &mut self,
        needle: &str,
        respond: impl FnMut(&HttpRequest) -> Result<HttpResponse, TransportError> + 'static,
    ) -> &mut Self {
        self.routes
            .insert(0, (needle.to_string(), Box::new(respond)));
        self
    }

    /// Answers the next request matching `needle` with `response`, once, before any route.
    pub fn once(
        &mut self,
        needle: &str,
        response: Result<HttpResponse, TransportError>,
    ) -> &mut Self {
        self.queued.push_back((needle.to_string(), response));
        self
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Requests whose URL contains `needle`.
    pub fn calls_to(&self, needle: &str) -> usize {
        self.requests.iter().filter(|r| matches(needle, r)).count()
    }
}

fn matches(needle: &str, r: &HttpRequest) -> bool {
    match needle.split_once(' ') {
        Some((method, rest)) if method.chars().all(|c| c.is_ascii_uppercase()) => {
            r.method.as_str() == method && r.url.contains(rest)
        }
        _ => r.url.contains(needle),
    }
}

impl Host for FakeHost {
    fn now(&self) -> DateTime<Utc> {
        self.now
    }

    fn random_bytes(&mut self, buf: &mut [u8]) {
        for b in buf.iter_mut() {
            // xorshift64*: deterministic, good enough for nonces in tests.
            self.seed ^= self.seed >> 12;
            self.seed ^= self.seed << 25;
            self.seed ^= self.seed >> 27;
            *b = (self.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8;
        }
    }

    fn config(&mut self, name: &str) -> Option<String> {
        self.config.get(name).cloned()
    }

    fn http(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        self.requests.push(request.clone());
        if let Some(pos) = self.queued.iter().position(|(n, _)| matches(n, request)) {
            return self
                .queued
                .remove(pos)
                .map(|(_, r)| r)
                .unwrap_or(Err(TransportError::Other("gone".into())));
        }
        for (needle, respond) in self.routes.iter_mut() {
            if matches(needle, request) {
                return respond(request);
            }
        }
        panic!(
            "FakeHost: unexpected request {} {}",
            request.method.as_str(),
            request.url
        );
    }

    fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let value = self.kv.get(key).cloned();
        if let Some(i) = self.get_hooks.iter().position(|(k, _)| k == key)
            && let Some(mut hook) = self.get_hooks[i].1.take()
        {
            hook(self);
            self.get_hooks[i].1 = Some(hook);
        }
        Ok(value)
    }

    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.kv.insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn kv_delete(&mut self, key: &str) -> Result<(), KvError> {
        self.kv.remove(key);
        Ok(())
    }

    fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        let current = match self.kv.get(key) {
            None => 0,
            Some(b) => i64::from_le_bytes(
                b.as_slice()
                    .try_into()
                    .map_err(|_| KvError(format!("`{key}` is not a counter")))?,
            ),
        };
        let sum = current + delta;
        self.kv.insert(key.to_string(), sum.to_le_bytes().to_vec());
        Ok(sum)
    }

    fn kv_cas(&mut self, key: &str, expected: &[u8], new: &[u8]) -> Result<CasOutcome, KvError> {
        match self.kv.get(key) {
            Some(v) if v.as_slice() == expected => {
                self.kv.insert(key.to_string(), new.to_vec());
                Ok(CasOutcome::Swapped)
            }
            other => Ok(CasOutcome::Conflict(other.cloned())),
        }
    }

    fn sleep_ms(&mut self, ms: u64) {
        self.now += Duration::milliseconds(ms as i64);
        if let Some(mut hook) = self.sleep_hook.take() {
            hook(self);
            self.sleep_hook.get_or_insert(hook);
        }
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        self.logs.push((level, message.to_string()));
    }
}

/// A host that notes the name of every key-value operation it passes on (one name per round
/// trip: `get_many`, `set_many` and `delete_many` each count once).
pub struct Counted<'a> {
    inner: &'a mut dyn Host,
    ops: Vec<&'static str>,
}

impl<'a> Counted<'a> {
    pub fn new(inner: &'a mut dyn Host) -> Self {
        Counted {
            inner,
            ops: Vec::new(),
        }
    }

    /// The operations noted since the last call.
    pub fn take(&mut self) -> Vec<&'static str> {
        std::mem::take(&mut self.ops)
    }
}

impl Host for Counted<'_> {
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
        self.inner.http(request)
    }
    fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.ops.push("get");
        self.inner.kv_get(key)
    }
    fn kv_get_many(&mut self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        self.ops.push("get_many");
        self.inner.kv_get_many(keys)
    }
    fn kv_set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.ops.push("set");
        self.inner.kv_set(key, value)
    }
    fn kv_set_many(&mut self, entries: &[(&str, &[u8])]) -> Result<(), KvError> {
        self.ops.push("set_many");
        self.inner.kv_set_many(entries)
    }
    fn kv_delete(&mut self, key: &str) -> Result<(), KvError> {
        self.ops.push("delete");
        self.inner.kv_delete(key)
    }
    fn kv_delete_many(&mut self, keys: &[&str]) -> Result<(), KvError> {
        self.ops.push("delete_many");
        self.inner.kv_delete_many(keys)
    }
    fn kv_increment(&mut self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.ops.push("increment");
        self.inner.kv_increment(key, delta)
    }
    fn kv_cas(&mut self, key: &str, expected: &[u8], new: &[u8]) -> Result<CasOutcome, KvError> {
        self.ops.push("cas");
        self.inner.kv_cas(key, expected, new)
    }
    fn sleep_ms(&mut self, ms: u64) {
        self.inner.sleep_ms(ms)
    }
    fn log(&mut self, level: LogLevel, message: &str) {
        self.inner.log(level, message)
    }
}
