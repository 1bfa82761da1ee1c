//! The QuickBooks Online simulator over real HTTP.

use base64::Engine as _;
use ml_sim::control::{FaultAction, FaultRule};
use ml_sim::quickbooks::{QboSim, QboSimConfig, QboSimHandle};
use reqwest::StatusCode;
use serde_json::{Value, json};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/quickbooks"
);

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture is JSON")
}

struct Api {
    sim: QboSimHandle,
    http: reqwest::Client,
    token: String,
}

impl Api {
    async fn start() -> Api {
        let sim = QboSim::start(QboSimConfig::default())
            .await
            .expect("simulator starts");
        let token = sim.issue_access_token();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Api { sim, http, token }
    }

    fn url(&self, rest: &str) -> String {
        format!(
            "{}/v3/company/{}/{rest}",
            self.sim.base_url(),
            self.sim.realm_id()
        )
    }

    async fn query(&self, stmt: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(with_query(
                &self.url("query"),
                &[("query", stmt), ("minorversion", "75")],
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap())
    }

    async fn post(&self, path: &str, body: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.post(path, &body.to_string()).await
    }

    async fn get(&self, rest: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(self.url(rest))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap())
    }

    async fn id_of(&self, entity: &str, field: &str, name: &str) -> String {
        let (_, v) = self
            .query(&format!(
                "SELECT * FROM {entity} WHERE {field} = '{}'",
                name.replace('\'', "\\'")
            ))
            .await;
        v["QueryResponse"][entity][0]["Id"]
            .as_str()
            .unwrap_or_else(|| panic!("{entity} {name} exists"))
            .to_string()
    }
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    url::Url::parse_with_params(base, pairs)
        .unwrap()
        .to_string()
}

fn fault_code(v: &Value) -> &str {
    v["Fault"]["Error"][0]["code"]
        .as_str()
        .unwrap_or("<no Fault>")
}

fn basic(sim: &QboSimHandle) -> String {
    let raw = format!("{}:{}", sim.client_id(), sim.client_secret());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

async fn token_call(
    api: &Api,
    form: &[(&str, &str)],
    auth: Option<String>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut req = api
        .http
        .post(format!("{}/oauth2/v1/tokens/bearer", api.sim.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, headers, resp.json().await.unwrap())
}

#[tokio::test]
async fn token_exchange_then_refresh_rotates_and_the_superseded_token_is_invalid_grant() {
    let api = Api::start().await;
    let redirect = "http://127.0.0.1:9/oauth/quickbooks/callback";
    let consent = api
        .http
        .get(with_query(
            &format!("{}/connect/oauth2", api.sim.base_url()),
            &[
                ("client_id", api.sim.client_id()),
                ("response_type", "code"),
                ("scope", "com.intuit.quickbooks.accounting"),
                ("redirect_uri", redirect),
                ("state", "csrf-123"),
            ],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(consent.status(), StatusCode::FOUND);
    let location = url::Url::parse(consent.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(redirect));
    let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "csrf-123");
    assert_eq!(q["realmId"], api.sim.realm_id());
    let code = q["code"].clone();

    let (status, _, body) = token_call(
        &api,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");

    let (status, headers, first) = token_call(
        &api,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
        ],
        Some(basic(&api.sim)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key("intuit_tid"));
    assert_eq!(first["token_type"], "bearer");
    assert_eq!(first["expires_in"], 3600);
    assert_eq!(first["x_refresh_token_expires_in"], 8_726_400);
    assert!(
        first["access_token"].as_str().unwrap().len() > 900,
        "access tokens are long and opaque"
    );
    assert!(first.get("x_refresh_token_hard_expires_in").is_none());

    let (status, _, reused) = token_call(
        &api,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
        ],
        Some(basic(&api.sim)),
    )
    .await;
    assert_eq!(
        (status, reused["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "codes are single-use"
    );

    let rt1 = first["refresh_token"].as_str().unwrap().to_string();
    let (status, _, second) = token_call(
        &api,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
        Some(basic(&api.sim)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let rt2 = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(
        rt1, rt2,
        "every refresh rotates the refresh token by default"
    );

    let (status, _, dead) = token_call(
        &api,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
        Some(basic(&api.sim)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(dead, fixture("oauth_invalid_grant_400.json"));

    let resp = api
        .http
        .post(format!("{}/oauth2/v1/tokens/bearer", api.sim.base_url()))
        .header("authorization", basic(&api.sim))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-include-refresh-token-hard-expires-in", "true")
        .body(format!("grant_type=refresh_token&refresh_token={rt2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let third: Value = resp.json().await.unwrap();
    assert_eq!(third["x_refresh_token_hard_expires_in"], 157_680_000);
    assert_eq!(api.sim.refresh_calls(), 3);
    assert_eq!(api.sim.token_calls(), 6);

    api.sim.revoke_refresh_tokens();
    let rt3 = third["refresh_token"].as_str().unwrap();
    let (status, _, revoked) = token_call(
        &api,
        &[("grant_type", "refresh_token"), ("refresh_token", rt3)],
        Some(basic(&api.sim)),
    )
    .await;
    assert_eq!(
        (status, revoked["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn redirect_uri_must_match_the_authorize_request() {
    let api = Api::start().await;
    let code = api
        .sim
        .authorize_code("https://app.example/oauth/quickbooks/callback");
    let (status, _, body) = token_call(
        &api,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://evil.example/cb"),
        ],
        Some(basic(&api.sim)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn expired_access_token_gets_the_lowercase_401_fault() {
    let api = Api::start().await;
    api.sim.expire_access_tokens();
    let resp = api
        .http
        .get(api.url("companyinfo/".to_string().as_str()) + api.sim.realm_id())
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"Intuit\", error=\"invalid_token\""
    );
    assert!(resp.headers().contains_key("intuit_tid"));
    let body: Value = resp.json().await.unwrap();
    let recorded = fixture("fault_3200_authentication_401_lowercase_shape.json");
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&body), keys(&recorded));
    assert_eq!(
        keys(&body["fault"]["error"][0]),
        keys(&recorded["fault"]["error"][0])
    );
    assert_eq!(
        body["fault"]["error"][0]["message"],
        recorded["fault"]["error"][0]["message"]
    );
    assert_eq!(body["fault"]["error"][0]["code"], "3200");
    assert_eq!(body["fault"]["type"], "AUTHENTICATION");
    assert!(body["time"].is_i64());

    api.sim.set_access_token_ttl(0);
    let fresh = api.sim.issue_access_token();
    let resp = api
        .http
        .get(api.url("preferences"))
        .bearer_auth(fresh)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "a zero TTL token is expired on arrival"
    );
}

#[tokio::test]
async fn another_companys_realm_is_forbidden() {
    let api = Api::start().await;
    let resp = api
        .http
        .get(format!("{}/v3/company/123/preferences", api.sim.base_url()))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["fault"]["error"][0]["code"], "3100");
}

#[tokio::test]
async fn query_with_an_escaped_quote_finds_amys_bird_sanctuary() {
    let api = Api::start().await;
    let (status, v) = api.query(r"SELECT * FROM Customer WHERE DisplayName = 'Amy\'s Bird Sanctuary' STARTPOSITION 1 MAXRESULTS 1").await;
    assert_eq!(status, StatusCode::OK);
    let customers = v["QueryResponse"]["Customer"].as_array().unwrap();
    assert_eq!(customers.len(), 1);
    assert_eq!(customers[0]["DisplayName"], "Amy's Bird Sanctuary");
    assert_eq!(v["QueryResponse"]["startPosition"], 1);
    assert_eq!(v["QueryResponse"]["maxResults"], 1);
    let (_, by_email) = api
        .query("select * from Customer where PrimaryEmailAddr = 'birds@intuit.com'")
        .await;
    assert_eq!(
        by_email["QueryResponse"]["Customer"][0]["DisplayName"],
        "Amy's Bird Sanctuary"
    );
    let (_, liked) = api
        .query("SELECT * FROM Vendor WHERE DisplayName LIKE '%& Assoc%'")
        .await;
    assert_eq!(
        liked["QueryResponse"]["Vendor"][0]["DisplayName"],
        "Robertson & Associates"
    );
}

#[tokio::test]
async fn query_without_matches_returns_an_empty_query_response() {
    let api = Api::start().await;
    let (status, v) = api
        .query("SELECT * FROM Invoice WHERE DocNumber = 'BC-404'")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["QueryResponse"], json!({}));
    assert!(v["time"].is_string());
    let (_, count) = api.query("SELECT COUNT(*) FROM Class").await;
    assert_eq!(count["QueryResponse"]["totalCount"], 4);
}

#[tokio::test]
async fn malformed_query_gets_a_4000_parser_fault() {
    let api = Api::start().await;
    for stmt in [
        "SELECT * FROM Customer WHERE DisplayName = 'open",
        "SELECT * FROM Customer WHERE Id = '1' OR Id = '2'",
    ] {
        let (status, v) = api.query(stmt).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{stmt}");
        assert_eq!(fault_code(&v), "4000", "{stmt}");
    }
    let (status, v) = api.query("SELECT * FROM Customer WHERE Shoe = 'x'").await;
    assert_eq!((status, fault_code(&v)), (StatusCode::BAD_REQUEST, "4001"));
}

#[tokio::test]
async fn inactive_customers_are_hidden_unless_the_query_constrains_active() {
    let api = Api::start().await;
    let (_, active_only) = api
        .query("SELECT * FROM Customer WHERE DisplayName = 'Jordan Price'")
        .await;
    assert_eq!(active_only["QueryResponse"], json!({}));
    let (_, all) = api
        .query(
            "SELECT * FROM Customer WHERE DisplayName = 'Jordan Price' AND Active IN (true, false)",
        )
        .await;
    let found = all["QueryResponse"]["Customer"].as_array().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["Active"], false);
}

#[tokio::test]
async fn customer_named_like_a_vendor_gets_6240() {
    let api = Api::start().await;
    let (status, v) = api
        .post_json(
            "customer?minorversion=75",
            json!({"DisplayName": "Ana Diaz"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let recorded = fixture("fault_6240_duplicate_name_400.json");
    assert_eq!(v["Fault"], recorded["Fault"]);
    let (status, _) = api
        .post_json("customer", json!({"DisplayName": "jordan price"}))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "inactive customers block the name too"
    );
    let (status, v) = api
        .post_json(
            "customer",
            json!({"DisplayName": "Ana Diaz (ana@example.com)"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn customer_create_derives_the_display_name_and_rejects_bad_input() {
    let api = Api::start().await;
    let (status, v) = api
        .post_json(
            "customer",
            json!({"GivenName": "Mara", "FamilyName": "Quinn"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let c = &v["Customer"];
    assert_eq!(c["DisplayName"], "Mara Quinn");
    assert_eq!(c["SyncToken"], "0");
    assert_eq!(c["domain"], "QBO");
    assert!(c["Id"].is_string());
    let (_, v) = api
        .post_json("customer", json!({"DisplayName": "Parent:Child"}))
        .await;
    assert_eq!(fault_code(&v), "6000");
    let (_, v) = api
        .post_json(
            "customer",
            json!({"DisplayName": "Bad Mail", "PrimaryEmailAddr": {"Address": "not an email"}}),
        )
        .await;
    assert_eq!(fault_code(&v), "2210");
    let (_, v) = api
        .post_json("customer", json!({"DisplayName": "Extra", "Nickname": "x"}))
        .await;
    assert_eq!(fault_code(&v), "2010");
    let (_, v) = api
        .post_json(
            "customer",
            json!({"DisplayName": "Extra", "BillAddr": {"Street": "x"}}),
        )
        .await;
    assert_eq!(
        fault_code(&v),
        "2010",
        "nested unknown properties are rejected too"
    );
}

#[tokio::test]
async fn sparse_update_with_a_stale_sync_token_gets_5010() {
    let api = Api::start().await;
    let (_, created) = api
        .post_json("customer", json!({"DisplayName": "Lena Ortiz"}))
        .await;
    let id = created["Customer"]["Id"].as_str().unwrap();
    let (status, updated) = api
        .post_json("customer", json!({"Id": id, "SyncToken": "0", "sparse": true, "PrimaryPhone": {"FreeFormNumber": "555-0100"}}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["Customer"]["SyncToken"], "1");
    assert_eq!(
        updated["Customer"]["DisplayName"], "Lena Ortiz",
        "sparse keeps unsent fields"
    );
    let (status, stale) = api
        .post_json(
            "customer",
            json!({"Id": id, "SyncToken": "0", "sparse": true, "Notes": "late"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(fault_code(&stale), "5010");
    let read = api
        .http
        .get(api.url(&format!("customer/{id}")))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["Customer"]["SyncToken"], "1");
    assert!(read["Customer"].get("Notes").is_none());
}

async fn invoice_refs(api: &Api) -> (String, String, String) {
    (
        api.id_of("Customer", "DisplayName", "Amy's Bird Sanctuary")
            .await,
        api.id_of("Item", "Name", "BigCommerce Sales").await,
        api.id_of("Class", "Name", "Retail").await,
    )
}

#[tokio::test]
async fn invoice_amount_that_is_not_qty_times_unit_price_gets_6000() {
    let api = Api::start().await;
    let (cust, item, _) = invoice_refs(&api).await;
    let body = format!(
        r#"{{"CustomerRef":{{"value":"{cust}"}},"Line":[{{"Amount":20.21,"DetailType":"SalesItemLineDetail",
        "SalesItemLineDetail":{{"ItemRef":{{"value":"{item}"}},"Qty":2,"UnitPrice":10.10}}}}]}}"#
    );
    let (status, v) = api.post("invoice", &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(fault_code(&v), "6000");
    let ok = body.replace("20.21", "20.20");
    let (status, v) = api.post("invoice", &ok).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // One third of a cent rounds: 3 × 3.335 = 10.005 → 10.01.
    let rounding = body
        .replace("20.21", "10.01")
        .replace("\"Qty\":2", "\"Qty\":3")
        .replace("10.10", "3.335");
    let (status, v) = api.post("invoice", &rounding).await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn invoice_with_an_unknown_item_ref_gets_a_reference_fault() {
    let api = Api::start().await;
    let (cust, _, _) = invoice_refs(&api).await;
    let line = |item: &str| json!({"Amount": 5, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": item}}});
    let (status, v) = api
        .post_json(
            "invoice",
            json!({"CustomerRef": {"value": cust}, "Line": [line("99999")]}),
        )
        .await;
    assert_eq!((status, fault_code(&v)), (StatusCode::BAD_REQUEST, "2500"));
    let inactive = api
        .sim
        .items()
        .into_iter()
        .find(|i| i["Active"] == false)
        .unwrap();
    let (_, v) = api.post_json("invoice", json!({"CustomerRef": {"value": cust}, "Line": [line(inactive["Id"].as_str().unwrap())]})).await;
    assert_eq!(fault_code(&v), "610");
    let (_, v) = api
        .post_json(
            "invoice",
            json!({"CustomerRef": {"value": "424242"}, "Line": [line("1")]}),
        )
        .await;
    assert_eq!(fault_code(&v), "2500");
    let (_, v) = api
        .post_json(
            "invoice",
            json!({"CustomerRef": {"value": cust}, "Line": []}),
        )
        .await;
    assert_eq!(fault_code(&v), "2020");
    let (_, v) = api
        .post_json(
            "invoice",
            json!({"CustomerRef": {"value": cust}, "Line": [line("1")], "BadJson": 1}),
        )
        .await;
    assert_eq!(fault_code(&v), "2010");
    assert!(api.sim.invoices().is_empty());
}

#[tokio::test]
async fn doc_number_of_22_chars_gets_2050() {
    let api = Api::start().await;
    let (cust, item, _) = invoice_refs(&api).await;
    let inv = |doc: &str| {
        json!({"DocNumber": doc, "CustomerRef": {"value": cust},
               "Line": [{"Amount": 1, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": item}}}]})
    };
    let (status, v) = api.post_json("invoice", inv(&"X".repeat(22))).await;
    assert_eq!((status, fault_code(&v)), (StatusCode::BAD_REQUEST, "2050"));
    let (status, _) = api.post_json("invoice", inv(&"X".repeat(21))).await;
    assert_eq!(status, StatusCode::OK);
    let (_, v) = api.post_json("invoice", inv(&"X".repeat(21))).await;
    assert_eq!(
        fault_code(&v),
        "6140",
        "duplicate DocNumber checking is on by default"
    );
}

#[tokio::test]
async fn requestid_replay_returns_the_original_response_and_creates_nothing() {
    let api = Api::start().await;
    let (status, first) = api
        .post_json(
            "customer?requestid=bc-store-cust-7",
            json!({"DisplayName": "Replay Person"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, again) = api
        .post_json(
            "customer?requestid=bc-store-cust-7",
            json!({"DisplayName": "Someone Else"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        again, first,
        "byte-for-byte the original response, even for a different body"
    );
    assert_eq!(
        api.sim
            .customers()
            .iter()
            .filter(|c| c["DisplayName"] == "Replay Person")
            .count(),
        1
    );
    assert!(
        api.sim
            .customers()
            .iter()
            .all(|c| c["DisplayName"] != "Someone Else")
    );
    let (status, other) = api
        .post_json(
            "customer?requestid=bc-store-cust-8",
            json!({"DisplayName": "Replay Person"}),
        )
        .await;
    assert_eq!(
        (status, fault_code(&other)),
        (StatusCode::BAD_REQUEST, "6240"),
        "a new requestid executes"
    );
}

#[tokio::test]
async fn eleven_concurrent_requests_with_injected_latency_get_a_429() {
    let api = Api::start().await;
    api.sim.control().inject(FaultRule {
        method: None,
        path_contains: "/query".into(),
        remaining: 11,
        action: FaultAction::Delay { ms: 400 },
    });
    let calls = (0..11).map(|_| {
        let http = api.http.clone();
        let url = api.url("query");
        let token = api.token.clone();
        tokio::spawn(async move {
            let resp = http
                .get(with_query(&url, &[("query", "SELECT * FROM Class")]))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap())
        })
    });
    let calls: Vec<_> = calls.collect();
    let mut throttled = Vec::new();
    for c in calls {
        let (status, body) = c.await.unwrap();
        if status == StatusCode::TOO_MANY_REQUESTS {
            throttled.push(body);
        } else {
            assert_eq!(status, StatusCode::OK);
        }
    }
    assert!(
        !throttled.is_empty(),
        "the 11th concurrent request is throttled"
    );
    assert_eq!(
        throttled[0]["fault"]["error"][0]["message"],
        "message=ThrottleExceeded; errorCode=003001; statusCode=429"
    );
    assert_eq!(
        (
            api.sim.throttled_concurrent(),
            api.sim.throttled_per_minute()
        ),
        (throttled.len(), 0),
        "the simulator counts each concurrency 429 apart from the per-minute ones"
    );
    assert_eq!(
        api.sim.peak_in_flight(),
        11,
        "the simulator reports the most requests it saw in flight at once"
    );
}

#[tokio::test]
async fn invoice_create_response_has_total_amt_and_a_subtotal_line() {
    let api = Api::start().await;
    let (cust, item, class) = invoice_refs(&api).await;
    let discounts = api.id_of("Account", "Name", "Discounts given").await;
    let body = format!(
        r#"{{"DocNumber":"BC-250","TxnDate":"2026-11-26","CustomerRef":{{"value":"{cust}"}},
        "PrivateNote":"BigCommerce order 250",
        "Line":[
          {{"Amount":20.20,"Description":"Tee","DetailType":"SalesItemLineDetail",
            "SalesItemLineDetail":{{"ItemRef":{{"value":"{item}"}},"ClassRef":{{"value":"{class}"}},"Qty":2,"UnitPrice":10.10}}}},
          {{"Amount":5.00,"DetailType":"SalesItemLineDetail","SalesItemLineDetail":{{"ItemRef":{{"value":"SHIPPING_ITEM_ID"}}}}}},
          {{"Amount":2.50,"DetailType":"DiscountLineDetail",
            "DiscountLineDetail":{{"PercentBased":false,"DiscountAccountRef":{{"value":"{discounts}"}}}}}}],
        "TxnTaxDetail":{{"TotalTax":1.85}}}}"#
    );
    let resp = api
        .http
        .post(api.url("invoice?minorversion=75&requestid=inv-250"))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("\"UnitPrice\":10.10"),
        "request digits are echoed exactly: {text}"
    );
    assert!(
        text.contains(
            r#"{"Amount":25.20,"DetailType":"SubTotalLineDetail","SubTotalLineDetail":{}}"#
        ),
        "{text}"
    );
    assert!(text.contains("\"TotalAmt\":24.55"), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let inv = &v["Invoice"];
    assert_eq!(inv["SyncToken"], "0");
    assert!(text.contains("\"Balance\":24.55"), "{text}");
    assert_eq!(inv["CurrencyRef"]["value"], "USD");
    assert_eq!(inv["TxnDate"], "2026-11-26");
    assert_eq!(inv["DueDate"], "2026-12-26");
    assert_eq!(inv["CustomerRef"]["name"], "Amy's Bird Sanctuary");
    let lines = inv["Line"].as_array().unwrap();
    let subtotal = lines
        .iter()
        .find(|l| l["DetailType"] == "SubTotalLineDetail")
        .expect("server adds a subtotal line");
    assert_eq!(subtotal["SubTotalLineDetail"], json!({}));
    assert_eq!(
        lines[0]["SalesItemLineDetail"]["ItemRef"]["name"],
        "BigCommerce Sales"
    );
    // Automated sales tax: a line sent without a tax code is taxable (the override decides the tax).
    assert_eq!(
        lines[0]["SalesItemLineDetail"]["TaxCodeRef"]["value"],
        "TAX"
    );
    assert_eq!(lines[0]["Id"], "1");
    assert_eq!(api.sim.invoices().len(), 1);
}

#[tokio::test]
async fn invoice_void_and_delete_follow_sync_tokens() {
    let api = Api::start().await;
    let (cust, item, _) = invoice_refs(&api).await;
    let inv = json!({"CustomerRef": {"value": cust},
                     "Line": [{"Amount": 12.5, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": item}}}]});
    let (_, a) = api.post_json("invoice", inv.clone()).await;
    let id = a["Invoice"]["Id"].as_str().unwrap().to_string();
    let (status, voided) = api
        .post_json(
            "invoice?operation=void",
            json!({"Id": id, "SyncToken": "0"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(voided["Invoice"]["TotalAmt"], 0);
    assert_eq!(voided["Invoice"]["SyncToken"], "1");
    let (_, stale) = api
        .post_json(
            "invoice?operation=delete",
            json!({"Id": id, "SyncToken": "0"}),
        )
        .await;
    assert_eq!(fault_code(&stale), "5010");
    let (status, deleted) = api
        .post_json(
            "invoice?operation=delete",
            json!({"Id": id, "SyncToken": "1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted["Invoice"]["status"], "Deleted");
    let (_, b) = api.post_json("invoice", inv).await;
    assert!(api.sim.delete_invoice(b["Invoice"]["Id"].as_str().unwrap()));
    assert!(api.sim.invoices().is_empty());
    let (_, gone) = api
        .query(&format!("SELECT * FROM Invoice WHERE Id = '{id}'"))
        .await;
    assert_eq!(gone["QueryResponse"], json!({}));
}

#[tokio::test]
async fn items_need_an_income_account_and_a_unique_name() {
    let api = Api::start().await;
    let income = api.id_of("Account", "Name", "Home Goods Revenue").await;
    let asset = api.id_of("Account", "Name", "Undeposited Funds").await;
    let (status, v) = api
        .post_json(
            "item",
            json!({"Name": "Home Goods", "Type": "Service", "IncomeAccountRef": {"value": income}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["Item"]["IncomeAccountRef"]["name"], "Home Goods Revenue");
    let (_, dup) = api
        .post_json(
            "item",
            json!({"Name": "home goods", "Type": "Service", "IncomeAccountRef": {"value": income}}),
        )
        .await;
    assert_eq!(fault_code(&dup), "6240");
    let (_, missing) = api
        .post_json("item", json!({"Name": "No Account", "Type": "Service"}))
        .await;
    assert_eq!(fault_code(&missing), "2020");
    let (_, wrong) = api
        .post_json(
            "item",
            json!({"Name": "Asset Item", "Type": "Service", "IncomeAccountRef": {"value": asset}}),
        )
        .await;
    assert_eq!(fault_code(&wrong), "6000");
    let (status, acct) = api
        .post_json(
            "account",
            json!({"Name": "Wholesale Revenue", "AccountType": "Income"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(acct["Account"]["Classification"], "Revenue");
}

#[tokio::test]
async fn company_info_preferences_and_unknown_routes() {
    let api = Api::start().await;
    let info: Value = api
        .http
        .get(api.url(&format!("companyinfo/{}", api.sim.realm_id())))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        info["CompanyInfo"]["CompanyName"],
        "Maple & Loom Outfitters LLC"
    );
    let prefs: Value = api
        .http
        .get(api.url("preferences"))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        prefs["Preferences"]["AccountingInfoPrefs"]["ClassTrackingPerTxnLine"],
        true
    );
    assert_eq!(
        prefs["Preferences"]["SalesFormsPrefs"]["AllowShipping"],
        true
    );
    let resp = api
        .http
        .get(api.url("customer/1/5"))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(fault_code(&v), "500");
    assert!(
        v["Fault"]["Error"][0]["Detail"]
            .as_str()
            .unwrap()
            .contains("customer/1/5")
    );
    let resp = api
        .http
        .get(format!("{}/v2/nowhere", api.sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.text().await.unwrap().contains("GET /v2/nowhere"));
    assert!(api.sim.control().calls_to("/v2/nowhere") >= 1);
}

#[tokio::test]
async fn past_its_per_minute_limit_the_company_answers_429() {
    let sim = QboSim::start(QboSimConfig {
        max_requests_per_minute: Some(3),
        ..QboSimConfig::default()
    })
    .await
    .expect("simulator starts");
    let api = Api {
        token: sim.issue_access_token(),
        http: reqwest::Client::new(),
        sim,
    };
    for _ in 0..3 {
        assert_eq!(api.query("SELECT * FROM Class").await.0, StatusCode::OK);
    }
    let (status, body) = api.query("SELECT * FROM Class").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["fault"]["error"][0]["code"], "3001");
    assert_eq!(api.sim.throttled_per_minute(), 1);
}

#[tokio::test]
async fn a_stall_body_fault_sends_the_head_and_half_the_body_then_cuts_the_connection() {
    let api = Api::start().await;
    api.sim.control().inject(FaultRule {
        method: None,
        path_contains: "/query".into(),
        remaining: 1,
        action: FaultAction::StallBody { ms: 200 },
    });
    let resp = api
        .http
        .get(with_query(
            &api.url("query"),
            &[("query", "SELECT * FROM Class")],
        ))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("the head arrives");
    assert_eq!(resp.status(), StatusCode::OK, "the real handler's status");
    let declared = resp.content_length().expect("the full length is declared");
    assert!(declared > 0);
    assert!(
        resp.bytes().await.is_err(),
        "the body is cut short after the stall"
    );
    let logged = api.sim.control().requests();
    assert!(logged.last().is_some_and(|r| r.faulted), "{logged:?}");
    // The next request is answered whole.
    let (status, _) = api.query("SELECT * FROM Class").await;
    assert_eq!(status, StatusCode::OK);
}

async fn an_invoice(api: &Api, cust: &str, item: &str, amount: &str) -> Value {
    let (status, v) = api
        .post(
            "invoice",
            &format!(
                r#"{{"CustomerRef": {{"value": "{cust}"}}, "Line": [{{"Amount": {amount}, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {{"ItemRef": {{"value": "{item}"}}, "Qty": 1, "UnitPrice": {amount}, "TaxCodeRef": {{"value": "NON"}}}}}}]}}"#
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["Invoice"].clone()
}

fn payment_body(cust: &str, invoice: &str, total: &str, applied: &str, account: &str) -> String {
    format!(
        r#"{{"CustomerRef": {{"value": "{cust}"}}, "TotalAmt": {total}, "DepositToAccountRef": {{"value": "{account}"}},
            "PaymentRefNum": "ch_123", "Line": [{{"Amount": {applied}, "LinkedTxn": [{{"TxnId": "{invoice}", "TxnType": "Invoice"}}]}}]}}"#
    )
}

#[tokio::test]
async fn a_payment_linked_to_an_invoice_brings_its_balance_down_and_never_past_zero() {
    let api = Api::start().await;
    let (cust, item, _) = invoice_refs(&api).await;
    let uf = api.id_of("Account", "Name", "Undeposited Funds").await;
    let inv = an_invoice(&api, &cust, &item, "82.62").await;
    let id = inv["Id"].as_str().unwrap();
    assert_eq!(inv["Balance"], json!(82.62));

    let (status, p) = api
        .post("payment", &payment_body(&cust, id, "50.00", "50.00", &uf))
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["Payment"]["UnappliedAmt"], json!(0.00));
    assert_eq!(
        p["Payment"]["DepositToAccountRef"]["name"],
        "Undeposited Funds"
    );
    let (_, read) = api.get(&format!("invoice/{id}")).await;
    assert_eq!(read["Invoice"]["Balance"], json!(32.62));
    assert_eq!(read["Invoice"]["LinkedTxn"][0]["TxnType"], "Payment");

    // More than the open balance: refused, balance unchanged.
    let (status, over) = api
        .post("payment", &payment_body(&cust, id, "40.00", "40.00", &uf))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(fault_code(&over), "6000", "{over}");
    let (status, rest) = api
        .post("payment", &payment_body(&cust, id, "32.62", "32.62", &uf))
        .await;
    assert_eq!(status, StatusCode::OK, "{rest}");
    let (_, read) = api.get(&format!("invoice/{id}")).await;
    assert_eq!(read["Invoice"]["Balance"], json!(0.00));

    // An invoice cannot be edited below what was paid for it, nor voided while paid.
    let token = read["Invoice"]["SyncToken"].as_str().unwrap();
    let (_, lower) = api
        .post_json(
            "invoice",
            json!({"Id": id, "SyncToken": token, "sparse": true, "CustomerRef": {"value": cust},
                   "Line": [{"Amount": 10, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": item}}}]}),
        )
        .await;
    assert_eq!(fault_code(&lower), "6000", "{lower}");
    let (_, void) = api
        .post_json(
            "invoice?operation=void",
            json!({"Id": id, "SyncToken": token}),
        )
        .await;
    assert_eq!(fault_code(&void), "6000", "{void}");
    assert_eq!(api.sim.records("Payment").len(), 2);
}

#[tokio::test]
async fn payments_must_link_their_own_customers_open_invoices_and_deposit_to_a_money_account() {
    let api = Api::start().await;
    let (cust, item, _) = invoice_refs(&api).await;
    let other = api
        .id_of("Customer", "DisplayName", "Weiskopf Consulting")
        .await;
    let uf = api.id_of("Account", "Name", "Undeposited Funds").await;
    let income = api.id_of("Account", "Name", "Services").await;
    let gift = api
        .id_of("Account", "Name", "Gift Certificates Outstanding")
        .await;
    let inv = an_invoice(&api, &cust, &item, "20.00").await;
    let id = inv["Id"].as_str().unwrap();
    let cases = [
        (
            payment_body(&other, id, "5", "5", &uf),
            "6000",
            "another customer",
        ),
        (
            payment_body(&cust, id, "5", "5", "9999"),
            "2500",
            "unknown account",
        ),
        (
            payment_body(&cust, id, "5", "5", &income),
            "6000",
            "income account",
        ),
        (
            payment_body(&cust, "9999", "5", "5", &uf),
            "2500",
            "unknown invoice",
        ),
        (
            payment_body(&cust, id, "4", "5", &uf),
            "6000",
            "applies more than paid",
        ),
        (
            format!(r#"{{"CustomerRef": {{"value": "{cust}"}}, "Line": []}}"#),
            "2020",
            "no TotalAmt",
        ),
    ];
    for (body, code, what) in cases {
        let (status, f) = api.post("payment", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {f}");
        assert_eq!(fault_code(&f), code, "{what}: {f}");
    }
    let long = payment_body(&cust, id, "5", "5", &uf).replace("ch_123", &"x".repeat(22));
    let (_, f) = api.post("payment", &long).await;
    assert_eq!(fault_code(&f), "2050", "PaymentRefNum over 21: {f}");
    // Gift certificates are paid from their liability account; a method must exist.
    let card = api.id_of("PaymentMethod", "Name", "Credit Card").await;
    let mut ok: Value = serde_json::from_str(&payment_body(&cust, id, "5", "5", &gift)).unwrap();
    ok["PaymentMethodRef"] = json!({"value": card});
    let (status, p) = api.post_json("payment", ok.clone()).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["Payment"]["PaymentMethodRef"]["name"], "Credit Card");
    ok["PaymentMethodRef"] = json!({"value": "9999"});
    let (_, f) = api.post_json("payment", ok).await;
    assert_eq!(fault_code(&f), "2500", "{f}");
    // Found again by customer and date.
    let (_, q) = api
        .query(&format!(
            "SELECT * FROM Payment WHERE CustomerRef = '{cust}' AND TxnDate = '{}'",
            p["Payment"]["TxnDate"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        q["QueryResponse"]["Payment"].as_array().map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn a_voided_invoice_has_zero_amounts_and_can_be_neither_edited_nor_paid() {
    let api = Api::start().await;
    let (cust, item, _) = invoice_refs(&api).await;
    let uf = api.id_of("Account", "Name", "Undeposited Funds").await;
    let inv = an_invoice(&api, &cust, &item, "30.00").await;
    let id = inv["Id"].as_str().unwrap();
    let (status, v) = api
        .post_json(
            "invoice?operation=void",
            json!({"Id": id, "SyncToken": "0"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["Invoice"]["TotalAmt"], 0);
    assert_eq!(v["Invoice"]["Balance"], 0);
    assert!(
        v["Invoice"]["PrivateNote"]
            .as_str()
            .unwrap()
            .starts_with("Voided")
    );
    let (_, again) = api
        .post_json(
            "invoice?operation=void",
            json!({"Id": id, "SyncToken": "1"}),
        )
        .await;
    assert_eq!(fault_code(&again), "6000", "voided once only: {again}");
    let (_, edit) = api
        .post_json(
            "invoice",
            json!({"Id": id, "SyncToken": "1", "sparse": true, "CustomerRef": {"value": cust},
                   "Line": [{"Amount": 30, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": item}}}]}),
        )
        .await;
    assert_eq!(fault_code(&edit), "6000", "never un-voided: {edit}");
    let (_, pay) = api
        .post("payment", &payment_body(&cust, id, "0", "0.01", &uf))
        .await;
    assert_eq!(fault_code(&pay), "6000", "{pay}");
}

#[tokio::test]
async fn refund_receipts_and_credit_memos_are_validated_like_invoices() {
    let api = Api::start().await;
    let (cust, item, class) = invoice_refs(&api).await;
    let uf = api.id_of("Account", "Name", "Undeposited Funds").await;
    let line = json!({"Amount": 20, "DetailType": "SalesItemLineDetail",
                      "SalesItemLineDetail": {"ItemRef": {"value": item}, "ClassRef": {"value": class}, "Qty": 2, "UnitPrice": 10}});
    let rr = json!({"CustomerRef": {"value": cust}, "DocNumber": "250-R1", "DepositToAccountRef": {"value": uf},
                    "PrivateNote": "refund", "Line": [line], "TxnTaxDetail": {"TotalTax": 1.6}});
    let (status, r) = api.post_json("refundreceipt", rr.clone()).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["RefundReceipt"]["TotalAmt"], json!(21.6));
    assert_eq!(r["RefundReceipt"]["Balance"], 0);
    let (_, dup) = api.post_json("refundreceipt", rr.clone()).await;
    assert_eq!(fault_code(&dup), "6140", "{dup}");

    let mut no_account = rr.clone();
    no_account["DocNumber"] = json!("250-R2");
    no_account
        .as_object_mut()
        .unwrap()
        .remove("DepositToAccountRef");
    let (_, f) = api.post_json("refundreceipt", no_account).await;
    assert_eq!(fault_code(&f), "2020", "{f}");
    let mut bad_line = rr.clone();
    bad_line["DocNumber"] = json!("250-R3");
    bad_line["Line"][0]["Amount"] = json!(19);
    let (_, f) = api.post_json("refundreceipt", bad_line).await;
    assert_eq!(fault_code(&f), "6000", "Qty x UnitPrice: {f}");
    let mut unknown_item = rr.clone();
    unknown_item["DocNumber"] = json!("250-R4");
    unknown_item["Line"][0]["SalesItemLineDetail"]["ItemRef"] = json!({"value": "9999"});
    let (_, f) = api.post_json("refundreceipt", unknown_item).await;
    assert_eq!(fault_code(&f), "2500", "{f}");

    let mut cm = rr.clone();
    cm.as_object_mut().unwrap().remove("DepositToAccountRef");
    cm["DocNumber"] = json!("251-R1");
    let (status, c) = api.post_json("creditmemo", cm).await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["CreditMemo"]["RemainingCredit"], json!(21.6));
    let (_, q) = api
        .query("SELECT * FROM RefundReceipt WHERE DocNumber = '250-R1'")
        .await;
    assert_eq!(
        q["QueryResponse"]["RefundReceipt"].as_array().map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn by_default_the_501st_request_within_a_minute_gets_the_gateway_429() {
    let api = Api::start().await;
    let url = with_query(&api.url("query"), &[("query", "SELECT * FROM Class")]);
    let mut statuses = Vec::new();
    for _ in 0..501 {
        let resp = api
            .http
            .get(&url)
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap();
        statuses.push((
            resp.status(),
            resp.headers().clone(),
            resp.text().await.unwrap(),
        ));
    }
    assert!(
        statuses[..500].iter().all(|(s, _, _)| *s == StatusCode::OK),
        "500 requests a minute are allowed"
    );
    let (status, headers, text) = &statuses[500];
    assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS);
    let body: Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        body["fault"]["error"][0]["message"],
        "message=ThrottleExceeded; errorCode=003001; statusCode=429"
    );
    assert_eq!(body["fault"]["error"][0]["code"], "3001");
    assert!(body["batchItemResponse"].is_array(), "{body}");
    assert!(headers.get("intuit_tid").is_some());
    assert!(
        headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json")),
        "{headers:?}"
    );
    assert_eq!(api.sim.throttled_per_minute(), 1);
    assert_eq!(api.sim.accepted_requests(), 500);
}

#[tokio::test]
async fn without_limits_the_simulator_throttles_nothing() {
    let sim = QboSim::start(QboSimConfig::default().without_limits())
        .await
        .expect("simulator starts");
    let api = Api {
        token: sim.issue_access_token(),
        http: reqwest::Client::new(),
        sim,
    };
    let items: Vec<Value> = (0..40)
        .map(|i| json!({"bId": format!("q{i}"), "Query": "SELECT * FROM Class"}))
        .collect();
    let (status, v) = api
        .post_json("batch", json!({"BatchItemRequest": items}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["BatchItemResponse"].as_array().unwrap().len(), 40);
    assert_eq!(api.sim.throttled_total(), 0);
}

async fn batch(api: &Api, requestid: Option<&str>, body: Value) -> (StatusCode, Value) {
    let url = match requestid {
        Some(id) => with_query(
            &api.url("batch"),
            &[("requestid", id), ("minorversion", "75")],
        ),
        None => api.url("batch"),
    };
    let resp = api
        .http
        .post(url)
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

#[tokio::test]
async fn a_batch_runs_its_operations_in_order_and_answers_200_with_per_item_faults() {
    let api = Api::start().await;
    let (status, v) = batch(
        &api,
        Some("batch-0001"),
        json!({"BatchItemRequest": [
            {"bId": "c1", "operation": "create", "Customer": {"DisplayName": "Batch Ann"}},
            {"bId": "c2", "operation": "create", "Customer": {"DisplayName": "Batch Ann"}},
            {"bId": "q1", "Query": "SELECT * FROM Customer WHERE DisplayName = 'Batch Ann'"},
            {"bId": "x1", "operation": "merge", "Customer": {"DisplayName": "Batch Bo"}},
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let items = v["BatchItemResponse"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!(items[0]["bId"], "c1");
    assert_eq!(items[0]["Customer"]["DisplayName"], "Batch Ann");
    assert_eq!(items[1]["bId"], "c2");
    assert_eq!(
        items[1]["Fault"]["Error"][0]["code"], "6240",
        "the second create ran after the first and met its name: {}",
        items[1]
    );
    assert_eq!(items[1]["Fault"]["type"], "ValidationFault");
    assert_eq!(
        items[2]["QueryResponse"]["Customer"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(items[3]["Fault"]["Error"][0]["code"], "2170");
    // The same requestid again: the original answer, nothing run twice.
    let before = api.sim.count("Customer");
    let (status, again) = batch(
        &api,
        Some("batch-0001"),
        json!({"BatchItemRequest": [
            {"bId": "c9", "operation": "create", "Customer": {"DisplayName": "Batch Cy"}}
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["BatchItemResponse"], v["BatchItemResponse"]);
    assert_eq!(api.sim.count("Customer"), before);
}

#[tokio::test]
async fn a_batch_of_31_operations_or_with_long_ids_is_a_fault() {
    let api = Api::start().await;
    let items = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"bId": format!("q{i}"), "Query": "SELECT * FROM Class"}))
            .collect()
    };
    let (status, v) = batch(&api, None, json!({"BatchItemRequest": items(30)})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = batch(&api, None, json!({"BatchItemRequest": items(31)})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["Fault"]["Error"][0]["Detail"]
            .as_str()
            .unwrap()
            .contains("at most 30"),
        "{v}"
    );
    let long = "r".repeat(37);
    let (status, v) = batch(&api, Some(&long), json!({"BatchItemRequest": items(1)})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(fault_code(&v), "2050");
    let (status, v) = batch(
        &api,
        Some("r-36-chars-000000000000000000000000x"),
        json!({"BatchItemRequest": [{"bId": "b-eleven-ch", "Query": "SELECT * FROM Class"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(fault_code(&v), "2050");
    assert_eq!(v["Fault"]["Error"][0]["element"], "bId");
}

#[tokio::test]
async fn the_41st_batch_within_a_minute_gets_a_429_and_each_operation_counts_toward_500() {
    let api = Api::start().await;
    let one = json!({"BatchItemRequest": [{"bId": "q", "Query": "SELECT * FROM Class"}]});
    for i in 0..40 {
        let (status, v) = batch(&api, None, one.clone()).await;
        assert_eq!(status, StatusCode::OK, "batch {i}: {v}");
    }
    let (status, v) = batch(&api, None, one).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(v["fault"]["error"][0]["code"], "3001");
    assert_eq!(api.sim.throttled_batch(), 1);

    let sim = QboSim::start(QboSimConfig {
        max_requests_per_minute: Some(10),
        ..QboSimConfig::default()
    })
    .await
    .unwrap();
    let api = Api {
        token: sim.issue_access_token(),
        http: reqwest::Client::new(),
        sim,
    };
    let items: Vec<Value> = (0..9)
        .map(|i| json!({"bId": format!("q{i}"), "Query": "SELECT * FROM Class"}))
        .collect();
    let (status, _) = batch(&api, None, json!({"BatchItemRequest": items})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.sim.accepted_requests(), 9);
    assert_eq!(api.query("SELECT * FROM Class").await.0, StatusCode::OK);
    assert_eq!(
        api.query("SELECT * FROM Class").await.0,
        StatusCode::TOO_MANY_REQUESTS,
        "9 batch operations and 1 query used the minute's 10"
    );
}
