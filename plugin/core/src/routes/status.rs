//! `GET /admin/status` (CONTRACT §3, Status): live checks of both connections and the record
//! counts, for an operator deciding what to fix.
//!
//! Every check reports its own `ok`/`error`, so one broken side (or a missing variable) never
//! hides what is known about the other: the route itself always answers 200.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::crypto::Keyring;
use crate::host::Host;
use crate::http::{HttpRequest, HttpResponse, TransportError};
use crate::models::bigcommerce;
use crate::models::quickbooks::{self, CompanyInfo};
use crate::models::token::{self, CONNECT_PATH};
use crate::settings::{self, BigCommerceSettings, QuickBooksSettings};
use crate::sync::connection::{self, ConnectionError, Vault};
use crate::sync::failure::{self, sanitize};
use crate::sync::store;
use crate::sync::upstream::Upstreams;

/// What a 401 from BigCommerce means and what to do about it.
pub const BC_UNAUTHORIZED: &str = "BigCommerce rejected bigcommerce_access_token: create a store API account with \
     Orders read-only and Customers read-only scopes (add Information & Settings read-only to see the store name \
     here) and set its access token as bigcommerce_access_token";

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Builds the status document (always HTTP 200; problems are inside).
pub fn status(host: &mut dyn Host) -> HttpResponse {
    let bc_settings = BigCommerceSettings::read(host);
    let bigcommerce = match &bc_settings {
        Ok(bc) => bigcommerce_status(host, bc),
        Err(e) => json!({"ok": false, "store_name": null, "error": e.to_string()}),
    };
    let quickbooks = quickbooks_status(host, bc_settings.ok());
    let records = records_status(host);
    let webhooks = crate::jobs::hooks::status(host);
    let sweep = crate::jobs::sweep::status(host);
    let ok = bigcommerce["ok"] == json!(true) && quickbooks["ok"] == json!(true);
    let checked_at = rfc3339(host.now());
    HttpResponse::json(
        200,
        &json!({"ok": ok, "checked_at": checked_at, "bigcommerce": bigcommerce, "quickbooks": quickbooks,
                "records": records, "webhooks": webhooks, "sweep": sweep}),
    )
}

fn bc_transport(bc: &BigCommerceSettings, e: &TransportError) -> String {
    format!(
        "could not reach BigCommerce at {} ({}): check bigcommerce_api_base and allowed_outbound_hosts in spin.toml, \
         and the network",
        bc.api_base,
        sanitize(&e.to_string())
    )
}

fn bc_other(resp: &HttpResponse, what: &str) -> String {
    let upstream = sanitize(&bigcommerce::parse_api_error(resp).message);
    let upstream = if upstream.is_empty() {
        String::new()
    } else {
        format!(": {upstream}")
    };
    let advice = match resp.status {
        429 => {
            "BigCommerce's rate limit is reached (shared by every app on the store): look again in a minute"
        }
        500..=599 => "BigCommerce is having trouble: look again in a few minutes",
        _ => "check bigcommerce_api_base and bigcommerce_store_hash",
    };
    format!(
        "BigCommerce answered GET {what} with HTTP {}{upstream}; {advice}",
        resp.status
    )
}

fn bigcommerce_status(host: &mut dyn Host, bc: &BigCommerceSettings) -> Value {
    let request = bigcommerce::store(&bc.api_base, &bc.store_hash, &bc.access_token);
    let fail = |message: String| json!({"ok": false, "store_name": null, "error": message});
    let resp = match host.http(&request) {
        Ok(r) => r,
        Err(e) => return fail(bc_transport(bc, &e)),
    };
    match resp.status {
        200..=299 => match bigcommerce::parse_store(&resp) {
            Ok(store) => json!({"ok": true, "store_name": store.name, "error": null}),
            Err(e) => fail(format!(
                "BigCommerce answered GET /v2/store with a body the connector cannot read ({}): check that \
                 bigcommerce_api_base points at BigCommerce's REST API",
                sanitize(&e.to_string())
            )),
        },
        401 => fail(BC_UNAUTHORIZED.to_string()),
        403 => store_forbidden(host, bc, &request),
        404 => fail(format!(
            "BigCommerce has no store `{}` (HTTP 404): wrong bigcommerce_store_hash — copy the hash from the API \
             path (stores/<hash>/v3/) shown when the store API account was created",
            bc.store_hash
        )),
        _ => fail(bc_other(&resp, "/v2/store")),
    }
}

/// `/v2/store` needs the Information & Settings scope, which the connector itself does not:
/// a token scoped exactly as the README says gets 403 there. So the token is checked against
/// an endpoint within its scopes before calling it wrong.
fn store_forbidden(
    host: &mut dyn Host,
    bc: &BigCommerceSettings,
    store_request: &HttpRequest,
) -> Value {
    let mut probe = store_request.clone();
    probe.url = match probe.url.strip_suffix("v2/store") {
        Some(prefix) => format!("{prefix}v2/orders/count"),
        None => probe.url,
    };
    let scope_error = "BigCommerce refused bigcommerce_access_token for orders (HTTP 403): give its store API \
                       account the Orders read-only and Customers read-only scopes, then set the new token";
    match host.http(&probe) {
        Ok(r) if r.is_success() => json!({
            "ok": true, "store_name": null, "error": null,
            "warnings": ["the token works for orders but lacks the Information & Settings read-only scope, so the \
                          store name cannot be shown; add that scope to the store API account to see it here"],
        }),
        Ok(r) if r.status == 401 => {
            json!({"ok": false, "store_name": null, "error": BC_UNAUTHORIZED})
        }
        Ok(r) if r.status == 403 => json!({"ok": false, "store_name": null, "error": scope_error}),
        Ok(r) => {
            json!({"ok": false, "store_name": null, "error": bc_other(&r, "/v2/orders/count")})
        }
        Err(e) => json!({"ok": false, "store_name": null, "error": bc_transport(bc, &e)}),
    }
}

fn quickbooks_status(host: &mut dyn Host, bc: Option<BigCommerceSettings>) -> Value {
    let mut section = json!({
        "ok": false, "company_name": null, "realm_id": null, "needs_reauth": false,
        "access_token_expires_at": null, "refresh_token_expires_at": null, "refresh_token_hard_expires_at": null,
        "connect_url": CONNECT_PATH, "warnings": [], "error": null,
    });
    // Reported even when the variables are missing: it is what tells the operator to reconnect.
    if let Ok(state) = connection::state(host) {
        section["needs_reauth"] = json!(state.needs_reauth);
    }
    let qbo = match QuickBooksSettings::read(host) {
        Ok(q) => q,
        Err(e) => {
            section["error"] = json!(e.to_string());
            return section;
        }
    };
    section["realm_id"] = json!(qbo.realm_id);
    let keyring = match Keyring::from_config(
        settings::optional(host, "encryption_key").as_deref(),
        settings::optional(host, "encryption_key_previous").as_deref(),
    ) {
        Ok(k) => k,
        Err(e) => {
            section["error"] = json!(e.to_string());
            return section;
        }
    };
    // Unreadable stored tokens are a key problem, not a QuickBooks one: say that plainly
    // rather than let it surface as a failed call with a generic fix.
    if let Err(ConnectionError::Crypto(e)) =
        connection::load_tokens(host, &Vault { keyring: &keyring })
    {
        section["error"] = json!(e.to_string());
        return section;
    }
    // `qbo_send` never touches the BigCommerce half, so a placeholder keeps QuickBooks checkable
    // while BigCommerce is misconfigured.
    let bc = bc.unwrap_or(BigCommerceSettings {
        api_base: String::new(),
        store_hash: String::new(),
        access_token: String::new(),
    });
    let up = Upstreams {
        bc,
        qbo,
        keyring,
        access_memo: Default::default(),
    };
    let result = up.qbo_send(host, &|base, realm, token| {
        quickbooks::company_info(base, realm, token)
    });
    match result {
        Ok(resp) => match quickbooks::parse_entity::<CompanyInfo>(&resp, "CompanyInfo") {
            Ok(info) => {
                section["ok"] = json!(true);
                section["company_name"] = json!(info.company_name);
            }
            Err(e) => {
                section["error"] = json!(format!(
                    "QuickBooks answered CompanyInfo with a body the connector cannot read ({}): check that \
                     qbo_api_base points at the Accounting API",
                    sanitize(&e.to_string())
                ));
            }
        },
        Err(f) => section["error"] = json!(failure::explain(&f.failure)),
    }
    // Read after the call: it may have refreshed the tokens or lost the authorization.
    let vault = Vault {
        keyring: &up.keyring,
    };
    if let Ok(Some(realm)) = connection::realm_id(host, &vault, &up.qbo) {
        section["realm_id"] = json!(realm);
    }
    if let Ok(Some(tokens)) = connection::expiries(host, &vault) {
        let now = host.now();
        // A bootstrap token has no access token yet; its placeholder expiry means nothing.
        if !tokens.access_token.expose().is_empty() {
            section["access_token_expires_at"] = json!(rfc3339(tokens.access_expires_at));
        }
        section["refresh_token_expires_at"] = json!(tokens.refresh_expires_at.map(rfc3339));
        section["refresh_token_hard_expires_at"] =
            json!(tokens.refresh_hard_expires_at.map(rfc3339));
        section["warnings"] = json!(token::expiry_warnings(&tokens, now));
    }
    if let Ok(state) = connection::state(host) {
        section["needs_reauth"] = json!(state.needs_reauth);
        if state.needs_reauth && section["error"].is_null() {
            section["ok"] = json!(false);
            section["error"] = json!(format!(
                "QuickBooks authorization was lost{}: re-authorize at {CONNECT_PATH}",
                state
                    .reason
                    .map(|r| format!(" ({})", sanitize(&r)))
                    .unwrap_or_default()
            ));
        }
    }
    section
}

fn records_status(host: &mut dyn Host) -> Value {
    match store::counts(host) {
        Ok(counts) => {
            let mut out = serde_json::Map::new();
            for (state, n) in counts {
                out.insert(state.as_str().to_string(), json!(n));
            }
            Value::Object(out)
        }
        Err(e) => json!({"error": format!("{e}; look again shortly")}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use chrono::Duration;

    use crate::models::token::TokenSet;
    use crate::secret::Secret;
    use crate::testing::FakeHost;

    const ACCESS: &str = "eyJ-ACCESS-plaintext-0123456789";
    const REFRESH: &str = "AB11-REFRESH-plaintext-0123456789";

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T15:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn keyring() -> Keyring {
        Keyring::from_bytes([7u8; 32], None)
    }

    fn host() -> FakeHost {
        let mut h = FakeHost::new(t0());
        h.set_config("bigcommerce_store_hash", "abc123")
            .set_config("bigcommerce_access_token", "bc-token")
            .set_config("bigcommerce_api_base", "https://bc.test")
            .set_config("qbo_client_id", "cid")
            .set_config("qbo_client_secret", "csecret")
            .set_config("qbo_api_base", "https://qbo.test")
            .set_config("qbo_oauth_base", "https://oauth.test")
            .set_config(
                "encryption_key",
                &base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
            );
        h
    }

    fn connect(h: &mut FakeHost, access_expires_at: DateTime<Utc>) {
        let tokens = TokenSet {
            access_token: Secret::new(ACCESS.into()),
            access_expires_at,
            refresh_token: Secret::new(REFRESH.into()),
            refresh_expires_at: Some(t0() + Duration::days(100)),
            refresh_hard_expires_at: Some(t0() + Duration::days(1800)),
            realm_id: Some("1234".into()),
        };
        connection::connected(
            h,
            &Vault {
                keyring: &keyring(),
            },
            &tokens,
        )
        .unwrap();
    }

    fn route_store(h: &mut FakeHost) {
        h.route("GET /stores/abc123/v2/store", |_| {
            Ok(HttpResponse::json(
                200,
                &json!({"id": "abc123", "name": "Example Store", "domain": "example.com",
                        "secure_url": "https://example.com", "currency": "USD"}),
            ))
        });
    }

    fn route_company(h: &mut FakeHost) {
        h.route("GET /v3/company/1234/companyinfo/1234", |_| {
            Ok(HttpResponse::json(
                200,
                &json!({"CompanyInfo": {"Id": "1", "CompanyName": "Example Co", "Country": "US"},
                        "time": "2026-11-26T07:00:00.000-08:00"}),
            ))
        });
    }

    fn status_of(h: &mut FakeHost) -> Value {
        let resp = status(h);
        assert_eq!(resp.status, 200);
        let text = String::from_utf8(resp.body.clone()).unwrap();
        assert!(
            !text.contains(ACCESS) && !text.contains(REFRESH) && !text.contains("bc-token"),
            "{text}"
        );
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn a_healthy_connector_reports_store_company_expiries_and_counts() {
        let mut h = host();
        connect(&mut h, t0() + Duration::minutes(50));
        route_store(&mut h);
        route_company(&mut h);
        h.kv_increment("count/posted", 12).unwrap();
        h.kv_increment("count/failed", 1).unwrap();

        let v = status_of(&mut h);
        assert_eq!(v["ok"], true);
        assert_eq!(
            v["bigcommerce"],
            json!({"ok": true, "store_name": "Example Store", "error": null})
        );
        let q = &v["quickbooks"];
        assert_eq!(q["ok"], true, "{q}");
        assert_eq!(q["company_name"], "Example Co");
        assert_eq!(q["realm_id"], "1234");
        assert_eq!(q["needs_reauth"], false);
        assert_eq!(q["access_token_expires_at"], "2026-11-26T15:50:00Z");
        assert_eq!(q["refresh_token_expires_at"], "2027-03-06T15:00:00Z");
        assert_eq!(q["refresh_token_hard_expires_at"], "2031-10-31T15:00:00Z");
        assert_eq!(q["connect_url"], "/oauth/quickbooks/connect");
        assert_eq!(q["warnings"], json!([]));
        assert_eq!(q["error"], Value::Null);
        assert_eq!(
            v["records"],
            json!({"pending": 0, "retrying": 0, "posted": 12, "failed": 1, "needs_reauth": 0, "skipped": 0})
        );
        assert_eq!(
            h.calls_to("/oauth2/v1/tokens/bearer"),
            0,
            "a valid access token is not refreshed"
        );
        let auth = h
            .requests
            .iter()
            .find(|r| r.url.contains("companyinfo"))
            .unwrap();
        assert!(
            auth.url
                .starts_with("https://qbo.test/v3/company/1234/companyinfo/1234")
        );
    }

    #[test]
    fn a_rejected_bigcommerce_token_is_reported_with_what_to_do() {
        let mut h = host();
        connect(&mut h, t0() + Duration::minutes(50));
        h.route("GET /v2/store", |_| {
            Ok(HttpResponse::json(
                401,
                &json!({"status": 401, "title": "Unauthorized"}),
            ))
        });
        route_company(&mut h);
        let v = status_of(&mut h);
        assert_eq!(v["ok"], false);
        assert_eq!(v["bigcommerce"]["ok"], false);
        assert_eq!(v["bigcommerce"]["store_name"], Value::Null);
        let e = v["bigcommerce"]["error"].as_str().unwrap();
        assert!(
            e.starts_with(
                "BigCommerce rejected bigcommerce_access_token: create a store API account with Orders read-only \
                 and Customers read-only scopes"
            ),
            "{e}"
        );
        assert_eq!(
            v["quickbooks"]["ok"], true,
            "the QuickBooks check is independent"
        );
    }

    #[test]
    fn a_token_without_the_store_information_scope_is_still_valid_for_orders() {
        let mut h = host();
        h.route("GET /v2/store", |_| {
            Ok(HttpResponse::json(
                403,
                &json!({"status": 403, "title": "Forbidden"}),
            ))
        });
        h.route("GET /stores/abc123/v2/orders/count", |_| {
            Ok(HttpResponse::json(200, &json!({"count": 3})))
        });
        let b = &status_of(&mut h)["bigcommerce"];
        assert_eq!(b["ok"], true, "{b}");
        assert_eq!(b["store_name"], Value::Null);
        assert!(
            b["warnings"][0]
                .as_str()
                .unwrap()
                .contains("Information & Settings")
        );
    }

    #[test]
    fn a_token_without_order_scopes_is_a_scope_error() {
        let mut h = host();
        h.route("GET /v2/", |_| {
            Ok(HttpResponse::json(
                403,
                &json!({"status": 403, "title": "Forbidden"}),
            ))
        });
        let b = &status_of(&mut h)["bigcommerce"];
        assert_eq!(b["ok"], false);
        let e = b["error"].as_str().unwrap();
        assert!(
            e.contains("HTTP 403") && e.contains("Orders read-only"),
            "{e}"
        );
    }

    #[test]
    fn a_wrong_store_hash_and_an_unreachable_api_are_told_apart() {
        let mut h = host();
        h.route("GET /v2/store", |_| {
            Ok(HttpResponse::json(404, &json!({"status": 404})))
        });
        let e = status_of(&mut h)["bigcommerce"]["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            e.contains("wrong bigcommerce_store_hash") && e.contains("abc123"),
            "{e}"
        );

        let mut h = host();
        h.route("GET /v2/store", |_| {
            Err(TransportError::Connect("connection refused".into()))
        });
        let e = status_of(&mut h)["bigcommerce"]["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("could not reach BigCommerce at https://bc.test")
                && e.contains("bigcommerce_api_base"),
            "{e}"
        );
    }

    #[test]
    fn lost_quickbooks_authorization_is_reflected_with_the_connect_link() {
        let mut h = host();
        connect(&mut h, t0() - Duration::minutes(1));
        route_store(&mut h);
        let fixture = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/quickbooks/oauth_invalid_grant_400.json"
        ))
        .unwrap();
        h.route("POST /oauth2/v1/tokens/bearer", move |_| {
            Ok(HttpResponse::new(400, fixture.clone()))
        });
        let v = status_of(&mut h);
        let q = &v["quickbooks"];
        assert_eq!(q["ok"], false);
        assert_eq!(q["needs_reauth"], true);
        assert_eq!(q["company_name"], Value::Null);
        assert_eq!(q["realm_id"], "1234");
        assert!(
            q["error"]
                .as_str()
                .unwrap()
                .contains("/oauth/quickbooks/connect"),
            "{q}"
        );
        assert_eq!(h.calls_to("companyinfo"), 0);
        assert_eq!(v["bigcommerce"]["ok"], true);
    }

    #[test]
    fn a_stored_needs_reauth_state_makes_quickbooks_not_ok() {
        let mut h = host();
        connect(&mut h, t0() + Duration::minutes(50));
        connection::mark_needs_reauth(
            &mut h,
            "QuickBooks refused the refresh token (invalid_grant)",
        )
        .unwrap();
        route_store(&mut h);
        route_company(&mut h);
        let q = status_of(&mut h)["quickbooks"].clone();
        assert_eq!(q["needs_reauth"], true);
        assert_eq!(q["ok"], false);
        let e = q["error"].as_str().unwrap();
        assert!(
            e.contains("invalid_grant") && e.contains("re-authorize at /oauth/quickbooks/connect"),
            "{e}"
        );
    }

    #[test]
    fn tokens_sealed_under_another_key_say_cannot_decrypt_and_how_to_fix_it() {
        let mut h = host();
        connect(&mut h, t0() + Duration::minutes(50));
        route_store(&mut h);
        route_company(&mut h);
        h.set_config(
            "encryption_key",
            &base64::engine::general_purpose::STANDARD.encode([8u8; 32]),
        );
        let q = status_of(&mut h)["quickbooks"].clone();
        assert_eq!(q["ok"], false);
        let error = q["error"].as_str().unwrap();
        assert!(
            error.starts_with("cannot decrypt stored credentials")
                && error.contains("encryption_key_previous"),
            "{error}"
        );
        assert!(!error.contains("mapping"), "not a mapping problem: {error}");
        assert!(
            h.requests.iter().all(|r| r.url.contains("/v2/store")),
            "nothing sent to QuickBooks"
        );
    }

    #[test]
    fn never_connected_quickbooks_says_how_to_connect() {
        let mut h = host();
        route_store(&mut h);
        let q = status_of(&mut h)["quickbooks"].clone();
        assert_eq!(q["ok"], false);
        assert!(
            q["error"]
                .as_str()
                .unwrap()
                .contains("/oauth/quickbooks/connect"),
            "{q}"
        );
        assert!(
            h.requests.iter().all(|r| r.url.contains("/v2/store")),
            "nothing sent to QuickBooks"
        );
    }

    #[test]
    fn missing_variables_are_reported_per_side_without_failing_the_route() {
        let mut h = FakeHost::new(t0());
        // Two records listed, neither in any other state: both pending.
        h.kv_increment("log/records/n", 2).unwrap();
        let v = status_of(&mut h);
        assert_eq!(v["bigcommerce"]["ok"], false);
        assert!(
            v["bigcommerce"]["error"]
                .as_str()
                .unwrap()
                .contains("bigcommerce_store_hash")
        );
        assert_eq!(v["quickbooks"]["ok"], false);
        assert!(
            v["quickbooks"]["error"]
                .as_str()
                .unwrap()
                .contains("qbo_client_id")
        );
        assert_eq!(v["quickbooks"]["connect_url"], "/oauth/quickbooks/connect");
        assert_eq!(v["records"]["pending"], 2);
        assert!(h.requests.is_empty());
    }

    #[test]
    fn quickbooks_is_checked_even_when_bigcommerce_is_not_configured() {
        let mut h = host();
        h.config.remove("bigcommerce_access_token");
        connect(&mut h, t0() + Duration::minutes(50));
        route_company(&mut h);
        let v = status_of(&mut h);
        assert!(
            v["bigcommerce"]["error"]
                .as_str()
                .unwrap()
                .contains("bigcommerce_access_token")
        );
        assert_eq!(v["quickbooks"]["company_name"], "Example Co");
    }

    #[test]
    fn refresh_token_expiry_warnings_are_listed() {
        let mut h = host();
        connect(&mut h, t0() + Duration::minutes(50));
        route_store(&mut h);
        route_company(&mut h);
        h.advance(Duration::days(90));
        // The access token is long expired by now: status refreshes it through the normal path.
        h.route("POST /oauth2/v1/tokens/bearer", |_| {
            Ok(HttpResponse::json(
                200,
                &json!({"access_token": "a2-0123456789", "expires_in": 3600}),
            ))
        });
        let q = status_of(&mut h)["quickbooks"].clone();
        assert_eq!(q["ok"], true, "{q}");
        let w = q["warnings"].as_array().unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].as_str().unwrap().contains("10 days left"));
    }
}
