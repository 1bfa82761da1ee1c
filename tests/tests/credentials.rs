//! Credentials and tokens (issue 5): the OAuth connect flow, refresh-token rotation across
//! restarts, single-flight refresh, re-authorization, encryption at rest and `/admin/status`,
//! with the real component in the real harness against the simulators over HTTP.

use std::time::Duration;

use base64::Engine as _;
use ml_e2e::env::{KvChoice, Reply, TestEnv, TestOptions, eventually_named};
use ml_sim::bigcommerce::seed::STORE_NAME;
use ml_sim::bigcommerce::{GeneratedOrder, OrderShape, generate};
use ml_sim::quickbooks::QboSimConfig;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const TOKEN_PATH: &str = "/oauth2/v1/tokens/bearer";
const CALLBACK_PATH: &str = "/oauth/quickbooks/callback";
const SIM_COMPANY_NAME: &str = "Maple & Loom Outfitters LLC";

fn order(id: u64) -> GeneratedOrder {
    generate(
        id,
        &OrderShape {
            lines: 2,
            tax_inclusive: false,
            tax_rate_bp: 800,
            coupon: false,
            manual_discount: false,
            shipping: true,
            handling: false,
            wrapping: false,
            guest: false,
            seed: id,
        },
    )
}

async fn wait_state(env: &TestEnv, id: u64, state: &str) -> Value {
    eventually_named(&format!("order {id} is {state}"), WAIT, || async {
        let (status, rec) = env.admin_get(&format!("/admin/records/order/{id}")).await;
        (status == 200 && rec["state"] == state).then_some(rec)
    })
    .await
}

async fn place_and_post(env: &TestEnv, id: u64) -> Value {
    env.bc.place_order(order(id)).await.unwrap();
    wait_state(env, id, "posted").await
}

fn invoices_for(env: &TestEnv, id: u64) -> usize {
    let doc = id.to_string();
    env.qbo
        .invoices()
        .iter()
        .filter(|i| i["DocNumber"] == doc.as_str())
        .count()
}

/// Statuses the simulator's token endpoint answered, oldest first.
fn token_statuses(env: &TestEnv) -> Vec<u16> {
    env.qbo
        .control()
        .requests()
        .iter()
        .filter(|r| r.path == TOKEN_PATH)
        .map(|r| r.status)
        .collect()
}

fn new_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// A webhook body as BigCommerce sends it for a created order (a unique hash per order).
fn created_hook(id: u64) -> String {
    json!({"scope": "store/order/created", "store_id": "1001", "data": {"type": "order", "id": id},
           "hash": format!("{:040x}", id), "created_at": 1_700_000_000 + id, "producer": "stores/x"})
    .to_string()
}

/// Sends requests without following redirects, so each hop of the OAuth dance is visible.
fn manual_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .unwrap_or_else(|| panic!("a {} without Location", resp.status()))
        .to_str()
        .unwrap()
        .to_string()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).unwrap();
    parsed
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Points `qbo_redirect_uri` at this harness (its port is only known once it runs).
async fn use_own_redirect_uri(env: &mut TestEnv) -> String {
    let redirect = env.url(CALLBACK_PATH);
    env.restart_with(&[("qbo_redirect_uri", &redirect)]).await;
    redirect
}

/// What a browser does: connect (admin) → Intuit consent (the simulator approves at once) →
/// back to the callback. Returns the callback URL and the callback's reply.
async fn oauth_connect(env: &TestEnv, redirect: &str) -> (String, Reply) {
    let client = manual_redirects();
    let connect = client
        .get(env.url("/oauth/quickbooks/connect"))
        .bearer_auth(&env.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        connect.status().as_u16(),
        302,
        "connect redirects to Intuit"
    );
    let authorize = location(&connect);
    assert!(
        authorize.starts_with(&env.qbo.authorize_url()),
        "{authorize}"
    );
    assert_eq!(
        query_param(&authorize, "client_id").as_deref(),
        Some(env.qbo.client_id())
    );
    assert_eq!(
        query_param(&authorize, "response_type").as_deref(),
        Some("code")
    );
    assert_eq!(
        query_param(&authorize, "scope").as_deref(),
        Some("com.intuit.quickbooks.accounting")
    );
    assert_eq!(
        query_param(&authorize, "redirect_uri").as_deref(),
        Some(redirect)
    );
    let state = query_param(&authorize, "state").expect("a state");
    assert!(state.len() >= 32, "the state is long and random: {state}");

    let consent = client.get(&authorize).send().await.unwrap();
    assert_eq!(
        consent.status().as_u16(),
        302,
        "{}",
        consent.text().await.unwrap_or_default()
    );
    let callback = location(&consent);
    assert!(callback.starts_with(redirect), "{callback}");
    assert_eq!(
        query_param(&callback, "state").as_deref(),
        Some(state.as_str())
    );
    assert_eq!(
        query_param(&callback, "realmId").as_deref(),
        Some(env.qbo.realm_id())
    );
    let path = callback.strip_prefix(&env.url("")).unwrap().to_string();
    let reply = env.request("GET", &path, &[], Vec::new()).await;
    (path, reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_connect_flow_against_the_simulator_stores_sealed_tokens_and_the_realm() {
    let mut env = TestEnv::start(
        TestOptions::default()
            .unset("qbo_refresh_token")
            .unset("qbo_realm_id"),
    )
    .await;
    let redirect = use_own_redirect_uri(&mut env).await;

    // Before connecting, status says what to do.
    let (_, status) = env.admin_get("/admin/status").await;
    assert_eq!(status["quickbooks"]["ok"], false, "{status}");
    assert_eq!(
        status["quickbooks"]["connect_url"],
        "/oauth/quickbooks/connect"
    );
    // The connect route is admin-only.
    let anonymous = env
        .request("GET", "/oauth/quickbooks/connect", &[], Vec::new())
        .await;
    assert_eq!(anonymous.status, 401);

    let (callback, reply) = oauth_connect(&env, &redirect).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        reply.text.contains("QuickBooks connected"),
        "{}",
        reply.text
    );
    assert_eq!(
        env.qbo.token_calls(),
        1,
        "one code exchange, no refresh: {:?}",
        token_statuses(&env)
    );
    assert_eq!(env.qbo.refresh_calls(), 0);

    let (_, status) = env.admin_get("/admin/status").await;
    let qb = &status["quickbooks"];
    assert_eq!(qb["ok"], true, "{status}");
    assert_eq!(
        qb["realm_id"],
        env.qbo.realm_id(),
        "the realm came from the callback"
    );
    assert_eq!(qb["company_name"], SIM_COMPANY_NAME);
    assert_eq!(qb["needs_reauth"], false);

    let rec = place_and_post(&env, 1001).await;
    assert_eq!(invoices_for(&env, 1001), 1, "{rec}");
    assert_eq!(
        env.qbo.refresh_calls(),
        0,
        "the access token from the exchange is used as is"
    );

    // The browser's back button, or an attacker replaying the URL: refused, nothing exchanged.
    let calls = env.qbo.token_calls();
    let replayed = env.request("GET", &callback, &[], Vec::new()).await;
    assert_eq!(replayed.status, 400, "{}", replayed.text);
    assert_eq!(replayed.json["error"], "invalid_state");
    assert!(
        replayed.json["message"]
            .as_str()
            .unwrap()
            .contains("/oauth/quickbooks/connect")
    );
    assert_eq!(env.qbo.token_calls(), calls, "a replay makes no exchange");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_token_expiry_mid_run_rotates_on_every_refresh_across_a_restart_with_no_invalid_grant()
 {
    let qbo = QboSimConfig {
        // Below the connector's 5-minute margin: every API call needs a fresh access token.
        access_token_ttl_secs: 1,
        rotate_refresh_tokens: true,
        ..QboSimConfig::default()
    };
    let mut env = TestEnv::start(TestOptions {
        qbo,
        ..TestOptions::default()
    })
    .await;
    for id in 2001..=2003 {
        place_and_post(&env, id).await;
    }
    let before_restart = env.qbo.refresh_calls();
    env.restart().await;
    for id in 2004..=2006 {
        place_and_post(&env, id).await;
    }
    for id in 2001..=2006 {
        assert_eq!(invoices_for(&env, id), 1, "order {id} has one invoice");
    }
    let refreshes = env.qbo.refresh_calls();
    eprintln!(
        "measured: {refreshes} refresh calls for 6 orders ({before_restart} before the restart)"
    );
    assert!(refreshes >= 2, "{refreshes}");
    assert!(
        refreshes > before_restart,
        "the restarted harness refreshed with the rotated token from KV"
    );
    let statuses = token_statuses(&env);
    assert_eq!(statuses.len(), refreshes, "every token call was a refresh");
    assert!(
        statuses.iter().all(|s| *s == 200),
        "no invalid_grant (or any failure) at the token endpoint: {statuses:?}"
    );
    let (_, status) = env.admin_get("/admin/status").await;
    assert_eq!(status["quickbooks"]["needs_reauth"], false, "{status}");
    assert_eq!(status["records"]["needs_reauth"], 0);
    assert_eq!(status["records"]["failed"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_requests_needing_a_refresh_make_exactly_one_refresh_call() {
    // The simulator answers 429 above 10 concurrent API requests (Intuit's limit); 20 jobs
    // at once would hit it, and this test is about the token endpoint, not throttling.
    let qbo = QboSimConfig {
        max_concurrent_requests: 100,
        ..QboSimConfig::default()
    };
    let env = TestEnv::start(TestOptions {
        qbo,
        ..TestOptions::default()
    })
    .await;
    place_and_post(&env, 3000).await;
    assert_eq!(
        env.qbo.refresh_calls(),
        1,
        "the bootstrap token was used once"
    );

    env.qbo.expire_access_tokens();
    let before = env.qbo.refresh_calls();
    let ids: Vec<u64> = (3001..=3020).collect();
    for id in &ids {
        env.bc.put_order(order(*id));
    }
    let bodies: Vec<String> = ids.iter().map(|id| created_hook(*id)).collect();
    let replies = futures::future::join_all(bodies.iter().map(|b| env.post_webhook(b))).await;
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    for id in &ids {
        wait_state(&env, *id, "posted").await;
    }
    let round = env.qbo.refresh_calls() - before;
    eprintln!("measured: {round} refresh call(s) for 20 concurrent jobs with an expired token");
    assert_eq!(
        round,
        1,
        "exactly one refresh for the round: {:?}",
        token_statuses(&env)
    );
    for id in &ids {
        assert_eq!(invoices_for(&env, *id), 1, "order {id}");
    }
    assert!(token_statuses(&env).iter().all(|s| *s == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_parks_orders_as_needs_reauth_and_they_post_after_reauthorization()
{
    let mut env = TestEnv::start(TestOptions::default()).await;
    let redirect = use_own_redirect_uri(&mut env).await;
    place_and_post(&env, 4000).await;

    // The user disconnected the app in QuickBooks.
    env.qbo.revoke_refresh_tokens();
    env.qbo.expire_access_tokens();
    let calls_at_revoke = env.qbo.token_calls();
    let ids = [4001u64, 4002, 4003];
    for id in ids {
        env.bc.place_order(order(id)).await.unwrap();
    }
    for id in ids {
        let rec = wait_state(&env, id, "needs_reauth").await;
        assert!(
            rec["last_error"]
                .as_str()
                .unwrap_or_default()
                .contains("/oauth/quickbooks/connect"),
            "{rec}"
        );
    }
    let (_, status) = env.admin_get("/admin/status").await;
    let qb = &status["quickbooks"];
    assert_eq!(qb["needs_reauth"], true, "{status}");
    assert_eq!(qb["ok"], false);
    assert_eq!(qb["connect_url"], "/oauth/quickbooks/connect");
    assert!(
        qb["error"]
            .as_str()
            .unwrap()
            .contains("/oauth/quickbooks/connect"),
        "{status}"
    );
    assert_eq!(status["records"]["needs_reauth"], 3);
    assert_eq!(status["records"]["failed"], 0, "parked, not failed");

    // Parked means parked: the scheduler does not hammer Intuit with a dead token.
    let parked_calls = env.qbo.token_calls();
    for _ in 0..3 {
        let (code, report) = env.admin_post("/admin/retry-due", &Value::Null).await;
        assert_eq!(code, 200, "{report}");
    }
    let (_, status) = env.admin_get("/admin/status").await;
    assert_eq!(status["records"]["needs_reauth"], 3, "{status}");
    let after = env.qbo.token_calls();
    eprintln!(
        "measured: {} token call(s) from the revocation until parked, {} more during 3 retry-due calls and a status",
        parked_calls - calls_at_revoke,
        after - parked_calls
    );
    assert_eq!(
        parked_calls - calls_at_revoke,
        1,
        "one invalid_grant parks everything: {:?}",
        token_statuses(&env)
    );
    assert_eq!(after, parked_calls, "no token call while parked");
    for id in ids {
        assert_eq!(invoices_for(&env, id), 0);
    }

    // The admin reconnects through the OAuth flow; the next retry-due resumes everything.
    let (_, reply) = oauth_connect(&env, &redirect).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let (code, report) = env.admin_post("/admin/retry-due", &Value::Null).await;
    assert_eq!(code, 200, "{report}");
    for id in ids {
        let rec = wait_state(&env, id, "posted").await;
        assert_eq!(invoices_for(&env, id), 1, "order {id} posted once: {rec}");
        let steps: Vec<&str> = rec["audit"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["step"].as_str())
            .collect();
        assert!(steps.contains(&"posted"), "{steps:?}");
    }
    let (_, status) = env.admin_get("/admin/status").await;
    assert_eq!(status["quickbooks"]["ok"], true, "{status}");
    assert_eq!(status["records"]["needs_reauth"], 0);
    assert_eq!(status["records"]["posted"], 4);
    // Another retry-due changes nothing: no second invoice.
    env.admin_post("/admin/retry-due", &Value::Null).await;
    for id in ids {
        assert_eq!(invoices_for(&env, id), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_bootstrap_token_after_revocation_resumes_the_parked_orders() {
    let mut env = TestEnv::start(TestOptions::default()).await;
    place_and_post(&env, 4100).await;
    env.qbo.revoke_refresh_tokens();
    env.qbo.expire_access_tokens();
    env.bc.place_order(order(4101)).await.unwrap();
    wait_state(&env, 4101, "needs_reauth").await;

    // The operator re-authorized out of band and deploys the new refresh token.
    let fresh = env.qbo.issue_refresh_token();
    env.restart_with(&[("qbo_refresh_token", &fresh)]).await;
    let (code, report) = env.admin_post("/admin/retry-due", &Value::Null).await;
    assert_eq!(code, 200, "{report}");
    wait_state(&env, 4101, "posted").await;
    assert_eq!(invoices_for(&env, 4101), 1);
    let (_, status) = env.admin_get("/admin/status").await;
    assert_eq!(status["quickbooks"]["needs_reauth"], false, "{status}");
    assert_eq!(status["quickbooks"]["ok"], true, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kv_database_file_holds_no_credential_in_plain_text() {
    // The scan reads the database file in the data directory, so this test keeps SQLite even
    // when the suite runs on Redis (`ML_E2E_KV=redis`: no file then); the component writes
    // the same values whatever the backend.
    let mut env = TestEnv::start(TestOptions {
        kv: KvChoice::Sqlite,
        ..TestOptions::default()
    })
    .await;
    let bootstrap = env.variables()["qbo_refresh_token"].clone();
    let redirect = use_own_redirect_uri(&mut env).await;
    // Tokens from the bootstrap refresh, then from an OAuth connect, then rotated again.
    place_and_post(&env, 5001).await;
    let (_, reply) = oauth_connect(&env, &redirect).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    env.qbo.expire_access_tokens();
    place_and_post(&env, 5002).await;
    let (_, status) = env.admin_get("/admin/status").await;
    assert_eq!(status["quickbooks"]["ok"], true, "{status}");

    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(env.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("order/5002") || text.contains("5002"),
        "the scan reads the real database (it holds the records)"
    );
    let vars = env.variables();
    let secrets = [
        ("the bootstrap refresh token", bootstrap.as_str()),
        ("the QuickBooks client secret", env.qbo.client_secret()),
        ("the BigCommerce access token", env.bc.token()),
        ("the admin token", env.admin_token.as_str()),
        ("the webhook secret", env.webhook_secret.as_str()),
        ("the encryption key", vars["encryption_key"].as_str()),
        // Every access token the simulator mints starts with this JWE header.
        (
            "an access token",
            "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0",
        ),
    ];
    for (what, secret) in secrets {
        assert!(!secret.is_empty());
        assert!(!text.contains(secret), "{what} is stored in plain text");
    }
    // Refresh tokens the simulator minted since (rotated, from the code exchange): `AB11` and
    // 13 digits, the real format. The live ones are not exposed, so look for the shape.
    let b = text.as_bytes();
    let found = (0..b.len().saturating_sub(17))
        .find(|&i| &b[i..i + 4] == b"AB11" && b[i + 4..i + 17].iter().all(u8::is_ascii_digit));
    assert!(
        found.is_none(),
        "a refresh token is stored in plain text at byte {found:?}"
    );
    // And no route hands them out either.
    let status_text = status.to_string();
    assert!(!status_text.contains("AB11") && !status_text.contains("eyJlbmMi"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_encryption_key_gives_the_clear_error() {
    let mut env = TestEnv::start(TestOptions::default()).await;
    place_and_post(&env, 6001).await;
    let old_key = env.variables()["encryption_key"].clone();
    let new = new_key();

    env.restart_with(&[("encryption_key", &new)]).await;
    let (_, status) = env.admin_get("/admin/status").await;
    let qb = &status["quickbooks"];
    assert_eq!(qb["ok"], false, "{status}");
    let error = qb["error"].as_str().unwrap_or_default();
    assert!(
        !error.contains("mapping"),
        "a key problem, not a mapping one: {error}"
    );
    assert!(
        error.contains("cannot decrypt stored credentials"),
        "{status}"
    );
    assert!(
        error.contains("encryption_key_previous"),
        "says what to do: {error}"
    );
    let refreshes = env.qbo.refresh_calls();

    env.bc.place_order(order(6002)).await.unwrap();
    let rec = eventually_named("order 6002 records the decrypt error", WAIT, || async {
        let (_, rec) = env.admin_get("/admin/records/order/6002").await;
        rec["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot decrypt stored credentials"))
            .then_some(rec)
    })
    .await;
    eprintln!(
        "with a wrong key, a new order ends as {}: {}",
        rec["state"], rec["last_error"]
    );
    assert_ne!(rec["state"], "posted");
    assert_eq!(invoices_for(&env, 6002), 0);
    assert_eq!(
        env.qbo.refresh_calls(),
        refreshes,
        "an unreadable refresh token is never replaced by guesswork"
    );

    // The rotation done right: the old key as encryption_key_previous.
    env.restart_with(&[
        ("encryption_key", &new),
        ("encryption_key_previous", &old_key),
    ])
    .await;
    let (_, status) = env.admin_get("/admin/status").await;
    assert_eq!(status["quickbooks"]["ok"], true, "{status}");
    let (code, replayed) = env
        .admin_post("/admin/replay/order/6002", &Value::Null)
        .await;
    assert!(code < 300, "{code} {replayed}");
    wait_state(&env, 6002, "posted").await;
    assert_eq!(invoices_for(&env, 6002), 1);

    // Reading re-sealed the values under the new key: the old one can go.
    env.restart_with(&[("encryption_key_previous", "")]).await;
    let (_, status) = env.admin_get("/admin/status").await;
    assert_eq!(status["quickbooks"]["ok"], true, "{status}");
    place_and_post(&env, 6003).await;
    assert_eq!(invoices_for(&env, 6003), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_both_systems_and_record_counts() {
    let mut env = TestEnv::start(TestOptions::default()).await;
    place_and_post(&env, 7001).await;
    let (code, status) = env.admin_get("/admin/status").await;
    assert_eq!(code, 200);
    assert_eq!(status["bigcommerce"]["ok"], true, "{status}");
    assert_eq!(status["bigcommerce"]["store_name"], STORE_NAME);
    assert!(status["bigcommerce"]["error"].is_null());
    let qb = &status["quickbooks"];
    assert_eq!(qb["ok"], true, "{status}");
    assert_eq!(qb["company_name"], SIM_COMPANY_NAME);
    assert_eq!(qb["realm_id"], env.qbo.realm_id());
    assert_eq!(qb["needs_reauth"], false);
    assert!(qb["error"].is_null());
    let now = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now());
    for field in ["access_token_expires_at", "refresh_token_expires_at"] {
        let text = qb[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field}: {status}"));
        let at = chrono::DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("{field} is not RFC 3339 ({e}): {text}"));
        assert!(at > now, "{field} is in the future: {text}");
    }
    let records = &status["records"];
    for state in [
        "pending",
        "retrying",
        "posted",
        "failed",
        "needs_reauth",
        "skipped",
    ] {
        assert!(records[state].is_u64(), "records.{state}: {status}");
    }
    assert_eq!(records["posted"], 1);
    assert_eq!(records["failed"], 0);
    let text = status.to_string();
    assert!(!text.contains(env.bc.token()) && !text.contains(env.qbo.client_secret()));

    // Without the admin token: nothing.
    assert_eq!(env.get("/admin/status").await.0, 401);

    // A wrong BigCommerce token: BigCommerce is reported broken with what to do, QuickBooks is still fine.
    env.restart_with(&[("bigcommerce_access_token", "not-the-real-token")])
        .await;
    let (code, status) = env.admin_get("/admin/status").await;
    assert_eq!(code, 200);
    let bc = &status["bigcommerce"];
    assert_eq!(bc["ok"], false, "{status}");
    let error = bc["error"].as_str().unwrap();
    assert!(
        error.contains("bigcommerce_access_token") && error.contains("scope"),
        "says which variable and what to do: {error}"
    );
    assert!(
        !error.contains("not-the-real-token"),
        "the token is not echoed"
    );
    assert_eq!(status["quickbooks"]["ok"], true, "{status}");
    assert_eq!(status["ok"], false);
}
