//! The mapping engine: BigCommerce order → QuickBooks invoice (CONTRACT.md §4). Pure.
//!
//! Flow for a job: [`plan`] says which catalog products / customer group to fetch; after
//! fetching, [`plan_exact`] gives the exact item/account/class names to resolve to QuickBooks
//! ids; [`build_invoice`] lays out the invoice.
//!
//! Money rules (why the invoice total equals BigCommerce's to the cent):
//! - BigCommerce's own identity is checked first (`total_ex_tax = subtotal_ex_tax + shipping +
//!   handling + wrapping + fees − coupon_discount − discount_amount`, `total_inc_tax =
//!   total_ex_tax + total_tax`, Σ line `total_ex_tax` = `subtotal_ex_tax`). A gap larger than
//!   one cent per rounded term is [`MappingError::TotalsDoNotTie`]: we refuse to post a wrong
//!   invoice.
//! - Every line amount is its 4-decimal BigCommerce amount rounded to cents (half away from
//!   zero). The target is `total_inc_tax` rounded (`total_ex_tax` for tax mode `none`). What
//!   rounding leaves over (the *residue*, at most one cent per rounded line) is absorbed in the
//!   tax amount when tax is posted and BigCommerce charged tax; otherwise in the largest
//!   product line.
//! - `TxnDate` is the UTC calendar date of `date_created` (BigCommerce sends UTC; the company
//!   time zone is not known to the core).
//! - `GlobalTaxCalculation` is never sent: it is rejected by US companies, and non-US
//!   companies must match it to `is_tax_inclusive_pricing` — the lines are always ex-tax here,
//!   with tax as a line or `TxnTaxDetail`.

use std::collections::{BTreeSet, HashMap};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::models::bigcommerce::{CatalogProduct, Order, OrderProduct, ProductId};
use crate::models::money::{Money, round2};
use crate::models::quickbooks::{
    EmailAddress, Invoice, Line, PhysicalAddress, Ref, SalesItemLineDetail, TxnTaxDetail,
};

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
    pub tax: TaxConfig,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaxMode {
    /// Tax as its own line on `tax.item`.
    Line,
    /// Tax as `TxnTaxDetail.TotalTax`.
    TxnDetail,
    /// No tax; the invoice totals `total_ex_tax`.
    None,
}

/// `tax` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxConfig {
    pub mode: TaxMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
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
    fn needs_catalog(&self) -> bool {
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
    /// The built-in default: everything on "BigCommerce Sales", tax as a line.
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
                tax: TaxConfig {
                    mode: TaxMode::Line,
                    item: Some("Sales Tax Collected".into()),
                },
            },
            customers: CustomersConfig::default(),
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
        let Some(root) = c.object(v, "$", &["version", "invoice", "customers"]) else {
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
        for k in ["shipping", "handling", "wrapping", "fees"] {
            c.target(o, k, p, "item");
        }
        c.target(o, "discount", p, "account");
        match o.get("tax") {
            None => c.push(
                "$.invoice.tax",
                "is required: {\"mode\": \"line\" | \"txn_detail\" | \"none\"}",
            ),
            Some(t) => {
                if let Some(t) = c.object(t, "$.invoice.tax", &["mode", "item"]) {
                    match t.get("mode").and_then(Value::as_str) {
                        Some("line") => {
                            if !matches!(t.get("item"), Some(Value::String(_))) {
                                c.push("$.invoice.tax.item", "is required when mode is 'line': the QuickBooks item tax is posted on");
                            }
                        }
                        Some("txn_detail" | "none") => {}
                        _ => c.push(
                            "$.invoice.tax.mode",
                            "must be 'line', 'txn_detail' or 'none'",
                        ),
                    }
                    c.name(t, "item", "$.invoice.tax", false, true);
                }
            }
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

// ---------------------------------------------------------------------------------------------
// Planning

/// What must be fetched and resolved before an invoice can be built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Catalog products to fetch (only when a rule uses `category_id`/`brand_id`).
    pub catalog_products: Vec<ProductId>,
    /// The customer's group is needed (a rule uses it and the buyer is registered).
    pub needs_customer_group: bool,
    /// QuickBooks item names to resolve (includes shipping/handling/wrapping/fee/tax items).
    pub items: BTreeSet<String>,
    /// Income account names; each needs its service item.
    pub accounts: BTreeSet<String>,
    /// Class names.
    pub classes: BTreeSet<String>,
    /// The discount account, when the order has a discount and one is configured.
    pub discount_account: Option<String>,
}

/// Order data the engine reads.
#[derive(Debug, Clone, Copy)]
pub struct OrderContext<'a> {
    pub order: &'a Order,
    pub lines: &'a [OrderProduct],
    pub catalog: &'a HashMap<ProductId, CatalogProduct>,
    /// The registered buyer's group (`None` when not fetched; guests are group 0).
    pub customer_group_id: Option<u64>,
}

/// Names resolved to QuickBooks ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedRefs {
    /// Item name → Item id (includes the tax item).
    pub items: HashMap<String, String>,
    /// Income account name → id of its service item.
    pub account_items: HashMap<String, String>,
    /// Class name → Class id.
    pub classes: HashMap<String, String>,
    /// Discount account id.
    pub discount_account: Option<String>,
}

fn is_skipped(line: &OrderProduct) -> bool {
    // Bundled children carry no price of their own; their parent line holds the amount.
    (line.parent_order_product_id.is_some() && line.total_ex_tax.is_zero())
        || (line.quantity.is_zero() && line.total_ex_tax.is_zero())
}

/// Whether a rule's match holds; `None` when it cannot be decided without data not given.
fn rule_matches(
    m: &Match,
    line: &OrderProduct,
    order: &Order,
    ctx: Option<&OrderContext>,
) -> Result<Option<bool>, MappingError> {
    if let Some(s) = &m.sku
        && &line.sku != s
    {
        return Ok(Some(false));
    }
    if let Some(p) = &m.sku_prefix
        && !line.sku.starts_with(p.as_str())
    {
        return Ok(Some(false));
    }
    if let Some(p) = m.product_id
        && line.product_id.0 != p
    {
        return Ok(Some(false));
    }
    if let Some(ch) = m.channel_id
        && order.channel_id != ch
    {
        return Ok(Some(false));
    }
    let mut undecided = false;
    if let Some(g) = m.customer_group_id {
        let group = if order.is_guest() {
            Some(0)
        } else {
            ctx.and_then(|c| c.customer_group_id)
        };
        match group {
            Some(x) if x != g => return Ok(Some(false)),
            Some(_) => {}
            None if ctx.is_some() => {
                return Err(MappingError::MissingCustomerGroup {
                    customer_id: order.customer_id.0,
                });
            }
            None => undecided = true,
        }
    }
    if m.needs_catalog() {
        if line.product_id.0 == 0 {
            // Custom products have no catalog entry, so no category or brand.
            return Ok(Some(false));
        }
        match ctx.map(|c| c.catalog.get(&line.product_id)) {
            Some(Some(p)) => {
                if let Some(cat) = m.category_id
                    && !p.categories.contains(&cat)
                {
                    return Ok(Some(false));
                }
                if let Some(b) = m.brand_id
                    && p.brand_id != b
                {
                    return Ok(Some(false));
                }
            }
            Some(None) => {
                return Err(MappingError::MissingCatalogProduct {
                    product_id: line.product_id.0,
                });
            }
            None => undecided = true,
        }
    }
    Ok(if undecided { None } else { Some(true) })
}

/// What a line maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Item(String),
    Account(String),
}

fn line_target(
    config: &MappingConfig,
    line: &OrderProduct,
    ctx: &OrderContext,
) -> Result<(Target, Option<String>), MappingError> {
    let inv = &config.invoice;
    for r in &inv.rules {
        if rule_matches(&r.matcher, line, ctx.order, Some(ctx))? == Some(true) {
            let target = match (&r.item, &r.account) {
                (Some(i), _) => Target::Item(i.clone()),
                (None, Some(a)) => Target::Account(a.clone()),
                (None, None) => Target::Item(inv.default_item.clone()),
            };
            return Ok((
                target,
                r.class.clone().or_else(|| inv.default_class.clone()),
            ));
        }
    }
    Ok((
        Target::Item(inv.default_item.clone()),
        inv.default_class.clone(),
    ))
}

fn order_discount(order: &Order) -> Money {
    order.coupon_discount + order.discount_amount
}

fn extra_item(t: &Option<ItemTarget>, config: &MappingConfig) -> String {
    t.as_ref()
        .map_or_else(|| config.invoice.default_item.clone(), |t| t.item.clone())
}

/// The non-product charges of an order, with the item each goes on: (item, description, ex-tax amount).
fn charges(config: &MappingConfig, order: &Order) -> Vec<(String, String, Money)> {
    let inv = &config.invoice;
    let mut out = Vec::new();
    let ship_desc = order
        .first_shipping_address()
        .map(|s| s.shipping_method.trim())
        .filter(|m| !m.is_empty())
        .map_or_else(|| "Shipping".to_string(), |m| format!("Shipping: {m}"));
    for (t, desc, amount) in [
        (&inv.shipping, ship_desc, order.shipping_cost_ex_tax),
        (
            &inv.handling,
            "Handling".to_string(),
            order.handling_cost_ex_tax,
        ),
        (
            &inv.wrapping,
            "Gift wrapping".to_string(),
            order.wrapping_cost_ex_tax,
        ),
    ] {
        if !amount.round_cents().is_zero() {
            out.push((extra_item(t, config), desc, amount));
        }
    }
    for f in &order.fees {
        if !f.cost_ex_tax.round_cents().is_zero() {
            let name = if f.display_name_merchant.trim().is_empty() {
                &f.display_name_customer
            } else {
                &f.display_name_merchant
            };
            let desc = if name.trim().is_empty() {
                "Fee".to_string()
            } else {
                name.clone()
            };
            out.push((extra_item(&inv.fees, config), desc, f.cost_ex_tax));
        }
    }
    out
}

fn plan_common(config: &MappingConfig, order: &Order, plan: &mut Plan) {
    let inv = &config.invoice;
    for (item, _, _) in charges(config, order) {
        plan.items.insert(item);
    }
    if !order_discount(order).round_cents().is_zero()
        && let Some(d) = &inv.discount
    {
        plan.discount_account = Some(d.account.clone());
    }
    if inv.tax.mode == TaxMode::Line
        && let Some(t) = &inv.tax.item
    {
        // Needed whenever tax or a rounding residue may land on the tax line.
        if !order.total_tax.is_zero() {
            plan.items.insert(t.clone());
        }
    }
}

/// What to fetch and resolve for an order, before catalog data and the customer group are
/// known: rules that cannot be decided yet contribute their names (a superset); call
/// [`plan_exact`] after fetching for the exact set.
pub fn plan(config: &MappingConfig, order: &Order, lines: &[OrderProduct]) -> Plan {
    let inv = &config.invoice;
    let mut p = Plan::default();
    let mut products = BTreeSet::new();
    let mut needs_group = false;
    for line in lines.iter().filter(|l| !is_skipped(l)) {
        let mut decided = false;
        for r in &inv.rules {
            if r.matcher.needs_catalog() && line.product_id.0 != 0 {
                products.insert(line.product_id);
            }
            if r.matcher.customer_group_id.is_some() && !order.is_guest() {
                needs_group = true;
            }
            match rule_matches(&r.matcher, line, order, None) {
                Ok(Some(false)) => continue,
                Ok(m) => {
                    match (&r.item, &r.account) {
                        (Some(i), _) => {
                            p.items.insert(i.clone());
                        }
                        (None, Some(a)) => {
                            p.accounts.insert(a.clone());
                        }
                        _ => {}
                    }
                    if let Some(c) = &r.class {
                        p.classes.insert(c.clone());
                    }
                    if m == Some(true) {
                        if r.item.is_none() && r.account.is_none() {
                            p.items.insert(inv.default_item.clone());
                        }
                        if r.class.is_none()
                            && let Some(c) = &inv.default_class
                        {
                            p.classes.insert(c.clone());
                        }
                        decided = true;
                        break;
                    }
                }
                Err(_) => {}
            }
        }
        if !decided {
            p.items.insert(inv.default_item.clone());
            if let Some(c) = &inv.default_class {
                p.classes.insert(c.clone());
            }
        }
        // The rules after an undecided one may still apply; the default is kept above.
    }
    p.catalog_products = products.into_iter().collect();
    p.needs_customer_group = needs_group;
    plan_common(config, order, &mut p);
    p
}

/// The exact names an order needs, once catalog data and the customer group are in `ctx`.
pub fn plan_exact(config: &MappingConfig, ctx: &OrderContext) -> Result<Plan, MappingError> {
    let mut p = Plan::default();
    for line in ctx.lines.iter().filter(|l| !is_skipped(l)) {
        let (target, class) = line_target(config, line, ctx)?;
        match target {
            Target::Item(i) => p.items.insert(i),
            Target::Account(a) => p.accounts.insert(a),
        };
        if let Some(c) = class {
            p.classes.insert(c);
        }
    }
    plan_common(config, ctx.order, &mut p);
    Ok(p)
}

// ---------------------------------------------------------------------------------------------
// Building

/// Why an order cannot become an invoice. Each message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("Item '{name}' not found in QuickBooks: create it or change the mapping")]
    UnknownItem { name: String },
    #[error(
        "Income account '{name}' not found in QuickBooks (or it has no service item): create the account or change the mapping"
    )]
    UnknownAccount { name: String },
    #[error(
        "Class '{name}' not found in QuickBooks: create it (and turn on class tracking) or change the mapping"
    )]
    UnknownClass { name: String },
    #[error(
        "Discount account '{name}' not found in QuickBooks: create it or change invoice.discount.account in the mapping"
    )]
    UnknownDiscountAccount { name: String },
    #[error(
        "tax mode is 'line' but no tax item is configured: set invoice.tax.item in the mapping"
    )]
    MissingTaxItem,
    #[error(
        "catalog data for product {product_id} was not fetched but a category/brand rule needs it (connector bug: report it)"
    )]
    MissingCatalogProduct { product_id: u64 },
    #[error(
        "the customer group of customer {customer_id} was not fetched but a rule needs it (connector bug: report it)"
    )]
    MissingCustomerGroup { customer_id: u64 },
    #[error(
        "invoice number '{doc_number}' is {len} characters; QuickBooks allows 21: shorten invoice.doc_number in the mapping"
    )]
    DocNumberTooLong { doc_number: String, len: usize },
    #[error(
        "the order has no creation date, so the invoice date is unknown: check the order in BigCommerce and replay it"
    )]
    MissingOrderDate,
    #[error(
        "the order has nothing to invoice (no priced lines, charges or tax): nothing was posted"
    )]
    NothingToInvoice,
    #[error(
        "BigCommerce's totals for this order do not add up ({check}): BigCommerce says {bigcommerce}, \
         its parts add up to {computed} (difference {difference}). Nothing was posted, to avoid a wrong invoice: \
         check the order's discounts, fees and tax in BigCommerce, then replay it"
    )]
    TotalsDoNotTie {
        check: String,
        bigcommerce: Money,
        computed: Money,
        difference: Money,
    },
}

/// An invoice ready to post, with the figures it was checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceDraft {
    pub invoice: Invoice,
    /// What the invoice totals (Σ lines − discount + tax) — equals `target`.
    pub total: Money,
    /// BigCommerce's total rounded to cents (`total_inc_tax`, or `total_ex_tax` for tax mode `none`).
    pub target: Money,
    /// Rounding residue absorbed (see the module docs), for the audit trail.
    pub residue: Money,
}

/// The `PrivateNote` marker for an order (used to find an invoice after a crash).
pub fn note_marker(order_id: u64) -> String {
    format!("{NOTE_MARKER_PREFIX}{order_id}")
}

/// Whether a `PrivateNote` carries this order's marker (not a longer id that starts the same).
pub fn note_has_marker(note: &str, order_id: u64) -> bool {
    let m = note_marker(order_id);
    note.match_indices(&m)
        .any(|(i, _)| !note[i + m.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

/// Renders the `doc_number` template.
pub fn render_doc_number(template: &str, order: &Order) -> Result<String, MappingError> {
    let s = template
        .replace("{order_id}", &order.id.0.to_string())
        .replace("{channel_id}", &order.channel_id.to_string());
    let len = s.chars().count();
    if len > DOC_NUMBER_MAX {
        return Err(MappingError::DocNumberTooLong { doc_number: s, len });
    }
    Ok(s)
}

/// Chooses `(Qty, UnitPrice)` with `round2(Qty × UnitPrice) == amount` exactly.
fn qty_and_price(quantity: Decimal, amount: Money) -> (Decimal, Decimal) {
    let a = amount.amount();
    if quantity > Decimal::ZERO {
        let exact = a / quantity;
        for dp in 2..=7u32 {
            let u = exact
                .round_dp_with_strategy(dp, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
            if round2(u * quantity) == a {
                return (quantity, u.normalize());
            }
        }
    }
    // Huge or fractional quantities where no price of ≤ 7 decimals fits: bill one unit at the
    // line amount (the quantity stays in the description).
    (Decimal::ONE, a.normalize())
}

fn describe(line: &OrderProduct) -> String {
    let name = if line.name.trim().is_empty() {
        &line.name_merchant
    } else {
        &line.name
    };
    let mut s = name.trim().to_string();
    let opts: Vec<String> = line
        .product_options
        .iter()
        .filter(|o| !o.display_name.is_empty() || !o.display_value.is_empty())
        .map(|o| format!("{}: {}", o.display_name, o.display_value))
        .collect();
    if !opts.is_empty() {
        s.push_str(&format!(" ({})", opts.join(", ")));
    }
    if !line.sku.trim().is_empty() {
        s.push_str(&format!(" [SKU {}]", line.sku.trim()));
    }
    s.chars().take(4000).collect()
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn address(a: &crate::models::bigcommerce::Address) -> Option<PhysicalAddress> {
    if !a.has_postal_data() {
        return None;
    }
    Some(PhysicalAddress {
        id: None,
        line1: non_empty(&a.street_1),
        line2: non_empty(&a.street_2),
        line3: None,
        city: non_empty(&a.city),
        country_sub_division_code: non_empty(&a.state),
        postal_code: non_empty(&a.zip),
        country: non_empty(&a.country),
    })
}

/// Checks BigCommerce's own totals identity; `Err` names the check that fails.
pub fn check_totals(order: &Order, lines: &[OrderProduct]) -> Result<(), MappingError> {
    let cent = Money::from_cents(1);
    let tie = |check: &str, bc: Money, computed: Money, terms: usize| {
        let diff = bc - computed;
        let tolerance = cent * Decimal::from(terms.max(1) as u64);
        if diff.abs() > tolerance {
            Err(MappingError::TotalsDoNotTie {
                check: check.into(),
                bigcommerce: bc,
                computed,
                difference: diff,
            })
        } else {
            Ok(())
        }
    };
    let priced: Vec<&OrderProduct> = lines.iter().filter(|l| !is_skipped(l)).collect();
    if !lines.is_empty() {
        let sum: Money = priced.iter().map(|l| l.total_ex_tax).sum();
        tie(
            "sum of line totals ex tax vs subtotal_ex_tax",
            order.subtotal_ex_tax,
            sum,
            1,
        )?;
    }
    let fees = order.fees_ex_tax();
    let computed = order.subtotal_ex_tax
        + order.shipping_cost_ex_tax
        + order.handling_cost_ex_tax
        + order.wrapping_cost_ex_tax
        + fees
        - order.coupon_discount
        - order.discount_amount;
    tie(
        "total_ex_tax = subtotal_ex_tax + shipping + handling + wrapping + fees - coupon_discount - discount_amount",
        order.total_ex_tax,
        computed,
        1,
    )?;
    tie(
        "total_inc_tax = total_ex_tax + total_tax",
        order.total_inc_tax,
        order.total_ex_tax + order.total_tax,
        1,
    )?;
    Ok(())
}

/// Builds the invoice for an order (see the module docs for the money rules).
pub fn build_invoice(
    config: &MappingConfig,
    ctx: &OrderContext,
    refs: &ResolvedRefs,
    customer_ref: &str,
) -> Result<InvoiceDraft, MappingError> {
    let order = ctx.order;
    let inv_cfg = &config.invoice;
    check_totals(order, ctx.lines)?;
    let doc_number = render_doc_number(&inv_cfg.doc_number, order)?;
    let txn_date = order
        .date_created
        .ok_or(MappingError::MissingOrderDate)?
        .date_naive();

    let item_ref = |name: &str| {
        refs.items
            .get(name)
            .map(|id| Ref {
                value: id.clone(),
                name: Some(name.to_string()),
            })
            .ok_or_else(|| MappingError::UnknownItem {
                name: name.to_string(),
            })
    };
    let class_ref = |name: &Option<String>| -> Result<Option<Ref>, MappingError> {
        match name {
            None => Ok(None),
            Some(n) => refs
                .classes
                .get(n)
                .map(|id| {
                    Some(Ref {
                        value: id.clone(),
                        name: Some(n.clone()),
                    })
                })
                .ok_or_else(|| MappingError::UnknownClass { name: n.clone() }),
        }
    };

    // Product lines.
    let mut lines: Vec<Line> = Vec::new();
    let mut rounded_terms = 0usize;
    for l in ctx.lines.iter().filter(|l| !is_skipped(l)) {
        let (target, class) = line_target(config, l, ctx)?;
        let item = match &target {
            Target::Item(n) => item_ref(n)?,
            Target::Account(a) => refs
                .account_items
                .get(a)
                .map(|id| Ref::id(id.clone()))
                .ok_or_else(|| MappingError::UnknownAccount { name: a.clone() })?,
        };
        let amount = l.total_ex_tax.round_cents();
        let (qty, unit_price) = qty_and_price(l.quantity, amount);
        let mut desc = describe(l);
        if qty != l.quantity {
            desc.push_str(&format!(" × {}", l.quantity.normalize()));
        }
        lines.push(Line::sales(
            amount,
            Some(desc),
            SalesItemLineDetail {
                item_ref: item,
                class_ref: class_ref(&class)?,
                unit_price: Some(unit_price),
                qty: Some(qty),
                tax_code_ref: None,
                service_date: None,
            },
        ));
        rounded_terms += 1;
    }
    let product_lines = lines.len();

    // Shipping, handling, wrapping, fees.
    for (item, desc, amount) in charges(config, order) {
        let amount = amount.round_cents();
        lines.push(Line::sales(
            amount,
            Some(desc),
            SalesItemLineDetail {
                item_ref: item_ref(&item)?,
                class_ref: class_ref(&inv_cfg.default_class)?,
                unit_price: Some(amount.amount().normalize()),
                qty: Some(Decimal::ONE),
                ..Default::default()
            },
        ));
        rounded_terms += 1;
    }

    // One discount line for coupons + manual discount.
    let discount = order_discount(order).round_cents();
    if !discount.is_zero() {
        let account = match &inv_cfg.discount {
            None => None,
            Some(d) => Some(Ref::id(refs.discount_account.clone().ok_or_else(|| {
                MappingError::UnknownDiscountAccount {
                    name: d.account.clone(),
                }
            })?)),
        };
        let desc = match (
            order.coupon_discount.is_zero(),
            order.discount_amount.is_zero(),
        ) {
            (false, true) => "Coupon discount",
            (true, false) => "Order discount",
            _ => "Coupon and order discounts",
        };
        lines.push(Line::discount(discount, Some(desc.into()), account));
        rounded_terms += 1;
    }

    let sales_sum: Money = lines
        .iter()
        .filter(|l| l.sales_item_line_detail.is_some())
        .map(|l| l.amount)
        .sum();
    let before_tax = sales_sum - discount;
    let bc_tax = order.total_tax.round_cents();
    let (target, posts_tax) = match inv_cfg.tax.mode {
        TaxMode::None => (order.total_ex_tax.round_cents(), false),
        TaxMode::Line | TaxMode::TxnDetail => (order.total_inc_tax.round_cents(), true),
    };
    let tax_amount_target = if posts_tax { bc_tax } else { Money::ZERO };
    let residue = target - before_tax - tax_amount_target;
    rounded_terms += 2; // the total itself and the tax are rounded too
    if residue.abs() > Money::from_cents(1) * Decimal::from(rounded_terms as u64) {
        return Err(MappingError::TotalsDoNotTie {
            check: "rounded invoice lines vs BigCommerce total".into(),
            bigcommerce: target,
            computed: before_tax + tax_amount_target,
            difference: residue,
        });
    }
    let absorb_in_tax = posts_tax && !bc_tax.is_zero();
    let tax = if absorb_in_tax {
        tax_amount_target + residue
    } else {
        tax_amount_target
    };
    if !absorb_in_tax && !residue.is_zero() {
        // Largest product line (or largest sales line) takes the residue; its unit price is
        // recomputed so Qty × UnitPrice still equals Amount.
        // `rev()` so that among equal amounts the first line wins.
        let idx = (0..product_lines)
            .rev()
            .max_by_key(|i| lines[*i].amount)
            .or_else(|| {
                (0..lines.len())
                    .rev()
                    .filter(|i| lines[*i].sales_item_line_detail.is_some())
                    .max_by_key(|i| lines[*i].amount)
            });
        let Some(i) = idx else {
            return Err(MappingError::NothingToInvoice);
        };
        let line = &mut lines[i];
        line.amount += residue;
        if let Some(d) = line.sales_item_line_detail.as_mut() {
            let (q, u) = qty_and_price(d.qty.unwrap_or(Decimal::ONE), line.amount);
            d.qty = Some(q);
            d.unit_price = Some(u);
        }
    }

    let mut txn_tax_detail = None;
    match inv_cfg.tax.mode {
        TaxMode::Line => {
            if !tax.is_zero() {
                let name = inv_cfg
                    .tax
                    .item
                    .as_deref()
                    .ok_or(MappingError::MissingTaxItem)?;
                lines.push(Line::sales(
                    tax,
                    Some("Sales tax (BigCommerce)".into()),
                    SalesItemLineDetail {
                        item_ref: item_ref(name)?,
                        class_ref: class_ref(&inv_cfg.default_class)?,
                        unit_price: Some(tax.amount().normalize()),
                        qty: Some(Decimal::ONE),
                        ..Default::default()
                    },
                ));
            }
        }
        TaxMode::TxnDetail => {
            txn_tax_detail = Some(TxnTaxDetail {
                txn_tax_code_ref: None,
                total_tax: Some(tax),
            });
        }
        TaxMode::None => {}
    }
    if lines.is_empty() {
        return Err(MappingError::NothingToInvoice);
    }

    // Final check, on what is actually sent.
    let mut total = Money::ZERO;
    for l in &lines {
        if let Some(d) = &l.sales_item_line_detail {
            let q = d.qty.unwrap_or(Decimal::ONE);
            let u = d.unit_price.unwrap_or_default();
            debug_assert_eq!(round2(q * u), l.amount.amount());
            total += l.amount;
        } else if l.discount_line_detail.is_some() {
            total -= l.amount;
        }
    }
    if let Some(t) = txn_tax_detail.as_ref().and_then(|t| t.total_tax) {
        total += t;
    }
    if total != target {
        return Err(MappingError::TotalsDoNotTie {
            check: "invoice total vs BigCommerce total".into(),
            bigcommerce: target,
            computed: total,
            difference: target - total,
        });
    }

    let currency = if order.default_currency_code.trim().is_empty() {
        non_empty(&order.currency_code)
    } else {
        non_empty(&order.default_currency_code)
    };
    let email = order.billing_address.email.trim();
    let note = format!(
        "BigCommerce order #{} (channel {}). {}",
        order.id,
        order.channel_id,
        note_marker(order.id.0)
    );
    let memo = non_empty(&order.customer_message).map(|m| crate::models::quickbooks::MemoRef {
        value: m.chars().take(1000).collect(),
    });
    let invoice = Invoice {
        doc_number: Some(doc_number),
        txn_date: Some(txn_date),
        currency_ref: currency.map(Ref::id),
        private_note: Some(note),
        line: lines,
        txn_tax_detail,
        customer_ref: Ref::id(customer_ref),
        customer_memo: memo,
        bill_addr: address(&order.billing_address),
        ship_addr: order
            .first_shipping_address()
            .and_then(|s| address(&s.address)),
        bill_email: (email.contains('@')).then(|| EmailAddress {
            address: email.to_string(),
        }),
        ..Default::default()
    };
    Ok(InvoiceDraft {
        invoice,
        total,
        target,
        residue,
    })
}
