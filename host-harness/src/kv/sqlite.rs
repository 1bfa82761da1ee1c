//! [`SqliteBackend`]: the key-value store in one SQLite file under `--data-dir` (durable across
//! restarts; the same embedded-database approach, and the same counter encoding, as Spin's
//! default store).

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};

use super::{BackendError, KvBackend, decode_counter};

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
