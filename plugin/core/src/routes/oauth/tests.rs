use super::*;
use crate::http::{HttpResponse, Method, TransportError, header_value};
use crate::testing::FakeHost;

const REDIRECT: &str = "https://connector.example/oauth/quickbooks/callback";
const ACCESS: &str = "eyJ-ACCESS-plaintext-0123456789";
const REFRESH: &str = "AB11-REFRESH-plaintext-0123456789";
const REALM: &str = "9130355104571456";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-26T15:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn host() -> FakeHost {
    let mut h = FakeHost::new(t0());
    h.set_config("qbo_client_id", "cid")
        .set_config("qbo_client_secret", "csecret")
        .set_config("qbo_redirect_uri", REDIRECT)
        .set_config("qbo_oauth_base", "https://oauth.test")
        .set_config("qbo_authorize_url", "https://consent.test/connect/oauth2")
        .set_config(
            "encryption_key",
            &base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
        );
    h
}

fn get(path_and_query: &str, accept: Option<&str>) -> Request {
    Request {
        method: "GET".into(),
        path_and_query: path_and_query.into(),
        headers: accept
            .map(|a| vec![("Accept".to_string(), a.to_string())])
            .unwrap_or_default(),
        body: Vec::new(),
    }
}

fn query_of(url: &str) -> Vec<(String, String)> {
    let q = url.split_once('?').unwrap().1;
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn param(pairs: &[(String, String)], name: &str) -> String {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Starts a connect and returns the `state` Intuit would echo back.
fn start(h: &mut FakeHost) -> String {
    let resp = connect(&get("/oauth/quickbooks/connect", None), h);
    assert_eq!(resp.status, 302);
    param(&query_of(resp.header("location").unwrap()), "state")
}

fn callback_url(state: &str) -> String {
    format!("/oauth/quickbooks/callback?code=c0de-1&state={state}&realmId={REALM}")
}

fn route_token_success(h: &mut FakeHost) {
    h.route("POST /oauth2/v1/tokens/bearer", |_| {
        Ok(HttpResponse::json(
            200,
            &json!({"token_type": "bearer", "access_token": ACCESS, "expires_in": 3600,
                        "refresh_token": REFRESH, "x_refresh_token_expires_in": 8_726_400,
                        "x_refresh_token_hard_expires_in": 157_680_000}),
        ))
    });
}

fn body(resp: &HttpResponse) -> String {
    String::from_utf8(resp.body.clone()).unwrap()
}

fn json_body(resp: &HttpResponse) -> serde_json::Value {
    serde_json::from_slice(&resp.body).unwrap()
}

fn keyring() -> Keyring {
    Keyring::from_bytes([7u8; 32], None)
}

#[test]
fn connect_redirects_to_intuit_with_every_parameter_and_a_sealed_state() {
    let mut h = host();
    let resp = connect(&get("/oauth/quickbooks/connect", None), &mut h);
    assert_eq!(resp.status, 302);
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    let location = resp.header("location").unwrap();
    assert!(
        location.starts_with("https://consent.test/connect/oauth2?"),
        "{location}"
    );
    let q = query_of(location);
    assert_eq!(param(&q, "client_id"), "cid");
    assert_eq!(param(&q, "response_type"), "code");
    assert_eq!(param(&q, "scope"), "com.intuit.quickbooks.accounting");
    assert_eq!(param(&q, "redirect_uri"), REDIRECT);
    let state = param(&q, "state");
    assert_eq!(
        state.len(),
        43,
        "32 bytes of URL-safe base64 without padding"
    );
    assert!(
        state
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );

    let key = state_key(&state);
    let stored =
        h.kv.get(&key)
            .expect("the state is stored under its hash")
            .clone();
    assert!(stored.starts_with(b"mls1"), "sealed");
    for (k, v) in &h.kv {
        assert!(!k.contains(&state), "a KV key holds the plain state");
        let text = String::from_utf8_lossy(v);
        assert!(
            !text.contains(&state) && !text.contains("created_at"),
            "a KV value is plain text: {text}"
        );
    }
    let opened = crypto::open(&keyring(), &key, &stored).unwrap();
    let pending: PendingState = serde_json::from_slice(&opened.plaintext).unwrap();
    assert_eq!(pending.created_at, t0());
}

#[test]
fn each_connect_gets_a_different_state() {
    let mut h = host();
    assert_ne!(start(&mut h), start(&mut h));
}

#[test]
fn connect_answers_json_with_the_authorize_url_when_asked() {
    let mut h = host();
    let resp = connect(
        &get("/oauth/quickbooks/connect", Some("application/json")),
        &mut h,
    );
    assert_eq!(resp.status, 200);
    let v = json_body(&resp);
    let url = v["authorize_url"].as_str().unwrap();
    assert!(
        url.starts_with("https://consent.test/connect/oauth2?client_id=cid&response_type=code")
    );
    assert_eq!(v["expires_in"], 600);
    assert!(h.kv.contains_key(&state_key(&param(&query_of(url), "state"))));
}

#[test]
fn connect_without_a_redirect_uri_explains_which_variable_to_set() {
    let mut h = host();
    h.set_config("qbo_redirect_uri", "");
    let resp = connect(&get("/oauth/quickbooks/connect", None), &mut h);
    assert_eq!(resp.status, 500);
    let v = json_body(&resp);
    assert_eq!(v["error"], "configuration");
    let m = v["message"].as_str().unwrap();
    assert!(
        m.contains("qbo_redirect_uri") && m.contains("/oauth/quickbooks/callback"),
        "{m}"
    );
    assert!(
        h.kv.is_empty(),
        "no state is stored for a link that cannot work"
    );
}

#[test]
fn connect_without_client_id_or_encryption_key_names_the_variable() {
    let mut h = host();
    h.config.remove("qbo_client_id");
    let resp = connect(&get("/oauth/quickbooks/connect", None), &mut h);
    assert_eq!(resp.status, 500);
    assert!(
        json_body(&resp)["message"]
            .as_str()
            .unwrap()
            .contains("qbo_client_id")
    );
    let mut h = host();
    h.config.remove("encryption_key");
    let resp = connect(&get("/oauth/quickbooks/connect", None), &mut h);
    assert_eq!(resp.status, 500);
    assert!(
        json_body(&resp)["message"]
            .as_str()
            .unwrap()
            .contains("encryption_key")
    );
}

#[test]
fn callback_exchanges_the_code_and_stores_only_sealed_tokens_with_the_realm() {
    let mut h = host();
    let state = start(&mut h);
    connection::mark_needs_reauth(&mut h, "test: lost").unwrap();
    route_token_success(&mut h);
    h.advance(Duration::minutes(2));

    let resp = callback(&get(&callback_url(&state), None), &mut h);
    assert_eq!(resp.status, 200, "{}", body(&resp));
    assert_eq!(
        resp.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(body(&resp).contains(&format!("QuickBooks connected (company {REALM})")));

    // The exchange: Basic client auth, form body with the code and the same redirect_uri.
    assert_eq!(h.requests.len(), 1);
    let sent = &h.requests[0];
    assert_eq!(sent.method, Method::Post);
    assert_eq!(sent.url, "https://oauth.test/oauth2/v1/tokens/bearer");
    assert_eq!(
        header_value(&sent.headers, "authorization"),
        Some("Basic Y2lkOmNzZWNyZXQ=")
    );
    let form: Vec<(String, String)> = form_urlencoded::parse(&sent.body).into_owned().collect();
    assert_eq!(param(&form, "grant_type"), "authorization_code");
    assert_eq!(param(&form, "code"), "c0de-1");
    assert_eq!(param(&form, "redirect_uri"), REDIRECT);

    // Nothing in KV, the response or the log holds a token in plain text.
    for (k, v) in &h.kv {
        let text = String::from_utf8_lossy(v);
        assert!(
            !text.contains(ACCESS) && !text.contains(REFRESH),
            "plain token at `{k}`"
        );
    }
    assert!(!body(&resp).contains(ACCESS) && !body(&resp).contains(REFRESH));
    assert!(
        h.logs
            .iter()
            .all(|(_, m)| !m.contains(ACCESS) && !m.contains(REFRESH))
    );

    let vault = Vault {
        keyring: &keyring(),
    };
    let tokens = connection::expiries(&mut h, &vault).unwrap().unwrap();
    assert_eq!(tokens.access_token.expose(), ACCESS);
    assert_eq!(tokens.refresh_token.expose(), REFRESH);
    assert_eq!(
        tokens.access_expires_at,
        t0() + Duration::minutes(2) + Duration::hours(1)
    );
    assert!(tokens.refresh_hard_expires_at.is_some());
    let qbo = QuickBooksSettings::read(&mut h).unwrap();
    assert_eq!(
        connection::realm_id(&mut h, &vault, &qbo)
            .unwrap()
            .as_deref(),
        Some(REALM)
    );
    assert!(
        !connection::state(&mut h).unwrap().needs_reauth,
        "connecting clears needs_reauth"
    );
    assert!(
        !h.kv.contains_key(&state_key(&state)),
        "the state is deleted once used"
    );
}

#[test]
fn a_callback_during_another_instances_refresh_waits_for_it_and_its_tokens_win() {
    let mut h = host();
    let state = start(&mut h);
    route_token_success(&mut h);
    // Another instance is refreshing (it holds the refresh lease) with the old grant.
    let held = crate::models::token::Lease::encode(h.now.timestamp_millis() + 30_000, 0x77);
    h.kv.insert("lease/qbo-refresh".into(), held.to_vec());
    let other_finishes = move |h: &mut FakeHost| {
        if h.kv.get("lease/qbo-refresh").map(Vec::as_slice) == Some(held.as_slice()) {
            let old = crate::models::token::TokenSet {
                access_token: crate::secret::Secret::new("OLD-GRANT-ACCESS".into()),
                access_expires_at: h.now + Duration::hours(1),
                refresh_token: crate::secret::Secret::new("OLD-GRANT-REFRESH".into()),
                refresh_expires_at: None,
                refresh_hard_expires_at: None,
                realm_id: Some(REALM.into()),
            };
            let kr = keyring();
            connection::store_tokens(h, &Vault { keyring: &kr }, &old).unwrap();
            h.kv.insert(
                "lease/qbo-refresh".into(),
                crate::models::token::Lease::FREE.to_vec(),
            );
        }
    };
    h.on_sleep(other_finishes);
    let resp = callback(&get(&callback_url(&state), None), &mut h);
    assert_eq!(resp.status, 200, "{}", body(&resp));
    // If the callback did not wait, the other instance finishes only now.
    other_finishes(&mut h);
    let vault = Vault {
        keyring: &keyring(),
    };
    let tokens = connection::expiries(&mut h, &vault).unwrap().unwrap();
    assert_eq!(
        tokens.refresh_token.expose(),
        REFRESH,
        "the new authorization is what stays stored"
    );
}

#[test]
fn callback_answers_json_when_asked() {
    let mut h = host();
    let state = start(&mut h);
    route_token_success(&mut h);
    let resp = callback(
        &get(&callback_url(&state), Some("application/json")),
        &mut h,
    );
    assert_eq!(resp.status, 200);
    let v = json_body(&resp);
    assert_eq!(v["status"], "connected");
    assert_eq!(v["realm_id"], REALM);
    assert_eq!(
        v["message"],
        format!("QuickBooks connected (company {REALM})")
    );
    assert_eq!(
        v.as_object().unwrap().len(),
        3,
        "nothing else, certainly no token: {v}"
    );
}

#[test]
fn a_replayed_state_is_rejected_without_a_second_exchange() {
    let mut h = host();
    let state = start(&mut h);
    route_token_success(&mut h);
    assert_eq!(
        callback(&get(&callback_url(&state), None), &mut h).status,
        200
    );
    let again = callback(&get(&callback_url(&state), None), &mut h);
    assert_eq!(again.status, 400);
    let v = json_body(&again);
    assert_eq!(v["error"], "invalid_state");
    assert_eq!(
        v["message"],
        "the connect link expired or was already used: start again at /oauth/quickbooks/connect"
    );
    assert_eq!(h.calls_to("/oauth2/v1/tokens/bearer"), 1);
}

#[test]
fn a_state_older_than_ten_minutes_is_rejected_and_removed() {
    let mut h = host();
    let state = start(&mut h);
    h.advance(Duration::minutes(11));
    let resp = callback(&get(&callback_url(&state), None), &mut h);
    assert_eq!(resp.status, 400);
    assert_eq!(json_body(&resp)["error"], "invalid_state");
    assert!(h.requests.is_empty(), "no exchange for an expired link");
    assert!(!h.kv.contains_key(&state_key(&state)));
}

#[test]
fn a_state_nine_minutes_old_still_works() {
    let mut h = host();
    let state = start(&mut h);
    route_token_success(&mut h);
    h.advance(Duration::minutes(9));
    assert_eq!(
        callback(&get(&callback_url(&state), None), &mut h).status,
        200
    );
}

#[test]
fn an_unknown_or_missing_state_is_rejected() {
    let mut h = host();
    start(&mut h);
    let resp = callback(&get(&callback_url("forged-state"), None), &mut h);
    assert_eq!(resp.status, 400);
    let resp = callback(
        &get(
            &format!("/oauth/quickbooks/callback?code=c&realmId={REALM}"),
            None,
        ),
        &mut h,
    );
    assert_eq!(resp.status, 400);
    assert!(h.requests.is_empty());
}

#[test]
fn a_declined_consent_is_a_clear_403_and_spends_the_state() {
    let mut h = host();
    let state = start(&mut h);
    let resp = callback(
        &get(
            &format!("/oauth/quickbooks/callback?error=access_denied&state={state}"),
            None,
        ),
        &mut h,
    );
    assert_eq!(resp.status, 403);
    let v = json_body(&resp);
    assert_eq!(v["error"], "access_denied");
    let m = v["message"].as_str().unwrap();
    assert!(
        m.starts_with("the QuickBooks admin declined") && m.contains("/oauth/quickbooks/connect"),
        "{m}"
    );
    assert!(h.requests.is_empty());
    assert!(!h.kv.contains_key(&state_key(&state)));
}

#[test]
fn another_intuit_error_is_a_400_naming_it() {
    let mut h = host();
    let state = start(&mut h);
    let url = format!(
        "/oauth/quickbooks/callback?error=invalid_scope&error_description=bad+scope&state={state}"
    );
    let resp = callback(&get(&url, None), &mut h);
    assert_eq!(resp.status, 400);
    let m = json_body(&resp)["message"].as_str().unwrap().to_string();
    assert!(
        m.contains("invalid_scope") && m.contains("bad scope"),
        "{m}"
    );
}

#[test]
fn a_refused_code_is_a_400_and_stores_nothing() {
    let mut h = host();
    let state = start(&mut h);
    let fixture = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/quickbooks/oauth_invalid_grant_400.json"
    ))
    .unwrap();
    h.route("POST /oauth2/v1/tokens/bearer", move |_| {
        Ok(HttpResponse::new(400, fixture.clone()))
    });
    let resp = callback(&get(&callback_url(&state), None), &mut h);
    assert_eq!(resp.status, 400);
    let v = json_body(&resp);
    assert_eq!(v["error"], "invalid_grant");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("start again at /oauth/quickbooks/connect")
    );
    assert!(!h.kv.contains_key("cred/qbo/tokens"));
}

#[test]
fn an_unreachable_token_endpoint_is_a_502_saying_so() {
    let mut h = host();
    let state = start(&mut h);
    h.route("POST /oauth2/v1/tokens/bearer", |_| {
        Err(TransportError::Timeout)
    });
    let resp = callback(&get(&callback_url(&state), None), &mut h);
    assert_eq!(resp.status, 502);
    assert!(
        json_body(&resp)["message"]
            .as_str()
            .unwrap()
            .contains("could not be reached")
    );
}

#[test]
fn a_company_other_than_the_configured_realm_is_refused_before_the_exchange() {
    let mut h = host();
    h.set_config("qbo_realm_id", "1111");
    let state = start(&mut h);
    let resp = callback(&get(&callback_url(&state), None), &mut h);
    assert_eq!(resp.status, 409);
    let m = json_body(&resp)["message"].as_str().unwrap().to_string();
    assert!(
        m.contains(REALM) && m.contains("1111") && m.contains("qbo_realm_id"),
        "{m}"
    );
    assert!(h.requests.is_empty());
}

#[test]
fn a_configured_bootstrap_token_does_not_replace_tokens_from_a_later_connect() {
    let mut h = host();
    h.set_config("qbo_refresh_token", "BOOTSTRAP-never-used");
    let state = start(&mut h);
    route_token_success(&mut h);
    assert_eq!(
        callback(&get(&callback_url(&state), None), &mut h).status,
        200
    );
    let qbo = QuickBooksSettings::read(&mut h).unwrap();
    let kr = keyring();
    let access = connection::access(&mut h, &Vault { keyring: &kr }, &qbo, false).unwrap();
    assert_eq!(access.token.expose(), ACCESS);
    assert_eq!(access.realm_id, REALM);
    assert_eq!(
        h.calls_to("/oauth2/v1/tokens/bearer"),
        1,
        "no refresh with the bootstrap token"
    );
}
