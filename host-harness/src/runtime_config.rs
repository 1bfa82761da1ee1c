//! Spin's runtime configuration file (`--runtime-config-file`): which storage backs each
//! key-value store label, so one file drives both `spin up` and `ml-harness serve`.
//!
//! ```toml
//! [key_value_store.default]
//! type = "redis"
//! url = "redis://redis.ml-connector.svc:6379"
//!
//! # or, SQLite in a file (a relative path is relative to this file's directory, as in Spin):
//! [key_value_store.default]
//! type = "spin"
//! path = "data/ml-connector.db"
//! ```
//!
//! Only what this host can honour is accepted; anything else (another store type, another
//! section, an unknown field, a label the manifest does not use) is an error naming it, never
//! silently ignored. A label the manifest uses that the file does not configure falls back as
//! in Spin: `default` to the SQLite file under `--data-dir`, any other label is an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::kv::{
    BackendError, KvBackend, MemoryBackend, RedisBackend, RedisOptions, SqliteBackend,
};

/// The storage of one store label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// `type = "redis"`, `url = "redis://…"`.
    Redis { url: String },
    /// `type = "spin"`: SQLite in the file at `path` (absolute), or in memory without a path
    /// (as Spin does; nothing survives a restart).
    Sqlite { path: Option<PathBuf> },
}

/// The parts of a Spin runtime config this host uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuntimeConfig {
    /// Store label -> its storage.
    pub stores: BTreeMap<String, StoreConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpin {
    path: Option<PathBuf>,
}

impl RuntimeConfig {
    /// Reads a runtime config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read runtime config file {}", path.display()))?;
        let dir = std::path::absolute(path)
            .with_context(|| format!("cannot resolve {}", path.display()))?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Self::parse(&text, &dir, path)
    }

    /// Parses runtime config text; relative paths resolve against `dir` (the file's directory).
    pub fn parse(text: &str, dir: &Path, origin: &Path) -> anyhow::Result<Self> {
        let shown = origin.display();
        let table: toml::Table = toml::from_str(text)
            .with_context(|| format!("{shown} is not a valid runtime config (TOML)"))?;
        let mut stores = BTreeMap::new();
        for (section, value) in table {
            if section != "key_value_store" {
                bail!(
                    "{shown}: `{section}` is not supported by ml-harness, which reads only [key_value_store.<label>] from a runtime config; remove it (or run this file with `spin up` only)"
                );
            }
            let toml::Value::Table(labels) = value else {
                bail!(
                    "{shown}: `key_value_store` must be a table of stores, e.g. [key_value_store.default]"
                );
            };
            for (label, store) in labels {
                let toml::Value::Table(mut store) = store else {
                    bail!("{shown}: [key_value_store.{label}] must be a table with a `type`");
                };
                let Some(kind) = store.remove("type") else {
                    bail!(
                        "{shown}: [key_value_store.{label}] has no `type`: use type = \"redis\" (with url) or type = \"spin\" (with path)"
                    );
                };
                let Some(kind) = kind.as_str().map(str::to_string) else {
                    bail!("{shown}: [key_value_store.{label}] `type` must be a string");
                };
                let config = match kind.as_str() {
                    "redis" => {
                        let raw: RawRedis = store.try_into().with_context(|| {
                            format!("{shown}: [key_value_store.{label}] (type \"redis\") takes only `url`, e.g. url = \"redis://host:6379\"")
                        })?;
                        if !(raw.url.starts_with("redis://") || raw.url.starts_with("rediss://")) {
                            bail!(
                                "{shown}: [key_value_store.{label}] url must start with redis:// or rediss://"
                            );
                        }
                        StoreConfig::Redis { url: raw.url }
                    }
                    "spin" => {
                        let raw: RawSpin = store.try_into().with_context(|| {
                            format!("{shown}: [key_value_store.{label}] (type \"spin\") takes only `path`, the SQLite file")
                        })?;
                        StoreConfig::Sqlite {
                            path: raw
                                .path
                                .map(|p| if p.is_absolute() { p } else { dir.join(p) }),
                        }
                    }
                    other => bail!(
                        "{shown}: [key_value_store.{label}] has type \"{other}\", which ml-harness does not support: use \"redis\" (shared, for several instances) or \"spin\" (SQLite)"
                    ),
                };
                stores.insert(label, config);
            }
        }
        Ok(RuntimeConfig { stores })
    }

    /// Checks the file against the labels the manifest's component uses: every configured label
    /// must be one of them, and every one of them but `default` must be configured.
    pub fn check_labels(&self, used: &[String]) -> anyhow::Result<()> {
        for label in self.stores.keys() {
            if !used.contains(label) {
                bail!(
                    "the runtime config defines [key_value_store.{label}], but the component uses no store `{label}` (its key_value_stores: {}); check the label",
                    used.join(", ")
                );
            }
        }
        for label in used {
            if label != "default" && !self.stores.contains_key(label) {
                bail!(
                    "the component uses key-value store `{label}`, which the runtime config does not define: add [key_value_store.{label}]"
                );
            }
        }
        Ok(())
    }

    /// Opens the storage of every label the component uses (`default`, when not configured,
    /// is SQLite under `data_dir`), and returns one backend routing by label, with a line per
    /// label saying where it is (no credentials).
    pub fn open(
        &self,
        used: &[String],
        data_dir: &Path,
        redis: RedisOptions,
    ) -> anyhow::Result<(Arc<dyn KvBackend>, Vec<String>)> {
        self.check_labels(used)?;
        let mut backends = BTreeMap::new();
        let mut described = Vec::new();
        for label in used {
            let (backend, place): (Arc<dyn KvBackend>, String) = match self.stores.get(label) {
                Some(StoreConfig::Redis { url }) => {
                    let b = RedisBackend::new(url, redis)
                        .with_context(|| format!("[key_value_store.{label}]"))?;
                    let place = format!("Redis at {}", b.address());
                    (Arc::new(b), place)
                }
                Some(StoreConfig::Sqlite { path: Some(path) }) => {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).with_context(|| {
                            format!("cannot create the directory of {}", path.display())
                        })?;
                    }
                    (
                        Arc::new(SqliteBackend::open(path)?),
                        format!("SQLite file {}", path.display()),
                    )
                }
                Some(StoreConfig::Sqlite { path: None }) => (
                    Arc::new(MemoryBackend::default()),
                    "in memory (type \"spin\" without a path: nothing survives a restart)".into(),
                ),
                None => (
                    Arc::new(SqliteBackend::open_in(data_dir)?),
                    format!("SQLite file {}", data_dir.join("ml-connector.db").display()),
                ),
            };
            described.push(format!("key-value store `{label}`: {place}"));
            backends.insert(label.clone(), backend);
        }
        let backend: Arc<dyn KvBackend> = match backends.len() {
            1 => backends.into_values().next().expect("one backend"),
            _ => Arc::new(ByLabel { backends }),
        };
        Ok((backend, described))
    }
}

/// Routes each store label to its own backend.
struct ByLabel {
    backends: BTreeMap<String, Arc<dyn KvBackend>>,
}

impl ByLabel {
    fn of(&self, store: &str) -> Result<&Arc<dyn KvBackend>, BackendError> {
        self.backends
            .get(store)
            .ok_or_else(|| BackendError(format!("no key-value store `{store}` is configured")))
    }
}

#[async_trait::async_trait]
impl KvBackend for ByLabel {
    async fn get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.of(store)?.get(store, key).await
    }
    async fn get_many(
        &self,
        store: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        self.of(store)?.get_many(store, keys).await
    }
    async fn set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), BackendError> {
        self.of(store)?.set(store, key, value).await
    }
    async fn delete(&self, store: &str, key: &str) -> Result<(), BackendError> {
        self.of(store)?.delete(store, key).await
    }
    async fn keys(&self, store: &str) -> Result<Vec<String>, BackendError> {
        self.of(store)?.keys(store).await
    }
    async fn increment(&self, store: &str, key: &str, delta: i64) -> Result<i64, BackendError> {
        self.of(store)?.increment(store, key, delta).await
    }
    async fn compare_and_swap(
        &self,
        store: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, BackendError> {
        self.of(store)?
            .compare_and_swap(store, key, expected, new)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<RuntimeConfig> {
        RuntimeConfig::parse(text, Path::new("/etc/ml"), Path::new("runtime-config.toml"))
    }

    #[test]
    fn redis_and_spin_stores_parse_and_a_relative_path_is_relative_to_the_file() {
        let c = parse("[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://r:6379/2\"\n")
            .unwrap();
        assert_eq!(
            c.stores["default"],
            StoreConfig::Redis {
                url: "redis://r:6379/2".into()
            }
        );
        let c =
            parse("[key_value_store.default]\ntype = \"spin\"\npath = \"data/kv.db\"\n").unwrap();
        assert_eq!(
            c.stores["default"],
            StoreConfig::Sqlite {
                path: Some(PathBuf::from("/etc/ml/data/kv.db"))
            }
        );
        let c =
            parse("[key_value_store.default]\ntype = \"spin\"\npath = \"/var/kv.db\"\n").unwrap();
        assert_eq!(
            c.stores["default"],
            StoreConfig::Sqlite {
                path: Some(PathBuf::from("/var/kv.db"))
            }
        );
        assert_eq!(parse("").unwrap(), RuntimeConfig::default());
    }

    #[test]
    fn what_this_host_cannot_honour_is_an_error_naming_it() {
        let err = |text: &str| format!("{:#}", parse(text).unwrap_err());
        let e = err("[key_value_store.default]\ntype = \"azure_cosmos\"\naccount = \"x\"\n");
        assert!(e.contains("azure_cosmos") && e.contains("\"redis\""), "{e}");
        let e = err("[key_value_store.default]\nurl = \"redis://r\"\n");
        assert!(e.contains("no `type`"), "{e}");
        let e = err("[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://r\"\npool = 3\n");
        assert!(e.contains("takes only `url`"), "{e}");
        let e = err("[key_value_store.default]\ntype = \"redis\"\nurl = \"http://r\"\n");
        assert!(e.contains("redis://"), "{e}");
        let e = err("[[config_provider]]\ntype = \"vault\"\n");
        assert!(e.contains("`config_provider` is not supported"), "{e}");
        let e = err("not toml [");
        assert!(e.contains("not a valid runtime config"), "{e}");
    }

    #[test]
    fn labels_must_match_the_manifest() {
        let used = vec!["default".to_string()];
        let c = parse("[key_value_store.defualt]\ntype = \"spin\"\n").unwrap();
        let e = format!("{:#}", c.check_labels(&used).unwrap_err());
        assert!(
            e.contains("[key_value_store.defualt]") && e.contains("default"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            RuntimeConfig::default()
                .check_labels(&["default".into(), "cache".into()])
                .unwrap_err()
        );
        assert!(e.contains("[key_value_store.cache]"), "{e}");
        RuntimeConfig::default().check_labels(&used).unwrap();
    }

    #[tokio::test]
    async fn open_routes_each_label_to_its_store_and_says_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let c = parse("[key_value_store.cache]\ntype = \"spin\"\n").unwrap();
        let used = vec!["default".to_string(), "cache".to_string()];
        let (kv, described) = c.open(&used, dir.path(), RedisOptions::default()).unwrap();
        assert!(
            described[0].contains("`default`: SQLite file"),
            "{described:?}"
        );
        assert!(described[1].contains("`cache`: in memory"), "{described:?}");
        kv.set("default", "k", b"d").await.unwrap();
        kv.set("cache", "k", b"c").await.unwrap();
        assert_eq!(
            kv.get("default", "k").await.unwrap().as_deref(),
            Some(&b"d"[..])
        );
        assert_eq!(
            kv.get("cache", "k").await.unwrap().as_deref(),
            Some(&b"c"[..])
        );
        assert!(kv.get("other", "k").await.is_err());
    }
}
