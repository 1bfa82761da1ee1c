//! Fault injection and request logging shared by both simulators.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// What an injected fault does to a matching request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// Answer with this status, headers and body instead of the real handler.
    Status {
        status: u16,
        #[serde(default)]
        headers: Vec<(String, String)>,
        #[serde(default)]
        body: String,
    },
    /// Never answer (until `ms` pass): the client sees a timeout.
    Hang { ms: u64 },
    /// Run the real handler, but only after `ms`.
    Delay { ms: u64 },
}

/// A fault that applies to the next `remaining` requests whose path contains `path_contains`
/// (and whose method is `method`, when given).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultRule {
    #[serde(default)]
    pub method: Option<String>,
    pub path_contains: String,
    pub remaining: u32,
    pub action: FaultAction,
}

/// One request as the simulator saw it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    /// True when an injected fault answered it.
    pub faulted: bool,
}

#[derive(Default)]
struct ControlState {
    rules: Vec<FaultRule>,
    log: Vec<LoggedRequest>,
    latency_ms: u64,
}

/// Shared handle to a simulator's faults and request log.
#[derive(Clone, Default)]
pub struct Control {
    inner: Arc<Mutex<ControlState>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Control")
    }
}

impl Control {
    /// Adds a fault rule.
    pub fn inject(&self, rule: FaultRule) {
        self.inner.lock().unwrap().rules.push(rule);
    }

    /// Fails the next `n` requests whose path contains `path_contains` with `status`.
    pub fn fail_next(&self, path_contains: &str, n: u32, status: u16) {
        self.inject(FaultRule {
            method: None,
            path_contains: path_contains.to_string(),
            remaining: n,
            action: FaultAction::Status { status, headers: Vec::new(), body: String::new() },
        });
    }

    /// Removes every fault rule and the added latency.
    pub fn clear_faults(&self) {
        let mut s = self.inner.lock().unwrap();
        s.rules.clear();
        s.latency_ms = 0;
    }

    /// Adds `ms` of latency to every request.
    pub fn set_latency_ms(&self, ms: u64) {
        self.inner.lock().unwrap().latency_ms = ms;
    }

    /// Every request seen so far, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.inner.lock().unwrap().log.clone()
    }

    /// How many requests had a path containing `needle` (faulted ones included).
    pub fn calls_to(&self, needle: &str) -> usize {
        self.inner.lock().unwrap().log.iter().filter(|r| r.path.contains(needle)).count()
    }

    /// Forgets the request log.
    pub fn clear_log(&self) {
        self.inner.lock().unwrap().log.clear();
    }

    fn take_fault(&self, method: &str, path: &str) -> (Option<FaultAction>, u64) {
        let mut s = self.inner.lock().unwrap();
        let latency = s.latency_ms;
        let pos = s.rules.iter().position(|r| {
            r.remaining > 0
                && path.contains(&r.path_contains)
                && r.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
        });
        let action = pos.map(|i| {
            let rule = &mut s.rules[i];
            rule.remaining -= 1;
            let action = rule.action.clone();
            if rule.remaining == 0 {
                s.rules.remove(i);
            }
            action
        });
        (action, latency)
    }

    fn record(&self, entry: LoggedRequest) {
        self.inner.lock().unwrap().log.push(entry);
    }
}

/// Axum middleware: applies latency and faults, and logs every request.
/// Control routes (`/_sim/...`) are neither faulted nor logged.
pub async fn fault_layer(State(ctl): State<Control>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/_sim/") {
        return next.run(req).await;
    }
    let method = req.method().to_string();
    let query = req.uri().query().map(str::to_string);
    let (fault, latency) = ctl.take_fault(&method, &path);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let (response, faulted) = match fault {
        Some(FaultAction::Status { status, headers, body }) => {
            let mut resp = Response::new(Body::from(body));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            for (k, v) in headers {
                if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
                    resp.headers_mut().append(k, v);
                }
            }
            (resp, true)
        }
        Some(FaultAction::Hang { ms }) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            (StatusCode::GATEWAY_TIMEOUT.into_response(), true)
        }
        Some(FaultAction::Delay { ms }) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            (next.run(req).await, false)
        }
        None => (next.run(req).await, false),
    };
    ctl.record(LoggedRequest { method, path, query, status: response.status().as_u16(), faulted });
    response
}

/// The control API: `POST /_sim/faults` (a [`FaultRule`]), `DELETE /_sim/faults`,
/// `POST /_sim/latency` (`{"ms": N}`), `GET /_sim/requests`, `DELETE /_sim/requests`.
pub fn control_routes<S: Clone + Send + Sync + 'static>(ctl: Control) -> Router<S> {
    #[derive(Deserialize)]
    struct Latency {
        ms: u64,
    }
    let (c1, c2, c3, c4, c5) = (ctl.clone(), ctl.clone(), ctl.clone(), ctl.clone(), ctl);
    Router::new()
        .route(
            "/_sim/faults",
            post(move |Json(rule): Json<FaultRule>| async move {
                c1.inject(rule);
                StatusCode::NO_CONTENT
            })
            .delete(move || async move {
                c2.clear_faults();
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/_sim/latency",
            post(move |Json(l): Json<Latency>| async move {
                c3.set_latency_ms(l.ms);
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/_sim/requests",
            get(move || async move { Json(c4.requests()) }).delete(move || async move {
                c5.clear_log();
                StatusCode::NO_CONTENT
            }),
        )
}
