//! The layout of a refund document (refund receipt or credit memo) for one BigCommerce
//! refund, with the invoice's rules: refunded products on their mapped item and class,
//! shipping/handling/wrapping/fee refunds on their items, order-level amounts on
//! `refunds.item`, tax per `tax.mode` — and a total equal to the refund's `total_amount` to
//! the cent.
//!
//! Amounts: a `PRODUCT` item refunded by quantity is `quantity ×` the line's ex-tax unit
//! price; every other item carries its ex-tax amount (`requested_amount`); the refund's
//! `total_tax` is the tax. Each line is rounded to cents; what rounding leaves over (at most
//! a cent per rounded term) is absorbed in the tax when tax is posted, else in the largest
//! line, as on the invoice. A larger gap means the refund does not tie and nothing is posted.

use std::collections::BTreeSet;

use rust_decimal::Decimal;

use crate::books::mapping::config::{MappingConfig, TaxMode};
use crate::books::mapping::error::MappingError;
use crate::books::mapping::invoice::{book_tax, describe, tax_codes};
use crate::books::mapping::lines::{fit_unit_price, price_parts};
use crate::books::mapping::plan::{
    OrderContext, Plan, ResolvedRefs, Target, extra_item, line_target,
};
use crate::models::bigcommerce::{OrderProduct, Refund, RefundItem};
use crate::models::money::{Money, round2};
use crate::models::quickbooks::{Line, Ref, SalesItemLineDetail, TxnTaxDetail};

/// What one refund item books: a product line (with its rule target and class) or a charge
/// on an item.
enum Booked<'a> {
    Product {
        line: &'a OrderProduct,
        target: Target,
        class: Option<String>,
    },
    Charge {
        item: String,
        description: String,
    },
}

fn amount_of(refund: &Refund, item: &RefundItem) -> Result<Money, MappingError> {
    item.requested_amount
        .ok_or_else(|| MappingError::RefundItemWithoutAmount {
            refund_id: refund.id,
            item_type: item.item_type.clone(),
        })
}

/// The ex-tax unit price of an order line.
fn unit_ex_tax(line: &OrderProduct) -> Money {
    if !line.price_ex_tax.is_zero() || line.quantity.is_zero() {
        line.price_ex_tax
    } else {
        Money::new(line.total_ex_tax.amount() / line.quantity)
    }
}

fn booked<'a>(
    config: &MappingConfig,
    ctx: &OrderContext<'a>,
    refund: &Refund,
    item: &RefundItem,
) -> Result<(Booked<'a>, Money, Option<Decimal>), MappingError> {
    let inv = &config.invoice;
    let kind = item.item_type.trim().to_ascii_uppercase();
    let unknown = || MappingError::RefundItemUnknown {
        refund_id: refund.id,
        item_type: kind.clone(),
        item_id: item.item_id,
    };
    let charge = |item_name: String, description: &str| Booked::Charge {
        item: item_name,
        description: description.to_string(),
    };
    Ok(match kind.as_str() {
        "PRODUCT" => {
            let line = ctx
                .lines
                .iter()
                .find(|l| l.id == item.item_id)
                .ok_or_else(unknown)?;
            let (target, class) = line_target(config, line, ctx)?;
            let (amount, qty) = match item.requested_amount {
                Some(a) => (a, None),
                None => {
                    if item.quantity <= Decimal::ZERO {
                        return Err(MappingError::RefundItemWithoutAmount {
                            refund_id: refund.id,
                            item_type: kind,
                        });
                    }
                    (unit_ex_tax(line) * item.quantity, Some(item.quantity))
                }
            };
            (
                Booked::Product {
                    line,
                    target,
                    class,
                },
                amount,
                qty,
            )
        }
        "SHIPPING" => (
            charge(extra_item(&inv.shipping, config), "Shipping refund"),
            amount_of(refund, item)?,
            None,
        ),
        "HANDLING" => (
            charge(extra_item(&inv.handling, config), "Handling refund"),
            amount_of(refund, item)?,
            None,
        ),
        "GIFT_WRAPPING" => (
            charge(extra_item(&inv.wrapping, config), "Gift wrapping refund"),
            amount_of(refund, item)?,
            None,
        ),
        "FEE" => (
            charge(extra_item(&inv.fees, config), "Fee refund"),
            amount_of(refund, item)?,
            None,
        ),
        "ORDER" => {
            let reason = item.reason.trim();
            let description = if reason.is_empty() {
                "Order refund".to_string()
            } else {
                format!("Order refund: {reason}")
            };
            (
                charge(config.refund_item().to_string(), &description),
                amount_of(refund, item)?,
                None,
            )
        }
        _ => {
            return Err(MappingError::RefundItemType {
                refund_id: refund.id,
                item_type: item.item_type.clone(),
            });
        }
    })
}

/// The names a refund needs resolved (items, income accounts, classes).
pub fn refund_names(
    config: &MappingConfig,
    ctx: &OrderContext,
    refund: &Refund,
) -> Result<Plan, MappingError> {
    let mut p = Plan::default();
    let mut classes = BTreeSet::new();
    for item in &refund.items {
        match booked(config, ctx, refund, item)?.0 {
            Booked::Product { target, class, .. } => {
                match target {
                    Target::Item(i) => p.items.insert(i),
                    Target::Account(a) => p.accounts.insert(a),
                };
                classes.extend(class);
            }
            Booked::Charge { item, .. } => {
                p.items.insert(item);
                classes.extend(config.invoice.default_class.clone());
            }
        }
    }
    if config.invoice.tax.mode == TaxMode::Line
        && !refund.total_tax.round_cents().is_zero()
        && let Some(t) = &config.invoice.tax.item
    {
        p.items.insert(t.clone());
        classes.extend(config.invoice.default_class.clone());
    }
    p.tax_codes
        .extend(crate::books::mapping::plan::vat_codes(config, ctx.order));
    p.classes = classes;
    Ok(p)
}

/// A refund document's lines and tax, checked against the refund's total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundDraft {
    pub lines: Vec<Line>,
    pub txn_tax_detail: Option<TxnTaxDetail>,
    /// `TaxExcluded` for VAT/GST companies (every line then carries a `TaxCodeRef`).
    pub global_tax_calculation: Option<String>,
    /// What the document totals — equals `target`.
    pub total: Money,
    /// The refund's `total_amount` (less its tax for tax mode `none`), to the cent.
    pub target: Money,
    /// Rounding residue absorbed.
    pub residue: Money,
}

/// Lays out the document for `refund` (see the module docs for the money rules).
pub fn build_refund(
    config: &MappingConfig,
    ctx: &OrderContext,
    refs: &ResolvedRefs,
    refund: &Refund,
) -> Result<RefundDraft, MappingError> {
    let inv = &config.invoice;
    let item_ref = |name: &str| refs.item_ref(name);
    let class_ref = |name: &Option<String>| refs.class_ref(name);
    let mut lines = Vec::new();
    // The BigCommerce tax class of each line (VAT/GST companies: its `TaxCodeRef`).
    let mut line_classes: Vec<Option<String>> = Vec::new();
    let classes = ctx.order.tax_classes.as_ref();
    let mut terms = 0usize;
    for item in &refund.items {
        let (what, raw, qty) = booked(config, ctx, refund, item)?;
        let amount = raw.round_cents();
        let tax_class = classes.and_then(|c| match (&what, item.item_type.trim()) {
            (Booked::Product { line, .. }, _) => c.products.get(&line.id).cloned(),
            (_, t) if t.eq_ignore_ascii_case("SHIPPING") => c.shipping.clone(),
            (_, t) if t.eq_ignore_ascii_case("HANDLING") => c.handling.clone(),
            (_, t) if t.eq_ignore_ascii_case("GIFT_WRAPPING") => c.wrapping.clone(),
            _ => None,
        });
        let (item, class, description, quantity) = match what {
            Booked::Product {
                line,
                target,
                class,
            } => {
                let item = match &target {
                    Target::Item(n) => item_ref(n)?,
                    Target::Account(a) => {
                        refs.account_items
                            .get(a)
                            .map(|id| Ref::id(id.clone()))
                            .ok_or_else(|| MappingError::UnknownAccount { name: a.clone() })?
                    }
                };
                (
                    item,
                    class,
                    format!("Refund: {}", describe(line)),
                    qty.unwrap_or(Decimal::ONE),
                )
            }
            Booked::Charge { item, description } => (
                item_ref(&item)?,
                inv.default_class.clone(),
                description,
                Decimal::ONE,
            ),
        };
        // The invoice's layout: the true quantity, split in two lines when no price fits.
        let description: String = description.chars().take(4000).collect();
        let class = class_ref(&class)?;
        for part in price_parts(quantity, amount) {
            line_classes.push(tax_class.clone());
            lines.push(Line::sales(
                part.amount,
                Some(description.clone()),
                SalesItemLineDetail {
                    item_ref: item.clone(),
                    class_ref: class.clone(),
                    unit_price: Some(part.unit_price),
                    qty: Some(part.qty),
                    ..Default::default()
                },
            ));
        }
        terms += 1;
    }
    let item_lines = lines.len();
    let bc_tax = refund.total_tax.round_cents();
    let total_amount = refund.total_amount.round_cents();
    let (target, posts_tax) = match inv.tax.mode {
        TaxMode::None => (total_amount - bc_tax, false),
        TaxMode::Auto | TaxMode::Line | TaxMode::TxnDetail | TaxMode::Vat => (total_amount, true),
    };
    let tax_target = if posts_tax { bc_tax } else { Money::ZERO };
    let lines_sum: Money = lines.iter().map(|l| l.amount).sum();
    let residue = target - lines_sum - tax_target;
    terms += 2; // the total and the tax are rounded too
    if residue.abs() > Money::from_cents(1) * Decimal::from(terms as u64) {
        return Err(MappingError::RefundDoesNotTie {
            refund_id: refund.id,
            bigcommerce: target,
            computed: lines_sum + tax_target,
            difference: residue,
        });
    }
    let absorb_in_tax = posts_tax && !bc_tax.is_zero();
    let tax = if absorb_in_tax {
        tax_target + residue
    } else {
        tax_target
    };
    if !absorb_in_tax && !residue.is_zero() {
        // The largest line whose quantity has a price for its new amount takes the residue
        // (its quantity stays true); among equal amounts the last line wins.
        let mut by_amount: Vec<usize> = (0..item_lines).rev().collect();
        by_amount.sort_by(|a, b| lines[*b].amount.cmp(&lines[*a].amount));
        let fitted = by_amount.into_iter().find_map(|i| {
            let d = lines[i].sales_item_line_detail.as_ref()?;
            let amount = lines[i].amount + residue;
            fit_unit_price(d.qty.unwrap_or(Decimal::ONE), amount).map(|u| (i, amount, u))
        });
        let Some((i, amount, u)) = fitted else {
            return Err(MappingError::RefundDoesNotTie {
                refund_id: refund.id,
                bigcommerce: target,
                computed: lines_sum + tax_target,
                difference: residue,
            });
        };
        let line = &mut lines[i];
        line.amount = amount;
        if let Some(d) = line.sales_item_line_detail.as_mut() {
            d.unit_price = Some(u);
        }
    }
    let (tax_line, txn_tax_detail) =
        book_tax(config, refs, tax, "Sales tax refunded (BigCommerce)")?;
    lines.extend(tax_line);
    let global_tax_calculation = tax_codes(
        config,
        refs,
        &mut lines,
        &line_classes,
        ctx.order.is_tax_inclusive_pricing,
    )?;
    if lines.is_empty() && tax.is_zero() {
        return Err(MappingError::NothingToRefund {
            refund_id: refund.id,
        });
    }
    let mut total = Money::ZERO;
    for l in &lines {
        if let Some(d) = &l.sales_item_line_detail {
            debug_assert_eq!(
                round2(d.qty.unwrap_or(Decimal::ONE) * d.unit_price.unwrap_or_default()),
                l.amount.amount()
            );
            total += l.amount;
        }
    }
    if let Some(t) = txn_tax_detail.as_ref().and_then(|t| t.total_tax) {
        total += t;
    }
    if total != target {
        return Err(MappingError::RefundDoesNotTie {
            refund_id: refund.id,
            bigcommerce: target,
            computed: total,
            difference: target - total,
        });
    }
    Ok(RefundDraft {
        lines,
        txn_tax_detail,
        global_tax_calculation,
        total,
        target,
        residue,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::books::mapping::config::{ItemTarget, Match, Rule};
    use crate::models::bigcommerce::{Order, OrderId, ProductId};

    fn m(s: &str) -> Money {
        s.parse().unwrap()
    }

    fn line(id: u64, sku: &str, qty: i64, unit: &str) -> OrderProduct {
        OrderProduct {
            id,
            product_id: ProductId(id),
            name: format!("Product {id}"),
            sku: sku.into(),
            quantity: Decimal::from(qty),
            price_ex_tax: m(unit),
            total_ex_tax: m(unit) * Decimal::from(qty),
            ..OrderProduct::default()
        }
    }

    fn config() -> MappingConfig {
        let mut c = MappingConfig::default();
        c.invoice.rules.push(Rule {
            matcher: Match {
                sku_prefix: Some("APP-".into()),
                ..Match::default()
            },
            item: Some("Apparel Sales".into()),
            account: None,
            class: Some("Apparel".into()),
        });
        c.refunds.item = Some("Sales Refunds".into());
        c.invoice.tax.mode = TaxMode::Line;
        c
    }

    fn refs(c: &MappingConfig, ctx: &OrderContext, r: &Refund) -> ResolvedRefs {
        let names = refund_names(c, ctx, r).unwrap();
        ResolvedRefs {
            items: names
                .items
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), (10 + i).to_string()))
                .collect(),
            classes: names
                .classes
                .iter()
                .map(|n| (n.clone(), format!("c-{n}")))
                .collect(),
            ..ResolvedRefs::default()
        }
    }

    fn item(kind: &str, id: u64, qty: i64, amount: Option<&str>) -> RefundItem {
        RefundItem {
            item_type: kind.into(),
            item_id: id,
            quantity: Decimal::from(qty),
            requested_amount: amount.map(m),
            reason: String::new(),
        }
    }

    fn refund(items: Vec<RefundItem>, tax: &str, total: &str) -> Refund {
        Refund {
            id: 17,
            order_id: OrderId(250),
            total_amount: m(total),
            total_tax: m(tax),
            items,
            ..Refund::default()
        }
    }

    fn order() -> Order {
        Order {
            id: OrderId(250),
            ..Order::default()
        }
    }

    #[test]
    fn products_shipping_and_order_amounts_map_like_the_invoice_and_tie_to_the_total() {
        let o = order();
        let lines = [
            line(1, "APP-TEE-S", 2, "12.5000"),
            line(2, "HOME-MUG", 1, "8.0000"),
        ];
        let catalog = HashMap::new();
        let ctx = OrderContext {
            order: &o,
            lines: &lines,
            catalog: &catalog,
            customer_group_id: None,
        };
        let c = config();
        let r = refund(
            vec![
                item("PRODUCT", 1, 1, None),
                item("SHIPPING", 2501, 0, Some("5.99")),
                item("ORDER", 250, 0, Some("2.00")),
            ],
            "1.48",
            "21.97",
        );
        let refs = refs(&c, &ctx, &r);
        let draft = build_refund(&c, &ctx, &refs, &r).unwrap();
        let got: Vec<(String, Money, Option<String>)> = draft
            .lines
            .iter()
            .map(|l| {
                let d = l.sales_item_line_detail.as_ref().unwrap();
                (
                    d.item_ref.name.clone().unwrap(),
                    l.amount,
                    d.class_ref.as_ref().and_then(|c| c.name.clone()),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "Apparel Sales".to_string(),
                    m("12.50"),
                    Some("Apparel".into())
                ),
                ("Shipping Income".to_string(), m("5.99"), None),
                ("Sales Refunds".to_string(), m("2.00"), None),
                ("Sales Tax Collected".to_string(), m("1.48"), None),
            ]
        );
        assert_eq!(draft.total, m("21.97"));
        assert_eq!(draft.residue, Money::ZERO);
        let first = draft.lines[0].sales_item_line_detail.as_ref().unwrap();
        assert_eq!(first.qty, Some(Decimal::ONE));
    }

    #[test]
    fn a_quantity_no_unit_price_fits_keeps_its_true_quantity_in_two_lines_like_the_invoice() {
        let o = order();
        // Three million and one units for a million: no price of 7 decimals gives the amount.
        let mut big = line(1, "X", 3_000_001, "0");
        big.total_ex_tax = m("1000000.0000");
        let lines = [big];
        let catalog = HashMap::new();
        let ctx = OrderContext {
            order: &o,
            lines: &lines,
            catalog: &catalog,
            customer_group_id: None,
        };
        let c = config();
        let r = refund(
            vec![item("PRODUCT", 1, 3_000_001, None)],
            "0.00",
            "1000000.00",
        );
        let refs = refs(&c, &ctx, &r);
        let draft = build_refund(&c, &ctx, &refs, &r).unwrap();
        assert_eq!(draft.lines.len(), 2, "{:?}", draft.lines);
        let mut qty = Decimal::ZERO;
        for l in &draft.lines {
            let d = l.sales_item_line_detail.as_ref().unwrap();
            assert_eq!(d.item_ref.name.as_deref(), Some("BigCommerce Sales"));
            assert_eq!(
                round2(d.qty.unwrap() * d.unit_price.unwrap()),
                l.amount.amount()
            );
            assert!(d.unit_price.unwrap().scale() <= 7);
            qty += d.qty.unwrap();
        }
        assert_eq!(qty, Decimal::from(3_000_001), "Qty stays true");
        assert_eq!(draft.total, m("1000000.00"));
    }

    #[test]
    fn a_rounding_cent_lands_in_the_tax_and_txn_detail_mode_posts_tax_as_total_tax() {
        let o = order();
        let lines = [line(1, "X", 3, "3.3333")];
        let catalog = HashMap::new();
        let ctx = OrderContext {
            order: &o,
            lines: &lines,
            catalog: &catalog,
            customer_group_id: None,
        };
        let mut c = config();
        c.invoice.tax.mode = TaxMode::TxnDetail;
        // 3 × 3.3333 = 9.9999 → 10.00; BigCommerce charged 9.99 + 0.80 tax.
        let r = refund(vec![item("PRODUCT", 1, 3, None)], "0.80", "10.79");
        let refs = refs(&c, &ctx, &r);
        let draft = build_refund(&c, &ctx, &refs, &r).unwrap();
        assert_eq!(draft.residue, m("-0.01"));
        assert_eq!(draft.txn_tax_detail.unwrap().total_tax, Some(m("0.79")));
        assert_eq!(draft.total, m("10.79"));
    }

    #[test]
    fn tax_mode_none_books_the_refund_without_its_tax() {
        let o = order();
        let lines = [line(1, "X", 1, "10.0000")];
        let catalog = HashMap::new();
        let ctx = OrderContext {
            order: &o,
            lines: &lines,
            catalog: &catalog,
            customer_group_id: None,
        };
        let mut c = config();
        c.invoice.tax.mode = TaxMode::None;
        c.invoice.tax.item = None;
        let r = refund(vec![item("PRODUCT", 1, 1, None)], "0.80", "10.80");
        let draft = build_refund(&c, &ctx, &refs(&c, &ctx, &r), &r).unwrap();
        assert_eq!(draft.total, m("10.00"));
        assert_eq!(draft.lines.len(), 1);
    }

    #[test]
    fn a_refund_whose_items_and_total_do_not_tie_is_refused_with_the_figures() {
        let o = order();
        let lines = [line(1, "X", 1, "10.0000")];
        let catalog = HashMap::new();
        let ctx = OrderContext {
            order: &o,
            lines: &lines,
            catalog: &catalog,
            customer_group_id: None,
        };
        let c = config();
        let r = refund(vec![item("PRODUCT", 1, 1, None)], "0.80", "15.00");
        let err = build_refund(&c, &ctx, &refs(&c, &ctx, &r), &r).unwrap_err();
        assert_eq!(
            err,
            MappingError::RefundDoesNotTie {
                refund_id: 17,
                bigcommerce: m("15.00"),
                computed: m("10.80"),
                difference: m("4.20"),
            }
        );
        assert!(err.to_string().contains("replay the order"));
    }

    #[test]
    fn unknown_lines_item_types_and_missing_amounts_name_the_refund() {
        let o = order();
        let lines = [line(1, "X", 1, "10.0000")];
        let catalog = HashMap::new();
        let ctx = OrderContext {
            order: &o,
            lines: &lines,
            catalog: &catalog,
            customer_group_id: None,
        };
        let c = config();
        for (it, want) in [
            (item("PRODUCT", 99, 1, None), "not part of the order"),
            (item("COUPON", 1, 0, Some("1.00")), "does not know"),
            (item("SHIPPING", 1, 0, None), "without an amount"),
        ] {
            let r = refund(vec![it], "0", "1.00");
            let err = refund_names(&c, &ctx, &r).unwrap_err().to_string();
            assert!(err.contains("refund 17") && err.contains(want), "{err}");
        }
        let r = refund(vec![], "0", "0");
        let err = build_refund(&c, &ctx, &ResolvedRefs::default(), &r).unwrap_err();
        assert_eq!(err, MappingError::NothingToRefund { refund_id: 17 });
    }

    #[test]
    fn refunds_item_defaults_to_the_invoice_default_item_and_charges_use_their_items() {
        let mut c = MappingConfig::default();
        c.invoice.wrapping = Some(ItemTarget {
            item: "Gift Wrap Income".into(),
        });
        assert_eq!(c.refund_item(), "BigCommerce Sales");
        let o = order();
        let lines = [line(1, "X", 1, "10.0000")];
        let catalog = HashMap::new();
        let ctx = OrderContext {
            order: &o,
            lines: &lines,
            catalog: &catalog,
            customer_group_id: None,
        };
        let r = refund(
            vec![
                item("GIFT_WRAPPING", 1, 0, Some("4.00")),
                item("HANDLING", 1, 0, Some("2.50")),
                item("ORDER", 250, 0, Some("1.00")),
            ],
            "0",
            "7.50",
        );
        let names = refund_names(&c, &ctx, &r).unwrap();
        let want: BTreeSet<String> = ["Gift Wrap Income", "Handling Income", "BigCommerce Sales"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(names.items, want);
    }
}
