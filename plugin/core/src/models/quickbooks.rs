//! QuickBooks Online API models, request builders and fault parsing.
//!
//! Field names are the exact PascalCase names of Intuit's XSDs (`Finance.xsd`), and the models
//! carry only fields QuickBooks accepts on writes: an unknown property is fault 2010, so
//! read-only fields (`TotalAmt`, `Balance`, `MetaData`…) are read but never sent.

use std::fmt;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::http::{HttpRequest, HttpResponse, Method, header_value};
use crate::models::money::Money;

/// The minor version sent on every call (1–74 are ignored since August 2025).
pub const MINOR_VERSION: u32 = 75;

/// A reference to another entity: `{"value": "12", "name": "Services"}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ref {
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Ref {
    /// A reference by id only.
    pub fn id(value: impl Into<String>) -> Self {
        Ref {
            value: value.into(),
            name: None,
        }
    }
}

/// `PhysicalAddress`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PhysicalAddress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line3: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_sub_division_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// `EmailAddress`: `{"Address": "ana@example.com"}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EmailAddress {
    pub address: String,
}

/// `TelephoneNumber`: `{"FreeFormNumber": "555-0100"}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TelephoneNumber {
    pub free_form_number: String,
}

/// `MemoRef`: `{"value": "…"}` (CustomerMemo).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemoRef {
    pub value: String,
}

/// The `DetailType` of an invoice line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DetailType {
    SalesItemLineDetail,
    DiscountLineDetail,
    /// Added by QuickBooks in responses; never sent.
    SubTotalLineDetail,
    DescriptionOnly,
    /// Any other type QuickBooks may return (group lines, …).
    #[serde(other)]
    Other,
}

/// `SalesItemLineDetail`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SalesItemLineDetail {
    pub item_ref: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_ref: Option<Ref>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::models::money::decimal_number::option"
    )]
    pub unit_price: Option<Decimal>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::models::money::decimal_number::option"
    )]
    pub qty: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_code_ref: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_date: Option<NaiveDate>,
}

/// `DiscountLineDetail`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiscountLineDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent_based: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::models::money::decimal_number::option"
    )]
    pub discount_percent: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_account_ref: Option<Ref>,
}

/// `DescriptionLineDetail` (for `DescriptionOnly` lines).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescriptionLineDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_date: Option<NaiveDate>,
}

/// `SubTotalLineDetail` (response only; empty object).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubTotalLineDetail {}

/// An invoice line. Exactly one detail is set, matching `detail_type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Line {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_num: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub amount: Money,
    pub detail_type: DetailType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sales_item_line_detail: Option<SalesItemLineDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_line_detail: Option<DiscountLineDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_total_line_detail: Option<SubTotalLineDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description_line_detail: Option<DescriptionLineDetail>,
}

impl Line {
    /// A sales line.
    pub fn sales(amount: Money, description: Option<String>, detail: SalesItemLineDetail) -> Self {
        Line {
            id: None,
            line_num: None,
            description,
            amount,
            detail_type: DetailType::SalesItemLineDetail,
            sales_item_line_detail: Some(detail),
            discount_line_detail: None,
            sub_total_line_detail: None,
            description_line_detail: None,
        }
    }

    /// A fixed-amount discount line booked to `account` (QuickBooks' default discount account
    /// when `None`).
    pub fn discount(amount: Money, description: Option<String>, account: Option<Ref>) -> Self {
        Line {
            id: None,
            line_num: None,
            description,
            amount,
            detail_type: DetailType::DiscountLineDetail,
            sales_item_line_detail: None,
            discount_line_detail: Some(DiscountLineDetail {
                percent_based: Some(false),
                discount_percent: None,
                discount_account_ref: account,
            }),
            sub_total_line_detail: None,
            description_line_detail: None,
        }
    }

    /// A free-text line.
    pub fn description_only(text: impl Into<String>) -> Self {
        Line {
            id: None,
            line_num: None,
            description: Some(text.into()),
            amount: Money::ZERO,
            detail_type: DetailType::DescriptionOnly,
            sales_item_line_detail: None,
            discount_line_detail: None,
            sub_total_line_detail: None,
            description_line_detail: Some(DescriptionLineDetail::default()),
        }
    }
}

/// `TxnTaxDetail` (only the writable parts; `TaxLine` from responses is ignored).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnTaxDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_tax_code_ref: Option<Ref>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::models::money::opt"
    )]
    pub total_tax: Option<Money>,
}

/// An `Invoice`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Invoice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_token: Option<String>,
    #[serde(rename = "sparse", default, skip_serializing_if = "Option::is_none")]
    pub sparse: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency_ref: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_note: Option<String>,
    #[serde(default)]
    pub line: Vec<Line>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_tax_detail: Option<TxnTaxDetail>,
    pub customer_ref: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_memo: Option<MemoRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill_addr: Option<PhysicalAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship_addr: Option<PhysicalAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_ref: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_tax_calculation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill_email: Option<EmailAddress>,
    /// Read-only: never sent.
    #[serde(default, skip_serializing, with = "crate::models::money::opt")]
    pub total_amt: Option<Money>,
    /// Read-only: never sent.
    #[serde(default, skip_serializing, with = "crate::models::money::opt")]
    pub balance: Option<Money>,
}

impl Invoice {
    /// The lines a sender controls: QuickBooks' own `SubTotalLineDetail` lines removed.
    pub fn lines_without_subtotals(&self) -> impl Iterator<Item = &Line> {
        self.line
            .iter()
            .filter(|l| l.detail_type != DetailType::SubTotalLineDetail)
    }
}

/// A `Customer`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Customer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_token: Option<String>,
    #[serde(rename = "sparse", default, skip_serializing_if = "Option::is_none")]
    pub sparse: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_email_addr: Option<EmailAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_phone: Option<TelephoneNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill_addr: Option<PhysicalAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship_addr: Option<PhysicalAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency_ref: Option<Ref>,
}

/// An `Item`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Item {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_token: Option<String>,
    pub name: String,
    /// `Service`, `NonInventory`, `Inventory`, …
    #[serde(rename = "Type", default, skip_serializing_if = "Option::is_none")]
    pub item_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub income_account_ref: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taxable: Option<bool>,
}

/// An `Account`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Account {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_token: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_sub_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Read-only.
    #[serde(default, skip_serializing)]
    pub fully_qualified_name: Option<String>,
}

/// A `Class`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Class {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_token: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Read-only.
    #[serde(default, skip_serializing)]
    pub fully_qualified_name: Option<String>,
}

/// `CompanyInfo` (read only), for the status page.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CompanyInfo {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub company_name: String,
    #[serde(default)]
    pub legal_name: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Faults

/// One `Error` of a QuickBooks fault.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FaultError {
    pub code: String,
    pub message: String,
    pub detail: String,
    pub element: Option<String>,
}

/// A failed QuickBooks call: the HTTP status, `intuit_tid` and the fault's errors.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QboError {
    pub status: u16,
    /// Transaction id for Intuit support (`intuit_tid` / `Intuit-Tid` header).
    pub intuit_tid: Option<String>,
    /// `ValidationFault`, `SystemFault`, `AUTHENTICATION`, …
    pub fault_type: Option<String>,
    pub errors: Vec<FaultError>,
}

impl QboError {
    /// The first error's code (`"6240"`), if any.
    pub fn code(&self) -> Option<&str> {
        self.errors.first().map(|e| e.code.as_str())
    }

    /// Whether any error has this code.
    pub fn has_code(&self, code: &str) -> bool {
        self.errors
            .iter()
            .any(|e| e.code.trim_start_matches('0') == code.trim_start_matches('0'))
    }

    /// The access token is expired or invalid: refresh and retry once.
    pub fn is_authentication(&self) -> bool {
        self.status == 401 || self.has_code("3200")
    }

    /// 429, 5xx or a throttle fault: try again later.
    pub fn is_retryable(&self) -> bool {
        self.status == 429 || self.status >= 500 || self.has_code("3001")
    }

    /// What to tell a human, by fault code.
    fn advice(&self) -> &'static str {
        let c = self.code().unwrap_or("");
        match c {
            "6240" => "a customer, vendor or employee already has that name",
            "6140" => {
                "an invoice with that number already exists; check QuickBooks before replaying"
            }
            "6000" => "QuickBooks rejected the amounts; check the mapping and the order",
            "610" | "2500" => {
                "a referenced item, account or class is inactive or deleted; fix the mapping"
            }
            "2010" | "2020" | "2030" | "500" => {
                "the connector sent a request QuickBooks does not accept; report it"
            }
            "2210" => "the email address is not valid; correct it in BigCommerce",
            "5010" => "someone changed the record meanwhile; the sync will re-read and retry",
            "6190" => "the QuickBooks subscription is not active",
            "6210" => "the accounting period is closed; reopen it or change the closing date",
            "120" | "3100" => "reconnect QuickBooks (authorization lost)",
            _ if self.is_authentication() => {
                "reconnect QuickBooks if refreshing the token does not help"
            }
            _ if self.is_retryable() => "QuickBooks is busy or failing; the sync will retry",
            _ => "see the QuickBooks message",
        }
    }
}

impl fmt::Display for QboError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QuickBooks answered HTTP {}", self.status)?;
        // A bare 5xx from a gateway has no Fault body: say nothing rather than "error : ".
        for e in self
            .errors
            .iter()
            .filter(|e| !(e.code.is_empty() && e.message.is_empty()))
        {
            write!(f, "; error {}: {}", e.code, e.message)?;
            if !e.detail.is_empty() {
                write!(f, " ({})", e.detail)?;
            }
            if let Some(el) = e.element.as_deref().filter(|s| !s.is_empty()) {
                write!(f, " [element {el}]")?;
            }
        }
        write!(f, ". What to do: {}", self.advice())?;
        if let Some(t) = &self.intuit_tid {
            write!(f, " (intuit_tid {t})")?;
        }
        Ok(())
    }
}

impl std::error::Error for QboError {}

fn get_ci<'a>(
    o: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Option<&'a serde_json::Value> {
    o.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn text_of(v: Option<&serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The `intuit_tid` header (either spelling, any case).
pub fn intuit_tid(resp: &HttpResponse) -> Option<String> {
    header_value(&resp.headers, "intuit_tid")
        .or_else(|| header_value(&resp.headers, "intuit-tid"))
        .map(str::to_string)
}

/// Reads a fault from a body in either shape (`Fault.Error[]` or the 401 `fault.error[]`).
/// `None` when the body carries no fault.
pub fn parse_fault_body(status: u16, tid: Option<String>, body: &[u8]) -> Option<QboError> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let fault = get_ci(v.as_object()?, "fault")?.as_object()?;
    let errors = get_ci(fault, "error")
        .and_then(|e| e.as_array())
        .map(|list| {
            list.iter()
                .filter_map(|e| e.as_object())
                .map(|e| FaultError {
                    code: text_of(get_ci(e, "code")),
                    message: text_of(get_ci(e, "message")),
                    detail: text_of(get_ci(e, "detail")),
                    element: get_ci(e, "element")
                        .and_then(|x| x.as_str())
                        .map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(QboError {
        status,
        intuit_tid: tid,
        fault_type: get_ci(fault, "type")
            .and_then(|t| t.as_str())
            .map(str::to_string),
        errors,
    })
}

/// Checks a response: any `Fault` (even with HTTP 200) or a non-2xx status is an error.
pub fn check_response(resp: &HttpResponse) -> Result<(), QboError> {
    let tid = intuit_tid(resp);
    if let Some(f) = parse_fault_body(resp.status, tid.clone(), &resp.body) {
        return Err(f);
    }
    if resp.is_success() {
        return Ok(());
    }
    let body = String::from_utf8_lossy(&resp.body);
    Err(QboError {
        status: resp.status,
        intuit_tid: tid,
        fault_type: None,
        errors: vec![FaultError {
            code: String::new(),
            message: body.chars().take(200).collect(),
            detail: String::new(),
            element: None,
        }],
    })
}

/// A decoding problem in an otherwise successful response, as a [`QboError`] (code `decode`).
fn decode_error(resp: &HttpResponse, path: String, message: String) -> QboError {
    QboError {
        status: resp.status,
        intuit_tid: intuit_tid(resp),
        fault_type: Some("DecodeError".into()),
        errors: vec![FaultError {
            code: "decode".into(),
            message: format!("could not read the response at `{path}`: {message}"),
            detail: String::new(),
            element: Some(path),
        }],
    }
}

/// Reads a single-entity envelope (`{"Invoice": {...}, "time": …}`).
pub fn parse_entity<T: DeserializeOwned>(resp: &HttpResponse, entity: &str) -> Result<T, QboError> {
    check_response(resp)?;
    let v: serde_json::Value = serde_json::from_slice(&resp.body)
        .map_err(|e| decode_error(resp, "$".into(), e.to_string()))?;
    let inner = v.get(entity).cloned().ok_or_else(|| {
        decode_error(
            resp,
            entity.into(),
            format!("no `{entity}` in the response"),
        )
    })?;
    serde_path_to_error::deserialize(inner).map_err(|e| {
        decode_error(
            resp,
            format!("{entity}.{}", e.path()),
            e.inner().to_string(),
        )
    })
}

/// A query page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryPage<T> {
    pub entities: Vec<T>,
    pub start_position: Option<u64>,
    pub max_results: Option<u64>,
    pub total_count: Option<u64>,
}

/// Reads a `QueryResponse`; an absent entity key means no matches.
pub fn parse_query<T: DeserializeOwned>(
    resp: &HttpResponse,
    entity: &str,
) -> Result<QueryPage<T>, QboError> {
    check_response(resp)?;
    let v: serde_json::Value = serde_json::from_slice(&resp.body)
        .map_err(|e| decode_error(resp, "$".into(), e.to_string()))?;
    let q = v
        .get("QueryResponse")
        .ok_or_else(|| decode_error(resp, "QueryResponse".into(), "missing".into()))?;
    let entities = match q.get(entity) {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(list) => serde_path_to_error::deserialize(list.clone()).map_err(|e| {
            decode_error(
                resp,
                format!("QueryResponse.{entity}{}", e.path()),
                e.inner().to_string(),
            )
        })?,
    };
    let n = |k: &str| q.get(k).and_then(|x| x.as_u64());
    Ok(QueryPage {
        entities,
        start_position: n("startPosition"),
        max_results: n("maxResults"),
        total_count: n("totalCount"),
    })
}

// ---------------------------------------------------------------------------------------------
// Queries

/// A value that cannot be put in a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// QuickBooks does not document how to escape a backslash in a string literal.
    #[error(
        "the name '{0}' contains a backslash, which cannot be searched for in QuickBooks: \
         remove the backslash from the name in BigCommerce or the mapping"
    )]
    Backslash(String),
    /// Entity and field names are identifiers, not data.
    #[error("'{0}' is not a valid QuickBooks entity or field name")]
    BadIdentifier(String),
}

/// Escapes a string literal for the query language: `'` becomes `\'`; backslashes are refused
/// (their escaping is undocumented, so a guess could match the wrong record).
pub fn escape_literal(value: &str) -> Result<String, QueryError> {
    if value.contains('\\') {
        return Err(QueryError::Backslash(value.to_string()));
    }
    Ok(value.replace('\'', "\\'"))
}

fn check_ident(s: &str) -> Result<&str, QueryError> {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
        Ok(s)
    } else {
        Err(QueryError::BadIdentifier(s.to_string()))
    }
}

/// `SELECT * FROM {entity} WHERE {field} = '{value}'` with the value escaped.
pub fn select_where_eq(entity: &str, field: &str, value: &str) -> Result<String, QueryError> {
    Ok(format!(
        "SELECT * FROM {} WHERE {} = '{}'",
        check_ident(entity)?,
        check_ident(field)?,
        escape_literal(value)?
    ))
}

/// Characters left as-is in the query parameter: RFC 3986 unreserved ones.
const QUERY_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn base_url(api_base: &str, realm: &str) -> String {
    let realm = percent_encoding::utf8_percent_encode(realm, QUERY_ENCODE);
    format!("{}/v3/company/{realm}", api_base.trim_end_matches('/'))
}

fn authed(method: Method, url: String, access_token: &str) -> HttpRequest {
    HttpRequest::new(method, url)
        .header("Authorization", format!("Bearer {access_token}"))
        .header("Accept", "application/json")
}

/// `GET /v3/company/{realm}/query?query=…` (the whole statement URL-encoded).
pub fn query(api_base: &str, realm: &str, access_token: &str, statement: &str) -> HttpRequest {
    let q = percent_encoding::utf8_percent_encode(statement, QUERY_ENCODE);
    authed(
        Method::Get,
        format!(
            "{}/query?query={q}&minorversion={MINOR_VERSION}",
            base_url(api_base, realm)
        ),
        access_token,
    )
}

/// A body that could not be encoded (never happens for the models here).
fn json_bytes<T: Serialize>(body: &T) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_default()
}

fn lower_entity(entity: &str) -> String {
    entity.to_ascii_lowercase()
}

/// Create: `POST /v3/company/{realm}/{entity}?minorversion=75&requestid={request_id}`.
/// Retrying with the same `request_id` returns the original response instead of creating again.
pub fn create<T: Serialize>(
    api_base: &str,
    realm: &str,
    access_token: &str,
    entity: &str,
    body: &T,
    request_id: &str,
) -> HttpRequest {
    let rid = percent_encoding::utf8_percent_encode(request_id, QUERY_ENCODE);
    let mut r = authed(
        Method::Post,
        format!(
            "{}/{}?minorversion={MINOR_VERSION}&requestid={rid}",
            base_url(api_base, realm),
            lower_entity(entity)
        ),
        access_token,
    );
    r.body = json_bytes(body);
    r.header("Content-Type", "application/json")
}

/// Sparse update: the body must carry `Id` and `SyncToken`; `"sparse": true` is added if the
/// body does not set it, so only the fields sent change.
pub fn sparse_update<T: Serialize>(
    api_base: &str,
    realm: &str,
    access_token: &str,
    entity: &str,
    body: &T,
    request_id: &str,
) -> HttpRequest {
    let mut r = create(api_base, realm, access_token, entity, body, request_id);
    let has_sparse = serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .is_some_and(|v| v.get("sparse").is_some());
    if !has_sparse && r.body.first() == Some(&b'{') {
        // Splice rather than re-encode, so amounts keep their exact text.
        let rest = r.body.split_off(1);
        r.body.extend_from_slice(br#""sparse":true"#);
        if rest.first() != Some(&b'}') {
            r.body.push(b',');
        }
        r.body.extend_from_slice(&rest);
    }
    r
}

/// Read: `GET /v3/company/{realm}/{entity}/{id}`.
pub fn read(
    api_base: &str,
    realm: &str,
    access_token: &str,
    entity: &str,
    id: &str,
) -> HttpRequest {
    let id = percent_encoding::utf8_percent_encode(id, QUERY_ENCODE);
    authed(
        Method::Get,
        format!(
            "{}/{}/{id}?minorversion={MINOR_VERSION}",
            base_url(api_base, realm),
            lower_entity(entity)
        ),
        access_token,
    )
}

/// `GET /v3/company/{realm}/companyinfo/{realm}`.
pub fn company_info(api_base: &str, realm: &str, access_token: &str) -> HttpRequest {
    read(api_base, realm, access_token, "companyinfo", realm)
}

/// A deterministic `requestid` (≤ 50 characters) for one logical write: a readable prefix
/// from the parts, then a SHA-256 prefix over all of them, so the same parts always give the
/// same id and different parts practically never collide.
pub fn request_id(parts: &[&str]) -> String {
    let readable: String = parts
        .iter()
        .take(3)
        .map(|p| {
            p.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
        })
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let readable: String = readable.chars().take(24).collect();
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let digest = hex::encode(h.finalize());
    if readable.is_empty() {
        digest[..24].to_string()
    } else {
        format!("{readable}-{}", &digest[..24])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::money::dec;

    fn fixture(name: &str) -> Vec<u8> {
        let p = format!(
            "{}/../../../shared/fixtures/quickbooks/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    fn resp(status: u16, body: Vec<u8>, tid_header: Option<(&str, &str)>) -> HttpResponse {
        let mut r = HttpResponse::new(status, body);
        if let Some((k, v)) = tid_header {
            r.headers.push((k.into(), v.into()));
        }
        r
    }

    #[test]
    fn both_fault_shapes_parse_with_status_and_tid() {
        let r = resp(
            400,
            fixture("fault_6240_duplicate_name_400.json"),
            Some(("Intuit-Tid", "1-abc")),
        );
        let e = check_response(&r).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.code(), Some("6240"));
        assert_eq!(e.errors[0].message, "Duplicate Name Exists Error");
        assert_eq!(e.intuit_tid.as_deref(), Some("1-abc"));
        assert_eq!(e.fault_type.as_deref(), Some("ValidationFault"));
        assert!(e.to_string().contains("already has that name"), "{e}");
        assert!(!e.is_retryable());

        let r = resp(
            401,
            fixture("fault_3200_authentication_401_lowercase_shape.json"),
            Some(("intuit_tid", "t2")),
        );
        let e = check_response(&r).unwrap_err();
        assert!(e.is_authentication());
        assert!(e.has_code("3200"));
        assert_eq!(e.intuit_tid.as_deref(), Some("t2"));
        assert!(e.errors[0].detail.starts_with("Token expired"));

        let e = check_response(&resp(400, fixture("fault_2030_invalid_id_400.json"), None))
            .unwrap_err();
        assert_eq!(e.errors[0].element.as_deref(), Some("Id"));
        assert!(e.intuit_tid.is_none());
    }

    #[test]
    fn a_fault_inside_http_200_is_still_an_error_and_plain_5xx_is_retryable() {
        let body = br#"{"Fault":{"Error":[{"Message":"m","Detail":"d","code":"6000"}],"type":"ValidationFault"}}"#;
        assert_eq!(
            check_response(&resp(200, body.to_vec(), None))
                .unwrap_err()
                .code(),
            Some("6000")
        );
        let e = check_response(&resp(503, b"busy".to_vec(), None)).unwrap_err();
        assert!(e.is_retryable());
        assert!(check_response(&resp(200, b"{}".to_vec(), None)).is_ok());
    }

    #[test]
    fn recorded_invoice_response_parses_and_subtotals_are_separable() {
        let r = resp(200, fixture("invoice_create_response_200.json"), None);
        let inv: Invoice = parse_entity(&r, "Invoice").unwrap();
        assert_eq!(inv.id.as_deref(), Some("266"));
        assert_eq!(inv.total_amt, Some(Money::new(dec!(100))));
        assert_eq!(inv.line.len(), 2);
        assert_eq!(inv.lines_without_subtotals().count(), 1);
        // Read-only fields are never sent back.
        let out = serde_json::to_value(&inv).unwrap();
        assert!(out.get("TotalAmt").is_none() && out.get("Balance").is_none());
    }

    #[test]
    fn invoice_serializes_with_xsd_names_and_exact_numbers() {
        let inv = Invoice {
            doc_number: Some("250".into()),
            txn_date: NaiveDate::from_ymd_opt(2025, 1, 6),
            customer_ref: Ref::id("1"),
            line: vec![
                Line::sales(
                    Money::new(dec!(10)),
                    Some("Towel".into()),
                    SalesItemLineDetail {
                        item_ref: Ref::id("5"),
                        qty: Some(dec!(3)),
                        unit_price: Some(dec!(3.3333333)),
                        ..Default::default()
                    },
                ),
                Line::discount(Money::new(dec!(1.5)), None, Some(Ref::id("86"))),
            ],
            txn_tax_detail: Some(TxnTaxDetail {
                txn_tax_code_ref: None,
                total_tax: Some(Money::new(dec!(0.8))),
            }),
            bill_email: Some(EmailAddress {
                address: "a@b.c".into(),
            }),
            ..Default::default()
        };
        let s = String::from_utf8(serde_json::to_vec(&inv).unwrap()).unwrap();
        assert!(s.contains(r#""Amount":10.00"#), "{s}");
        assert!(s.contains(r#""UnitPrice":3.3333333,"Qty":3"#), "{s}");
        assert!(s.contains(r#""DetailType":"DiscountLineDetail","DiscountLineDetail":{"PercentBased":false,"DiscountAccountRef":{"value":"86"}}"#), "{s}");
        assert!(s.contains(r#""TxnTaxDetail":{"TotalTax":0.80}"#), "{s}");
        assert!(
            s.contains(r#""TxnDate":"2025-01-06""#)
                && s.contains(r#""BillEmail":{"Address":"a@b.c"}"#),
            "{s}"
        );
        assert!(!s.contains("null"), "{s}");
    }

    #[test]
    fn queries_escape_quotes_refuse_backslashes_and_encode_the_statement() {
        let q = select_where_eq("Customer", "DisplayName", "Amy's Bird Sanctuary").unwrap();
        assert_eq!(
            q,
            r"SELECT * FROM Customer WHERE DisplayName = 'Amy\'s Bird Sanctuary'"
        );
        let r = query("https://q.example/", "123", "at", &q);
        assert_eq!(
            r.url,
            "https://q.example/v3/company/123/query?query=SELECT%20%2A%20FROM%20Customer%20WHERE%20DisplayName%20%3D%20%27Amy%5C%27s%20Bird%20Sanctuary%27&minorversion=75"
        );
        assert_eq!(header_value(&r.headers, "authorization"), Some("Bearer at"));
        assert!(
            select_where_eq("Item", "Name", "A & B")
                .unwrap()
                .contains("'A & B'")
        );
        assert!(query("h", "1", "t", "x = 'A & B'").url.contains("%26"));
        assert!(matches!(
            escape_literal(r"a\b"),
            Err(QueryError::Backslash(_))
        ));
        assert!(select_where_eq("Item; DROP", "Name", "x").is_err());
    }

    #[test]
    fn query_responses_with_and_without_matches() {
        let r = resp(
            200,
            fixture("customer_query_by_displayname_escaped_quote_200.json"),
            None,
        );
        let page: QueryPage<Customer> = parse_query(&r, "Customer").unwrap();
        assert_eq!(page.entities.len(), 1);
        assert!(
            page.entities[0]
                .display_name
                .as_deref()
                .unwrap()
                .contains('\'')
        );
        let empty = resp(200, br#"{"QueryResponse":{},"time":"x"}"#.to_vec(), None);
        let page: QueryPage<Item> = parse_query(&empty, "Item").unwrap();
        assert!(page.entities.is_empty());
        let count = resp(200, br#"{"QueryResponse":{"totalCount":5}}"#.to_vec(), None);
        assert_eq!(
            parse_query::<Item>(&count, "Item").unwrap().total_count,
            Some(5)
        );
    }

    #[test]
    fn write_builders_carry_minorversion_requestid_and_sparse() {
        let c = Customer {
            id: Some("7".into()),
            sync_token: Some("2".into()),
            display_name: Some("Ana".into()),
            ..Default::default()
        };
        let r = create("https://q", "9", "at", "Customer", &c, "bc-order-1-abc");
        assert_eq!(r.method, Method::Post);
        assert_eq!(
            r.url,
            "https://q/v3/company/9/customer?minorversion=75&requestid=bc-order-1-abc"
        );
        assert_eq!(
            header_value(&r.headers, "content-type"),
            Some("application/json")
        );
        let u = sparse_update("https://q", "9", "at", "Customer", &c, "rid");
        let v: serde_json::Value = serde_json::from_slice(&u.body).unwrap();
        assert_eq!(v["sparse"], serde_json::json!(true));
        assert_eq!(v["Id"], "7");
        assert_eq!(v["SyncToken"], "2");
        assert_eq!(
            read("https://q", "9", "at", "Invoice", "266").url,
            "https://q/v3/company/9/invoice/266?minorversion=75"
        );
        assert_eq!(
            company_info("https://q", "9", "at").url,
            "https://q/v3/company/9/companyinfo/9?minorversion=75"
        );
    }

    #[test]
    fn request_ids_are_deterministic_short_and_distinct() {
        let a = request_id(&["bc", "order", "250", "v1"]);
        assert_eq!(a, request_id(&["bc", "order", "250", "v1"]));
        assert!(a.starts_with("bc-order-250-"), "{a}");
        assert!(a.len() <= 50);
        assert_ne!(a, request_id(&["bc", "order", "250", "v2"]));
        let long = "x".repeat(200);
        assert!(request_id(&[&long, &long, &long]).len() <= 50);
        // Part boundaries matter.
        assert_ne!(request_id(&["ab", "c"]), request_id(&["a", "bc"]));
    }
}
