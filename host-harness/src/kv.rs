//! Key-value storage: the `wasi:keyvalue` store and atomics hosts over a [`KvBackend`].
//!
//! [`SqliteBackend`] keeps data in one file under `--data-dir` (durable across restarts,
//! the same embedded-database approach as Spin's default store); [`MemoryBackend`] is for
//! tests. Compare-and-swap is real: a swap succeeds only if the key still holds exactly
//! what `cas.current` returned (absent included). Spin's SQLite store is weaker for an
//! absent key (it upserts), which is why the component never relies on creating a key by
//! swap; it creates keys with `increment`, which is atomic on both hosts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};

/// A storage failure, reported to the component as `error::other`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

impl From<rusqlite::Error> for BackendError {
    fn from(e: rusqlite::Error) -> Self {
        BackendError(format!("storage error: {e}"))
    }
}

/// Storage behind the key-value host. `store` is the bucket label.
pub trait KvBackend: Send + Sync + 'static {
    fn get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, BackendError>;
    fn set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), BackendError>;
    fn delete(&self, store: &str, key: &str) -> Result<(), BackendError>;
    fn keys(&self, store: &str) -> Result<Vec<String>, BackendError>;
    /// Adds `delta` to the little-endian i64 at `key` (absent = 0), atomically.
    fn increment(&self, store: &str, key: &str, delta: i64) -> Result<i64, BackendError>;
    /// Writes `new` only if the key currently holds `expected` (`None` = absent).
    fn compare_and_swap(
        &self,
        store: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, BackendError>;
}

fn decode_counter(key: &str, bytes: &[u8]) -> Result<i64, BackendError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| BackendError(format!("key `{key}` does not hold a 64-bit counter")))?;
    Ok(i64::from_le_bytes(arr))
}

/// SQLite in a single file; one connection guarded by a mutex (statements are short).
pub struct SqliteBackend {
    conn: Mutex<Connection>,
}

impl SqliteBackend {
    /// Opens (creating if needed) `dir/ml-connector.db`.
    pub fn open_in(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data dir {}", dir.display()))?;
        Self::open(&dir.join("ml-connector.db"))
    }

    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn =
            Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        // WAL + NORMAL: a committed write survives a process crash, and readers don't block writers.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (
                store TEXT NOT NULL,
                key TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
            ) WITHOUT ROWID;",
        )?;
        Ok(SqliteBackend {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| BackendError("storage lock poisoned".into()))?;
        f(&mut conn)
    }
}

impl KvBackend for SqliteBackend {
    fn get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.with(|c| {
            Ok(
                c.prepare_cached("SELECT value FROM kv WHERE store = ?1 AND key = ?2")?
                    .query_row(params![store, key], |r| r.get(0))
                    .optional()?,
            )
        })
    }

    fn set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), BackendError> {
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO kv (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![store, key, value])?;
            Ok(())
        })
    }

    fn delete(&self, store: &str, key: &str) -> Result<(), BackendError> {
        self.with(|c| {
            c.prepare_cached("DELETE FROM kv WHERE store = ?1 AND key = ?2")?
                .execute(params![store, key])?;
            Ok(())
        })
    }

    fn keys(&self, store: &str) -> Result<Vec<String>, BackendError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached("SELECT key FROM kv WHERE store = ?1 ORDER BY key")?;
            let rows = stmt.query_map(params![store], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
    }

    fn increment(&self, store: &str, key: &str, delta: i64) -> Result<i64, BackendError> {
        self.with(|c| {
            // IMMEDIATE: take the write lock before reading, so the read-modify-write cannot
            // interleave with another connection's (a deferred transaction would fail with "locked").
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let current: Option<Vec<u8>> = tx
                .prepare_cached("SELECT value FROM kv WHERE store = ?1 AND key = ?2")?
                .query_row(params![store, key], |r| r.get(0))
                .optional()?;
            let value = current
                .as_deref()
                .map(|b| decode_counter(key, b))
                .transpose()?
                .unwrap_or(0);
            let sum = value
                .checked_add(delta)
                .ok_or_else(|| BackendError(format!("counter `{key}` would overflow")))?;
            tx.prepare_cached(
                "INSERT INTO kv (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![store, key, sum.to_le_bytes().as_slice()])?;
            tx.commit()?;
            Ok(sum)
        })
    }

    fn compare_and_swap(
        &self,
        store: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, BackendError> {
        self.with(|c| {
            let changed = match expected {
                Some(old) => c
                    .prepare_cached("UPDATE kv SET value = ?4 WHERE store = ?1 AND key = ?2 AND value = ?3")?
                    .execute(params![store, key, old, new])?,
                None => c
                    .prepare_cached(
                        "INSERT INTO kv (store, key, value) VALUES (?1, ?2, ?3) ON CONFLICT (store, key) DO NOTHING",
                    )?
                    .execute(params![store, key, new])?,
            };
            Ok(changed == 1)
        })
    }
}

/// An in-memory backend for tests.
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

impl KvBackend for MemoryBackend {
    fn get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self
            .lock()?
            .get(&(store.to_string(), key.to_string()))
            .cloned())
    }

    fn set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), BackendError> {
        self.lock()?
            .insert((store.to_string(), key.to_string()), value.to_vec());
        Ok(())
    }

    fn delete(&self, store: &str, key: &str) -> Result<(), BackendError> {
        self.lock()?.remove(&(store.to_string(), key.to_string()));
        Ok(())
    }

    fn keys(&self, store: &str) -> Result<Vec<String>, BackendError> {
        Ok(self
            .lock()?
            .keys()
            .filter(|(s, _)| s == store)
            .map(|(_, k)| k.clone())
            .collect())
    }

    fn increment(&self, store: &str, key: &str, delta: i64) -> Result<i64, BackendError> {
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

    fn compare_and_swap(
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

/// What the component's `bucket` resource refers to.
#[derive(Debug)]
pub struct Bucket {
    label: String,
}

/// What the component's `cas` resource refers to.
#[derive(Debug)]
pub struct Cas {
    label: String,
    key: String,
    /// What `current` returned; `None` until it is called (then the swap expects "absent").
    seen: Option<Option<Vec<u8>>>,
}

/// Per-instance key-value state: the backend and the labels the manifest allows.
#[derive(Clone)]
pub struct KvState {
    pub backend: Arc<dyn KvBackend>,
    pub allowed_labels: Arc<Vec<String>>,
}

pub(crate) mod host {
    //! The generated host traits, implemented over [`KvBackend`](super::KvBackend).
    use wasmtime::component::Resource;

    use super::{Bucket, Cas};
    use crate::bindings::wasi::keyvalue::atomics::{self, CasError};
    use crate::bindings::wasi::keyvalue::store::{self, Error, KeyResponse};
    use crate::state::HostState;

    type Wr<T> = wasmtime::Result<T>;

    fn other(e: super::BackendError) -> Error {
        Error::Other(e.0)
    }

    impl HostState {
        fn bucket_label(&self, bucket: &Resource<Bucket>) -> Wr<String> {
            Ok(self.table.get(bucket)?.label.clone())
        }
    }

    impl store::Host for HostState {
        fn open(&mut self, identifier: String) -> Wr<Result<Resource<Bucket>, Error>> {
            if !self.kv.allowed_labels.contains(&identifier) {
                // Spin answers access-denied for a label not listed in `key_value_stores`.
                return Ok(Err(Error::AccessDenied));
            }
            Ok(Ok(self.table.push(Bucket { label: identifier })?))
        }
    }

    impl store::HostBucket for HostState {
        fn get(
            &mut self,
            bucket: Resource<Bucket>,
            key: String,
        ) -> Wr<Result<Option<Vec<u8>>, Error>> {
            let label = self.bucket_label(&bucket)?;
            Ok(self.kv.backend.get(&label, &key).map_err(other))
        }

        fn set(
            &mut self,
            bucket: Resource<Bucket>,
            key: String,
            value: Vec<u8>,
        ) -> Wr<Result<(), Error>> {
            let label = self.bucket_label(&bucket)?;
            Ok(self.kv.backend.set(&label, &key, &value).map_err(other))
        }

        fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Wr<Result<(), Error>> {
            let label = self.bucket_label(&bucket)?;
            Ok(self.kv.backend.delete(&label, &key).map_err(other))
        }

        fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Wr<Result<bool, Error>> {
            let label = self.bucket_label(&bucket)?;
            Ok(self
                .kv
                .backend
                .get(&label, &key)
                .map(|v| v.is_some())
                .map_err(other))
        }

        fn list_keys(
            &mut self,
            bucket: Resource<Bucket>,
            cursor: Option<String>,
        ) -> Wr<Result<KeyResponse, Error>> {
            if cursor.is_some() {
                // As on Spin: paging by cursor is not supported.
                return Ok(Err(Error::Other(
                    "list-keys: cursors are not supported".into(),
                )));
            }
            let label = self.bucket_label(&bucket)?;
            Ok(self
                .kv
                .backend
                .keys(&label)
                .map(|keys| KeyResponse { keys, cursor: None })
                .map_err(other))
        }

        fn drop(&mut self, bucket: Resource<Bucket>) -> Wr<()> {
            self.table.delete(bucket)?;
            Ok(())
        }
    }

    impl atomics::Host for HostState {
        fn increment(
            &mut self,
            bucket: Resource<Bucket>,
            key: String,
            delta: i64,
        ) -> Wr<Result<i64, Error>> {
            let label = self.bucket_label(&bucket)?;
            Ok(self
                .kv
                .backend
                .increment(&label, &key, delta)
                .map_err(other))
        }

        fn swap(&mut self, cas: Resource<Cas>, value: Vec<u8>) -> Wr<Result<(), CasError>> {
            let op = self.table.delete(cas)?;
            let expected = op.seen.clone().flatten();
            match self
                .kv
                .backend
                .compare_and_swap(&op.label, &op.key, expected.as_deref(), &value)
            {
                Ok(true) => Ok(Ok(())),
                Ok(false) => {
                    // Hand back a fresh handle already positioned at the latest value.
                    let latest = match self.kv.backend.get(&op.label, &op.key) {
                        Ok(v) => v,
                        Err(e) => return Ok(Err(CasError::StoreError(other(e)))),
                    };
                    let fresh = self.table.push(Cas {
                        label: op.label,
                        key: op.key,
                        seen: Some(latest),
                    })?;
                    Ok(Err(CasError::CasFailed(fresh)))
                }
                Err(e) => Ok(Err(CasError::StoreError(other(e)))),
            }
        }
    }

    impl atomics::HostCas for HostState {
        fn new(
            &mut self,
            bucket: Resource<Bucket>,
            key: String,
        ) -> Wr<Result<Resource<Cas>, Error>> {
            let label = self.bucket_label(&bucket)?;
            Ok(Ok(self.table.push(Cas {
                label,
                key,
                seen: None,
            })?))
        }

        fn current(&mut self, cas: Resource<Cas>) -> Wr<Result<Option<Vec<u8>>, Error>> {
            let (label, key) = {
                let op = self.table.get(&cas)?;
                (op.label.clone(), op.key.clone())
            };
            match self.kv.backend.get(&label, &key) {
                Ok(value) => {
                    self.table.get_mut(&cas)?.seen = Some(value.clone());
                    Ok(Ok(value))
                }
                Err(e) => Ok(Err(other(e))),
            }
        }

        fn drop(&mut self, cas: Resource<Cas>) -> Wr<()> {
            self.table.delete(cas)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(b: &dyn KvBackend) {
        assert_eq!(b.get("default", "k").unwrap(), None);
        b.set("default", "k", b"v1").unwrap();
        assert_eq!(b.get("default", "k").unwrap().as_deref(), Some(&b"v1"[..]));
        assert_eq!(
            b.get("other", "k").unwrap(),
            None,
            "labels are separate stores"
        );
        assert!(
            !b.compare_and_swap("default", "k", Some(b"stale"), b"v2")
                .unwrap()
        );
        assert!(
            b.compare_and_swap("default", "k", Some(b"v1"), b"v2")
                .unwrap()
        );
        assert!(
            !b.compare_and_swap("default", "k", None, b"v3").unwrap(),
            "absent-expected swap on a present key fails"
        );
        assert!(b.compare_and_swap("default", "new", None, b"x").unwrap());
        assert_eq!(b.increment("default", "n", 5).unwrap(), 5);
        assert_eq!(b.increment("default", "n", -2).unwrap(), 3);
        assert!(
            b.increment("default", "k", 1).is_err(),
            "a non-counter value is not incremented"
        );
        assert_eq!(b.keys("default").unwrap(), vec!["k", "n", "new"]);
        b.delete("default", "k").unwrap();
        assert_eq!(b.get("default", "k").unwrap(), None);
    }

    #[test]
    fn memory_backend_behaves_as_a_store_with_real_compare_and_swap() {
        exercise(&MemoryBackend::default());
    }

    #[test]
    fn sqlite_backend_behaves_the_same_and_survives_reopening() {
        let dir = std::env::temp_dir().join(format!("ml-kv-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let b = SqliteBackend::open_in(&dir).unwrap();
            exercise(&b);
            b.set("default", "durable", b"yes").unwrap();
        }
        let b = SqliteBackend::open_in(&dir).unwrap();
        assert_eq!(
            b.get("default", "durable").unwrap().as_deref(),
            Some(&b"yes"[..])
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
