//! Rules: which BigCommerce facts pick which QuickBooks item, account and class, and the
//! [`Plan`] of what must be fetched and resolved before an invoice can be built.

use std::collections::{BTreeSet, HashMap};

use crate::books::mapping::config::{ItemTarget, MappingConfig, Match, TaxMode};
use crate::books::mapping::error::MappingError;
use crate::models::bigcommerce::{CatalogProduct, Order, OrderProduct, ProductId};
use crate::models::money::Money;
use crate::models::quickbooks::Ref;

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
    /// QuickBooks TaxCode names (VAT/GST companies).
    pub tax_codes: BTreeSet<String>,
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
    /// TaxCode name → TaxCode id.
    pub tax_codes: HashMap<String, String>,
}

impl ResolvedRefs {
    /// The reference to item `name`, or which item is missing.
    pub fn item_ref(&self, name: &str) -> Result<Ref, MappingError> {
        self.items
            .get(name)
            .map(|id| Ref {
                value: id.clone(),
                name: Some(name.to_string()),
            })
            .ok_or_else(|| MappingError::UnknownItem {
                name: name.to_string(),
            })
    }

    /// The reference to class `name` (none when no class is mapped), or which class is missing.
    pub fn class_ref(&self, name: &Option<String>) -> Result<Option<Ref>, MappingError> {
        match name {
            None => Ok(None),
            Some(n) => self
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
    }
}

/// A gift certificate sold (line `type` `giftcertificate`): booked on
/// `invoice.gift_certificate_item`, a liability (CONTRACT §11).
pub fn is_gift_certificate(line: &OrderProduct) -> bool {
    line.product_type
        .trim()
        .eq_ignore_ascii_case("giftcertificate")
}

pub(crate) fn is_skipped(line: &OrderProduct) -> bool {
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
pub(crate) enum Target {
    Item(String),
    Account(String),
}

pub(crate) fn line_target(
    config: &MappingConfig,
    line: &OrderProduct,
    ctx: &OrderContext,
) -> Result<(Target, Option<String>), MappingError> {
    let inv = &config.invoice;
    if is_gift_certificate(line) {
        // A gift certificate sold is money owed to its holder, not revenue: no rule applies.
        return Ok((
            Target::Item(inv.gift_certificate_item.clone()),
            inv.default_class.clone(),
        ));
    }
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

pub(crate) fn order_discount(order: &Order) -> Money {
    crate::books::mapping::totals::discount_ex_tax(order)
}

pub(crate) fn extra_item(t: &Option<ItemTarget>, config: &MappingConfig) -> String {
    t.as_ref()
        .map_or_else(|| config.invoice.default_item.clone(), |t| t.item.clone())
}

/// A non-product charge of an order (shipping, handling, wrapping, a fee) as it is invoiced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Charge {
    /// The QuickBooks item it goes on.
    pub item: String,
    pub description: String,
    /// Ex tax.
    pub amount: Money,
    /// Inc tax.
    pub inc_tax: Money,
    /// Its BigCommerce tax class, when the order's tax rows were read and name one.
    pub tax_class: Option<String>,
}

/// The non-product charges of an order, in invoice order, each with the item it goes on.
pub(crate) fn charges(config: &MappingConfig, order: &Order) -> Vec<Charge> {
    let inv = &config.invoice;
    let mut out = Vec::new();
    let ship_desc = order
        .first_shipping_address()
        .map(|s| s.shipping_method.trim())
        .filter(|m| !m.is_empty())
        .map_or_else(|| "Shipping".to_string(), |m| format!("Shipping: {m}"));
    let classes = order.tax_classes.as_ref();
    for (t, desc, amount, inc_tax, class) in [
        (
            &inv.shipping,
            ship_desc,
            order.shipping_cost_ex_tax,
            order.shipping_cost_inc_tax,
            classes.and_then(|c| c.shipping.clone()),
        ),
        (
            &inv.handling,
            "Handling".to_string(),
            order.handling_cost_ex_tax,
            order.handling_cost_inc_tax,
            classes.and_then(|c| c.handling.clone()),
        ),
        (
            &inv.wrapping,
            "Gift wrapping".to_string(),
            order.wrapping_cost_ex_tax,
            order.wrapping_cost_inc_tax,
            classes.and_then(|c| c.wrapping.clone()),
        ),
    ] {
        if !amount.round_cents().is_zero() {
            out.push(Charge {
                item: extra_item(t, config),
                description: desc,
                amount,
                inc_tax,
                tax_class: class,
            });
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
            // BigCommerce's tax rows name no fee lines: fees take the `default` code.
            out.push(Charge {
                item: extra_item(&inv.fees, config),
                description: desc,
                amount: f.cost_ex_tax,
                inc_tax: f.cost_inc_tax,
                tax_class: None,
            });
        }
    }
    out
}

/// The QuickBooks TaxCode names a VAT/GST document of `order` may need: the `default` code and
/// the code of every tax class its tax rows name (a superset: resolving one more name is cheap).
pub(crate) fn vat_codes(config: &MappingConfig, order: &Order) -> BTreeSet<String> {
    let tax = &config.invoice.tax;
    let mut out = BTreeSet::new();
    if tax.mode != TaxMode::Vat {
        return out;
    }
    out.extend(tax.code_for(None).map(str::to_string));
    if let Some(c) = &order.tax_classes {
        let named = c
            .products
            .values()
            .chain(c.shipping.iter())
            .chain(c.handling.iter())
            .chain(c.wrapping.iter());
        for class in named {
            out.extend(tax.code_for(Some(class)).map(str::to_string));
        }
    }
    out
}

fn plan_common(config: &MappingConfig, order: &Order, plan: &mut Plan) {
    let inv = &config.invoice;
    for c in charges(config, order) {
        plan.items.insert(c.item);
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
    plan.tax_codes.extend(vat_codes(config, order));
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
        if is_gift_certificate(line) {
            p.items.insert(inv.gift_certificate_item.clone());
            if let Some(c) = &inv.default_class {
                p.classes.insert(c.clone());
            }
            continue;
        }
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
    if crate::books::mapping::lines::discount_by_class(config, ctx)?.is_some() {
        // The discount posts as lines on the discount account's item, per class.
        p.accounts
            .insert(crate::books::mapping::lines::discount_account_name(config));
        p.discount_account = None;
    }
    Ok(p)
}
