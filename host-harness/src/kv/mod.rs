//! Key-value storage: the `wasi:keyvalue` store, atomics and batch hosts over a [`KvBackend`].
//!
//! This capability owns its context ([`KvCtx`]) and is handed a [`KvView`] (its context plus
//! the resource table) by whoever composes the host state; it knows nothing of that state.
//! The host functions are async: a backend never blocks the async workers that run instances.
//!
//! Backends:
//! - [`SqliteBackend`]: one SQLite file under `--data-dir` (durable across restarts, the same
//!   embedded-database approach and counter encoding as Spin's default store), run on its own
//!   thread.
//! - [`RedisBackend`]: a shared Redis/Valkey, for several instances behind a load balancer,
//!   byte-compatible with Spin's Redis store so both hosts can share one.
//! - [`MemoryBackend`]: for tests.
//!
//! Compare-and-swap is real on every backend: a swap succeeds only if the key still holds
//! exactly what `cas.current` returned (absent included). Spin's stores are weaker (its SQLite
//! store upserts a swap from "absent"; its Redis store can report a swap that lost a race as
//! done), which is why the component never creates a key by swap and checks a lease it won.

mod memory;
mod redis;
mod sqlite;

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, ResourceTable};

pub use memory::MemoryBackend;
pub use redis::{RedisBackend, RedisOptions};
pub use sqlite::SqliteBackend;

/// A storage failure, reported to the component as `error::other`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// Storage behind the key-value host. `store` is the bucket label.
///
/// Counters (`increment`) are stored the way the backend's Spin counterpart stores them:
/// 8-byte little-endian on SQLite and in memory, decimal text on Redis. Readers of a counter
/// through `get` must accept both (the component does).
#[async_trait::async_trait]
pub trait KvBackend: Send + Sync + 'static {
    async fn get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, BackendError>;
    /// The values at `keys`, in the order of `keys` (one per key, duplicates included; `None`
    /// for an absent key). Not atomic: as if each key were read by `get`. The default reads
    /// them one by one; a backend that can read them in one round trip overrides it.
    async fn get_many(
        &self,
        store: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            values.push(self.get(store, key).await?);
        }
        Ok(values)
    }
    async fn set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), BackendError>;
    /// Writes every `(key, value)` of `entries`, in order (a later one wins over an earlier
    /// one of the same key). The default writes them one by one, and the first failure stops
    /// it; a backend that can write them in one round trip overrides it.
    async fn set_many(
        &self,
        store: &str,
        entries: &[(String, Vec<u8>)],
    ) -> Result<(), BackendError> {
        for (key, value) in entries {
            self.set(store, key, value).await?;
        }
        Ok(())
    }
    async fn delete(&self, store: &str, key: &str) -> Result<(), BackendError>;
    /// Deletes every key of `keys` (absent ones are no error). The default deletes them one by
    /// one; a backend that can delete them in one round trip overrides it.
    async fn delete_many(&self, store: &str, keys: &[String]) -> Result<(), BackendError> {
        for key in keys {
            self.delete(store, key).await?;
        }
        Ok(())
    }
    async fn keys(&self, store: &str) -> Result<Vec<String>, BackendError>;
    /// Adds `delta` to the counter at `key` (absent = 0), atomically, and returns the sum.
    async fn increment(&self, store: &str, key: &str, delta: i64) -> Result<i64, BackendError>;
    /// Writes `new` only if the key currently holds `expected` (`None` = absent).
    async fn compare_and_swap(
        &self,
        store: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, BackendError>;
}

/// Decodes an 8-byte little-endian counter (the SQLite and in-memory encoding).
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

/// Adds `wasi:keyvalue/store`, `wasi:keyvalue/atomics` and `wasi:keyvalue/batch` to
/// `linker`, reaching each instance's key-value context through `get`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    crate::bindings::wasi::keyvalue::store::add_to_linker::<T, HasKv>(linker, get)?;
    crate::bindings::wasi::keyvalue::atomics::add_to_linker::<T, HasKv>(linker, get)?;
    crate::bindings::wasi::keyvalue::batch::add_to_linker::<T, HasKv>(linker, get)?;
    Ok(())
}

mod host {
    //! The generated host traits, implemented over [`KvBackend`](super::KvBackend).
    use wasmtime::component::Resource;

    use super::{Bucket, Cas, KvView};
    use crate::bindings::wasi::keyvalue::atomics::{self, CasError};
    use crate::bindings::wasi::keyvalue::batch;
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
        async fn open(&mut self, identifier: String) -> Wr<Result<Resource<Bucket>, Error>> {
            if !self.ctx.allowed_labels.contains(&identifier) {
                // Spin answers access-denied for a label not listed in `key_value_stores`.
                return Ok(Err(Error::AccessDenied));
            }
            Ok(Ok(self.table.push(Bucket { label: identifier })?))
        }
    }

    impl store::HostBucket for KvView<'_> {
        async fn get(
            &mut self,
            bucket: Resource<Bucket>,
            key: String,
        ) -> Wr<Result<Option<Vec<u8>>, Error>> {
            let label = self.bucket_label(&bucket)?;
            Ok(self.ctx.backend.get(&label, &key).await.map_err(other))
        }

        async fn set(
            &mut self,
            bucket: Resource<Bucket>,
            key: String,
            value: Vec<u8>,
        ) -> Wr<Result<(), Error>> {
            let label = self.bucket_label(&bucket)?;
            Ok(self
                .ctx
                .backend
                .set(&label, &key, &value)
                .await
                .map_err(other))
        }

        async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Wr<Result<(), Error>> {
            let label = self.bucket_label(&bucket)?;
            Ok(self.ctx.backend.delete(&label, &key).await.map_err(other))
        }

        async fn exists(
            &mut self,
            bucket: Resource<Bucket>,
            key: String,
        ) -> Wr<Result<bool, Error>> {
            let label = self.bucket_label(&bucket)?;
            Ok(self
                .ctx
                .backend
                .get(&label, &key)
                .await
                .map(|v| v.is_some())
                .map_err(other))
        }

        async fn list_keys(
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
                .await
                .map(|keys| KeyResponse { keys, cursor: None })
                .map_err(other))
        }

        async fn drop(&mut self, bucket: Resource<Bucket>) -> Wr<()> {
            self.table.delete(bucket)?;
            Ok(())
        }
    }

    impl atomics::Host for KvView<'_> {
        async fn increment(
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
                .await
                .map_err(other))
        }

        async fn swap(&mut self, cas: Resource<Cas>, value: Vec<u8>) -> Wr<Result<(), CasError>> {
            let op = self.table.delete(cas)?;
            let expected = op.seen.clone().flatten();
            match self
                .ctx
                .backend
                .compare_and_swap(&op.label, &op.key, expected.as_deref(), &value)
                .await
            {
                Ok(true) => Ok(Ok(())),
                Ok(false) => {
                    // Hand back a fresh handle already positioned at the latest value.
                    let latest = match self.ctx.backend.get(&op.label, &op.key).await {
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

    impl batch::Host for KvView<'_> {
        async fn get_many(
            &mut self,
            bucket: Resource<Bucket>,
            keys: Vec<String>,
        ) -> Wr<Result<Vec<(String, Option<Vec<u8>>)>, Error>> {
            let label = self.bucket_label(&bucket)?;
            if keys.is_empty() {
                // As on Spin: nothing asked, nothing read.
                return Ok(Ok(Vec::new()));
            }
            let values = match self.ctx.backend.get_many(&label, &keys).await {
                Ok(values) => values,
                Err(e) => return Ok(Err(other(e))),
            };
            if values.len() != keys.len() {
                return Ok(Err(Error::Other(format!(
                    "get-many: the store answered {} values for {} keys",
                    values.len(),
                    keys.len()
                ))));
            }
            Ok(Ok(keys.into_iter().zip(values).collect()))
        }

        async fn set_many(
            &mut self,
            bucket: Resource<Bucket>,
            key_values: Vec<(String, Vec<u8>)>,
        ) -> Wr<Result<(), Error>> {
            let label = self.bucket_label(&bucket)?;
            if key_values.is_empty() {
                return Ok(Ok(()));
            }
            Ok(self
                .ctx
                .backend
                .set_many(&label, &key_values)
                .await
                .map_err(other))
        }

        async fn delete_many(
            &mut self,
            bucket: Resource<Bucket>,
            keys: Vec<String>,
        ) -> Wr<Result<(), Error>> {
            let label = self.bucket_label(&bucket)?;
            if keys.is_empty() {
                return Ok(Ok(()));
            }
            Ok(self
                .ctx
                .backend
                .delete_many(&label, &keys)
                .await
                .map_err(other))
        }
    }

    impl atomics::HostCas for KvView<'_> {
        async fn new(
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

        async fn current(&mut self, cas: Resource<Cas>) -> Wr<Result<Option<Vec<u8>>, Error>> {
            let (label, key) = {
                let op = self.table.get(&cas)?;
                (op.label.clone(), op.key.clone())
            };
            match self.ctx.backend.get(&label, &key).await {
                Ok(value) => {
                    self.table.get_mut(&cas)?.seen = Some(value.clone());
                    Ok(Ok(value))
                }
                Err(e) => Ok(Err(other(e))),
            }
        }

        async fn drop(&mut self, cas: Resource<Cas>) -> Wr<()> {
            self.table.delete(cas)?;
            Ok(())
        }
    }
}

/// The behaviour every backend shares, checked against each of them (Redis in the e2e crate,
/// which can start a server).
pub mod conformance {
    use super::KvBackend;

    /// Runs the shared checks against an empty `b`; panics with what differs.
    pub async fn exercise(b: &dyn KvBackend) {
        assert_eq!(b.get("default", "k").await.unwrap(), None);
        b.set("default", "k", b"v1").await.unwrap();
        assert_eq!(
            b.get("default", "k").await.unwrap().as_deref(),
            Some(&b"v1"[..])
        );
        assert!(
            !b.compare_and_swap("default", "k", Some(b"stale"), b"v2")
                .await
                .unwrap()
        );
        assert!(
            b.compare_and_swap("default", "k", Some(b"v1"), b"v2")
                .await
                .unwrap()
        );
        assert!(
            !b.compare_and_swap("default", "k", None, b"v3")
                .await
                .unwrap(),
            "absent-expected swap on a present key fails"
        );
        assert!(
            !b.compare_and_swap("default", "missing", Some(b"v1"), b"v3")
                .await
                .unwrap(),
            "a swap expecting a value on an absent key fails"
        );
        assert_eq!(b.get("default", "missing").await.unwrap(), None);
        assert!(
            b.compare_and_swap("default", "new", None, b"x")
                .await
                .unwrap()
        );
        assert_eq!(b.increment("default", "n", 5).await.unwrap(), 5);
        assert_eq!(b.increment("default", "n", -2).await.unwrap(), 3);
        assert_eq!(b.increment("default", "n", 0).await.unwrap(), 3);
        assert!(
            b.increment("default", "k", 1).await.is_err(),
            "a non-counter value is not incremented"
        );
        assert_eq!(
            b.get("default", "k").await.unwrap().as_deref(),
            Some(&b"v2"[..]),
            "a failed increment leaves the value alone"
        );
        // get_many: one value per key asked, in order, absent and repeated keys included;
        // a counter as `get` reads it.
        let n = b.get("default", "n").await.unwrap();
        assert!(
            n.as_deref() == Some(&3i64.to_le_bytes()[..]) || n.as_deref() == Some(&b"3"[..]),
            "a counter is stored as 8-byte little-endian or decimal text: {n:?}"
        );
        let ask = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        assert_eq!(
            b.get_many("default", &ask(&["k", "missing", "new", "k", "n"]))
                .await
                .unwrap(),
            vec![
                Some(b"v2".to_vec()),
                None,
                Some(b"x".to_vec()),
                Some(b"v2".to_vec()),
                n.clone(),
            ]
        );
        assert_eq!(
            b.get_many("default", &ask(&["n", "new", "k"]))
                .await
                .unwrap(),
            vec![n, Some(b"x".to_vec()), Some(b"v2".to_vec())],
            "the order asked, not the stored order"
        );
        assert_eq!(
            b.get_many("default", &ask(&["missing", "also-missing"]))
                .await
                .unwrap(),
            vec![None, None]
        );
        assert_eq!(b.get_many("default", &[]).await.unwrap(), vec![]);
        // More keys than one SQL query binds; present ones on both sides of its chunk edges.
        let many: Vec<String> = (0..1200).map(|i| format!("many/{i}")).collect();
        let present = [0, 250, 499, 500, 501, 999, 1000, 1199];
        for &i in &present {
            b.set("default", &many[i], many[i].as_bytes())
                .await
                .unwrap();
        }
        let values = b.get_many("default", &many).await.unwrap();
        assert_eq!(values.len(), many.len());
        for (i, (key, value)) in many.iter().zip(&values).enumerate() {
            let expected = present.contains(&i).then(|| key.as_bytes().to_vec());
            assert_eq!(value, &expected, "{key}");
        }
        // set_many: every entry written, in order (the later of one key's two wins).
        let written: Vec<(String, Vec<u8>)> = vec![
            ("sm/a".into(), b"1".to_vec()),
            ("sm/b".into(), b"2".to_vec()),
            ("sm/a".into(), b"3".to_vec()),
        ];
        b.set_many("default", &written).await.unwrap();
        b.set_many("default", &[]).await.unwrap();
        assert_eq!(
            b.get_many("default", &ask(&["sm/a", "sm/b"]))
                .await
                .unwrap(),
            vec![Some(b"3".to_vec()), Some(b"2".to_vec())]
        );
        b.delete_many("default", &ask(&["sm/a", "sm/b"]))
            .await
            .unwrap();
        // delete_many: every key asked, absent ones no error, nothing else.
        let mut gone: Vec<String> = present.iter().map(|&i| many[i].clone()).collect();
        gone.push("never-there".into());
        b.delete_many("default", &gone).await.unwrap();
        b.delete_many("default", &[]).await.unwrap();
        let mut keys = b.keys("default").await.unwrap();
        keys.sort();
        assert_eq!(keys, vec!["k", "n", "new"]);
        b.delete("default", "k").await.unwrap();
        b.delete("default", "never-there").await.unwrap();
        assert_eq!(b.get("default", "k").await.unwrap(), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend that fails every call: what the host must not reach.
    struct Unreachable;

    #[async_trait::async_trait]
    impl KvBackend for Unreachable {
        async fn get(&self, _: &str, _: &str) -> Result<Option<Vec<u8>>, BackendError> {
            Err(BackendError("get reached the backend".into()))
        }
        async fn get_many(
            &self,
            _: &str,
            _: &[String],
        ) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
            Err(BackendError("get_many reached the backend".into()))
        }
        async fn set(&self, _: &str, _: &str, _: &[u8]) -> Result<(), BackendError> {
            Err(BackendError("set reached the backend".into()))
        }
        async fn delete(&self, _: &str, _: &str) -> Result<(), BackendError> {
            Err(BackendError("delete reached the backend".into()))
        }
        async fn keys(&self, _: &str) -> Result<Vec<String>, BackendError> {
            Err(BackendError("keys reached the backend".into()))
        }
        async fn increment(&self, _: &str, _: &str, _: i64) -> Result<i64, BackendError> {
            Err(BackendError("increment reached the backend".into()))
        }
        async fn compare_and_swap(
            &self,
            _: &str,
            _: &str,
            _: Option<&[u8]>,
            _: &[u8],
        ) -> Result<bool, BackendError> {
            Err(BackendError("compare_and_swap reached the backend".into()))
        }
    }

    fn ctx(backend: Arc<dyn KvBackend>) -> KvCtx {
        KvCtx {
            backend,
            allowed_labels: Arc::new(vec!["default".into()]),
        }
    }

    #[tokio::test]
    async fn batch_host_pairs_each_key_with_its_value_and_skips_the_backend_for_no_keys() {
        use crate::bindings::wasi::keyvalue::batch::Host as _;
        use wasmtime::component::Resource;

        let mut table = ResourceTable::new();
        let bucket = table
            .push(Bucket {
                label: "default".into(),
            })
            .unwrap();
        let borrow = || Resource::<Bucket>::new_borrow(bucket.rep());

        let backend = Arc::new(MemoryBackend::default());
        backend.set("default", "a", b"1").await.unwrap();
        backend.set("default", "c", b"3").await.unwrap();
        let mut kv = ctx(backend.clone());
        let mut view = KvView {
            ctx: &mut kv,
            table: &mut table,
        };
        let keys = ["c", "b", "a", "c"].map(String::from).to_vec();
        assert_eq!(
            view.get_many(borrow(), keys).await.unwrap().unwrap(),
            vec![
                ("c".to_string(), Some(b"3".to_vec())),
                ("b".to_string(), None),
                ("a".to_string(), Some(b"1".to_vec())),
                ("c".to_string(), Some(b"3".to_vec())),
            ]
        );
        let pairs = vec![
            ("b".to_string(), b"2".to_vec()),
            ("d".to_string(), b"4".to_vec()),
        ];
        view.set_many(borrow(), pairs).await.unwrap().unwrap();
        assert_eq!(
            backend.get("default", "b").await.unwrap(),
            Some(b"2".to_vec())
        );
        let gone = ["a", "d", "never-there"].map(String::from).to_vec();
        view.delete_many(borrow(), gone).await.unwrap().unwrap();
        let mut left = backend.keys("default").await.unwrap();
        left.sort();
        assert_eq!(left, vec!["b", "c"]);

        let mut kv = ctx(Arc::new(Unreachable));
        let mut view = KvView {
            ctx: &mut kv,
            table: &mut table,
        };
        assert_eq!(
            view.get_many(borrow(), vec![]).await.unwrap().unwrap(),
            vec![]
        );
        view.set_many(borrow(), vec![]).await.unwrap().unwrap();
        view.delete_many(borrow(), vec![]).await.unwrap().unwrap();
        let err = view
            .get_many(borrow(), vec!["a".into()])
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&err, crate::bindings::wasi::keyvalue::store::Error::Other(m) if m.contains("get_many reached")),
            "a backend failure is error::other: {err:?}"
        );
    }

    #[tokio::test]
    async fn memory_backend_behaves_as_a_store_with_real_compare_and_swap() {
        let b = MemoryBackend::default();
        conformance::exercise(&b).await;
        assert_eq!(
            b.get("other", "n").await.unwrap(),
            None,
            "labels are separate stores"
        );
    }

    #[tokio::test]
    async fn sqlite_backend_behaves_the_same_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = SqliteBackend::open_in(dir.path()).unwrap();
            conformance::exercise(&b).await;
            assert_eq!(b.get("other", "n").await.unwrap(), None);
            b.set("default", "durable", b"yes").await.unwrap();
        }
        let b = SqliteBackend::open_in(dir.path()).unwrap();
        assert_eq!(
            b.get("default", "durable").await.unwrap().as_deref(),
            Some(&b"yes"[..])
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_increments_from_many_tasks_add_up_and_swaps_have_one_winner_per_value() {
        let dir = tempfile::tempdir().unwrap();
        let b: Arc<dyn KvBackend> = Arc::new(SqliteBackend::open_in(dir.path()).unwrap());
        b.set("default", "c", &0i64.to_le_bytes()).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                let mut won = 0;
                for _ in 0..20 {
                    b.increment("default", "n", 1).await.unwrap();
                    // Read-modify-swap until it goes through: each value is taken once.
                    loop {
                        let cur = b.get("default", "c").await.unwrap().unwrap();
                        let next = (decode_counter("c", &cur).unwrap() + 1).to_le_bytes();
                        if b.compare_and_swap("default", "c", Some(&cur), &next)
                            .await
                            .unwrap()
                        {
                            won += 1;
                            break;
                        }
                    }
                }
                won
            }));
        }
        let mut won = 0;
        for t in tasks {
            won += t.await.unwrap();
        }
        assert_eq!(won, 320);
        assert_eq!(b.increment("default", "n", 0).await.unwrap(), 320);
        let c = b.get("default", "c").await.unwrap().unwrap();
        assert_eq!(decode_counter("c", &c).unwrap(), 320);
    }
}
