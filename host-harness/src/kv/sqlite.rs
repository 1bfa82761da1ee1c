//! [`SqliteBackend`]: the key-value store in one SQLite file under `--data-dir` (durable across
//! restarts; the same embedded-database approach, and the same counter encoding, as Spin's
//! default store).
//!
//! SQLite calls block, so they never run on the async workers: one dedicated thread owns the
//! connection and serves requests from a channel. The webhook's 200 promises that what was
//! accepted survives a crash of the machine, not only of the process, so the database runs
//! with `synchronous=FULL` (every commit reaches the disk). To keep that affordable the thread
//! commits in groups: it takes every request waiting in the channel, runs each in its own
//! savepoint inside one transaction, commits once, and only then answers them all. A request
//! is answered only after the commit that holds it, so no caller sees a write that could
//! still be lost; one request's failure rolls back only that request.
//!
//! Reads (`get`, `get_many`, `keys`) do not wait for a group's commit: a second thread owns a
//! read-only connection and answers them from what is committed (WAL lets it read while the
//! writer writes). Since a write is answered only once committed, a read that starts after a
//! write's answer sees that write; a read concurrent with an uncommitted write sees the value
//! before it.

use std::path::Path;
use std::sync::mpsc;

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::{BackendError, KvBackend, decode_counter};

impl From<rusqlite::Error> for BackendError {
    fn from(e: rusqlite::Error) -> Self {
        BackendError(format!("storage error: {e}"))
    }
}

/// Most requests one transaction groups.
const MAX_GROUP: usize = 256;

/// Most keys one `get_many` query binds (SQLite allows 999 parameters in older builds; one is
/// the store). More keys are read in several queries, in one read transaction.
const MAX_KEYS_PER_QUERY: usize = 500;

/// One request for the SQLite thread: given the connection (or why there is none), it does its
/// work and says whether it succeeded and how to answer once the group is committed.
type Job = Box<dyn FnOnce(Result<&Connection, BackendError>) -> Done + Send>;

struct Done {
    ok: bool,
    /// Answers the caller with the group's commit outcome.
    reply: Box<dyn FnOnce(Result<(), BackendError>) + Send>,
}

/// A read for the reader thread.
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// SQLite in a single file: writes served by one thread, reads by another.
pub struct SqliteBackend {
    jobs: mpsc::Sender<Job>,
    reads: mpsc::Sender<ReadJob>,
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
        // WAL: readers don't block the writer. FULL: a commit is on disk before it returns.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (
                store TEXT NOT NULL,
                key TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
            ) WITHOUT ROWID;",
        )?;
        let reader = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open {} for reading", path.display()))?;
        reader.pragma_update(None, "busy_timeout", 5000)?;
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ml-kv-sqlite".into())
            .spawn(move || serve(conn, rx))
            .context("cannot start the SQLite thread")?;
        let (reads, read_rx) = mpsc::channel::<ReadJob>();
        std::thread::Builder::new()
            .name("ml-kv-sqlite-read".into())
            .spawn(move || {
                while let Ok(job) = read_rx.recv() {
                    job(&reader);
                }
            })
            .context("cannot start the SQLite reader thread")?;
        Ok(SqliteBackend { jobs, reads })
    }

    /// Runs the read `f` on the reader thread, against what is committed.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, BackendError> {
        let (tx, rx) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        ask(&self.reads, job, rx, "SQLite reader thread").await
    }

    /// Runs `f` on the SQLite thread (inside its group's transaction) and returns its result
    /// once that transaction is committed.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, BackendError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = conn.and_then(f);
            Done {
                ok: result.is_ok(),
                reply: Box::new(move |committed| {
                    let _ = tx.send(committed.and(result));
                }),
            }
        });
        ask(&self.jobs, job, rx, "SQLite thread").await
    }
}

/// Hands `job` to the thread behind `sender` and waits for the answer it sends on `answer`.
async fn ask<J, T>(
    sender: &mpsc::Sender<J>,
    job: J,
    answer: oneshot::Receiver<Result<T, BackendError>>,
    thread: &str,
) -> Result<T, BackendError> {
    sender
        .send(job)
        .map_err(|_| BackendError(format!("storage error: the {thread} has stopped")))?;
    answer
        .await
        .map_err(|_| BackendError(format!("storage error: the {thread} stopped mid-request")))?
}

/// The SQLite thread: runs waiting requests in groups, one transaction per group. It ends when
/// the backend (the only sender) is dropped.
fn serve(conn: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        run_group(&conn, group);
    }
}

fn run_group(conn: &Connection, group: Vec<Job>) {
    // IMMEDIATE: take the write lock before reading, so read-modify-writes (increment, swap)
    // cannot interleave with another connection's.
    let begun = conn
        .execute_batch("BEGIN IMMEDIATE")
        .map_err(BackendError::from);
    let mut replies = Vec::with_capacity(group.len());
    for job in group {
        let done = match &begun {
            Err(e) => job(Err(e.clone())),
            Ok(()) => run_one(conn, job),
        };
        replies.push(done.reply);
    }
    let committed = begun.and_then(|()| conn.execute_batch("COMMIT").map_err(BackendError::from));
    if committed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for reply in replies {
        reply(committed.clone());
    }
}

/// Runs one request in its own savepoint, so its failure undoes only its own writes.
fn run_one(conn: &Connection, job: Job) -> Done {
    if let Err(e) = conn.execute_batch("SAVEPOINT request") {
        return job(Err(e.into()));
    }
    let done = job(Ok(conn));
    if !done.ok {
        let _ = conn.execute_batch("ROLLBACK TO request");
    }
    let _ = conn.execute_batch("RELEASE request");
    done
}

#[async_trait::async_trait]
impl KvBackend for SqliteBackend {
    async fn get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let (store, key) = (store.to_string(), key.to_string());
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT value FROM kv WHERE store = ?1 AND key = ?2")?
                    .query_row(params![store, key], |r| r.get(0))
                    .optional()?,
            )
        })
        .await
    }

    async fn get_many(
        &self,
        store: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (store, keys) = (store.to_string(), keys.to_vec());
        self.read(move |c| {
            // Several queries read in one transaction, so they all see the same commit.
            let tx = if keys.len() > MAX_KEYS_PER_QUERY {
                Some(c.unchecked_transaction()?)
            } else {
                None
            };
            let mut found = std::collections::HashMap::with_capacity(keys.len());
            for chunk in keys.chunks(MAX_KEYS_PER_QUERY) {
                // Bound the number of distinct statements (they share the connection's
                // statement cache with `get`): bind a power-of-two number of keys, repeating
                // the last one, which `IN` does not mind.
                let marks = chunk.len().next_power_of_two().min(MAX_KEYS_PER_QUERY);
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT key, value FROM kv WHERE store = ? AND key IN ({})",
                    vec!["?"; marks].join(", ")
                ))?;
                let last = chunk.last().expect("chunks are never empty");
                let args = std::iter::once(&store)
                    .chain(chunk)
                    .chain(std::iter::repeat_n(last, marks - chunk.len()));
                let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
                })?;
                for row in rows {
                    let (key, value) = row?;
                    found.insert(key, value);
                }
            }
            drop(tx);
            // In the order asked; a key asked twice is answered twice.
            Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
        })
        .await
    }

    async fn set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), BackendError> {
        let (store, key, value) = (store.to_string(), key.to_string(), value.to_vec());
        self.run(move |c| {
            c.prepare_cached(
                "INSERT INTO kv (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![store, key, value])?;
            Ok(())
        })
        .await
    }

    async fn set_many(
        &self,
        store: &str,
        entries: &[(String, Vec<u8>)],
    ) -> Result<(), BackendError> {
        let (store, entries) = (store.to_string(), entries.to_vec());
        // One job: every write lands in the same group commit.
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "INSERT INTO kv (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
            )?;
            for (key, value) in &entries {
                stmt.execute(params![store, key, value])?;
            }
            Ok(())
        })
        .await
    }

    async fn delete(&self, store: &str, key: &str) -> Result<(), BackendError> {
        let (store, key) = (store.to_string(), key.to_string());
        self.run(move |c| {
            c.prepare_cached("DELETE FROM kv WHERE store = ?1 AND key = ?2")?
                .execute(params![store, key])?;
            Ok(())
        })
        .await
    }

    async fn delete_many(&self, store: &str, keys: &[String]) -> Result<(), BackendError> {
        let (store, keys) = (store.to_string(), keys.to_vec());
        // One job: every delete lands in the same group commit.
        self.run(move |c| {
            let mut stmt = c.prepare_cached("DELETE FROM kv WHERE store = ?1 AND key = ?2")?;
            for key in &keys {
                stmt.execute(params![store, key])?;
            }
            Ok(())
        })
        .await
    }

    async fn keys(&self, store: &str) -> Result<Vec<String>, BackendError> {
        let store = store.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT key FROM kv WHERE store = ?1 ORDER BY key")?;
            let rows = stmt.query_map(params![store], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .await
    }

    async fn increment(&self, store: &str, key: &str, delta: i64) -> Result<i64, BackendError> {
        let (store, key) = (store.to_string(), key.to_string());
        self.run(move |c| {
            let current: Option<Vec<u8>> = c
                .prepare_cached("SELECT value FROM kv WHERE store = ?1 AND key = ?2")?
                .query_row(params![store, key], |r| r.get(0))
                .optional()?;
            let value = current
                .as_deref()
                .map(|b| decode_counter(&key, b))
                .transpose()?
                .unwrap_or(0);
            if delta == 0 && current.is_some() {
                // A read: nothing to write (and nothing to sync).
                return Ok(value);
            }
            let sum = value
                .checked_add(delta)
                .ok_or_else(|| BackendError(format!("counter `{key}` would overflow")))?;
            c.prepare_cached(
                "INSERT INTO kv (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![store, key, sum.to_le_bytes().as_slice()])?;
            Ok(sum)
        })
        .await
    }

    async fn compare_and_swap(
        &self,
        store: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, BackendError> {
        let (store, key) = (store.to_string(), key.to_string());
        let (expected, new) = (expected.map(<[u8]>::to_vec), new.to_vec());
        self.run(move |c| {
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
        .await
    }
}
