//! A key-value backend that simulates the host dying at one precise write.
//!
//! [`FaultyKv`] wraps a real backend. Once armed, the first `set` of a chosen key whose value
//! contains a chosen text (e.g. the sync record becoming `"state":"posted"`: the link to the
//! QuickBooks document) fails, and so does every write after it — the host is "dead" from
//! that moment, so nothing it does afterwards (lease release, counters, logs) reaches storage.
//! Reads (`get`, `get_many`, `keys`) keep working (they change nothing). [`FaultyKv::disarm`]
//! brings the storage back, as a restarted host would find it.
//!
//! ```no_run
//! use std::sync::Arc;
//! use ml_e2e::faulty_kv::FaultyKv;
//! use ml_harness::kv::MemoryBackend;
//! let kv = Arc::new(FaultyKv::new(Arc::new(MemoryBackend::default()), "rec/order/7", "\"state\":\"posted\""));
//! kv.arm();
//! // ... run the order; then `kv.tripped()` says the link write was dropped ...
//! kv.disarm();
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ml_harness::kv::{BackendError, KvBackend};

/// A [`KvBackend`] that "dies" at a chosen write (see the module docs).
pub struct FaultyKv {
    inner: Arc<dyn KvBackend>,
    key: String,
    needle: String,
    armed: AtomicBool,
    dead: AtomicBool,
    tripped: AtomicBool,
    dropped: AtomicUsize,
}

impl std::fmt::Debug for FaultyKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyKv")
            .field("key", &self.key)
            .field("needle", &self.needle)
            .field("armed", &self.armed.load(Ordering::SeqCst))
            .field("dead", &self.dead.load(Ordering::SeqCst))
            .field("dropped", &self.dropped.load(Ordering::SeqCst))
            .finish()
    }
}

impl FaultyKv {
    /// Wraps `inner`; when armed, dies at the first `set` of `key` whose value contains `needle`.
    /// Starts disarmed.
    pub fn new(inner: Arc<dyn KvBackend>, key: &str, needle: &str) -> FaultyKv {
        FaultyKv {
            inner,
            key: key.to_string(),
            needle: needle.to_string(),
            armed: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            tripped: AtomicBool::new(false),
            dropped: AtomicUsize::new(0),
        }
    }

    /// From now on, the matching write kills the storage.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Storage works again (the next host's view): nothing more fails.
    pub fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
        self.dead.store(false, Ordering::SeqCst);
    }

    /// Whether the matching write happened (and was dropped).
    pub fn tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }

    /// How many writes were refused (the matching one included).
    pub fn dropped_writes(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Whether a write may go through; counts the refused ones.
    fn check_write(&self, key: &str, value: Option<&[u8]>) -> Result<(), BackendError> {
        if self.armed.load(Ordering::SeqCst) && !self.dead.load(Ordering::SeqCst) {
            let hits =
                key == self.key && value.is_some_and(|v| contains(v, self.needle.as_bytes()));
            if hits {
                self.dead.store(true, Ordering::SeqCst);
                self.tripped.store(true, Ordering::SeqCst);
            }
        }
        if self.dead.load(Ordering::SeqCst) {
            self.dropped.fetch_add(1, Ordering::SeqCst);
            return Err(BackendError(format!(
                "injected crash: the host died before writing `{key}` (FaultyKv); restart with the backend disarmed"
            )));
        }
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[async_trait::async_trait]
impl KvBackend for FaultyKv {
    async fn get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.inner.get(store, key).await
    }

    async fn get_many(
        &self,
        store: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        // A read, like `get`: it keeps working while the host is "dead".
        self.inner.get_many(store, keys).await
    }

    async fn set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), BackendError> {
        self.check_write(key, Some(value))?;
        self.inner.set(store, key, value).await
    }

    async fn delete(&self, store: &str, key: &str) -> Result<(), BackendError> {
        self.check_write(key, None)?;
        self.inner.delete(store, key).await
    }

    async fn keys(&self, store: &str) -> Result<Vec<String>, BackendError> {
        self.inner.keys(store).await
    }

    async fn increment(&self, store: &str, key: &str, delta: i64) -> Result<i64, BackendError> {
        self.check_write(key, None)?;
        self.inner.increment(store, key, delta).await
    }

    async fn compare_and_swap(
        &self,
        store: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, BackendError> {
        self.check_write(key, Some(new))?;
        self.inner.compare_and_swap(store, key, expected, new).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ml_harness::kv::MemoryBackend;

    const S: &str = "default";

    fn kv() -> FaultyKv {
        FaultyKv::new(
            Arc::new(MemoryBackend::default()),
            "rec/order/1",
            "\"state\":\"posted\"",
        )
    }

    #[tokio::test]
    async fn a_disarmed_backend_passes_everything_through() {
        let kv = kv();
        kv.set(S, "rec/order/1", br#"{"state":"posted"}"#)
            .await
            .unwrap();
        assert_eq!(
            kv.get(S, "rec/order/1").await.unwrap().as_deref(),
            Some(&br#"{"state":"posted"}"#[..])
        );
        assert!(!kv.tripped());
    }

    #[tokio::test]
    async fn the_link_write_and_every_write_after_it_fail_until_disarmed() {
        let kv = kv();
        kv.arm();
        kv.set(S, "rec/order/1", br#"{"state":"pending"}"#)
            .await
            .unwrap();
        kv.increment(S, "count/pending", 1).await.unwrap();
        assert!(
            kv.set(S, "rec/order/1", br#"{"state":"posted"}"#)
                .await
                .is_err(),
            "the link write is dropped"
        );
        assert!(kv.tripped());
        assert!(
            kv.increment(S, "count/posted", 1).await.is_err(),
            "the host is dead"
        );
        assert!(
            kv.compare_and_swap(S, "lease/order/1", None, b"x")
                .await
                .is_err()
        );
        assert!(kv.delete(S, "anything").await.is_err());
        assert_eq!(
            kv.get(S, "rec/order/1").await.unwrap().as_deref(),
            Some(&br#"{"state":"pending"}"#[..]),
            "reads still work"
        );
        assert_eq!(
            kv.get_many(S, &["rec/order/1".into(), "count/pending".into()])
                .await
                .unwrap(),
            vec![
                Some(br#"{"state":"pending"}"#.to_vec()),
                Some(1i64.to_le_bytes().to_vec())
            ],
            "so do batch reads"
        );
        assert_eq!(kv.dropped_writes(), 4);
        kv.disarm();
        kv.set(S, "rec/order/1", br#"{"state":"posted"}"#)
            .await
            .unwrap();
        assert_eq!(kv.increment(S, "count/posted", 1).await.unwrap(), 1);
    }
}
