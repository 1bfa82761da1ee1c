//! The Redis key-value backend against a real `redis-server` (started per test on a free
//! loopback port): the behaviour every backend shares, compare-and-swap and increment under
//! contention from many tasks and connections, Spin-compatible storage, and a Redis that is
//! down giving errors (never a hang) and working again once it is back.

use std::sync::Arc;
use std::time::Duration;

use ml_e2e::redis::RedisServer;
use ml_harness::kv::{KvBackend, RedisBackend, RedisOptions, conformance};

async fn server() -> RedisServer {
    RedisServer::start()
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn backend(url: &str) -> Arc<RedisBackend> {
    Arc::new(RedisBackend::new(url, RedisOptions::default()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backend_behaves_as_every_backend_does() {
    let redis = server().await;
    conformance::exercise(backend(&redis.url()).as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_stored_as_spin_stores_them_so_both_hosts_can_share_one_redis() {
    let redis = server().await;
    let kv = backend(&redis.url());
    assert_eq!(kv.increment("default", "n", 41).await.unwrap(), 41);
    assert_eq!(
        kv.get("default", "n").await.unwrap().as_deref(),
        Some(&b"41"[..]),
        "decimal text, what INCRBY keeps (Spin's Redis store increments with INCRBY)"
    );
    // A key Spin wrote: plain Redis strings under the key itself.
    kv.set("default", "rec/order/1", br#"{"state":"posted"}"#)
        .await
        .unwrap();
    let other_label = kv.get("cache", "rec/order/1").await.unwrap();
    assert!(
        other_label.is_some(),
        "the label is not part of the Redis key (one Redis per label, as in Spin)"
    );
    assert_eq!(
        kv.increment("default", "n", -42).await.unwrap(),
        -1,
        "negative sums work"
    );
    assert_eq!(
        kv.increment("default", "big", i64::MAX).await.unwrap(),
        i64::MAX
    );
    let err = kv
        .increment("default", "big", 1)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(err.0.contains("INCRBY"), "an overflow is an error: {err}");
    assert_eq!(
        kv.increment("default", "big", 0).await.unwrap(),
        i64::MAX,
        "and changes nothing"
    );
    assert_eq!(kv.increment("default", "n", 0).await.unwrap(), -1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_from_many_tasks_and_connections_lets_exactly_one_win_each_value() {
    let redis = server().await;
    // Four "instances" (their own connection each), eight tasks on each.
    let instances: Vec<Arc<RedisBackend>> = (0..4).map(|_| backend(&redis.url())).collect();
    instances[0]
        .set("default", "c", &0i64.to_le_bytes())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for (n, kv) in instances.iter().enumerate() {
        for t in 0..8 {
            let kv = kv.clone();
            tasks.push(tokio::spawn(async move {
                let mut taken = Vec::new();
                let mut conflicts = 0;
                while taken.len() < 25 {
                    let current = kv.get("default", "c").await.unwrap().unwrap();
                    let value = i64::from_le_bytes(current.as_slice().try_into().unwrap());
                    let next = (value + 1).to_le_bytes();
                    if kv
                        .compare_and_swap("default", "c", Some(&current), &next)
                        .await
                        .unwrap()
                    {
                        taken.push(value + 1);
                    } else {
                        conflicts += 1;
                    }
                }
                let _ = (n, t);
                (taken, conflicts)
            }));
        }
    }
    let mut all = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        let (taken, c) = task.await.unwrap();
        all.extend(taken);
        conflicts += c;
    }
    all.sort_unstable();
    let expected: Vec<i64> = (1..=800).collect();
    assert_eq!(all, expected, "every value was taken by exactly one swap");
    eprintln!("measured: 800 swaps from 32 tasks on 4 connections, {conflicts} lost races");
    let last = instances[3].get("default", "c").await.unwrap().unwrap();
    assert_eq!(last, 800i64.to_le_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_from_many_tasks_and_connections_add_up() {
    let redis = server().await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let kv = backend(&redis.url());
        for _ in 0..8 {
            let kv = kv.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..50 {
                    kv.increment("default", "count/posted", 1).await.unwrap();
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let kv = backend(&redis.url());
    assert_eq!(
        kv.increment("default", "count/posted", 0).await.unwrap(),
        1600
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_reads_as_absent_fails_a_swap_that_expects_a_value_and_counts_from_zero() {
    let redis = server().await;
    let kv = backend(&redis.url());
    assert_eq!(kv.get("default", "nope").await.unwrap(), None);
    assert!(
        !kv.compare_and_swap("default", "nope", Some(b"x"), b"y")
            .await
            .unwrap()
    );
    assert_eq!(
        kv.get("default", "nope").await.unwrap(),
        None,
        "nothing written"
    );
    assert_eq!(kv.increment("default", "nope", 0).await.unwrap(), 0);
    assert_eq!(
        kv.get("default", "nope").await.unwrap().as_deref(),
        Some(&b"0"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_is_down_gives_errors_within_the_deadline_and_works_again_once_back() {
    let mut redis = server().await;
    let options = RedisOptions {
        connect_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_millis(500),
    };
    let kv = Arc::new(RedisBackend::new(&redis.url(), options).unwrap());
    kv.set("default", "k", b"v").await.unwrap();

    redis.kill_now();
    // Each operation must come back with an error; the bound is the backend's own deadline
    // (2 connects + 1 response), enforced by the backend, not by this test.
    for _ in 0..3 {
        let err = kv.get("default", "k").await.unwrap_err();
        assert!(err.0.contains("Redis at redis://127.0.0.1"), "{err}");
        assert!(kv.increment("default", "n", 1).await.is_err());
        assert!(
            kv.compare_and_swap("default", "k", Some(b"v"), b"w")
                .await
                .is_err()
        );
    }

    redis.restart().await.unwrap();
    // The connection manager reconnects by itself; the first call after the restart may
    // still see the old connection fail.
    let mut answered = None;
    for _ in 0..50 {
        if let Ok(v) = kv.get("default", "k").await {
            answered = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        answered,
        Some(None),
        "back, and empty (the test server keeps nothing)"
    );
    kv.set("default", "k", b"again").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_was_never_reachable_gives_an_error_not_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kv = RedisBackend::new(
        &format!("redis://127.0.0.1:{port}"),
        RedisOptions {
            connect_timeout: Duration::from_millis(300),
            response_timeout: Duration::from_millis(300),
        },
    )
    .unwrap();
    let err = kv.get("default", "k").await.unwrap_err();
    assert!(err.0.contains("storage error"), "{err}");
    assert!(kv.ping().await.is_err());
}
