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
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
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
    /// Run the real handler (its state changes happen), then withhold its answer for `ms` and
    /// answer 504 instead: "the answer is lost". With `ms` past the client's timeout the client
    /// times out; with a short `ms` it sees a gateway timeout. Either way the write was done.
    AfterHandler { ms: u64 },
    /// Run the real handler, send its status, headers (with the full `content-length`) and
    /// the first half of its body, then send nothing for `ms` and cut the connection: a server
    /// that stalls in the middle of a response body.
    StallBody { ms: u64 },
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

/// A fault that hits a matching request with a fixed chance, for as long as it is installed
/// (soak tests: "5 % of requests fail"). The dice come from one RNG seeded with
/// [`Control::seed_random_faults`], so a run that sends requests in the same order gets the
/// same faults. Matching random faults share one roll per request, so their chances add up
/// (5 % + 2 % + 1 % means 8 % of matching requests are faulted, each by one fault).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RandomFault {
    #[serde(default)]
    pub method: Option<String>,
    pub path_contains: String,
    /// Chance per request, in thousandths (50 = 5 %).
    pub per_mille: u32,
    pub action: FaultAction,
}

impl RandomFault {
    fn matches(&self, method: &str, path: &str) -> bool {
        path.contains(&self.path_contains)
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
    }
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

struct ControlState {
    rules: Vec<FaultRule>,
    random: Vec<RandomFault>,
    rng: StdRng,
    log: Vec<LoggedRequest>,
    latency_ms: u64,
}

impl Default for ControlState {
    fn default() -> Self {
        ControlState {
            rules: Vec::new(),
            random: Vec::new(),
            rng: StdRng::seed_from_u64(0),
            log: Vec::new(),
            latency_ms: 0,
        }
    }
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
            action: FaultAction::Status {
                status,
                headers: Vec::new(),
                body: String::new(),
            },
        });
    }

    /// Installs a fault that hits matching requests with a fixed chance until cleared.
    pub fn inject_random(&self, fault: RandomFault) {
        self.inner.lock().unwrap().random.push(fault);
    }

    /// Reseeds the RNG behind random faults (the default seed is 0).
    pub fn seed_random_faults(&self, seed: u64) {
        self.inner.lock().unwrap().rng = StdRng::seed_from_u64(seed);
    }

    /// Removes every fault rule (random ones included) and the added latency.
    pub fn clear_faults(&self) {
        let mut s = self.inner.lock().unwrap();
        s.rules.clear();
        s.random.clear();
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
        self.inner
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|r| r.path.contains(needle))
            .count()
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
                && r.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
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
        if action.is_some() {
            return (action, latency);
        }
        // One roll per request against every matching random fault, in installation order.
        let matching: Vec<(u32, FaultAction)> = s
            .random
            .iter()
            .filter(|f| f.matches(method, path))
            .map(|f| (f.per_mille, f.action.clone()))
            .collect();
        if matching.is_empty() {
            return (None, latency);
        }
        let roll: u32 = s.rng.random_range(0..1000);
        let mut threshold = 0;
        for (per_mille, action) in matching {
            threshold += per_mille;
            if roll < threshold {
                return (Some(action), latency);
            }
        }
        (None, latency)
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
        Some(FaultAction::Status {
            status,
            headers,
            body,
        }) => {
            let mut resp = Response::new(Body::from(body));
            *resp.status_mut() =
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
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
        Some(FaultAction::AfterHandler { ms }) => {
            // Let the handler finish (and its changes land) before the answer is dropped.
            let real = next.run(req).await;
            drop(axum::body::to_bytes(real.into_body(), usize::MAX).await);
            // Logged now: a client that times out closes the connection, and this future is
            // dropped during the sleep.
            let status = StatusCode::GATEWAY_TIMEOUT;
            ctl.record(LoggedRequest {
                method,
                path,
                query,
                status: status.as_u16(),
                faulted: true,
            });
            tokio::time::sleep(Duration::from_millis(ms)).await;
            return status.into_response();
        }
        Some(FaultAction::StallBody { ms }) => {
            let real = next.run(req).await;
            let (mut parts, body) = real.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            parts.headers.remove(axum::http::header::TRANSFER_ENCODING);
            parts.headers.insert(
                axum::http::header::CONTENT_LENGTH,
                HeaderValue::from(bytes.len()),
            );
            let half = bytes.slice(..bytes.len() / 2);
            let body = StalledBody {
                first: Some(half),
                stall: Box::pin(tokio::time::sleep(Duration::from_millis(ms))),
            };
            (Response::from_parts(parts, Body::new(body)), true)
        }
        None => (next.run(req).await, false),
    };
    ctl.record(LoggedRequest {
        method,
        path,
        query,
        status: response.status().as_u16(),
        faulted,
    });
    response
}

/// A body that yields its first part, then nothing until `stall` ends, then fails (so the
/// connection is cut with the body incomplete).
struct StalledBody {
    first: Option<axum::body::Bytes>,
    stall: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for StalledBody {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::future::Future;
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(first))));
        }
        match this.stall.as_mut().poll(cx) {
            std::task::Poll::Pending => std::task::Poll::Pending,
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Some(Err(std::io::Error::other(
                "simulated stall: the rest of the body never comes",
            )))),
        }
    }
}

/// The control API: `POST /_sim/faults` (a [`FaultRule`]), `POST /_sim/random-faults` (a
/// [`RandomFault`]), `DELETE /_sim/faults`, `POST /_sim/latency` (`{"ms": N}`),
/// `GET /_sim/requests`, `DELETE /_sim/requests`.
pub fn control_routes<S: Clone + Send + Sync + 'static>(ctl: Control) -> Router<S> {
    #[derive(Deserialize)]
    struct Latency {
        ms: u64,
    }
    let (c1, c2, c3, c4, c5, c6) = (
        ctl.clone(),
        ctl.clone(),
        ctl.clone(),
        ctl.clone(),
        ctl.clone(),
        ctl,
    );
    Router::new()
        .route(
            "/_sim/random-faults",
            post(move |Json(fault): Json<RandomFault>| async move {
                c6.inject_random(fault);
                StatusCode::NO_CONTENT
            }),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(ctl: &Control, n: usize) -> Vec<Option<FaultAction>> {
        (0..n)
            .map(|_| ctl.take_fault("POST", "/v3/company/1/invoice").0)
            .collect()
    }

    fn status(code: u16) -> FaultAction {
        FaultAction::Status {
            status: code,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    #[test]
    fn random_faults_hit_about_their_share_and_repeat_with_the_same_seed() {
        let ctl = Control::default();
        ctl.seed_random_faults(7);
        ctl.inject_random(RandomFault {
            method: None,
            path_contains: "/v3/".into(),
            per_mille: 50,
            action: status(500),
        });
        ctl.inject_random(RandomFault {
            method: None,
            path_contains: "/v3/".into(),
            per_mille: 20,
            action: status(429),
        });
        let first = faults(&ctl, 10_000);
        let fives = first.iter().filter(|f| **f == Some(status(500))).count();
        let limits = first.iter().filter(|f| **f == Some(status(429))).count();
        assert!((400..=600).contains(&fives), "about 5 %: {fives}");
        assert!((130..=270).contains(&limits), "about 2 %: {limits}");
        ctl.seed_random_faults(7);
        assert_eq!(
            faults(&ctl, 10_000),
            first,
            "the same seed gives the same faults"
        );
    }

    #[test]
    fn random_faults_leave_other_paths_alone_and_counted_rules_go_first() {
        let ctl = Control::default();
        ctl.inject_random(RandomFault {
            method: None,
            path_contains: "/v3/".into(),
            per_mille: 1000,
            action: status(503),
        });
        assert_eq!(ctl.take_fault("GET", "/oauth2/v1/tokens/bearer").0, None);
        ctl.fail_next("/invoice", 1, 400);
        assert_eq!(
            ctl.take_fault("POST", "/v3/company/1/invoice").0,
            Some(status(400))
        );
        assert_eq!(
            ctl.take_fault("POST", "/v3/company/1/invoice").0,
            Some(status(503))
        );
        ctl.clear_faults();
        assert_eq!(ctl.take_fault("POST", "/v3/company/1/invoice").0, None);
    }
}
