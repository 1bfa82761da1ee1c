//! Serving HTTP with the component: one pre-instantiated component, one instance per request.
//!
//! The request runs in its own task so the component may keep working after it has set
//! its response ("respond, then work"); the response is streamed back as soon as it is set.
//!
//! [`Limits`] keep slow clients, stalled upstreams and runaway guests from holding instances:
//! deadlines on the request head, the request body, the response and the instance's whole
//! life (enforced inside guest code by epoch interruption), and a cap on instances alive at
//! once, past which requests are answered `503 overloaded` at once.

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
use crate::deadline::TimedBody;
use crate::kv::{KvBackend, KvCtx};
use crate::manifest::Manifest;
use crate::outbound::{AllowList, HostPattern, OutboundHooks, OutboundTimeouts};
use crate::state::HostState;

/// Linear memory any one instance may use.
const MAX_MEMORY_BYTES: usize = 64 << 20;
/// How often the engine's epoch advances: the granularity of guest deadlines, and how often a
/// guest that computes without calling the host yields to other tasks.
const EPOCH_TICK: Duration = Duration::from_millis(100);

/// Limits that keep slow clients, stalled upstreams and runaway guests from holding instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most instances alive at once: requests in progress plus work continuing after a
    /// response. Beyond it requests are answered `503 overloaded` with `Retry-After` before
    /// any instance is made. Size the engine's pool with [`engine_with`] to match.
    pub max_concurrent: u32,
    /// A client must send the whole request head within this (else the connection closes).
    pub header_timeout: Duration,
    /// ... and the whole request body within this of the head (else the component answers 408).
    pub body_timeout: Duration,
    /// The component must set its response within this of the request's arrival, else the
    /// client is answered `503 timeout` (the instance keeps running, within `work_timeout`).
    pub response_timeout: Duration,
    /// An instance is stopped this long after its request arrived, whatever it is doing
    /// (a guest computing without calling the host is interrupted by the epoch deadline).
    pub work_timeout: Duration,
    /// Deadlines of the component's outbound requests.
    pub outbound: OutboundTimeouts,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent: 1000,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(120),
            work_timeout: Duration::from_secs(600),
            outbound: OutboundTimeouts::default(),
        }
    }
}

/// A wasmtime engine configured for serving, with a pool for the default
/// [`Limits::max_concurrent`].
pub fn engine() -> anyhow::Result<Engine> {
    engine_with(&Limits::default())
}

/// A wasmtime engine configured for serving: async, epoch interruption (a ticker thread
/// advances the epoch every 100 ms while the engine lives), and a pooling allocator with room
/// for `limits.max_concurrent` instances, each with at most 64 MiB of linear memory.
pub fn engine_with(limits: &Limits) -> anyhow::Result<Engine> {
    let instances = limits.max_concurrent.max(1);
    let mut config = Config::new();
    config.epoch_interruption(true);
    let mut pooling = PoolingAllocationConfig::default();
    pooling.total_component_instances(instances);
    pooling.total_memories(instances);
    pooling.total_tables(instances * 2);
    pooling.max_memory_size(MAX_MEMORY_BYTES);
    pooling.total_core_instances(instances * 4);
    // Each instance runs its guest on a fiber stack from the pool (2 MiB each by default).
    pooling.total_stacks(instances);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    let engine = Engine::new(&config)?;
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        })
        .context("cannot start the epoch ticker thread")?;
    Ok(engine)
}

/// Makes guest code in `store` trap once `deadline` has passed. Until then a guest that
/// computes without calling the host yields to other tasks every epoch tick. Needs an engine
/// from [`engine_with`] (epoch interruption on, ticker running).
pub fn arm_deadline<T: 'static>(store: &mut Store<T>, deadline: std::time::Instant) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if std::time::Instant::now() >= deadline {
            Err(wasmtime::Error::msg(
                "the component ran past its deadline (--work-timeout) and was interrupted",
            ))
        } else {
            Ok(wasmtime::UpdateDeadline::Yield(1))
        }
    });
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
    limits: Limits,
    slots: Arc<tokio::sync::Semaphore>,
}

/// A store and the slot it occupies. Fields drop in order: the store (and its instance's
/// pool slot) goes before the permit that lets another request in.
struct Live {
    store: Store<HostState>,
    _slot: tokio::sync::OwnedSemaphorePermit,
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
        let limits = Limits::default();
        Ok(Harness {
            engine: engine.clone(),
            pre,
            app,
            kv,
            client: crate::outbound::pooled_client(),
            slots: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent as usize)),
            limits,
        })
    }

    /// Serves within `limits` instead of [`Limits::default`] (the engine's pool must have room
    /// for `limits.max_concurrent` instances: see [`engine_with`]).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.slots = Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent as usize));
        self.limits = limits;
        self
    }

    /// The limits this harness serves within.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How many instances are alive right now (requests in progress and work after responses).
    pub fn live_instances(&self) -> usize {
        (self.limits.max_concurrent as usize).saturating_sub(self.slots.available_permits())
    }

    fn new_store(&self, deadline: std::time::Instant) -> Store<HostState> {
        let state = HostState::new(
            WasiCtx::builder().inherit_stdout().inherit_stderr().build(),
            OutboundHooks {
                allow: self.app.allow.clone(),
                client: self.client.clone(),
                timeouts: self.limits.outbound,
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
        arm_deadline(&mut store, deadline);
        store
    }

    /// Runs one request through a fresh instance and returns the response as soon as the
    /// component sets it; the instance keeps running in the background until it returns (or
    /// until [`Limits::work_timeout`]). Over [`Limits::max_concurrent`] the answer is
    /// `503 overloaded` without an instance; with no response by [`Limits::response_timeout`]
    /// it is `503 timeout`.
    pub async fn handle<B>(
        &self,
        req: hyper::Request<B>,
    ) -> anyhow::Result<hyper::Response<HyperOutgoingBody>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        use wasmtime_wasi_http::WasiHttpView;
        let arrived = tokio::time::Instant::now();
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            tracing::warn!(
                limit = self.limits.max_concurrent,
                method = %req.method(),
                path = %req.uri().path(),
                "overloaded: answered 503 (--max-concurrent)"
            );
            return Ok(overloaded_response(self.limits.max_concurrent));
        };
        let body_by = arrived + self.limits.body_timeout;
        let req = req.map(|body| TimedBody::new(body, body_by, None));
        let work_by = arrived + self.limits.work_timeout;
        let mut store = self.new_store(work_by.into_std());
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let pre = self.pre.clone();
        let work_timeout = self.limits.work_timeout;
        let mut live = Live { store, _slot: slot };
        let task = tokio::task::spawn(async move {
            let run = async {
                let proxy = pre.instantiate_async(&mut live.store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut live.store, req, out)
                    .await
            };
            let result = match tokio::time::timeout_at(work_by, run).await {
                Ok(r) => r.map_err(anyhow::Error::from),
                Err(_) => Err(anyhow::anyhow!(
                    "the component was still running {} s after the request arrived \
                     (--work-timeout) and was stopped",
                    work_timeout.as_secs()
                )),
            };
            if let Err(e) = &result {
                tracing::warn!("component instance ended with an error: {e:#}");
            }
            drop(live);
            result
        });
        match tokio::time::timeout_at(arrived + self.limits.response_timeout, receiver).await {
            Ok(Ok(Ok(resp))) => Ok(resp),
            Ok(Ok(Err(code))) => Err(anyhow::anyhow!(
                "the component answered with an error: {code:?}"
            )),
            Ok(Err(_)) => {
                let err = match task.await {
                    Ok(Ok(())) => {
                        anyhow::anyhow!("the component returned without setting a response")
                    }
                    Ok(Err(e)) => e,
                    Err(e) => e.into(),
                };
                Err(err.context("the component failed before responding"))
            }
            Err(_) => {
                tracing::warn!(
                    "the component set no response within {} s (--response-timeout); answered 503",
                    self.limits.response_timeout.as_secs()
                );
                let mut resp = error_response(
                    503,
                    "timeout",
                    &format!(
                        "the connector did not answer within {} s; the request may still \
                         complete, so check before sending it again",
                        self.limits.response_timeout.as_secs()
                    ),
                );
                resp.headers_mut()
                    .insert("retry-after", hyper::header::HeaderValue::from_static("5"));
                Ok(resp)
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

/// `503` with `{"error": "overloaded", ...}` and `Retry-After`, for requests over the cap.
fn overloaded_response(limit: u32) -> hyper::Response<HyperOutgoingBody> {
    let mut resp = error_response(
        503,
        "overloaded",
        &format!(
            "the connector is already handling {limit} requests at once (--max-concurrent); \
             retry in a few seconds"
        ),
    );
    resp.headers_mut()
        .insert("retry-after", hyper::header::HeaderValue::from_static("2"));
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
        // A tick while the previous retry-due is still answering is skipped, as the
        // deploy's CronJob does (`concurrencyPolicy: Forbid`): retry-due works through its
        // batch before it answers, and overlapping runs would only pile up instances.
        let retry_running = Arc::new(std::sync::atomic::AtomicBool::new(false));
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
                    let header_timeout = harness.limits.header_timeout;
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
                            .header_read_timeout(header_timeout)
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
                    use std::sync::atomic::Ordering;
                    if retry_running.swap(true, Ordering::AcqRel) {
                        tracing::debug!("retry timer: the previous retry-due is still running; skipping this tick");
                    } else {
                        let harness = harness.clone();
                        let running = retry_running.clone();
                        tokio::spawn(async move {
                            run_retry_due(&harness).await;
                            running.store(false, Ordering::Release);
                        });
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A guest function that never returns on its own.
    fn looping_guest(engine: &Engine) -> wasmtime::Module {
        let wasm = wat::parse_str(r#"(module (func (export "spin") (loop $l (br $l))))"#)
            .expect("valid text");
        wasmtime::Module::new(engine, wasm).expect("compiles")
    }

    fn small_engine() -> Engine {
        engine_with(&Limits {
            max_concurrent: 4,
            ..Limits::default()
        })
        .expect("engine")
    }

    /// What happened to a looping guest run by [`run_guest`].
    struct Ran {
        result: wasmtime::Result<()>,
        /// Whether another task on the guest's (single) thread ran while it looped.
        others_ran: bool,
    }

    /// Runs the looping guest with `deadline` on a thread of its own, with a single-threaded
    /// runtime that also has one other task ready to run, and waits (up to a minute) for it to
    /// end: a guest that is never interrupted fails the test instead of hanging it.
    fn run_guest(deadline: Duration) -> Ran {
        let engine = small_engine();
        let module = looping_guest(&engine);
        let mut store = Store::new(&engine, ());
        arm_deadline(&mut store, std::time::Instant::now() + deadline);
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let ran = runtime.block_on(async {
                let others_ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let flag = others_ran.clone();
                let other = tokio::spawn(async move {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                });
                let result = async {
                    let instance = wasmtime::Instance::new_async(&mut store, &module, &[]).await?;
                    let spin = instance.get_typed_func::<(), ()>(&mut store, "spin")?;
                    spin.call_async(&mut store, ()).await
                }
                .await;
                // Read before awaiting `other`: only a yield from the guest could have run it.
                let others_ran = others_ran.load(std::sync::atomic::Ordering::SeqCst);
                let _ = other.await;
                Ran { result, others_ran }
            });
            let _ = done.send(ran);
        });
        result
            .recv_timeout(Duration::from_secs(60))
            .expect("the guest was interrupted instead of looping forever")
    }

    #[test]
    fn a_guest_that_loops_past_its_deadline_is_interrupted() {
        let ran = run_guest(Duration::from_millis(300));
        let err = ran.result.unwrap_err();
        assert!(
            format!("{err:?}").contains("ran past its deadline"),
            "{err:?}"
        );
    }

    #[test]
    fn a_looping_guest_lets_other_tasks_on_its_thread_run_until_it_is_interrupted() {
        let ran = run_guest(Duration::from_millis(500));
        assert!(ran.result.is_err(), "interrupted at its deadline");
        assert!(
            ran.others_ran,
            "another task ran while the guest was looping"
        );
    }

    #[test]
    fn the_default_limits_fit_the_default_pool() {
        let limits = Limits::default();
        assert!(limits.body_timeout < limits.response_timeout);
        assert!(limits.response_timeout < limits.work_timeout);
        assert!(limits.outbound.total <= limits.work_timeout);
    }
}
