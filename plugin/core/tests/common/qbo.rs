//! The in-memory QuickBooks Online model the core tests share (see the parent module for
//! what it is strict about).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use base64::Engine as _;
use ml_core::http::{HttpRequest, HttpResponse, Method, TransportError};
use serde_json::{Value, json};

use super::*;

/// An injected failure.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and body (and an `intuit_tid`).
    Status(u16, Value),
    /// Answer 500 with a plain-text body.
    ServerError,
    /// The request never gets an answer.
    Timeout,
    /// QuickBooks performs the request, but the answer is lost on the way back.
    CommitThenTimeout,
}

/// What QuickBooks holds, and what it was asked.
#[derive(Default)]
pub struct Qbo {
    /// Item/Class/Account names that do not exist (every other name does).
    pub unknown_names: HashSet<String>,
    name_ids: HashMap<String, String>,
    pub customers: Vec<Value>,
    /// Vendors and employees: they share the customers' DisplayName namespace.
    pub vendors: Vec<Value>,
    pub employees: Vec<Value>,
    pub invoices: BTreeMap<String, Value>,
    pub payments: BTreeMap<String, Value>,
    /// Creates that wrote a new payment.
    pub payment_creates_accepted: usize,
    /// Answers already given per `requestid`: replays return them without writing.
    replies: HashMap<String, HttpResponse>,
    /// Creates that wrote a new invoice.
    pub invoice_creates_accepted: usize,
    /// Creates answered from `replies` (a reused requestid).
    pub invoice_creates_replayed: usize,
    pub invoice_updates_accepted: usize,
    next_id: u64,
    pub valid_access: HashSet<String>,
    pub valid_refresh: HashSet<String>,
    pub refreshes: usize,
    /// One-shot faults: `(needle, fault)`, needle as in [`FakeHost::route`] (`"POST /invoice?"`).
    pub faults: VecDeque<(String, Fault)>,
    /// A fault on every matching request until cleared.
    pub permanent: Option<(String, Fault)>,
    /// Decoded query statements, in order.
    pub statements: Vec<String>,
    /// Bodies of customer writes that QuickBooks accepted.
    pub writes: Vec<Value>,
    /// A concurrent creator: just before our create of this DisplayName, it creates this customer.
    pub race: Option<(String, Value)>,
    /// The company's `Preferences` (`None`: a US company with automated sales tax).
    pub preferences: Option<Value>,
    /// The company's `CompanyInfo` (`None`: a US company).
    pub company_info: Option<Value>,
    /// When set, the model totals invoices (`TotalAmt`) as an automated-sales-tax company:
    /// an invoice without a `TxnTaxDetail.TotalTax` override gets this much tax on top.
    pub automated_tax: Option<rust_decimal::Decimal>,
    /// Reads of `Preferences` and `CompanyInfo`.
    pub company_reads: usize,
    /// Operations carried by each batch request answered, in order.
    pub batch_sizes: Vec<usize>,
    /// Batch items with one of these keys answer this fault instead: an invoice's key is its
    /// DocNumber, a payment's `pay-{order id}`.
    pub batch_item_faults: HashMap<String, Value>,
    /// Batch items with one of these keys (as for `batch_item_faults`) are created, but left
    /// out of the answer (their outcome is unknown to the caller).
    pub batch_unanswered: HashSet<String>,
}

/// `Preferences` of a US company with automated sales tax.
pub fn us_preferences() -> Value {
    json!({"Id": "1", "TaxPrefs": {"UsingSalesTax": true, "PartnerTaxEnabled": true},
           "CurrencyPrefs": {"MultiCurrencyEnabled": false, "HomeCurrency": {"value": "USD"}}})
}

/// Totals an invoice as QuickBooks does: sales lines − discount + tax (`extra` when no override).
pub fn total_amt(inv: &mut Value, extra: rust_decimal::Decimal) {
    use std::str::FromStr;
    let num = |v: &Value| {
        rust_decimal::Decimal::from_str(v.to_string().trim_matches('"')).unwrap_or_default()
    };
    let mut total = rust_decimal::Decimal::ZERO;
    for l in inv["Line"].as_array().cloned().unwrap_or_default() {
        match l["DetailType"].as_str() {
            Some("SalesItemLineDetail") => total += num(&l["Amount"]),
            Some("DiscountLineDetail") => total -= num(&l["Amount"]),
            _ => {}
        }
    }
    let tax = match inv.pointer("/TxnTaxDetail/TotalTax") {
        Some(t) => num(t),
        None => extra,
    };
    inv["TxnTaxDetail"]["TotalTax"] = json!(tax.to_string());
    inv["TotalAmt"] = json!((total + tax).to_string());
}

pub fn needle_matches(needle: &str, req: &HttpRequest) -> bool {
    match needle.split_once(' ') {
        Some((m, rest)) if m.chars().all(|c| c.is_ascii_uppercase()) => {
            req.method.as_str() == m && req.url.contains(rest)
        }
        _ => req.url.contains(needle),
    }
}

pub fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub fn qbo_json(status: u16, v: Value) -> HttpResponse {
    let mut r = HttpResponse::json(status, &v);
    r.headers
        .push(("intuit_tid".into(), format!("tid-{status}-test")));
    r
}

/// A QuickBooks `Fault` body.
pub fn fault_body(code: &str, message: &str, kind: &str) -> Value {
    json!({"Fault": {"Error": [{"Message": message, "Detail": format!("{message} (test)"), "code": code}], "type": kind},
           "time": "2026-11-26T07:00:00.000-08:00"})
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `SELECT * FROM E WHERE F = 'v' [AND Active IN (true, false)]` → (E, F, v, include inactive).
pub fn parse_statement(stmt: &str) -> (String, String, String, bool) {
    let words: Vec<&str> = stmt.split_whitespace().collect();
    let entity = words[3].to_string();
    if words.len() <= 5 {
        // `select * from Preferences`: no condition.
        return (entity, String::new(), String::new(), false);
    }
    let field = words[5].to_string();
    let start = stmt.find('\'').expect("quoted literal") + 1;
    let mut value = String::new();
    let mut chars = stmt[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => value.extend(chars.next()),
            '\'' => break,
            c => value.push(c),
        }
    }
    (
        entity,
        field,
        value,
        stmt.contains("Active IN (true, false)"),
    )
}

impl Qbo {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        (100 + self.next_id).to_string()
    }

    fn take_fault(&mut self, req: &HttpRequest) -> Option<Fault> {
        if let Some(pos) = self.faults.iter().position(|(n, _)| needle_matches(n, req)) {
            return self.faults.remove(pos).map(|(_, f)| f);
        }
        match &self.permanent {
            Some((n, f)) if needle_matches(n, req) => Some(f.clone()),
            _ => None,
        }
    }

    /// Answers one request as QuickBooks would (after any injected fault).
    pub fn handle(&mut self, req: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let fault = self.take_fault(req);
        match fault {
            Some(Fault::Status(status, body)) => return Ok(qbo_json(status, body)),
            Some(Fault::ServerError) => {
                let mut r = HttpResponse::new(500, "Internal Server Error");
                r.headers.push(("intuit_tid".into(), "tid-500-test".into()));
                return Ok(r);
            }
            Some(Fault::Timeout) => return Err(TransportError::Timeout),
            Some(Fault::CommitThenTimeout) => {
                let _lost = self.serve(req);
                return Err(TransportError::Timeout);
            }
            None => {}
        }
        self.serve(req)
    }

    fn serve(&mut self, req: &HttpRequest) -> Result<HttpResponse, TransportError> {
        if req.url.starts_with(OAUTH_BASE) {
            return Ok(self.token(req));
        }
        let bearer = header(req, "Authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !self.valid_access.contains(bearer) {
            let mut r = HttpResponse::json(
                401,
                &fixture("quickbooks/fault_3200_authentication_401_lowercase_shape.json"),
            );
            r.headers.push((
                "WWW-Authenticate".into(),
                "Bearer realm=\"Intuit\", error=\"invalid_token\"".into(),
            ));
            return Ok(r);
        }
        let prefix = format!("{QBO_BASE}/v3/company/{REALM}/");
        let rest = req.url.strip_prefix(&prefix).unwrap_or_else(|| {
            panic!(
                "QuickBooks model: unexpected request {} {}",
                req.method.as_str(),
                req.url
            )
        });
        let path = rest.split('?').next().unwrap_or_default();
        assert!(
            req.url.contains("minorversion=75"),
            "every call pins minorversion: {}",
            req.url
        );
        let body: Value = if req.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&req.body).unwrap()
        };
        Ok(match (req.method, path) {
            (Method::Get, "query") => {
                self.query(&query_param(&req.url, "query").expect("query parameter"))
            }
            (Method::Post, "invoice") => {
                let rid = query_param(&req.url, "requestid").expect("writes carry a requestid");
                if let Some(r) = self.replies.get(&rid) {
                    if body.get("Id").is_none() {
                        self.invoice_creates_replayed += 1;
                    }
                    return Ok(r.clone());
                }
                let r = if body.get("Id").is_some() {
                    self.update_invoice(body)
                } else {
                    self.create_invoice(body)
                };
                if r.is_success() {
                    self.replies.insert(rid, r.clone());
                }
                r
            }
            (Method::Post, "batch") => {
                let rid = query_param(&req.url, "requestid").expect("a batch carries a requestid");
                assert!(
                    rid.len() <= 36,
                    "a batch requestid is at most 36 characters: {rid}"
                );
                if let Some(r) = self.replies.get(&format!("batch/{rid}")) {
                    return Ok(r.clone());
                }
                let items = body["BatchItemRequest"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                assert!(items.len() <= 30, "a batch carries at most 30 operations");
                self.batch_sizes.push(items.len());
                let mut answers = Vec::new();
                for item in items {
                    let bid = item["bId"].clone();
                    assert!(
                        bid.as_str().unwrap().len() <= 10,
                        "bId at most 10 characters"
                    );
                    assert_eq!(item["operation"], "create");
                    let (entity, key) = if item.get("Payment").is_some() {
                        let note = item["Payment"]["PrivateNote"].as_str().unwrap_or_default();
                        let order = note
                            .strip_prefix("BigCommerce order #")
                            .and_then(|r| r.split(':').next())
                            .unwrap_or_default();
                        ("Payment", format!("pay-{order}"))
                    } else {
                        let doc = item["Invoice"]["DocNumber"].as_str().unwrap_or_default();
                        ("Invoice", doc.to_string())
                    };
                    if let Some(f) = self.batch_item_faults.get(&key) {
                        answers.push(json!({"bId": bid, "Fault": f["Fault"]}));
                        continue;
                    }
                    let r = match entity {
                        "Payment" => self.create_payment(item["Payment"].clone()),
                        _ => self.create_invoice(item["Invoice"].clone()),
                    };
                    let v: Value = serde_json::from_slice(&r.body).unwrap();
                    if !self.batch_unanswered.contains(&key) {
                        answers.push(json!({"bId": bid, entity: v[entity]}));
                    }
                }
                let r = qbo_json(
                    200,
                    json!({"BatchItemResponse": answers, "time": "2026-03-02T10:00:00Z"}),
                );
                self.replies.insert(format!("batch/{rid}"), r.clone());
                r
            }
            (Method::Get, p) if p.starts_with("invoice/") => {
                let id = &p["invoice/".len()..];
                match self.invoices.get(id) {
                    Some(inv) => qbo_json(200, json!({"Invoice": inv})),
                    None => qbo_json(
                        400,
                        fault_body("610", "Object Not Found", "ValidationFault"),
                    ),
                }
            }
            (Method::Post, "payment") => {
                let rid = query_param(&req.url, "requestid").expect("writes carry a requestid");
                if let Some(r) = self.replies.get(&rid) {
                    return Ok(r.clone());
                }
                let r = self.create_payment(body);
                self.replies.insert(rid, r.clone());
                r
            }
            (Method::Post, "customer") => {
                let rid = query_param(&req.url, "requestid").expect("writes carry a requestid");
                if let Some(r) = self.replies.get(&rid) {
                    return Ok(r.clone());
                }
                let r = if body.get("Id").is_some() {
                    self.update_customer(body)
                } else {
                    self.create_customer(body)
                };
                if r.is_success() {
                    self.replies.insert(rid, r.clone());
                }
                r
            }
            (Method::Get, p) if p.starts_with("companyinfo/") => {
                self.company_reads += 1;
                let info = self.company_info.clone().unwrap_or_else(
                    || json!({"Id": "1", "CompanyName": "Model Co", "Country": "US"}),
                );
                qbo_json(200, json!({"CompanyInfo": info}))
            }
            (Method::Get, p) if p.starts_with("customer/") => {
                let id = &p["customer/".len()..];
                match self.customers.iter().find(|c| c["Id"] == id) {
                    Some(c) => qbo_json(200, json!({"Customer": c})),
                    None => qbo_json(
                        400,
                        fault_body("610", "Object Not Found", "ValidationFault"),
                    ),
                }
            }
            _ => panic!(
                "QuickBooks model: unexpected request {} {}",
                req.method.as_str(),
                req.url
            ),
        })
    }

    /// Whether a DisplayName is in use (by another customer, a vendor or an employee).
    fn taken(&self, name: &str, except: Option<&str>) -> bool {
        self.customers
            .iter()
            .any(|c| c["DisplayName"] == name && c["Id"].as_str() != except)
            || self
                .vendors
                .iter()
                .chain(&self.employees)
                .any(|v| v["DisplayName"] == name)
    }

    /// Adds a customer as if made in QuickBooks (an `Id`, SyncToken 0, active unless told).
    pub fn insert_customer(&mut self, mut c: Value) -> Value {
        c["Id"] = json!(self.new_id());
        c["SyncToken"] = json!("0");
        if c.get("Active").is_none() {
            c["Active"] = json!(true);
        }
        self.customers.push(c.clone());
        c
    }

    fn create_customer(&mut self, body: Value) -> HttpResponse {
        let name = body["DisplayName"].as_str().unwrap_or_default().to_string();
        if let Some((_, theirs)) = self.race.take_if(|(n, _)| *n == name) {
            self.insert_customer(theirs);
        }
        if self.taken(&name, None) {
            return qbo_json(
                400,
                fixture("quickbooks/fault_6240_duplicate_name_400.json"),
            );
        }
        self.writes.push(body.clone());
        let c = self.insert_customer(body);
        qbo_json(200, json!({"Customer": c}))
    }

    fn update_customer(&mut self, body: Value) -> HttpResponse {
        assert_eq!(body["sparse"], json!(true), "customer updates are sparse");
        let id = body["Id"].as_str().unwrap().to_string();
        if let Some(name) = body.get("DisplayName").and_then(Value::as_str)
            && self.taken(name, Some(&id))
        {
            return qbo_json(
                400,
                fixture("quickbooks/fault_6240_duplicate_name_400.json"),
            );
        }
        let Some(current) = self.customers.iter_mut().find(|c| c["Id"] == id.as_str()) else {
            return qbo_json(
                400,
                fault_body("610", "Object Not Found", "ValidationFault"),
            );
        };
        if body["SyncToken"] != current["SyncToken"] {
            return qbo_json(
                400,
                fault_body("5010", "Stale Object Error", "ValidationFault"),
            );
        }
        for (k, v) in body.as_object().unwrap() {
            if k != "sparse" && k != "SyncToken" {
                current[k] = v.clone();
            }
        }
        let next = current["SyncToken"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            + 1;
        current["SyncToken"] = json!(next.to_string());
        if let Some(extra) = self.automated_tax {
            if body.pointer("/TxnTaxDetail/TotalTax").is_none() {
                // An update without the override: QuickBooks computes its own tax again.
                if let Some(o) = current
                    .get_mut("TxnTaxDetail")
                    .and_then(Value::as_object_mut)
                {
                    o.remove("TotalTax");
                }
            }
            total_amt(current, extra);
        }
        let out = current.clone();
        self.writes.push(body);
        qbo_json(200, json!({"Customer": out}))
    }

    fn create_invoice(&mut self, mut inv: Value) -> HttpResponse {
        if let Some(extra) = self.automated_tax {
            total_amt(&mut inv, extra);
        }
        let id = self.new_id();
        inv["Id"] = json!(id);
        inv["SyncToken"] = json!("0");
        self.invoices.insert(id, inv.clone());
        self.invoice_creates_accepted += 1;
        qbo_json(200, json!({"Invoice": inv}))
    }

    fn create_payment(&mut self, mut p: Value) -> HttpResponse {
        let linked = p
            .pointer("/Line/0/LinkedTxn/0/TxnId")
            .and_then(Value::as_str);
        assert!(
            linked.is_some_and(|id| self.invoices.contains_key(id)),
            "a payment is linked to an invoice QuickBooks has: {p}"
        );
        let id = self.new_id();
        p["Id"] = json!(id);
        p["SyncToken"] = json!("0");
        self.payments.insert(id, p.clone());
        self.payment_creates_accepted += 1;
        qbo_json(200, json!({"Payment": p}))
    }

    fn update_invoice(&mut self, body: Value) -> HttpResponse {
        assert_eq!(
            body.get("sparse"),
            Some(&json!(true)),
            "invoice updates are sparse"
        );
        let id = body["Id"].as_str().unwrap_or_default().to_string();
        let Some(current) = self.invoices.get_mut(&id) else {
            return qbo_json(
                400,
                fault_body("610", "Object Not Found", "ValidationFault"),
            );
        };
        if body["SyncToken"] != current["SyncToken"] {
            return qbo_json(
                400,
                fault_body("5010", "Stale Object Error", "ValidationFault"),
            );
        }
        for (k, v) in body.as_object().unwrap() {
            if k != "sparse" && k != "SyncToken" {
                current[k] = v.clone();
            }
        }
        let next: u64 = current["SyncToken"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            + 1;
        current["SyncToken"] = json!(next.to_string());
        if let Some(extra) = self.automated_tax {
            if body.pointer("/TxnTaxDetail/TotalTax").is_none() {
                // An update without the override: QuickBooks computes its own tax again.
                if let Some(o) = current
                    .get_mut("TxnTaxDetail")
                    .and_then(Value::as_object_mut)
                {
                    o.remove("TotalTax");
                }
            }
            total_amt(current, extra);
        }
        let out = current.clone();
        self.invoice_updates_accepted += 1;
        qbo_json(200, json!({"Invoice": out}))
    }

    /// Someone edits the invoice in QuickBooks: its SyncToken moves on.
    pub fn edit_in_quickbooks(&mut self, id: &str) {
        let inv = self.invoices.get_mut(id).expect("invoice exists");
        let next: u64 = inv["SyncToken"].as_str().unwrap().parse::<u64>().unwrap() + 1;
        inv["SyncToken"] = json!(next.to_string());
    }

    fn query(&mut self, stmt: &str) -> HttpResponse {
        self.statements.push(stmt.to_string());
        let (entity, field, value, with_inactive) = parse_statement(stmt);
        let found: Vec<Value> = match entity.as_str() {
            "Item" | "Class" | "Account" | "PaymentMethod" => {
                if self.unknown_names.contains(&value) {
                    Vec::new()
                } else {
                    let n = self.name_ids.len();
                    let id = self
                        .name_ids
                        .entry(format!("{entity}/{value}"))
                        .or_insert_with(|| (10 + n).to_string())
                        .clone();
                    vec![
                        json!({"Id": id, "Name": value, "SyncToken": "0", "Active": true, "Type": "Service", "AccountType": "Income"}),
                    ]
                }
            }
            "Customer" => self
                .customers
                .iter()
                .filter(|c| with_inactive || c["Active"] != json!(false))
                .filter(|c| match field.as_str() {
                    "PrimaryEmailAddr" => {
                        c.pointer("/PrimaryEmailAddr/Address")
                            .and_then(Value::as_str)
                            == Some(&value)
                    }
                    f => c.get(f).and_then(Value::as_str) == Some(&value),
                })
                .cloned()
                .collect(),
            "Preferences" => {
                self.company_reads += 1;
                vec![self.preferences.clone().unwrap_or_else(us_preferences)]
            }
            "TaxCode" if !self.unknown_names.contains(&value) => {
                vec![json!({"Id": format!("tc-{value}"), "Name": value, "Active": true})]
            }
            "TaxCode" => Vec::new(),
            "Invoice" => self
                .invoices
                .values()
                .filter(|i| i.get(&field).and_then(Value::as_str) == Some(&value))
                .cloned()
                .collect(),
            "Payment" => self
                .payments
                .values()
                .filter(|p| match field.as_str() {
                    "CustomerRef" => {
                        p.pointer("/CustomerRef/value").and_then(Value::as_str) == Some(&value)
                    }
                    f => p.get(f).and_then(Value::as_str) == Some(&value),
                })
                .cloned()
                .collect(),
            other => panic!("QuickBooks model: query on unexpected entity {other}: {stmt}"),
        };
        if found.is_empty() {
            qbo_json(
                200,
                json!({"QueryResponse": {}, "time": "2026-11-26T07:00:00.000-08:00"}),
            )
        } else {
            let n = found.len();
            qbo_json(
                200,
                json!({"QueryResponse": {entity: found, "startPosition": 1, "maxResults": n}}),
            )
        }
    }

    fn token(&mut self, req: &HttpRequest) -> HttpResponse {
        assert!(
            req.url.ends_with("/oauth2/v1/tokens/bearer"),
            "token endpoint path: {}",
            req.url
        );
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
        assert_eq!(
            header(req, "Authorization"),
            Some(format!("Basic {basic}").as_str()),
            "client authentication"
        );
        let form: HashMap<String, String> =
            form_urlencoded::parse(&req.body).into_owned().collect();
        assert_eq!(
            form.get("grant_type").map(String::as_str),
            Some("refresh_token")
        );
        let presented = form.get("refresh_token").cloned().unwrap_or_default();
        if !self.valid_refresh.remove(&presented) {
            return HttpResponse::json(400, &fixture("quickbooks/oauth_invalid_grant_400.json"));
        }
        self.refreshes += 1;
        let access = format!("AT{:04}accessTokenValue9", self.refreshes);
        let refresh = format!("RT{:04}rotatedRefreshToken7", self.refreshes);
        self.valid_access.insert(access.clone());
        self.valid_refresh.insert(refresh.clone());
        HttpResponse::json(
            200,
            &json!({"token_type": "bearer", "access_token": access, "expires_in": 3600,
                    "refresh_token": refresh, "x_refresh_token_expires_in": 8_726_400}),
        )
    }

    /// The access tokens issued so far stop working (QuickBooks answers 401).
    pub fn expire_access_tokens(&mut self) {
        self.valid_access.clear();
    }

    /// Every refresh token is revoked: refreshes get `invalid_grant`.
    pub fn revoke_refresh_tokens(&mut self) {
        self.valid_refresh.clear();
    }

    /// The latest rotated refresh token issued.
    pub fn latest_refresh(&self) -> String {
        format!("RT{:04}rotatedRefreshToken7", self.refreshes)
    }
}
