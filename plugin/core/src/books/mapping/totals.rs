//! Tie-out: BigCommerce's own totals identity, checked before anything is posted (see the
//! money rules in [`crate::books::mapping`]).

use rust_decimal::Decimal;

use crate::books::mapping::error::MappingError;
use crate::books::mapping::plan::is_skipped;
use crate::models::bigcommerce::{Order, OrderProduct};
use crate::models::money::Money;

/// `Some(sum)` of `terms`, or [`MappingError::AmountTooLarge`] naming `what` on overflow.
pub(crate) fn sum(what: &str, terms: &[Money]) -> Result<Money, MappingError> {
    Money::checked_sum(terms.iter().copied()).ok_or_else(|| too_large(what))
}

/// `a − b`, or [`MappingError::AmountTooLarge`] naming `what` on overflow.
pub(crate) fn minus(what: &str, a: Money, b: Money) -> Result<Money, MappingError> {
    a.checked_sub(b).ok_or_else(|| too_large(what))
}

pub(crate) fn too_large(what: &str) -> MappingError {
    MappingError::AmountTooLarge {
        what: what.to_string(),
    }
}

/// `subtotal + shipping + handling + wrapping + fees`, ex tax or inc tax; `None` on overflow.
fn charges_total(order: &Order, inc_tax: bool) -> Option<Money> {
    let pick = |ex: Money, inc: Money| if inc_tax { inc } else { ex };
    let fees = Money::checked_sum(
        order
            .fees
            .iter()
            .map(|f| pick(f.cost_ex_tax, f.cost_inc_tax)),
    )?;
    Money::checked_sum([
        pick(order.subtotal_ex_tax, order.subtotal_inc_tax),
        pick(order.shipping_cost_ex_tax, order.shipping_cost_inc_tax),
        pick(order.handling_cost_ex_tax, order.handling_cost_inc_tax),
        pick(order.wrapping_cost_ex_tax, order.wrapping_cost_inc_tax),
        fees,
    ])
}

/// Whether a tax-inclusive store states its order-level discounts (`coupon_discount`,
/// `discount_amount`) including tax. BigCommerce's documentation does not say (the OpenAPI
/// file calls only the `*_inc_tax` figures of such stores "actual values"), so the order's own
/// figures decide: the discounts include tax when the inc-tax identity holds with them as
/// stated (`total_inc_tax = Σ inc-tax charges − discounts`) and the ex-tax one does not.
pub fn discount_includes_tax(order: &Order) -> bool {
    if !order.is_tax_inclusive_pricing {
        return false;
    }
    let cent = Money::from_cents(1);
    let Some(stated) = order.coupon_discount.checked_add(order.discount_amount) else {
        return false;
    };
    let gap = |charges: Option<Money>, total: Money| {
        charges
            .and_then(|c| c.checked_sub(stated))
            .and_then(|c| c.checked_sub(total))
            .map(Money::abs)
    };
    let ex_gap = gap(charges_total(order, false), order.total_ex_tax);
    let inc_gap = gap(charges_total(order, true), order.total_inc_tax);
    matches!((ex_gap, inc_gap), (Some(ex), Some(inc)) if ex > cent && inc <= cent)
}

/// The order-level discount ex tax: as BigCommerce states it, or — for a tax-inclusive store
/// that states it including tax ([`discount_includes_tax`]) — what the ex-tax charges exceed
/// `total_ex_tax` by, so the invoice's net amounts and BigCommerce's tax still make its total.
pub fn discount_ex_tax(order: &Order) -> Money {
    let stated = order.coupon_discount + order.discount_amount;
    if discount_includes_tax(order)
        && let Some(d) = charges_total(order, false).and_then(|c| c.checked_sub(order.total_ex_tax))
    {
        return d;
    }
    stated
}

/// Checks BigCommerce's own totals identity; `Err` names the check that fails. Every sum is
/// checked: an overflow is [`MappingError::AmountTooLarge`], never a panic.
pub fn check_totals(order: &Order, lines: &[OrderProduct]) -> Result<(), MappingError> {
    let cent = Money::from_cents(1);
    let tie = |check: &str, bc: Money, computed: Money, terms: usize| {
        let diff = minus(check, bc, computed)?;
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
    let priced: Vec<Money> = lines
        .iter()
        .filter(|l| !is_skipped(l))
        .map(|l| l.total_ex_tax)
        .collect();
    if !lines.is_empty() {
        let check = "sum of line totals ex tax vs subtotal_ex_tax";
        tie(check, order.subtotal_ex_tax, sum(check, &priced)?, 1)?;
    }
    let check = "total_ex_tax = subtotal_ex_tax + shipping + handling + wrapping + fees - coupon_discount - discount_amount";
    let fees: Vec<Money> = order.fees.iter().map(|f| f.cost_ex_tax).collect();
    let charges = sum(
        check,
        &[
            order.subtotal_ex_tax,
            order.shipping_cost_ex_tax,
            order.handling_cost_ex_tax,
            order.wrapping_cost_ex_tax,
            sum(check, &fees)?,
        ],
    )?;
    let discounts = sum(check, &[order.coupon_discount, order.discount_amount])?;
    if discount_includes_tax(order) {
        // A tax-inclusive store stating its discounts with tax: its inc-tax figures are the
        // actual ones, and they tie (checked in `discount_includes_tax`).
    } else {
        tie(
            check,
            order.total_ex_tax,
            minus(check, charges, discounts)?,
            1,
        )?;
    }
    let check = "total_inc_tax = total_ex_tax + total_tax";
    tie(
        check,
        order.total_inc_tax,
        sum(check, &[order.total_ex_tax, order.total_tax])?,
        1,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::books::mapping::{
        MappingConfig, OrderContext, ResolvedRefs, TaxMode, build_invoice, plan_exact,
    };
    use crate::models::bigcommerce::OrderId;
    use crate::models::quickbooks::DetailType;

    fn m(s: &str) -> Money {
        s.parse().unwrap()
    }

    /// A tax-inclusive UK order: one shirt at 120.00 with 20 % VAT in it, and a coupon worth
    /// 12.00 with tax (10.00 without), stated `coupon` — the figure BigCommerce's documents
    /// leave open.
    fn inclusive_order(coupon: &str) -> (Order, Vec<OrderProduct>) {
        let order = Order {
            id: OrderId(7),
            date_created: Some(chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap()),
            is_tax_inclusive_pricing: true,
            subtotal_ex_tax: m("100"),
            subtotal_inc_tax: m("120"),
            coupon_discount: m(coupon),
            total_ex_tax: m("90"),
            total_tax: m("18"),
            total_inc_tax: m("108"),
            ..Order::default()
        };
        let line = OrderProduct {
            id: 1,
            order_id: OrderId(7),
            name: "Shirt".into(),
            quantity: Decimal::ONE,
            price_ex_tax: m("100"),
            price_inc_tax: m("120"),
            total_ex_tax: m("100"),
            total_inc_tax: m("120"),
            total_tax: m("20"),
            ..OrderProduct::default()
        };
        (order, vec![line])
    }

    #[test]
    fn a_tax_inclusive_store_ties_whether_its_discount_is_stated_with_or_without_tax() {
        for (coupon, includes) in [("10.0000", false), ("12.0000", true)] {
            let (order, lines) = inclusive_order(coupon);
            assert_eq!(discount_includes_tax(&order), includes, "coupon {coupon}");
            check_totals(&order, &lines).unwrap();
            assert_eq!(discount_ex_tax(&order), m("10"), "coupon {coupon}");
            for mode in [TaxMode::TxnDetail, TaxMode::Vat] {
                let mut config = MappingConfig::default();
                config.invoice.tax.mode = mode;
                config
                    .invoice
                    .tax
                    .codes
                    .insert("default".into(), "20.0% S".into());
                let catalog = HashMap::new();
                let ctx = OrderContext {
                    order: &order,
                    lines: &lines,
                    catalog: &catalog,
                    customer_group_id: None,
                };
                let plan = plan_exact(&config, &ctx).unwrap();
                let mut refs = ResolvedRefs::default();
                for n in &plan.items {
                    refs.items.insert(n.clone(), "1".into());
                }
                for n in &plan.tax_codes {
                    refs.tax_codes.insert(n.clone(), "9".into());
                }
                refs.discount_account = Some("86".into());
                let draft = build_invoice(&config, &ctx, &refs, "42").unwrap();
                assert_eq!(draft.total, m("108.00"), "coupon {coupon}, {mode:?}");
                let discount: Vec<Money> = draft
                    .invoice
                    .line
                    .iter()
                    .filter(|l| l.detail_type == DetailType::DiscountLineDetail)
                    .map(|l| l.amount)
                    .collect();
                assert_eq!(discount, vec![m("10.00")], "coupon {coupon}, {mode:?}");
                let tax = draft.invoice.txn_tax_detail.and_then(|t| t.total_tax);
                assert_eq!(tax, Some(m("18.00")));
            }
        }
    }

    #[test]
    fn a_discount_that_ties_neither_way_is_refused() {
        let (order, lines) = inclusive_order("11.0000");
        assert!(!discount_includes_tax(&order));
        assert!(matches!(
            check_totals(&order, &lines),
            Err(MappingError::TotalsDoNotTie { .. })
        ));
        // A tax-exclusive store never reads its discount as including tax.
        let (mut order, _) = inclusive_order("12.0000");
        order.is_tax_inclusive_pricing = false;
        assert!(!discount_includes_tax(&order));
    }
}
