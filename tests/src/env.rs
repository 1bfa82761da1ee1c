//! The end-to-end test environment: the real component (built by `build.rs`) served by the
//! real harness in-process, against the BigCommerce and QuickBooks simulators, over real HTTP.
//!
//! ```no_run
//! # async fn demo() {
//! use ml_e2e::env::{TestEnv, TestOptions, eventually};
//! use std::time::Duration;
//! let env = TestEnv::start(TestOptions::default()).await;
//! let (status, body) = env.get("/health").await;
//! assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
//! // Something asynchronous: wait for it, never for a fixed time.
//! eventually(Duration::from_secs(30), || async { !env.qbo.invoices().is_empty() }).await;
//! # }
//! ```
//!
//! Each [`TestEnv`] owns its simulators, a fresh data directory and its variables (passed
//! through [`Overrides`], never the process environment), so tests run in parallel safely.
//! The compiled component is shared by every environment of a test binary ([`component`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use ml_harness::config::{Overrides, VariableSource, expand};
use ml_harness::kv::{KvBackend, MemoryBackend, RedisOptions, SqliteBackend};
use ml_harness::manifest::Manifest;
use ml_harness::outbound::{AllowList, HostPattern};
use ml_harness::runtime_config::RuntimeConfig;
use ml_harness::server::{self, AppConfig, Harness, Limits, Running, ServeOptions};
use ml_sim::bigcommerce::{BcSim, BcSimConfig, BcSimHandle};
use ml_sim::quickbooks::{QboSim, QboSimConfig, QboSimHandle};
use serde_json::Value;
use wasmtime::Engine;
use wasmtime::component::Component;

/// The header BigCommerce hooks are registered with (CONTRACT §3).
pub const WEBHOOK_SECRET_HEADER: &str = "x-ml-webhook-secret";

/// Path of the component `build.rs` built (or `ML_E2E_COMPONENT` named).
pub fn component_wasm_path() -> &'static Path {
    Path::new(env!("ML_COMPONENT_WASM"))
}

/// The component a benchmark runs: `ML_COMPONENT_WASM` when set (at run time), else the one
/// this crate's build script built from the current sources (never a stale build at the path
/// `spin.toml` names, which only `cargo build --target wasm32-wasip2 --profile component`
/// refreshes).
pub fn bench_component_path() -> PathBuf {
    std::env::var_os("ML_COMPONENT_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| component_wasm_path().to_path_buf())
}

/// The repository root (the directory holding `spin.toml`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("ML_WORKSPACE_ROOT"))
}

/// The repository's real `spin.toml`.
pub fn manifest_path() -> PathBuf {
    workspace_root().join("spin.toml")
}

/// A compiled component and the engine it was compiled for.
pub struct Compiled {
    /// The serving engine (`ml_harness::server::engine`: async, pooling allocator).
    pub engine: Engine,
    /// The e2e build of `ml-connector`.
    pub component: Component,
}

/// The component, compiled once per test binary (compiling takes seconds; instantiating is
/// what every request does anyway).
pub fn component() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let engine = server::engine().expect("cannot create the wasmtime engine");
        let component = server::compile(&engine, component_wasm_path())
            .unwrap_or_else(|e| panic!("cannot compile the e2e component: {e:#}"));
        Compiled { engine, component }
    })
}

/// A variable source with nothing in it: the environment must not leak into tests.
#[derive(Debug, Clone, Copy)]
struct Nothing;

impl VariableSource for Nothing {
    fn get(&self, _: &str) -> Option<String> {
        None
    }
}

/// Which key-value storage the harness uses.
#[derive(Clone)]
pub enum KvChoice {
    /// SQLite in the environment's data directory, reopened from disk on restart (the default:
    /// what `ml-harness serve` uses).
    Sqlite,
    /// A `redis-server` of the environment's own, on a free loopback port, configured through a
    /// runtime config file in the data directory (as `--runtime-config-file` would); reconnected
    /// on restart (the server keeps the data).
    Redis,
    /// In memory; kept across [`TestEnv::restart`] (a restart then tests only the process side).
    Memory,
    /// A caller-supplied backend (fault injection); kept across restarts.
    Custom(Arc<dyn KvBackend>),
}

impl std::fmt::Debug for KvChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KvChoice::Sqlite => "Sqlite",
            KvChoice::Redis => "Redis",
            KvChoice::Memory => "Memory",
            KvChoice::Custom(_) => "Custom",
        })
    }
}

impl Default for KvChoice {
    /// SQLite, or Redis when the environment variable `ML_E2E_KV` is `redis` (to run the e2e
    /// suite against the Redis backend: `ML_E2E_KV=redis cargo test -p ml-e2e --test orders`).
    fn default() -> Self {
        match std::env::var("ML_E2E_KV").as_deref() {
            Ok("redis") => KvChoice::Redis,
            Ok("sqlite") | Ok("") | Err(_) => KvChoice::Sqlite,
            Ok(other) => panic!("ML_E2E_KV={other} is not a backend: use sqlite or redis"),
        }
    }
}

/// How a [`TestEnv`] starts. `TestOptions::default()` is a fully working connector.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// Variable values that replace (or add to) the ones the environment computes.
    pub variables: BTreeMap<String, String>,
    /// Variables to leave without a value (so the manifest default, or nothing, applies).
    pub unset: Vec<String>,
    /// Key-value storage.
    pub kv: KvChoice,
    /// BigCommerce simulator settings.
    pub bc: BcSimConfig,
    /// QuickBooks simulator settings.
    pub qbo: QboSimConfig,
    /// Have the harness call `POST /admin/retry-due` this often (off by default: tests call it).
    pub retry_interval: Option<Duration>,
    /// Replace the manifest's `allowed_outbound_hosts` with these entries (Spin syntax;
    /// `{{ variable }}` templates are expanded with the environment's variables).
    pub allowed_outbound_hosts: Option<Vec<String>>,
    /// Register `store/order/*` and `store/customer/*` hooks in the BigCommerce simulator that
    /// deliver to this harness (default true).
    pub register_webhooks: bool,
    /// The harness's limits (deadlines, concurrency cap); `max_concurrent` must stay within
    /// the shared engine's pool (`Limits::default().max_concurrent`).
    pub limits: Limits,
}

impl Default for TestOptions {
    fn default() -> Self {
        TestOptions {
            variables: BTreeMap::new(),
            unset: Vec::new(),
            kv: KvChoice::default(),
            bc: BcSimConfig::default(),
            qbo: QboSimConfig::default(),
            retry_interval: None,
            allowed_outbound_hosts: None,
            register_webhooks: true,
            limits: Limits::default(),
        }
    }
}

impl TestOptions {
    /// Sets a variable (e.g. `.var("mapping", json)`).
    pub fn var(mut self, name: &str, value: impl Into<String>) -> Self {
        self.variables.insert(name.to_string(), value.into());
        self
    }

    /// Leaves a variable unset (e.g. to test a missing required one).
    pub fn unset(mut self, name: &str) -> Self {
        self.unset.push(name.to_string());
        self
    }

    /// Uses the in-memory KV backend.
    pub fn memory_kv(mut self) -> Self {
        self.kv = KvChoice::Memory;
        self
    }

    /// Uses `backend` for KV (wrap a real backend to inject faults).
    pub fn kv_backend(mut self, backend: Arc<dyn KvBackend>) -> Self {
        self.kv = KvChoice::Custom(backend);
        self
    }

    /// Runs the harness's retry timer every `every`.
    pub fn retry_every(mut self, every: Duration) -> Self {
        self.retry_interval = Some(every);
        self
    }

    /// Allows outbound requests only to these entries, e.g. `&["{{ qbo_api_base }}"]`.
    pub fn allow_only(mut self, entries: &[&str]) -> Self {
        self.allowed_outbound_hosts = Some(entries.iter().map(|e| e.to_string()).collect());
        self
    }

    /// Registers no hooks in the BigCommerce simulator.
    pub fn without_webhooks(mut self) -> Self {
        self.register_webhooks = false;
        self
    }

    /// Serves within `limits` instead of the defaults.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// One HTTP response, everything a test may look at.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    /// The body as JSON; a body that is not JSON becomes `Value::String(text)`.
    pub json: Value,
}

/// A random token: 24 bytes, URL-safe base64.
fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>())
}

/// A running connector with its simulators. Dropping it stops everything and deletes the data
/// directory.
pub struct TestEnv {
    /// The BigCommerce simulator (place orders, inject faults, read the request log).
    pub bc: BcSimHandle,
    /// The QuickBooks simulator (read invoices/customers, inject faults, revoke tokens).
    pub qbo: QboSimHandle,
    /// The `admin_token` variable's value.
    pub admin_token: String,
    /// The `bigcommerce_webhook_secret` variable's value.
    pub webhook_secret: String,
    variables: BTreeMap<String, String>,
    options: TestOptions,
    data_dir: tempfile::TempDir,
    /// The environment's own Redis, with [`KvChoice::Redis`].
    redis: Option<crate::redis::RedisServer>,
    kv: Arc<dyn KvBackend>,
    harness: Arc<Harness>,
    running: Option<Running>,
    addr: SocketAddr,
    client: reqwest::Client,
}

impl std::fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv")
            .field("addr", &self.addr)
            .field("data_dir", &self.data_dir.path())
            .field("running", &self.running.is_some())
            .finish_non_exhaustive()
    }
}

impl TestEnv {
    /// Starts both simulators, then the harness on `127.0.0.1:0` with a fresh data directory,
    /// and registers the BigCommerce hooks. Panics (with the reason) if anything fails to start.
    pub async fn start(options: TestOptions) -> TestEnv {
        Self::try_start(options)
            .await
            .unwrap_or_else(|e| panic!("the test environment did not start: {e:#}"))
    }

    /// [`TestEnv::start`], returning the error instead.
    pub async fn try_start(options: TestOptions) -> anyhow::Result<TestEnv> {
        let bc = BcSim::start(options.bc.clone()).await?;
        let qbo = QboSim::start(options.qbo.clone()).await?;
        let admin_token = options
            .variables
            .get("admin_token")
            .cloned()
            .unwrap_or_else(random_token);
        let webhook_secret = options
            .variables
            .get("bigcommerce_webhook_secret")
            .cloned()
            .unwrap_or_else(random_token);

        let mut variables = ml_harness::demo::simulator_variables(&bc, &qbo);
        let mut set = |k: &str, v: String| {
            variables.insert(k.to_string(), v);
        };
        set("bigcommerce_webhook_secret", webhook_secret.clone());
        set(
            "encryption_key",
            base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()),
        );
        set("admin_token", admin_token.clone());
        set("retry_base_seconds", "1".to_string());
        set("max_attempts", "10".to_string());
        for (k, v) in &options.variables {
            variables.insert(k.clone(), v.clone());
        }
        for k in &options.unset {
            variables.remove(k);
        }

        let data_dir = tempfile::Builder::new().prefix("ml-e2e-").tempdir()?;
        let redis = match &options.kv {
            KvChoice::Redis => {
                let server = crate::redis::RedisServer::start().await?;
                std::fs::write(
                    data_dir.path().join(RUNTIME_CONFIG_FILE),
                    server.runtime_config(),
                )?;
                Some(server)
            }
            _ => None,
        };
        let kv: Arc<dyn KvBackend> = match &options.kv {
            KvChoice::Sqlite => Arc::new(SqliteBackend::open_in(data_dir.path())?),
            KvChoice::Redis => open_runtime_config(data_dir.path())?,
            KvChoice::Memory => Arc::new(MemoryBackend::default()),
            KvChoice::Custom(backend) => backend.clone(),
        };
        let harness = build_harness(&variables, &options, kv.clone())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let running = server::serve(harness.clone(), listener, serve_options(&options))?;
        let addr = running.addr;
        if options.register_webhooks {
            let destination = format!("http://{addr}/webhooks/bigcommerce");
            for scope in ["store/order/*", "store/customer/*"] {
                bc.add_hook(
                    scope,
                    &destination,
                    &[(WEBHOOK_SECRET_HEADER, &webhook_secret)],
                );
            }
        }
        Ok(TestEnv {
            bc,
            qbo,
            admin_token,
            webhook_secret,
            variables,
            options,
            data_dir,
            redis,
            kv,
            harness,
            running: Some(running),
            addr,
            client: no_keep_alive_client(),
        })
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The harness's address (the same across restarts).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The data directory (holds `ml-connector.db` with the SQLite backend).
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The environment's own Redis server (with [`KvChoice::Redis`]).
    pub fn redis(&self) -> Option<&crate::redis::RedisServer> {
        self.redis.as_ref()
    }

    /// The KV backend the running harness uses (for assertions on what is stored).
    pub fn kv(&self) -> &Arc<dyn KvBackend> {
        &self.kv
    }

    /// The in-process harness (call the component without TCP via [`Harness::call`]).
    pub fn harness(&self) -> &Arc<Harness> {
        &self.harness
    }

    /// Every variable value the harness was given.
    pub fn variables(&self) -> &BTreeMap<String, String> {
        &self.variables
    }

    /// Whether the harness is serving (false after [`TestEnv::kill`] or [`TestEnv::stop`]).
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Sends any request. `headers` are added as given; nothing else is added.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a valid HTTP method");
        let mut req = self.client.request(method, self.url(path)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {path} failed: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("reading the body from {path} failed: {e}"));
        let json = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    async fn json_request(
        &self,
        method: &str,
        path: &str,
        admin: bool,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let auth = format!("Bearer {}", self.admin_token);
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if admin {
            headers.push(("authorization", &auth));
        }
        let bytes = match body {
            Some(v) => {
                headers.push(("content-type", "application/json"));
                serde_json::to_vec(v).expect("a JSON value serializes")
            }
            None => Vec::new(),
        };
        let reply = self.request(method, path, &headers, bytes).await;
        (reply.status, reply.json)
    }

    /// `GET path` without credentials.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.json_request("GET", path, false, None).await
    }

    /// `POST path` with a JSON body, without credentials.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.json_request("POST", path, false, Some(body)).await
    }

    /// `PUT path` with a JSON body, without credentials.
    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.json_request("PUT", path, false, Some(body)).await
    }

    /// `GET path` with `Authorization: Bearer <admin_token>`.
    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        self.json_request("GET", path, true, None).await
    }

    /// `POST path` with the admin bearer and a JSON body (`Value::Null` sends an empty body).
    pub async fn admin_post(&self, path: &str, body: &Value) -> (u16, Value) {
        let body = (!body.is_null()).then_some(body);
        self.json_request("POST", path, true, body).await
    }

    /// `PUT path` with the admin bearer and a JSON body.
    pub async fn admin_put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.json_request("PUT", path, true, Some(body)).await
    }

    /// Posts `body` to `/webhooks/bigcommerce` with the right secret header, as BigCommerce
    /// would (use `bc.place_order` / `bc.deliver` for the simulator's real delivery path).
    pub async fn post_webhook(&self, body: &str) -> Reply {
        let headers = [
            (WEBHOOK_SECRET_HEADER, self.webhook_secret.as_str()),
            ("content-type", "application/json"),
        ];
        self.request(
            "POST",
            "/webhooks/bigcommerce",
            &headers,
            body.as_bytes().to_vec(),
        )
        .await
    }

    /// Stops the harness gracefully (in-flight requests finish) and leaves it stopped.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running
                .stop()
                .await
                .unwrap_or_else(|e| panic!("the harness did not stop cleanly: {e:#}"));
        }
    }

    /// Aborts the server at once with no drain, as a crash would. Work the component had
    /// already started in background tasks is not interrupted (the harness spawns it
    /// detached), so "crash" here means: connections and the accept loop die.
    pub fn kill(&mut self) {
        if let Some(running) = self.running.take() {
            running.abort();
        }
    }

    /// Stops the harness (gracefully, if it is still running) and starts a new one on the same
    /// address, data directory and variables. With SQLite the database is reopened from disk.
    pub async fn restart(&mut self) {
        self.stop().await;
        match self.options.kv {
            KvChoice::Sqlite => {
                self.kv = Arc::new(
                    SqliteBackend::open_in(self.data_dir.path())
                        .unwrap_or_else(|e| panic!("cannot reopen the KV database: {e:#}")),
                );
            }
            KvChoice::Redis => {
                self.kv = open_runtime_config(self.data_dir.path())
                    .unwrap_or_else(|e| panic!("cannot reconnect to Redis: {e:#}"));
            }
            KvChoice::Memory | KvChoice::Custom(_) => {}
        }
        self.harness = build_harness(&self.variables, &self.options, self.kv.clone())
            .unwrap_or_else(|e| panic!("cannot build the restarted harness: {e:#}"));
        let listener = bind_again(self.addr).await;
        let running = server::serve(self.harness.clone(), listener, serve_options(&self.options))
            .unwrap_or_else(|e| panic!("cannot serve the restarted harness: {e:#}"));
        self.running = Some(running);
    }

    /// [`TestEnv::restart`] with some variables changed first (an empty value leaves the
    /// variable unset), as an operator editing the deployment would.
    pub async fn restart_with(&mut self, changes: &[(&str, &str)]) {
        for (name, value) in changes {
            if value.is_empty() {
                self.variables.remove(*name);
            } else {
                self.variables.insert(name.to_string(), value.to_string());
            }
        }
        self.restart().await;
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.abort();
        }
    }
}

/// A client that keeps no idle connections: an idle keep-alive connection would hold up the
/// harness's graceful stop (it drains open connections) until its 10 s limit.
pub fn no_keep_alive_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("a reqwest client with default TLS-less settings builds")
}

/// The runtime config file a [`KvChoice::Redis`] environment writes in its data directory.
pub const RUNTIME_CONFIG_FILE: &str = "runtime-config.toml";

/// Opens the storage the data directory's runtime config names, with the harness's own code.
fn open_runtime_config(dir: &Path) -> anyhow::Result<Arc<dyn KvBackend>> {
    let config = RuntimeConfig::load(&dir.join(RUNTIME_CONFIG_FILE))?;
    let (kv, _) = config.open(&["default".to_string()], dir, RedisOptions::default())?;
    Ok(kv)
}

fn serve_options(options: &TestOptions) -> ServeOptions {
    ServeOptions {
        retry_interval: options.retry_interval,
    }
}

fn build_harness(
    variables: &BTreeMap<String, String>,
    options: &TestOptions,
    kv: Arc<dyn KvBackend>,
) -> anyhow::Result<Arc<Harness>> {
    let mut manifest = Manifest::load(&manifest_path())?;
    manifest.component.source = component_wasm_path().to_path_buf();
    let source = Overrides {
        values: variables.clone(),
        fallback: Nothing,
    };
    let mut app = AppConfig::resolve(&manifest, &source)?;
    if let Some(entries) = &options.allowed_outbound_hosts {
        let patterns = entries
            .iter()
            .map(|entry| {
                let expanded = expand(&manifest, &source, entry)
                    .map_err(|e| anyhow::anyhow!("`{entry}`: {e}"))?;
                HostPattern::parse(&expanded)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        app.allow = AllowList::new(patterns);
    }
    let compiled = component();
    Ok(Arc::new(
        Harness::new(&compiled.engine, &compiled.component, app, kv)?
            .with_limits(options.limits.clone()),
    ))
}

/// Binds `addr` again after a stop; the port can take a moment to be released.
async fn bind_again(addr: SocketAddr) -> tokio::net::TcpListener {
    let mut last_error = None;
    for _ in 0..250 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot listen on {addr} again after the restart: {last_error:?}");
}

/// What a polled condition returns: `true`/`Some(value)` when it holds.
pub trait Outcome {
    /// What [`eventually`] returns once the condition holds.
    type Value;
    /// `Some` once the condition holds.
    fn into_value(self) -> Option<Self::Value>;
}

impl Outcome for bool {
    type Value = ();
    fn into_value(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn into_value(self) -> Option<T> {
        self
    }
}

/// Polls `check` every 20 ms until it holds (returns `true` or `Some`), and returns its value.
/// Panics if it does not hold within `timeout`: pick a generous timeout, it only bounds a
/// failing test; a passing one returns as soon as the condition holds.
pub async fn eventually<F, Fut, O>(timeout: Duration, check: F) -> O::Value
where
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
    O: Outcome,
{
    eventually_named("the condition", timeout, check).await
}

/// [`eventually`] with a description of what is awaited, for the panic message.
pub async fn eventually_named<F, Fut, O>(what: &str, timeout: Duration, mut check: F) -> O::Value
where
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
    O: Outcome,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await.into_value() {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what} did not hold within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn eventually_returns_the_value_once_the_condition_holds() {
        let polls = AtomicU32::new(0);
        let value = eventually(Duration::from_secs(30), || async {
            let n = polls.fetch_add(1, Ordering::SeqCst) + 1;
            (n >= 3).then_some(n * 10)
        })
        .await;
        assert_eq!(value, 30);
        assert_eq!(
            polls.load(Ordering::SeqCst),
            3,
            "it stops polling once the condition holds"
        );
    }

    #[tokio::test]
    #[should_panic(expected = "the order did not hold within")]
    async fn eventually_names_what_it_waited_for_when_it_never_holds() {
        eventually_named("the order", Duration::from_millis(50), || async { false }).await;
    }

    #[test]
    fn options_builders_set_what_they_say() {
        let opts = TestOptions::default()
            .var("mapping", "{}")
            .unset("admin_token")
            .memory_kv()
            .allow_only(&["{{ qbo_api_base }}"])
            .without_webhooks();
        assert_eq!(opts.variables["mapping"], "{}");
        assert_eq!(opts.unset, ["admin_token"]);
        assert!(matches!(opts.kv, KvChoice::Memory));
        assert_eq!(
            opts.allowed_outbound_hosts.as_deref(),
            Some(&["{{ qbo_api_base }}".to_string()][..])
        );
        assert!(!opts.register_webhooks);
    }
}
