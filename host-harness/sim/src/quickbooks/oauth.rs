//! The simulator's OAuth 2.0 side: the consent redirect (`authorize`), the token endpoint
//! (code and refresh grants, rotation, reuse of a rotated token), revocation, and the tokens it
//! mints.

use super::*;

pub(super) fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    rand::rng().fill(&mut buf[..]);
    buf
}

pub(super) fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(super) fn alnum(n: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

pub(super) fn new_refresh_token() -> String {
    format!(
        "AB11{}{}",
        rand::rng().random_range(1_000_000_000_000u64..9_999_999_999_999),
        alnum(33)
    )
}

pub(super) fn new_code() -> String {
    format!("AB11{}", alnum(46))
}

pub(super) fn mint_access(auth: &mut Auth, ttl: u64) -> String {
    // Real access tokens are ~1 KB JWE strings; clients must not assume a short token.
    let token = format!(
        "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0..{}.{}.{}",
        b64url(&random_bytes(16)),
        b64url(&random_bytes(720)),
        b64url(&random_bytes(16))
    );
    auth.access
        .insert(token.clone(), Instant::now() + Duration::from_secs(ttl));
    token
}

pub(super) fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    let mut resp = json_response(
        status,
        json!({"error": error, "error_description": description}).to_string(),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    resp
}

/// `GET /connect/oauth2`: the consent page, already approved: 302 back to the app.
pub(super) async fn authorize(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let params: HashMap<String, String> = form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let p = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    let problem = if p("client_id") != s.cfg.client_id {
        Some(format!(
            "client_id {:?} is not a registered app; use the simulator's client_id",
            p("client_id")
        ))
    } else if p("response_type") != "code" {
        Some("response_type must be \"code\"".to_string())
    } else if !p("scope")
        .split(' ')
        .any(|sc| sc == "com.intuit.quickbooks.accounting")
    {
        Some(format!(
            "scope {:?} lacks com.intuit.quickbooks.accounting",
            p("scope")
        ))
    } else if p("redirect_uri").is_empty() {
        Some("redirect_uri is required".to_string())
    } else if !s.cfg.redirect_uris.is_empty()
        && !s.cfg.redirect_uris.iter().any(|u| u == p("redirect_uri"))
    {
        Some(format!(
            "redirect_uri {:?} is not registered for this app",
            p("redirect_uri")
        ))
    } else if p("state").is_empty() {
        Some("state is required (CSRF protection)".to_string())
    } else {
        None
    };
    if let Some(problem) = problem {
        return (
            StatusCode::BAD_REQUEST,
            format!("QuickBooks simulator consent page: {problem}"),
        )
            .into_response();
    }
    let Ok(mut target) = url::Url::parse(p("redirect_uri")) else {
        return (
            StatusCode::BAD_REQUEST,
            "QuickBooks simulator consent page: redirect_uri is not an absolute URL",
        )
            .into_response();
    };
    let code = new_code();
    lock(&s.auth).codes.insert(
        code.clone(),
        CodeGrant {
            redirect_uri: p("redirect_uri").to_string(),
            used: false,
        },
    );
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", p("state"))
        .append_pair("realmId", &s.cfg.realm_id);
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(target.as_str()) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

pub(super) fn client_ok(s: &Shared, headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    match basic {
        Some(pair) => pair == format!("{}:{}", s.cfg.client_id, s.cfg.client_secret),
        None => {
            form.get("client_id") == Some(&s.cfg.client_id)
                && form.get("client_secret") == Some(&s.cfg.client_secret)
        }
    }
}

/// `POST /oauth2/v1/tokens/bearer`.
pub(super) async fn token(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let mut auth = lock(&s.auth);
    auth.token_calls += 1;
    if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
        auth.refresh_calls += 1;
    }
    if !client_ok(&s, &headers, &form) {
        return oauth_error(
            401,
            "invalid_client",
            "Client authentication failed: send Authorization: Basic base64(client_id:client_secret)",
        );
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return oauth_error(
            400,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        );
    }
    let refresh_token = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let (Some(code), Some(redirect)) = (form.get("code"), form.get("redirect_uri")) else {
                return oauth_error(400, "invalid_request", "code and redirect_uri are required");
            };
            match auth.codes.get_mut(code) {
                Some(g) if !g.used && &g.redirect_uri == redirect => g.used = true,
                _ => return oauth_error(400, "invalid_grant", "Token invalid"),
            }
            let rt = new_refresh_token();
            auth.refresh.insert(rt.clone(), RefreshState::Active);
            rt
        }
        Some("refresh_token") => {
            let Some(rt) = form.get("refresh_token") else {
                return oauth_error(400, "invalid_request", "refresh_token is required");
            };
            match auth.refresh.get(rt) {
                Some(RefreshState::Active) => {}
                Some(RefreshState::Revoked) => {
                    return oauth_error(400, "invalid_grant", "Token has been expired or revoked.");
                }
                _ => return oauth_error(400, "invalid_grant", "Token invalid"),
            }
            if auth.rotate {
                auth.refresh.insert(rt.clone(), RefreshState::Superseded);
                let new = new_refresh_token();
                auth.refresh.insert(new.clone(), RefreshState::Active);
                new
            } else {
                rt.clone()
            }
        }
        Some(_) => {
            return oauth_error(
                400,
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token",
            );
        }
        None => return oauth_error(400, "invalid_request", "grant_type is required"),
    };
    let ttl = auth.ttl_secs;
    let access = mint_access(&mut auth, ttl);
    let mut body = json!({
        "token_type": "bearer",
        "access_token": access,
        "expires_in": ttl,
        "refresh_token": refresh_token,
        "x_refresh_token_expires_in": 8_726_400,
    });
    let hard = headers
        .get("x-include-refresh-token-hard-expires-in")
        .and_then(|v| v.to_str().ok());
    if hard.is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        body["x_refresh_token_hard_expires_in"] = json!(157_680_000);
    }
    let mut resp = json_response(200, body.to_string());
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    resp
}

/// `POST /v2/oauth2/tokens/revoke` with `{"token": …}`: disconnects the app.
pub(super) async fn revoke(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !client_ok(&s, &headers, &HashMap::new()) {
        return oauth_error(
            401,
            "invalid_client",
            "Client authentication failed: send Authorization: Basic base64(client_id:client_secret)",
        );
    }
    let token = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_string));
    let mut auth = lock(&s.auth);
    let known = token
        .as_ref()
        .is_some_and(|t| auth.refresh.contains_key(t) || auth.access.contains_key(t));
    if !known {
        return oauth_error(400, "invalid_request", "token is missing or unknown");
    }
    for st in auth.refresh.values_mut() {
        *st = RefreshState::Revoked;
    }
    auth.access.clear();
    StatusCode::OK.into_response()
}
