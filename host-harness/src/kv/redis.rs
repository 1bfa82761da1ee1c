//! [`RedisBackend`]: the key-value store in a shared Redis or Valkey, so several instances
//! (of this harness, of Spin, or both) behave as one connector.
//!
//! It stores data exactly as Spin's Redis store does, so both hosts can share one server:
//! a key is the Redis key itself (one Redis, or one database number, per store label), a value
//! is the Redis string, and a counter is what `INCRBY` keeps (decimal text). It differs from
//! Spin's store only where Spin's is weaker, never in what is stored:
//!
//! - Compare-and-swap is one Lua script (see [`CAS_SCRIPT`]), not `WATCH`/`MULTI`/`EXEC`.
//! - Listing keys uses `SCAN`, which does not stall the server as `KEYS *` does.
//! - `get_many` is one `MGET` (one value or nil per key, in order).
//! - Every operation has a deadline: a Redis that is down or unreachable gives the component
//!   a storage error (the record is retried later), never a hang.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::{BackendError, KvBackend};

/// Compare-and-swap, atomically on the server.
///
/// Why a script and not `WATCH`/`MULTI`/`EXEC`: a connection manager multiplexes every task's
/// commands over one connection, and `WATCH` belongs to the connection, so another task's
/// `EXEC` or `UNWATCH` would end our watch and the swap would go through unconditionally. A
/// correct `WATCH` needs a connection of its own per swap (Spin opens one per swap) plus four
/// round trips, and a lost race shows only as a nil `EXEC` reply (which Spin's store reports
/// as success). A script runs as one atomic step on the server, in one round trip, with no
/// connection state, so it is correct however many tasks and instances contend.
///
/// `ARGV[1]` is `1` when a value is expected (`ARGV[2]`), `0` when the key must be absent;
/// `ARGV[3]` is the new value. Returns 1 when it wrote, 0 when the key held something else.
pub const CAS_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
";

/// Timeouts of a [`RedisBackend`].
#[derive(Debug, Clone, Copy)]
pub struct RedisOptions {
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// How long Redis may take to answer one command.
    pub response_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
        }
    }
}

/// A store label backed by one Redis server (or database).
pub struct RedisBackend {
    client: redis::Client,
    options: RedisOptions,
    /// Where it connects, without credentials (for messages).
    address: String,
    /// Connected on first use; a failed attempt is not kept, so the next operation tries again.
    /// Once connected, the manager reconnects by itself after a connection is lost.
    conn: OnceCell<ConnectionManager>,
    script: redis::Script,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("address", &self.address)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// `url` without its password, for messages.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(unparsable Redis URL)".to_string(),
    }
}

impl RedisBackend {
    /// A backend for the Redis at `url` (`redis://[user:password@]host[:port][/db]`, or
    /// `rediss://` for TLS). Nothing is connected yet: the first operation connects.
    pub fn new(url: &str, options: RedisOptions) -> anyhow::Result<Self> {
        let address = redacted(url);
        let client = redis::Client::open(url).map_err(|e| {
            anyhow::anyhow!(
                "`{address}` is not a usable Redis URL ({e}): use redis://host:port or rediss://host:port"
            )
        })?;
        Ok(RedisBackend {
            client,
            options,
            address,
            conn: OnceCell::new(),
            script: redis::Script::new(CAS_SCRIPT),
        })
    }

    /// Where it connects (without credentials).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Connects now (if not yet connected) and checks the server answers: for a startup check.
    pub async fn ping(&self) -> Result<(), BackendError> {
        self.op("PING", |mut c| async move {
            redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await
        .map(drop)
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> BackendError {
        BackendError(format!(
            "storage error: Redis at {} failed {what}: {e}",
            self.address
        ))
    }

    async fn connection(&self) -> Result<ConnectionManager, BackendError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.options.connect_timeout))
            .set_response_timeout(Some(self.options.response_timeout))
            // Reconnect quickly and give up soon: the caller is waiting, and the component
            // retries the whole record later anyway.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        self.conn
            .get_or_try_init(|| async {
                self.client
                    .get_connection_manager_with_config(config)
                    .await
                    .map_err(|e| self.error("to connect", e))
            })
            .await
            .cloned()
    }

    /// Runs one command with a hard deadline (connecting first if needed).
    async fn op<T, F, Fut>(&self, what: &str, f: F) -> Result<T, BackendError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let deadline = self.options.connect_timeout * 2 + self.options.response_timeout;
        let work = async {
            let conn = self.connection().await?;
            f(conn).await.map_err(|e| self.error(what, e))
        };
        match tokio::time::timeout(deadline, work).await {
            Ok(result) => result,
            Err(_) => Err(self.error(what, format!("no answer within {deadline:?}"))),
        }
    }
}

#[async_trait::async_trait]
impl KvBackend for RedisBackend {
    async fn get(&self, _store: &str, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.op("GET", |mut c| async move {
            c.get::<_, Option<Vec<u8>>>(key).await
        })
        .await
    }

    async fn get_many(
        &self,
        _store: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        if keys.is_empty() {
            // `MGET` with no key is a syntax error.
            return Ok(Vec::new());
        }
        // One `MGET`: the same keys `get` reads, one value (or nil) per key, in order.
        let values: Vec<Option<Vec<u8>>> = self
            .op("MGET", |mut c| async move {
                redis::cmd("MGET").arg(keys).query_async(&mut c).await
            })
            .await?;
        if values.len() != keys.len() {
            return Err(self.error(
                "MGET",
                format!("{} values for {} keys", values.len(), keys.len()),
            ));
        }
        Ok(values)
    }

    async fn set(&self, _store: &str, key: &str, value: &[u8]) -> Result<(), BackendError> {
        self.op(
            "SET",
            |mut c| async move { c.set::<_, _, ()>(key, value).await },
        )
        .await
    }

    async fn set_many(
        &self,
        _store: &str,
        entries: &[(String, Vec<u8>)],
    ) -> Result<(), BackendError> {
        if entries.is_empty() {
            // `MSET` with no key is a syntax error.
            return Ok(());
        }
        // One `MSET` of every entry (atomic in Redis).
        let entries = entries.to_vec();
        self.op(
            "MSET",
            |mut c| async move { c.mset::<_, _, ()>(&entries).await },
        )
        .await
    }

    async fn delete(&self, _store: &str, key: &str) -> Result<(), BackendError> {
        self.op("DEL", |mut c| async move { c.del::<_, ()>(key).await })
            .await
    }

    async fn delete_many(&self, _store: &str, keys: &[String]) -> Result<(), BackendError> {
        if keys.is_empty() {
            // `DEL` with no key is a syntax error.
            return Ok(());
        }
        // One `DEL` of every key.
        let keys = keys.to_vec();
        self.op("DEL", |mut c| async move { c.del::<_, ()>(keys).await })
            .await
    }

    async fn keys(&self, _store: &str) -> Result<Vec<String>, BackendError> {
        self.op("SCAN", |mut c| async move {
            let mut keys = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut c)
                    .await?;
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            keys.sort();
            keys.dedup();
            Ok(keys)
        })
        .await
    }

    async fn increment(&self, _store: &str, key: &str, delta: i64) -> Result<i64, BackendError> {
        // INCRBY, as Spin's Redis store: the counter is decimal text, and Redis refuses (with
        // an error, changing nothing) a value that is not one or a sum that would overflow.
        self.op("INCRBY", |mut c| async move {
            c.incr::<_, _, i64>(key, delta).await
        })
        .await
    }

    async fn compare_and_swap(
        &self,
        _store: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, BackendError> {
        let script = &self.script;
        self.op("compare-and-swap", |mut c| async move {
            let wrote: i64 = script
                .key(key)
                .arg(if expected.is_some() { "1" } else { "0" })
                .arg(expected.unwrap_or_default())
                .arg(new)
                .invoke_async(&mut c)
                .await?;
            Ok(wrote == 1)
        })
        .await
    }
}
