//! Hardening (issue 16): slow clients, stalled upstreams and the limits that bound them. The
//! real component in the real harness, over real TCP, against the simulators.
//!
//! Slow clients are raw TCP connections that send a request head announcing a body and then
//! nothing: what a client on a bad link, or an attacker, does.

use std::net::SocketAddr;
use std::time::Duration;

use ml_e2e::env::{TestEnv, TestOptions, WEBHOOK_SECRET_HEADER, eventually_named};
use ml_harness::server::Limits;
use ml_sim::bigcommerce::{OrderShape, generate};
use ml_sim::control::{FaultAction, FaultRule};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous bound for things that normally take milliseconds (only a failing test waits this
/// long).
const PATIENCE: Duration = Duration::from_secs(60);

/// Opens a connection and sends a request head that announces `content_length` bytes of body,
/// and none of the body.
async fn send_head(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    content_length: usize,
) -> TcpStream {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {content_length}\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// One HTTP/1.1 response as read off a raw connection.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    json: Value,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads more from `stream` into `buf` until `done(buf)` holds; `None` if the connection
/// closes first.
async fn fill(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> bool,
) -> Option<()> {
    let mut chunk = [0u8; 4096];
    while !done(buf) {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(())
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Reads one response: the head, then a `content-length` or chunked body. `None` if the
/// connection closes before a whole one arrives.
async fn read_response(stream: &mut TcpStream) -> Option<RawResponse> {
    let mut buf = Vec::new();
    fill(stream, &mut buf, |b| find(b, b"\r\n\r\n", 0).is_some()).await?;
    let head_end = find(&buf, b"\r\n\r\n", 0)? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let value = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let mut body = Vec::new();
    if value("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut at = head_end;
        loop {
            fill(stream, &mut buf, |b| find(b, b"\r\n", at).is_some()).await?;
            let line_end = find(&buf, b"\r\n", at)?;
            let size_text = String::from_utf8_lossy(&buf[at..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                break;
            }
            fill(stream, &mut buf, |b| b.len() >= at + size + 2).await?;
            body.extend_from_slice(&buf[at..at + size]);
            at += size + 2;
        }
    } else {
        let length: usize = value("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        fill(stream, &mut buf, |b| b.len() >= head_end + length).await?;
        body.extend_from_slice(&buf[head_end..head_end + length]);
    }
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    Some(RawResponse {
        status,
        headers,
        json,
    })
}

/// `fut`, or a panic saying what did not happen within [`PATIENCE`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {PATIENCE:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_with_a_wrong_secret_is_refused_without_waiting_for_its_body() {
    let env = TestEnv::start(TestOptions::default().without_webhooks()).await;
    let mut conn = send_head(
        env.addr(),
        "POST",
        "/webhooks/bigcommerce",
        &[(WEBHOOK_SECRET_HEADER, "not-the-secret")],
        65536,
    )
    .await;
    let resp = within("an answer before the body", read_response(&mut conn))
        .await
        .expect("a whole response");
    assert_eq!(resp.status, 401, "{resp:?}");
    assert_eq!(resp.json["error"], "unauthorized", "{resp:?}");
    assert!(
        resp.json["message"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{resp:?}"
    );
}

/// One kind of slow client: where it posts, what it sends, the status it should get at once.
struct SlowKind {
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expected: u16,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_slow_body_clients_than_the_instance_pool_do_not_stop_health_from_answering() {
    // More than the 1000 instances `server::engine()` pools.
    const CLIENTS: usize = 1100;
    let env = TestEnv::start(TestOptions::default().without_webhooks()).await;
    let kinds = [
        SlowKind {
            method: "POST",
            path: "/webhooks/bigcommerce",
            headers: &[(WEBHOOK_SECRET_HEADER, "not-the-secret")],
            expected: 401,
        },
        SlowKind {
            method: "PUT",
            path: "/admin/mapping",
            headers: &[("authorization", "Bearer not-the-token")],
            expected: 401,
        },
        SlowKind {
            method: "GET",
            path: "/health",
            headers: &[],
            expected: 200,
        },
    ];
    let mut clients = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let kind = &kinds[i % kinds.len()];
        let conn = send_head(env.addr(), kind.method, kind.path, kind.headers, 65536).await;
        clients.push((conn, kind.method, kind.path, kind.expected));
    }
    // Every slow client is still connected, none has sent a byte of its body.
    let health = within(
        "GET /health",
        env.request("GET", "/health", &[], Vec::new()),
    )
    .await;
    assert_eq!(health.status, 200, "{}", health.text);
    let answers = futures::future::join_all(clients.iter_mut().map(
        |(conn, method, path, expected)| async move {
            let resp = within("an answer to a slow client", read_response(conn)).await;
            (resp.map(|r| r.status), *method, *path, *expected)
        },
    ))
    .await;
    for (status, method, path, expected) in answers {
        assert_eq!(
            status,
            Some(expected),
            "{method} {path} is answered without its body"
        );
    }
}

fn shape(seed: u64) -> OrderShape {
    OrderShape {
        lines: 2,
        tax_inclusive: false,
        tax_rate_bp: 800,
        coupon: false,
        manual_discount: false,
        shipping: true,
        handling: false,
        wrapping: false,
        guest: false,
        seed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_stalls_in_the_middle_of_a_body_leaves_the_order_retrying_with_a_timeout()
{
    let env = TestEnv::start(TestOptions::default()).await;
    // The order fetch answers its head and half its body, then nothing for 5 minutes: the
    // component's between-bytes timeout (5 s) must end the wait.
    env.bc.control().inject(FaultRule {
        method: Some("GET".into()),
        path_contains: "/v2/orders/8801".into(),
        remaining: 1,
        action: FaultAction::StallBody { ms: 300_000 },
    });
    env.bc.place_order(generate(8801, &shape(1))).await.unwrap();
    let rec = eventually_named("order 8801 is retrying", PATIENCE, || async {
        let (status, rec) = env.admin_get("/admin/records/order/8801").await;
        (status == 200 && rec["state"] == "retrying").then_some(rec)
    })
    .await;
    let last_error = rec["last_error"].as_str().unwrap_or_default();
    assert_eq!(rec["reason"], "transport", "{rec}");
    assert!(last_error.contains("timeout"), "{rec}");
    assert!(env.qbo.invoices().is_empty(), "nothing was posted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_client_that_never_sends_its_body_is_answered_408_at_the_body_deadline() {
    let env = TestEnv::start(TestOptions::default().without_webhooks().limits(Limits {
        body_timeout: Duration::from_secs(1),
        ..Limits::default()
    }))
    .await;
    let mut conn = send_head(
        env.addr(),
        "POST",
        "/webhooks/bigcommerce",
        &[(WEBHOOK_SECRET_HEADER, env.webhook_secret.as_str())],
        65536,
    )
    .await;
    let resp = within("an answer at the body deadline", read_response(&mut conn))
        .await
        .expect("a whole response");
    assert_eq!(resp.status, 408, "{resp:?}");
    assert_eq!(resp.json["error"], "request_timeout", "{resp:?}");
    eventually_named("the instance is released", PATIENCE, || async {
        env.harness().live_instances() == 0
    })
    .await;
    let (status, _) = env.admin_get("/admin/records").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_concurrency_cap_are_answered_503_overloaded_until_a_slot_frees() {
    let env = TestEnv::start(TestOptions::default().without_webhooks().limits(Limits {
        max_concurrent: 3,
        body_timeout: Duration::from_secs(3600),
        ..Limits::default()
    }))
    .await;
    // Three authenticated clients that never send their bodies hold the three slots.
    let mut slow = Vec::new();
    for _ in 0..3 {
        slow.push(
            send_head(
                env.addr(),
                "POST",
                "/webhooks/bigcommerce",
                &[(WEBHOOK_SECRET_HEADER, env.webhook_secret.as_str())],
                65536,
            )
            .await,
        );
    }
    eventually_named("three instances are alive", PATIENCE, || async {
        env.harness().live_instances() == 3
    })
    .await;
    let mut probe = send_head(env.addr(), "GET", "/health", &[], 0).await;
    let resp = within("an answer over the cap", read_response(&mut probe))
        .await
        .expect("a whole response");
    assert_eq!(resp.status, 503, "{resp:?}");
    assert_eq!(resp.json["error"], "overloaded", "{resp:?}");
    assert!(
        resp.json["message"].as_str().unwrap().contains("retry"),
        "{resp:?}"
    );
    assert_eq!(resp.header("retry-after"), Some("2"), "{resp:?}");
    assert_eq!(
        env.harness().live_instances(),
        3,
        "the refused request made no instance"
    );
    // The slow clients give up: their instances end and the slots free.
    drop(slow);
    eventually_named("the slots are free", PATIENCE, || async {
        env.harness().live_instances() == 0
    })
    .await;
    let health = within(
        "GET /health",
        env.request("GET", "/health", &[], Vec::new()),
    )
    .await;
    assert_eq!(health.status, 200, "{}", health.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_slower_than_the_response_timeout_is_a_503_timeout() {
    let env = TestEnv::start(TestOptions::default().without_webhooks().limits(Limits {
        response_timeout: Duration::from_secs(2),
        ..Limits::default()
    }))
    .await;
    env.bc.place_order(generate(8802, &shape(2))).await.unwrap();
    // Replay syncs before it answers; BigCommerce takes two minutes to answer the order fetch
    // (the component itself would give up after its 15 s first-byte timeout).
    env.bc.control().inject(FaultRule {
        method: Some("GET".into()),
        path_contains: "/v2/orders/8802".into(),
        remaining: 1,
        action: FaultAction::Hang { ms: 120_000 },
    });
    let reply = within(
        "an answer to the replay",
        env.admin_post("/admin/replay/order/8802", &Value::Null),
    )
    .await;
    assert_eq!(reply.0, 503, "{}", reply.1);
    assert_eq!(reply.1["error"], "timeout", "{}", reply.1);
}
