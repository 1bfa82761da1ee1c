//! The company's records, faults in Intuit's shapes, and timestamps.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Value, json};

use super::exact;

/// The company's local offset (Pacific daylight time, as in the recorded sandbox traffic).
pub(crate) fn company_now() -> DateTime<FixedOffset> {
    let offset =
        FixedOffset::west_opt(7 * 3600).unwrap_or_else(|| FixedOffset::east_opt(0).unwrap());
    DateTime::<Utc>::from(std::time::SystemTime::now()).with_timezone(&offset)
}

/// `time` of a response envelope: millisecond precision with the company offset.
pub(crate) fn envelope_time() -> String {
    company_now().format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()
}

/// `MetaData` timestamps: second precision with the company offset.
pub(crate) fn meta_time() -> String {
    company_now().format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// An Accounting API fault: HTTP status plus one `Error`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fault {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub detail: String,
    /// `None` leaves the `element` key out (as the recorded 6240 does).
    pub element: Option<String>,
}

impl Fault {
    /// A `ValidationFault` with HTTP 400 and an empty `element`.
    pub fn new(code: &str, message: &str, detail: impl Into<String>) -> Self {
        Fault {
            status: 400,
            code: code.into(),
            message: message.into(),
            detail: detail.into(),
            element: Some(String::new()),
        }
    }

    /// Sets the `element` the error points at.
    pub fn at(mut self, element: &str) -> Self {
        self.element = Some(element.into());
        self
    }

    pub fn required(element: &str, what: &str) -> Self {
        Fault::new(
            "2020",
            "Required Param Missing",
            format!("Required parameter {what} is missing in the request"),
        )
        .at(element)
    }

    pub fn invalid_ref(element: &str, entity: &str, id: &str) -> Self {
        Fault::new(
            "2500",
            "Invalid Reference Id",
            format!("Invalid Reference Id : {entity} assigned to this transaction has been deleted or does not exist (Id {id}). Select an existing {entity}."),
        )
        .at(element)
    }

    pub fn not_found(element: &str) -> Self {
        Fault::new(
            "610",
            "Object Not Found",
            "Object Not Found : Something you're trying to use has been made inactive. Check the fields with accounts, customers, items, vendors or employees.",
        )
        .at(element)
    }

    pub fn business(detail: impl Into<String>) -> Self {
        Fault::new(
            "6000",
            "A business validation error has occurred while processing your request",
            format!("Business Validation Error: {}", detail.into()),
        )
    }

    pub fn duplicate_name() -> Self {
        // Byte-for-byte the recorded sandbox fault (fixtures/quickbooks/fault_6240_duplicate_name_400.json).
        Fault {
            status: 400,
            code: "6240".into(),
            message: "Duplicate Name Exists Error".into(),
            detail: "The name supplied already exists. : null".into(),
            element: None,
        }
    }

    pub fn length(element: &str, max: usize, supplied: usize) -> Self {
        Fault::new(
            "2050",
            "String length is either shorter or longer than supported by specification",
            format!("String length specified does not match the supported length. Min:0 Max:{max} supplied length:{supplied}"),
        )
        .at(element)
    }

    pub fn unsupported_property(entity: &str, prop: &str) -> Self {
        Fault::new(
            "2010",
            "Request has invalid or unsupported property",
            format!(
                "Property Name:Unrecognized field \"{prop}\" (class com.intuit.schema.finance.v3.{entity}), not marked as ignorable specified is unsupported or invalid"
            ),
        )
    }

    pub fn stale(id: &str, sent: &str, current: &str) -> Self {
        Fault::new(
            "5010",
            "Stale Object Error",
            format!(
                "Stale Object Error : You and another user were working on this at the same time (Id {id}: SyncToken {sent} sent, current is {current}). Re-read the object and apply your change again."
            ),
        )
    }

    pub fn unsupported_operation(detail: impl Into<String>) -> Self {
        Fault {
            element: None,
            ..Fault::new("500", "Unsupported Operation", detail)
        }
    }

    /// The `{"Fault": …, "time": …}` body.
    pub fn body(&self) -> Value {
        let mut err = json!({"Message": self.message, "Detail": self.detail, "code": self.code});
        if let Some(el) = &self.element {
            err["element"] = json!(el);
        }
        json!({"Fault": {"Error": [err], "type": "ValidationFault"}, "time": envelope_time()})
    }
}

/// The company data: records per entity (numbers in exact form, see [`exact`]).
#[derive(Default)]
pub(crate) struct Db {
    pub entities: BTreeMap<&'static str, Vec<Value>>,
    pub next_id: u64,
    pub next_doc_number: u64,
    /// `requestid` → the original response (status, body text).
    pub requestids: HashMap<String, (u16, String)>,
    pub reject_duplicate_doc_number: bool,
    /// Ids of voided invoices: they keep their number, have zero amounts and can be neither
    /// edited nor paid.
    pub voided: std::collections::HashSet<String>,
    /// Home currency, multicurrency and the enabled currencies.
    pub currencies: super::currency::Currencies,
    /// What kind of company this is (how it books tax).
    pub profile: super::tax::CompanyProfile,
}

/// Canonical entity names the simulator knows, with their URL segment.
pub(crate) const ENTITIES: &[(&str, &str)] = &[
    ("Customer", "customer"),
    ("Vendor", "vendor"),
    ("Employee", "employee"),
    ("Invoice", "invoice"),
    ("Payment", "payment"),
    ("RefundReceipt", "refundreceipt"),
    ("CreditMemo", "creditmemo"),
    ("PaymentMethod", "paymentmethod"),
    ("Item", "item"),
    ("Account", "account"),
    ("Class", "class"),
    ("TaxCode", "taxcode"),
    ("TaxRate", "taxrate"),
    ("CompanyInfo", "companyinfo"),
    ("Preferences", "preferences"),
    ("CompanyCurrency", "companycurrency"),
];

/// Name-list entities: queries return active records only unless `Active` is constrained.
pub(crate) const NAME_LISTS: &[&str] = &[
    "Customer",
    "Vendor",
    "Employee",
    "Item",
    "Account",
    "Class",
    "PaymentMethod",
];

/// The canonical name of an entity, matched case-insensitively.
pub(crate) fn canonical(name: &str) -> Option<&'static str> {
    ENTITIES
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(name))
        .map(|(e, _)| *e)
}

impl Db {
    pub fn new_id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    pub fn list(&self, entity: &str) -> &[Value] {
        self.entities.get(entity).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn push(&mut self, entity: &'static str, v: Value) {
        self.entities.entry(entity).or_default().push(v);
    }

    pub fn find(&self, entity: &str, id: &str) -> Option<&Value> {
        self.list(entity)
            .iter()
            .find(|v| v["Id"].as_str() == Some(id))
    }

    pub fn position(&self, entity: &str, id: &str) -> Option<usize> {
        self.list(entity)
            .iter()
            .position(|v| v["Id"].as_str() == Some(id))
    }

    pub fn replace(&mut self, entity: &'static str, idx: usize, v: Value) {
        if let Some(list) = self.entities.get_mut(entity) {
            list[idx] = v;
        }
    }

    /// Stores a record without validation (seed data and test set-up).
    pub fn insert_raw(&mut self, entity: &str, v: Value, created: &str) -> Value {
        let entity = canonical(entity).unwrap_or("Customer");
        let id = match v.get("Id").and_then(Value::as_str) {
            Some(id) => id.to_string(),
            None => self.new_id(),
        };
        let mut v = super::seed::stamp(exact::normalize(v), id, created);
        if let Some(o) = v.as_object_mut()
            && NAME_LISTS.contains(&entity)
        {
            o.entry("Active").or_insert(Value::Bool(true));
        }
        self.push(entity, v.clone());
        v
    }

    pub fn insert_customer(&mut self, v: Value, created: &str) -> Value {
        let mut v = v;
        if let Some(o) = v.as_object_mut() {
            for (k, d) in [
                ("Taxable", json!(true)),
                ("Job", json!(false)),
                ("BillWithParent", json!(false)),
                ("Balance", json!(0)),
                ("BalanceWithJobs", json!(0)),
                (
                    "CurrencyRef",
                    json!({"value": "USD", "name": "United States Dollar"}),
                ),
                ("PreferredDeliveryMethod", json!("Print")),
                ("Active", json!(true)),
            ] {
                o.entry(k).or_insert(d);
            }
        }
        self.insert_raw("Customer", v, created)
    }
}
