//! Key-value storage: the `wasi:keyvalue` store and atomics hosts over a [`KvBackend`].
//!
//! This capability owns its context ([`KvCtx`]) and is handed a [`KvView`] (its context plus
//! the resource table) by whoever composes the host state; it knows nothing of that state.
//!
//! Backends: [`SqliteBackend`] keeps data in one file under `--data-dir` (durable across
//! restarts, the same embedded-database approach as Spin's default store); [`MemoryBackend`]
//! is for tests. Compare-and-swap is real: a swap succeeds only if the key still holds exactly
//! what `cas.current` returned (absent included). Spin's SQLite store is weaker for an
//! absent key (it upserts), which is why the component never relies on creating a key by
//! swap; it creates keys with `increment`, which is atomic on both hosts.

mod memory;
mod sqlite;

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, ResourceTable};

pub use memory::MemoryBackend;
pub use sqlite::SqliteBackend;

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

/// Per-instance key-value context: the backend and the labels the manifest allows.
#[derive(Clone)]
pub struct KvCtx {
    pub backend: Arc<dyn KvBackend>,
    pub allowed_labels: Arc<Vec<String>>,
}

/// What the key-value host functions work on: this capability's context and the instance's
/// resource table (where `bucket` and `cas` handles live).
pub struct KvView<'a> {
    pub ctx: &'a mut KvCtx,
    pub table: &'a mut ResourceTable,
}

struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

/// Adds `wasi:keyvalue/store` and `wasi:keyvalue/atomics` to `linker`, reaching each
/// instance's key-value context through `get`.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    crate::bindings::wasi::keyvalue::store::add_to_linker::<T, HasKv>(linker, get)?;
    crate::bindings::wasi::keyvalue::atomics::add_to_linker::<T, HasKv>(linker, get)?;
    Ok(())
}

pub(crate) mod host {
    //! The generated host traits, implemented over [`KvBackend`](super::KvBackend).
    use wasmtime::component::Resource;

    use super::KvView;
    use super::{Bucket, Cas};
    use crate::bindings::wasi::keyvalue::atomics::{self, CasError};
    use crate::bindings::wasi::keyvalue::store::{self, Error, KeyResponse};

    type Wr<T> = wasmtime::Result<T>;

    fn other(e: super::BackendError) -> Error {
        Error::Other(e.0)
    }

    impl KvView<'_> {
        fn bucket_label(&self, bucket: &Resource<Bucket>) -> Wr<String> {
            Ok(self.table.get(bucket)?.label.clone())
        }
    }

    impl store::Host for KvView<'_> {
        fn open(&mut self, identifier: String) -> Wr<Result<Resource<Bucket>, Error>> {
            if !self.ctx.allowed_labels.contains(&identifier) {
                // Spin answers access-denied for a label not listed in `key_value_stores`.
                return Ok(Err(Error::AccessDenied));
            }
            Ok(Ok(self.table.push(Bucket { label: identifier })?))
        }
    }

    impl store::HostBucket for KvView<'_> {
        fn get(
            &mut self,
            bucket: Resource<Bucket>,
            key: String,
        ) -> Wr<Result<Option<Vec<u8>>, Error>> {
            let label = self.bucket_label(&bucket)?;
            Ok(self.ctx.backend.get(&label, &key).map_err(other))
        }

        fn set(
            &mut self,
            bucket: Resource<Bucket>,
            key: String,
            value: Vec<u8>,
        ) -> Wr<Result<(), Error>> {
            let label = self.bucket_label(&bucket)?;
            Ok(self.ctx.backend.set(&label, &key, &value).map_err(other))
        }

        fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Wr<Result<(), Error>> {
            let label = self.bucket_label(&bucket)?;
            Ok(self.ctx.backend.delete(&label, &key).map_err(other))
        }

        fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Wr<Result<bool, Error>> {
            let label = self.bucket_label(&bucket)?;
            Ok(self
                .ctx
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
                .ctx
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

    impl atomics::Host for KvView<'_> {
        fn increment(
            &mut self,
            bucket: Resource<Bucket>,
            key: String,
            delta: i64,
        ) -> Wr<Result<i64, Error>> {
            let label = self.bucket_label(&bucket)?;
            Ok(self
                .ctx
                .backend
                .increment(&label, &key, delta)
                .map_err(other))
        }

        fn swap(&mut self, cas: Resource<Cas>, value: Vec<u8>) -> Wr<Result<(), CasError>> {
            let op = self.table.delete(cas)?;
            let expected = op.seen.clone().flatten();
            match self
                .ctx
                .backend
                .compare_and_swap(&op.label, &op.key, expected.as_deref(), &value)
            {
                Ok(true) => Ok(Ok(())),
                Ok(false) => {
                    // Hand back a fresh handle already positioned at the latest value.
                    let latest = match self.ctx.backend.get(&op.label, &op.key) {
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

    impl atomics::HostCas for KvView<'_> {
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
            match self.ctx.backend.get(&label, &key) {
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
