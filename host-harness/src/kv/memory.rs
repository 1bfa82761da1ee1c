//! [`MemoryBackend`]: an in-memory store for tests and benchmarks.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{BackendError, KvBackend, decode_counter};

/// An in-memory backend for tests (counters as 8-byte little-endian, like SQLite).
#[derive(Default)]
pub struct MemoryBackend {
    data: Mutex<Entries>,
}

/// (bucket label, key) -> value.
type Entries = BTreeMap<(String, String), Vec<u8>>;

impl MemoryBackend {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Entries>, BackendError> {
        self.data
            .lock()
            .map_err(|_| BackendError("storage lock poisoned".into()))
    }
}

#[async_trait::async_trait]
impl KvBackend for MemoryBackend {
    async fn get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self
            .lock()?
            .get(&(store.to_string(), key.to_string()))
            .cloned())
    }

    async fn set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), BackendError> {
        self.lock()?
            .insert((store.to_string(), key.to_string()), value.to_vec());
        Ok(())
    }

    async fn delete(&self, store: &str, key: &str) -> Result<(), BackendError> {
        self.lock()?.remove(&(store.to_string(), key.to_string()));
        Ok(())
    }

    async fn keys(&self, store: &str) -> Result<Vec<String>, BackendError> {
        Ok(self
            .lock()?
            .keys()
            .filter(|(s, _)| s == store)
            .map(|(_, k)| k.clone())
            .collect())
    }

    async fn increment(&self, store: &str, key: &str, delta: i64) -> Result<i64, BackendError> {
        let mut data = self.lock()?;
        let slot = (store.to_string(), key.to_string());
        let value = data
            .get(&slot)
            .map(|b| decode_counter(key, b))
            .transpose()?
            .unwrap_or(0);
        let sum = value
            .checked_add(delta)
            .ok_or_else(|| BackendError(format!("counter `{key}` would overflow")))?;
        data.insert(slot, sum.to_le_bytes().to_vec());
        Ok(sum)
    }

    async fn compare_and_swap(
        &self,
        store: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, BackendError> {
        let mut data = self.lock()?;
        let slot = (store.to_string(), key.to_string());
        if data.get(&slot).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        data.insert(slot, new.to_vec());
        Ok(true)
    }
}
