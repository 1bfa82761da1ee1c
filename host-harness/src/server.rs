//! Serving HTTP with the component: one pre-instantiated component, one instance per request.
//!
//! The request runs in its own task so the component may keep working after it has set
//! its response ("respond, then work"); the response is streamed back as soon as it is set.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimitsBuilder,
};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::config::{VariableSource, Variables, expand};
use crate::kv::{KvBackend, KvCtx};
use crate::manifest::Manifest;
use crate::outbound::{AllowList, HostPattern, OutboundHooks};
use crate::state::HostState;

/// Most instances alive at once (in-flight requests plus work continuing after a response).
const MAX_INSTANCES: u32 = 1000;
/// Linear memory any one instance may use.
const MAX_MEMORY_BYTES: usize = 64 << 20;

/// A wasmtime engine configured for serving: async, pooling allocator.
pub fn engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    let mut pooling = PoolingAllocationConfig::default();
    pooling.total_component_instances(MAX_INSTANCES);
    pooling.total_memories(MAX_INSTANCES);
    pooling.total_tables(MAX_INSTANCES * 2);
    pooling.max_memory_size(MAX_MEMORY_BYTES);
    pooling.total_core_instances(MAX_INSTANCES * 4);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    Ok(Engine::new(&config)?)
}

/// Compiles the component at `path`.
pub fn compile(engine: &Engine, path: &Path) -> anyhow::Result<Component> {
    if !path.exists() {
        bail!(
            "component {} does not exist: build it first (`cargo build --target wasm32-wasip2 --profile component -p ml-connector`, or run with --build)",
            path.display()
        );
    }
    Component::from_file(engine, path)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot load component {}", path.display()))
}

/// Everything resolved from the manifest that every request needs.
#[derive(Clone)]
pub struct AppConfig {
    pub variables: Variables,
    pub allow: AllowList,
    pub kv_labels: Vec<String>,
}

impl AppConfig {
    /// Resolves variables and the outbound allow-list; unresolvable entries are reported.
    pub fn resolve(manifest: &Manifest, source: &dyn VariableSource) -> anyhow::Result<Self> {
        let variables = Variables::resolve(manifest, source);
        for problem in variables.unresolved() {
            tracing::warn!("{problem}");
        }
        let mut patterns = Vec::new();
        for entry in &manifest.component.allowed_outbound_hosts {
            match expand(manifest, source, entry) {
                Ok(expanded) => patterns.push(
                    HostPattern::parse(&expanded)
                        .with_context(|| format!("allowed_outbound_hosts entry `{entry}`"))?,
                ),
                Err(e) => bail!("allowed_outbound_hosts entry `{entry}`: {e}"),
            }
        }
        Ok(AppConfig {
            variables,
            allow: AllowList::new(patterns),
            kv_labels: manifest.component.key_value_stores.clone(),
        })
    }
}

/// The component, linked and ready to instantiate per request.
pub struct Harness {
    engine: Engine,
    pre: ProxyPre<HostState>,
    app: AppConfig,
    kv: Arc<dyn KvBackend>,
    client: crate::outbound::PooledClient,
}

impl Harness {
    /// Links `component` against the standard WASI interfaces and our key-value/config hosts.
    pub fn new(
        engine: &Engine,
        component: &Component,
        app: AppConfig,
        kv: Arc<dyn KvBackend>,
    ) -> anyhow::Result<Self> {
        let mut linker: Linker<HostState> = Linker::new(engine);
        HostState::add_to_linker(&mut linker)?;
        let pre = ProxyPre::new(linker.instantiate_pre(component).map_err(anyhow::Error::from).context(
            "the component does not link: it imports something this host (and Spin) does not provide",
        )?)?;
        Ok(Harness {
            engine: engine.clone(),
            pre,
            app,
            kv,
            client: crate::outbound::pooled_client(),
        })
    }

    fn new_store(&self) -> Store<HostState> {
        let state = HostState::new(
            WasiCtx::builder().inherit_stdout().inherit_stderr().build(),
            OutboundHooks {
                allow: self.app.allow.clone(),
                client: self.client.clone(),
            },
            KvCtx {
                backend: self.kv.clone(),
                allowed_labels: Arc::new(self.app.kv_labels.clone()),
            },
            self.app.variables.clone(),
            StoreLimitsBuilder::new()
                .memory_size(MAX_MEMORY_BYTES)
                .build(),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s.limits());
        store
    }

    /// Runs one request through a fresh instance and returns the response as soon as the
    /// component sets it; the instance keeps running in the background until it returns.
    pub async fn handle<B>(
        &self,
        req: hyper::Request<B>,
    ) -> anyhow::Result<hyper::Response<HyperOutgoingBody>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        use wasmtime_wasi_http::WasiHttpView;
        let mut store = self.new_store();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let pre = self.pre.clone();
        let task = tokio::task::spawn(async move {
            let proxy = pre
                .instantiate_async(&mut store)
                .await
                .map_err(anyhow::Error::from)?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
                .map_err(anyhow::Error::from)
        });
        match receiver.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(code)) => Err(anyhow::anyhow!(
                "the component answered with an error: {code:?}"
            )),
            Err(_) => {
                let err = match task.await {
                    Ok(Ok(())) => {
                        anyhow::anyhow!("the component returned without setting a response")
                    }
                    Ok(Err(e)) => e,
                    Err(e) => e.into(),
                };
                Err(err.context("the component failed before responding"))
            }
        }
    }

    /// Sends a request with a small in-memory body through [`Harness::handle`] and collects the
    /// response (used by the retry timer and the benchmarks).
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "localhost");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let body = Full::new(Bytes::from(body)).map_err(
            |never: std::convert::Infallible| -> wasmtime_wasi_http::Error { match never {} },
        );
        let resp = self.handle(builder.body(body)?).await?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .to_bytes();
        Ok((status, bytes.to_vec()))
    }
}

fn error_response(status: u16, code: &str, message: &str) -> hyper::Response<HyperOutgoingBody> {
    let body = serde_json::json!({"error": code, "message": message}).to_string();
    let body = Full::new(Bytes::from(body))
        .map_err(|never: std::convert::Infallible| -> wasmtime_wasi_http::Error { match never {} });
    let mut resp = hyper::Response::new(HyperOutgoingBody::new(body));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A running server: its address, and a way to stop it gracefully.
pub struct Running {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (up to 10 s), and waits.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await?
    }

    /// Stops at once, abandoning in-flight work (as a crash would).
    pub fn abort(self) {
        self.task.abort();
    }

    /// Resolves when the server has stopped by itself.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?
    }

    /// A handle that can stop the server from elsewhere (e.g. a signal handler).
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Options of [`serve`].
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Call `POST /admin/retry-due` this often (with the `admin_token` variable).
    pub retry_interval: Option<Duration>,
}

/// Accepts connections on `listener` and serves them with `harness` until stopped.
pub fn serve(
    harness: Arc<Harness>,
    listener: TcpListener,
    options: ServeOptions,
) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    let (shutdown, mut stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        let mut retry_timer = options.retry_interval.map(|d| {
            let mut t = tokio::time::interval(d);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            tokio::select! {
                _ = stop_rx.changed() => break,
                accepted = listener.accept() => {
                    let (stream, _) = match accepted {
                        Ok(s) => s,
                        Err(e) => { tracing::warn!("accept failed: {e}"); continue; }
                    };
                    let harness = harness.clone();
                    let mut stopping = stop_rx.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let harness = harness.clone();
                            async move {
                                let method = req.method().clone();
                                let path = req.uri().path().to_string();
                                match harness.handle(req).await {
                                    Ok(resp) => Ok::<_, std::convert::Infallible>(resp),
                                    Err(e) => {
                                        tracing::error!(%method, %path, "request failed: {e:#}");
                                        Ok(error_response(500, "host_error", "the connector failed to handle this request; see the host log"))
                                    }
                                }
                            }
                        });
                        let conn = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), service);
                        let mut conn = std::pin::pin!(conn);
                        let result = tokio::select! {
                            r = conn.as_mut() => r,
                            _ = stopping.changed() => {
                                // Finish the request in flight, then close (idle keep-alive
                                // connections close at once instead of holding up the stop).
                                conn.as_mut().graceful_shutdown();
                                conn.await
                            }
                        };
                        if let Err(e) = result {
                            tracing::debug!("connection ended with error: {e}");
                        }
                    });
                }
                _ = async { retry_timer.as_mut().unwrap().tick().await }, if retry_timer.is_some() => {
                    let harness = harness.clone();
                    tokio::spawn(async move { run_retry_due(&harness).await });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        // Graceful: no new connections; give in-flight ones a moment.
        let drain = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            tracing::warn!(
                "in-flight requests did not finish within 10 s; unfinished work is retried later"
            );
        }
        Ok(())
    });
    Ok(Running {
        addr,
        shutdown,
        task,
    })
}

/// One tick of the retry scheduler: what an external cron job does on Spin.
pub async fn run_retry_due(harness: &Harness) {
    let token = match harness.app.variables.get("admin_token") {
        Ok(Some(t)) => t,
        _ => {
            tracing::warn!("retry timer: admin_token is not set, cannot call /admin/retry-due");
            return;
        }
    };
    let auth = format!("Bearer {token}");
    match harness
        .call(
            "POST",
            "/admin/retry-due",
            &[("authorization", &auth)],
            Vec::new(),
        )
        .await
    {
        Ok((200, body)) => tracing::debug!("retry-due: {}", String::from_utf8_lossy(&body)),
        Ok((status, body)) => tracing::warn!(
            "retry-due answered {status}: {}",
            String::from_utf8_lossy(&body)
        ),
        Err(e) => tracing::warn!("retry-due failed: {e:#}"),
    }
}
