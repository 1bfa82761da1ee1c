//! The mapping configuration (CONTRACT.md §4): its shape, its defaults and the validation
//! that names every problem before a mapping is stored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// QuickBooks' `DocNumber` limit.
pub const DOC_NUMBER_MAX: usize = 21;
/// Widest value a placeholder can take (BigCommerce ids are 32-bit integers).
const PLACEHOLDER_WIDTH: usize = 10;
/// Placeholders allowed in `doc_number`.
const PLACEHOLDERS: [&str; 2] = ["order_id", "channel_id"];
/// The stable marker prefix written into `PrivateNote`.
pub const NOTE_MARKER_PREFIX: &str = "ml-connector:bc-order:";

/// Mapping rules, JSON `version: 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    pub version: u32,
    pub invoice: InvoiceConfig,
    #[serde(default)]
    pub customers: CustomersConfig,
    /// Where money received is booked (CONTRACT §7, §11).
    #[serde(default)]
    pub payments: PaymentsConfig,
    /// How refunds are booked (CONTRACT §7, §11).
    #[serde(default)]
    pub refunds: RefundsConfig,
}

/// `payments` section: the accounts money received is deposited to, and payment methods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsConfig {
    /// Account the gateway payment is deposited to (and a refund receipt's money leaves).
    #[serde(default = "default_deposit_account")]
    pub deposit_account: String,
    /// BigCommerce `payment_method` → QuickBooks PaymentMethod name; unmapped → none.
    #[serde(default)]
    pub methods: BTreeMap<String, String>,
    /// Liability account gift-certificate payments are booked from.
    #[serde(default = "default_gift_certificate_account")]
    pub gift_certificate_account: String,
    /// Liability account store-credit payments are booked from.
    #[serde(default = "default_store_credit_account")]
    pub store_credit_account: String,
}

fn default_deposit_account() -> String {
    "Undeposited Funds".into()
}

fn default_gift_certificate_account() -> String {
    "Gift Certificates Outstanding".into()
}

fn default_store_credit_account() -> String {
    "Store Credit Outstanding".into()
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        PaymentsConfig {
            deposit_account: default_deposit_account(),
            methods: BTreeMap::new(),
            gift_certificate_account: default_gift_certificate_account(),
            store_credit_account: default_store_credit_account(),
        }
    }
}

/// `refunds` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundsConfig {
    /// Item order-level refund amounts (`item_type` `ORDER`) go on; absent: `invoice.default_item`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
}

impl MappingConfig {
    /// The item order-level refund amounts are booked on.
    pub fn refund_item(&self) -> &str {
        self.refunds
            .item
            .as_deref()
            .unwrap_or(&self.invoice.default_item)
    }
}

/// `invoice` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvoiceConfig {
    #[serde(default = "default_doc_number")]
    pub doc_number: String,
    pub default_item: String,
    #[serde(default)]
    pub default_class: Option<String>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Absent: shipping goes on `default_item`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping: Option<ItemTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handling: Option<ItemTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapping: Option<ItemTarget>,
    /// Extension: item for BigCommerce custom fees (absent: `default_item`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fees: Option<ItemTarget>,
    /// Absent: QuickBooks books the discount to its default discount account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount: Option<AccountTarget>,
    /// Absent: mode `auto`.
    #[serde(default)]
    pub tax: TaxConfig,
    /// Gift certificates sold (lines of type `giftcertificate`): a liability item, never income.
    #[serde(default = "default_gift_certificate_item")]
    pub gift_certificate_item: String,
}

fn default_gift_certificate_item() -> String {
    "Gift Certificates".into()
}

fn default_doc_number() -> String {
    "{order_id}".into()
}

/// `{"item": "Shipping Income"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemTarget {
    pub item: String,
}

/// `{"account": "Discounts given"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountTarget {
    pub account: String,
}

/// How BigCommerce tax reaches the invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaxMode {
    /// The way the company books tax, read from its `Preferences` (CONTRACT §11); decided per
    /// realm by [`crate::books::tax::decide`] into one of the modes below.
    #[default]
    Auto,
    /// Tax as its own line on `tax.item`.
    Line,
    /// Tax as `TxnTaxDetail.TotalTax`.
    TxnDetail,
    /// No tax; the invoice totals `total_ex_tax`.
    None,
    /// VAT/GST company (decided by `auto`, never written in a mapping): every line carries a
    /// `TaxCodeRef` from `tax.codes`, `GlobalTaxCalculation` is sent, and BigCommerce's tax
    /// is the `TxnTaxDetail.TotalTax`.
    #[serde(skip)]
    Vat,
}

/// `tax` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxConfig {
    #[serde(default)]
    pub mode: TaxMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// BigCommerce tax class name → QuickBooks TaxCode name, with `default` for any class not
    /// listed (VAT/GST companies under `auto`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub codes: BTreeMap<String, String>,
}

impl Default for TaxConfig {
    fn default() -> Self {
        TaxConfig {
            mode: TaxMode::Auto,
            item: Some("Sales Tax Collected".into()),
            codes: BTreeMap::new(),
        }
    }
}

impl TaxConfig {
    /// The QuickBooks TaxCode name for BigCommerce tax class `class` (`None`: the line's class
    /// is not known), falling back to `default`; `None` when neither is mapped.
    pub fn code_for(&self, class: Option<&str>) -> Option<&str> {
        class
            .and_then(|c| self.codes.get(c))
            .or_else(|| self.codes.get("default"))
            .map(String::as_str)
    }
}

/// One rule: the first whose `match` fits a line sets item/account/class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(rename = "match")]
    pub matcher: Match,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
}

/// Match keys; every key given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_group_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<u64>,
}

impl Match {
    pub(crate) fn needs_catalog(&self) -> bool {
        self.category_id.is_some() || self.brand_id.is_some()
    }
}

/// `customers` section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomersConfig {
    #[serde(default)]
    pub guest: GuestConfig,
}

/// How guest orders find their QuickBooks customer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestConfig {
    pub mode: GuestMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Guest customer mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestMode {
    /// One QuickBooks customer per guest email.
    #[default]
    PerEmail,
    /// Every guest order on one customer (`name`).
    Single,
}

impl Default for MappingConfig {
    /// The built-in default: everything on "BigCommerce Sales", tax as the company books it.
    fn default() -> Self {
        MappingConfig {
            version: 1,
            invoice: InvoiceConfig {
                doc_number: default_doc_number(),
                default_item: "BigCommerce Sales".into(),
                default_class: None,
                rules: Vec::new(),
                shipping: Some(ItemTarget {
                    item: "Shipping Income".into(),
                }),
                handling: Some(ItemTarget {
                    item: "Handling Income".into(),
                }),
                wrapping: Some(ItemTarget {
                    item: "Gift Wrap Income".into(),
                }),
                fees: None,
                discount: Some(AccountTarget {
                    account: "Discounts given".into(),
                }),
                tax: TaxConfig::default(),
                gift_certificate_item: default_gift_certificate_item(),
            },
            customers: CustomersConfig::default(),
            payments: PaymentsConfig::default(),
            refunds: RefundsConfig::default(),
        }
    }
}

/// One problem in a mapping document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MappingProblem {
    /// JSON path, e.g. `$.invoice.rules[0].match.sku_prefix`.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for MappingProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

struct Checker {
    problems: Vec<MappingProblem>,
}

impl Checker {
    fn push(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(MappingProblem {
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn object<'a>(
        &mut self,
        v: &'a Value,
        path: &str,
        allowed: &[&str],
    ) -> Option<&'a serde_json::Map<String, Value>> {
        let Some(o) = v.as_object() else {
            self.push(path, format!("must be an object, found {}", kind(v)));
            return None;
        };
        for k in o.keys() {
            if !allowed.contains(&k.as_str()) {
                self.push(
                    &format!("{path}.{k}"),
                    format!("unknown key '{k}'; allowed: {}", allowed.join(", ")),
                );
            }
        }
        Some(o)
    }

    /// A required or optional non-empty name.
    fn name(
        &mut self,
        o: &serde_json::Map<String, Value>,
        key: &str,
        path: &str,
        required: bool,
        nullable: bool,
    ) {
        let p = format!("{path}.{key}");
        match o.get(key) {
            None if required => self.push(&p, "is required: give the QuickBooks name"),
            None => {}
            Some(Value::Null) if nullable || !required => {}
            Some(Value::String(s)) if s.trim().is_empty() => self.push(&p, "must not be empty"),
            Some(Value::String(s)) if s.contains(':') && key != "doc_number" => self.push(
                &p,
                "must not contain ':' (QuickBooks uses it for sub-entries)",
            ),
            Some(Value::String(_)) => {}
            Some(other) => self.push(&p, format!("must be a string, found {}", kind(other))),
        }
    }

    /// An optional object mapping BigCommerce names (keys) to non-empty QuickBooks names.
    /// `entity` names what a value must be; `shape` says what the object maps, for an error.
    fn name_map(&mut self, v: Option<&Value>, path: &str, entity: &str, shape: &str) {
        match v {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (key, name) in m {
                    let p = format!("{path}.{key}");
                    match name {
                        Value::String(s) if s.trim().is_empty() => {
                            self.push(&p, "must not be empty")
                        }
                        Value::String(_) => {}
                        other => self.push(
                            &p,
                            format!(
                                "must be the name of a QuickBooks {entity}, found {}",
                                kind(other)
                            ),
                        ),
                    }
                }
            }
            Some(other) => self.push(
                path,
                format!("must be an object ({shape}), found {}", kind(other)),
            ),
        }
    }

    fn target(&mut self, o: &serde_json::Map<String, Value>, key: &str, path: &str, field: &str) {
        if let Some(v) = o.get(key) {
            let p = format!("{path}.{key}");
            if v.is_null() {
                return;
            }
            if let Some(t) = self.object(v, &p, &[field]) {
                self.name(t, field, &p, true, false);
            }
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Checks a `doc_number` template: known placeholders, and short enough for any id.
fn check_doc_number(template: &str) -> Result<(), String> {
    let mut static_len = 0usize;
    let mut placeholders = 0usize;
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        static_len += rest[..start].chars().count();
        let Some(end) = rest[start..].find('}') else {
            return Err("has an unclosed '{'".into());
        };
        let name = &rest[start + 1..start + end];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder '{{{name}}}'; use {{order_id}} or {{channel_id}}"
            ));
        }
        placeholders += 1;
        rest = &rest[start + end + 1..];
    }
    if rest.contains('}') {
        return Err("has a '}' without '{'".into());
    }
    static_len += rest.chars().count();
    if placeholders == 0 {
        return Err("must contain {order_id} so every order gets its own number".into());
    }
    if !template.contains("{order_id}") {
        return Err("must contain {order_id} so every order gets its own number".into());
    }
    let worst = static_len + placeholders * PLACEHOLDER_WIDTH;
    if worst > DOC_NUMBER_MAX {
        return Err(format!(
            "can be {worst} characters long with 10-digit ids; QuickBooks allows {DOC_NUMBER_MAX}: shorten the fixed text"
        ));
    }
    Ok(())
}

impl MappingConfig {
    /// Parses and validates a mapping document, reporting every problem found.
    pub fn parse(bytes: &[u8]) -> Result<Self, Vec<MappingProblem>> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| {
            vec![MappingProblem {
                path: "$".into(),
                message: format!("is not valid JSON: {e}"),
            }]
        })?;
        let mut c = Checker {
            problems: Vec::new(),
        };
        Self::check(&v, &mut c);
        if !c.problems.is_empty() {
            return Err(c.problems);
        }
        serde_path_to_error::deserialize(v).map_err(|e| {
            vec![MappingProblem {
                path: format!("$.{}", e.path()),
                message: e.inner().to_string(),
            }]
        })
    }

    fn check(v: &Value, c: &mut Checker) {
        let Some(root) = c.object(
            v,
            "$",
            &["version", "invoice", "customers", "payments", "refunds"],
        ) else {
            return;
        };
        match root.get("version") {
            Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
            Some(other) => c.push("$.version", format!("must be 1, found {other}")),
            None => c.push("$.version", "is required and must be 1"),
        }
        match root.get("invoice") {
            None => c.push("$.invoice", "is required"),
            Some(inv) => Self::check_invoice(inv, c),
        }
        if let Some(cu) = root.get("customers")
            && let Some(cu) = c.object(cu, "$.customers", &["guest"])
            && let Some(g) = cu.get("guest")
            && let Some(g) = c.object(g, "$.customers.guest", &["mode", "name"])
        {
            match g.get("mode").and_then(Value::as_str) {
                Some("per_email") => {}
                Some("single") => {
                    if !matches!(g.get("name"), Some(Value::String(s)) if !s.trim().is_empty()) {
                        c.push("$.customers.guest.name", "is required when mode is 'single': the QuickBooks customer for all guest orders");
                    }
                }
                _ => c.push("$.customers.guest.mode", "must be 'per_email' or 'single'"),
            }
            c.name(g, "name", "$.customers.guest", false, true);
        }
        if let Some(p) = root.get("payments")
            && let Some(p) = c.object(
                p,
                "$.payments",
                &[
                    "deposit_account",
                    "methods",
                    "gift_certificate_account",
                    "store_credit_account",
                ],
            )
        {
            for k in [
                "deposit_account",
                "gift_certificate_account",
                "store_credit_account",
            ] {
                c.name(p, k, "$.payments", false, false);
            }
            c.name_map(
                p.get("methods"),
                "$.payments.methods",
                "payment method",
                "BigCommerce payment_method → QuickBooks payment method",
            );
        }
        if let Some(r) = root.get("refunds")
            && let Some(r) = c.object(r, "$.refunds", &["item"])
        {
            c.name(r, "item", "$.refunds", false, true);
        }
    }

    fn check_invoice(inv: &Value, c: &mut Checker) {
        let p = "$.invoice";
        let allowed = [
            "doc_number",
            "default_item",
            "default_class",
            "rules",
            "shipping",
            "handling",
            "wrapping",
            "fees",
            "discount",
            "tax",
            "gift_certificate_item",
        ];
        let Some(o) = c.object(inv, p, &allowed) else {
            return;
        };
        match o.get("doc_number") {
            None => {}
            Some(Value::String(t)) => {
                if let Err(m) = check_doc_number(t) {
                    c.push("$.invoice.doc_number", m);
                }
            }
            Some(other) => c.push(
                "$.invoice.doc_number",
                format!("must be a string, found {}", kind(other)),
            ),
        }
        c.name(o, "default_item", p, true, false);
        c.name(o, "default_class", p, false, true);
        c.name(o, "gift_certificate_item", p, false, false);
        for k in ["shipping", "handling", "wrapping", "fees"] {
            c.target(o, k, p, "item");
        }
        c.target(o, "discount", p, "account");
        if let Some(t) = o.get("tax")
            && let Some(t) = c.object(t, "$.invoice.tax", &["mode", "item", "codes"])
        {
            match t.get("mode").and_then(Value::as_str) {
                Some("line") => {
                    if !matches!(t.get("item"), Some(Value::String(_))) {
                        c.push(
                            "$.invoice.tax.item",
                            "is required when mode is 'line': the QuickBooks item tax is posted on",
                        );
                    }
                }
                Some("auto" | "txn_detail" | "none") => {}
                None if !t.contains_key("mode") => {}
                _ => c.push(
                    "$.invoice.tax.mode",
                    "must be 'auto', 'line', 'txn_detail' or 'none'",
                ),
            }
            c.name(t, "item", "$.invoice.tax", false, true);
            c.name_map(
                t.get("codes"),
                "$.invoice.tax.codes",
                "tax code",
                "BigCommerce tax class → QuickBooks tax code, with \"default\"",
            );
        }
        match o.get("rules") {
            None | Some(Value::Null) => {}
            Some(Value::Array(rules)) => {
                for (i, r) in rules.iter().enumerate() {
                    Self::check_rule(r, &format!("$.invoice.rules[{i}]"), c);
                }
            }
            Some(other) => c.push(
                "$.invoice.rules",
                format!("must be a list, found {}", kind(other)),
            ),
        }
    }

    fn check_rule(r: &Value, p: &str, c: &mut Checker) {
        let Some(o) = c.object(r, p, &["match", "item", "account", "class"]) else {
            return;
        };
        for k in ["item", "account", "class"] {
            c.name(o, k, p, false, false);
        }
        let has = |k: &str| matches!(o.get(k), Some(Value::String(_)));
        if !has("item") && !has("account") && !has("class") {
            c.push(p, "sets nothing: give an item, an account or a class");
        }
        if has("item") && has("account") {
            c.push(
                p,
                "sets both item and account: use one (an account maps to its own service item)",
            );
        }
        let mp = format!("{p}.match");
        match o.get("match") {
            None => c.push(&mp, "is required"),
            Some(m) => {
                let keys = [
                    "sku",
                    "sku_prefix",
                    "product_id",
                    "category_id",
                    "brand_id",
                    "customer_group_id",
                    "channel_id",
                ];
                if let Some(m) = c.object(m, &mp, &keys) {
                    if m.is_empty() {
                        c.push(&mp, "is empty and would match every line: set default_item/default_class instead");
                    }
                    for (k, v) in m {
                        let kp = format!("{mp}.{k}");
                        match k.as_str() {
                            "sku" | "sku_prefix" => match v {
                                Value::String(s) if s.is_empty() => {
                                    c.push(&kp, "must not be empty")
                                }
                                Value::String(_) => {}
                                other => {
                                    c.push(&kp, format!("must be a string, found {}", kind(other)))
                                }
                            },
                            _ if keys.contains(&k.as_str()) && v.as_u64().is_none() => {
                                c.push(&kp, format!("must be a whole number, found {v}"));
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }

    /// Whether any rule needs catalog data (category or brand).
    pub fn needs_catalog(&self) -> bool {
        self.invoice.rules.iter().any(|r| r.matcher.needs_catalog())
    }

    /// Whether any rule matches on customer group.
    pub fn needs_customer_group(&self) -> bool {
        self.invoice
            .rules
            .iter()
            .any(|r| r.matcher.customer_group_id.is_some())
    }
}
