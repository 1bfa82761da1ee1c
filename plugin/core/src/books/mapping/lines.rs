//! Line arithmetic shared by the invoice and refund layouts: a line's `Qty` and `UnitPrice`
//! (QuickBooks checks `Qty × UnitPrice = Amount`), and an order discount split by class.
//!
//! **Quantities stay true.** QuickBooks moves stock by `Qty`, so a product line always carries
//! BigCommerce's quantity. Most amounts fit one `UnitPrice` of at most 7 decimals (QuickBooks'
//! limit). When none fits (very large quantities: with more than about 100 000 units one step of
//! the seventh decimal moves the amount by more than a cent), the line is split in two lines on
//! the same item and class — `Qty − 1` at the nearest 7-decimal price, and `Qty 1` at what is
//! left — so the quantities still add up to the real one, both lines keep `Qty × UnitPrice =
//! Amount`, and revenue lands where it belongs. An adjusting line on another item was rejected:
//! it needs an item of its own (a non-inventory item the company may not have) and moves
//! revenue to it; a single line with `Qty 1` (the old fallback) corrupts stock.

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};

use crate::books::mapping::config::MappingConfig;
use crate::books::mapping::error::MappingError;
use crate::books::mapping::plan::{
    OrderContext, is_gift_certificate, is_skipped, line_target, order_discount,
};
use crate::models::money::{Money, round2};

/// The account a discount split by class is booked to when the mapping names none: QuickBooks'
/// own default discount account.
pub const DEFAULT_DISCOUNT_ACCOUNT: &str = "Discounts given";

/// A discount's share per class (`None`: no class), in class-name order.
pub type ClassShares = Vec<(Option<String>, Money)>;

/// The income account a split discount posts to (through its service item).
pub fn discount_account_name(config: &MappingConfig) -> String {
    config.invoice.discount.as_ref().map_or_else(
        || DEFAULT_DISCOUNT_ACCOUNT.to_string(),
        |d| d.account.clone(),
    )
}

/// The order discount per class when the discounted lines carry more than one class (CONTRACT
/// §11): `None` when it stays one `DiscountLineDetail` (no discount, one class or none).
///
/// The discounted lines are the priced product lines other than gift certificates. Each class
/// weighs what BigCommerce allocated to its lines (`applied_discounts`), or, when BigCommerce
/// allocated nothing, its lines' ex-tax amounts; [`split_by_class`] makes the shares exact.
pub fn discount_by_class(
    config: &MappingConfig,
    ctx: &OrderContext,
) -> Result<Option<ClassShares>, MappingError> {
    let discount = order_discount(ctx.order).round_cents();
    if discount.is_zero() {
        return Ok(None);
    }
    let mut allocated: BTreeMap<Option<String>, Decimal> = BTreeMap::new();
    let mut amounts: BTreeMap<Option<String>, Decimal> = BTreeMap::new();
    for line in ctx
        .lines
        .iter()
        .filter(|l| !is_skipped(l) && !is_gift_certificate(l))
    {
        let (_, class) = line_target(config, line, ctx)?;
        let given: Decimal = line
            .applied_discounts
            .iter()
            .map(|a| a.amount.amount())
            .sum();
        *allocated.entry(class.clone()).or_default() += given;
        *amounts.entry(class).or_default() += line.total_ex_tax.amount();
    }
    let weights = if allocated.values().any(|w| *w > Decimal::ZERO) {
        allocated
    } else {
        amounts
    };
    if weights.values().filter(|w| **w > Decimal::ZERO).count() < 2 {
        return Ok(None);
    }
    let split = split_by_class(discount, &weights);
    Ok((split.len() > 1).then_some(split))
}

/// Most decimals QuickBooks keeps on a `UnitPrice`.
pub const UNIT_PRICE_DECIMALS: u32 = 7;

/// One priced part of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PricedPart {
    pub qty: Decimal,
    pub unit_price: Decimal,
    pub amount: Money,
}

/// The shortest `UnitPrice` (≤ 7 decimals) with `round2(quantity × UnitPrice) == amount`.
pub fn fit_unit_price(quantity: Decimal, amount: Money) -> Option<Decimal> {
    let a = amount.amount();
    if quantity <= Decimal::ZERO {
        return None;
    }
    // Checked: a tiny fractional quantity would make the unit price overflow.
    let exact = a.checked_div(quantity)?;
    (2..=UNIT_PRICE_DECIMALS).find_map(|dp| {
        let u = exact.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero);
        (u.checked_mul(quantity).map(round2) == Some(a)).then(|| u.normalize())
    })
}

/// `quantity` units totalling `amount` as one part, or two when no single price fits (see the
/// module docs). The parts' quantities add up to `quantity` and their amounts to `amount`.
/// A quantity at or below one that no price fits (only an amount too large to divide) is billed
/// as one unit at the amount.
pub fn price_parts(quantity: Decimal, amount: Money) -> Vec<PricedPart> {
    if let Some(u) = fit_unit_price(quantity, amount) {
        return vec![PricedPart {
            qty: quantity,
            unit_price: u,
            amount,
        }];
    }
    let a = amount.amount();
    if quantity > Decimal::ONE
        && let Some(exact) = a.checked_div(quantity)
    {
        let rest_qty = quantity - Decimal::ONE;
        let u = exact
            .round_dp_with_strategy(UNIT_PRICE_DECIMALS, RoundingStrategy::MidpointAwayFromZero);
        if let Some(rest) = u.checked_mul(rest_qty).map(round2) {
            let last = a - rest;
            return vec![
                PricedPart {
                    qty: rest_qty,
                    unit_price: u.normalize(),
                    amount: Money::new(rest),
                },
                PricedPart {
                    qty: Decimal::ONE,
                    unit_price: last.normalize(),
                    amount: Money::new(last),
                },
            ];
        }
    }
    vec![PricedPart {
        qty: Decimal::ONE,
        unit_price: a.normalize(),
        amount,
    }]
}

/// Splits `discount` (cents) over classes in proportion to `weights` (class → weight; `None` is
/// "no class"). Exact to the cent: each class gets its share rounded down, and the cents left go
/// one each to the largest remainders, ties to the first class in name order (no class first).
/// Classes with zero weight get nothing; shares of zero are left out.
pub fn split_by_class(discount: Money, weights: &BTreeMap<Option<String>, Decimal>) -> ClassShares {
    let total: Decimal = weights.values().filter(|w| **w > Decimal::ZERO).sum();
    let cents = discount.round_cents().amount() * Decimal::ONE_HUNDRED;
    if total <= Decimal::ZERO || cents.is_zero() {
        return Vec::new();
    }
    let mut shares: Vec<(Option<String>, Decimal, Decimal)> = weights
        .iter()
        .filter(|(_, w)| **w > Decimal::ZERO)
        .map(|(class, w)| {
            let exact = cents * *w / total;
            let floor = exact.floor();
            (class.clone(), floor, exact - floor)
        })
        .collect();
    let given: Decimal = shares.iter().map(|s| s.1).sum();
    let mut left = cents - given;
    let mut order: Vec<usize> = (0..shares.len()).collect();
    // Stable: equal remainders keep name order.
    order.sort_by(|a, b| shares[*b].2.cmp(&shares[*a].2));
    for i in order {
        if left <= Decimal::ZERO {
            break;
        }
        shares[i].1 += Decimal::ONE;
        left -= Decimal::ONE;
    }
    shares
        .into_iter()
        .filter(|s| !s.1.is_zero())
        .map(|(class, c, _)| (class, Money::new(c / Decimal::ONE_HUNDRED)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn m(s: &str) -> Money {
        Money::new(d(s))
    }

    #[test]
    fn an_ordinary_line_is_one_part_at_its_quantity() {
        let parts = price_parts(d("3"), m("10.00"));
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].qty, d("3"));
        assert_eq!(parts[0].unit_price, d("3.333"));
        assert_eq!(round2(parts[0].qty * parts[0].unit_price), d("10.00"));
    }

    #[test]
    fn a_huge_quantity_keeps_its_units_over_two_parts_that_each_multiply_out() {
        // 1 234 567 units for 1000.01: no 7-decimal price fits one line.
        let q = d("1234567");
        let a = m("1000.01");
        assert_eq!(fit_unit_price(q, a), None);
        let parts = price_parts(q, a);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts.iter().map(|p| p.qty).sum::<Decimal>(), q);
        assert_eq!(parts.iter().map(|p| p.amount).sum::<Money>(), a);
        for p in &parts {
            assert_eq!(round2(p.qty * p.unit_price), p.amount.amount());
            assert!(p.unit_price.scale() <= UNIT_PRICE_DECIMALS);
        }
        // The big part is priced at the true unit price to 7 decimals.
        assert_eq!(parts[0].unit_price, d("0.00081"));
    }

    #[test]
    fn a_discount_over_two_classes_splits_in_proportion_to_the_cent() {
        let mut w = BTreeMap::new();
        w.insert(Some("Apparel".to_string()), d("2"));
        w.insert(Some("Home".to_string()), d("1"));
        let split = split_by_class(m("10.00"), &w);
        assert_eq!(
            split,
            vec![
                (Some("Apparel".to_string()), m("6.67")),
                (Some("Home".to_string()), m("3.33")),
            ]
        );
    }

    #[test]
    fn leftover_cents_go_to_the_largest_remainders_then_name_order() {
        let mut w = BTreeMap::new();
        w.insert(None, d("1"));
        w.insert(Some("A".to_string()), d("1"));
        w.insert(Some("B".to_string()), d("1"));
        // 0.02 over three equal weights: the first two in order (no class, then A) get a cent.
        let split = split_by_class(m("0.02"), &w);
        assert_eq!(
            split,
            vec![(None, m("0.01")), (Some("A".to_string()), m("0.01"))]
        );
        let total: Money = split_by_class(m("100.00"), &w).iter().map(|s| s.1).sum();
        assert_eq!(total, m("100.00"));
    }

    #[test]
    fn zero_weights_and_zero_discounts_give_nothing() {
        let mut w = BTreeMap::new();
        w.insert(Some("A".to_string()), Decimal::ZERO);
        assert!(split_by_class(m("5"), &w).is_empty());
        w.insert(Some("B".to_string()), d("3"));
        assert_eq!(
            split_by_class(m("5"), &w),
            vec![(Some("B".to_string()), m("5.00"))]
        );
        assert!(split_by_class(Money::ZERO, &w).is_empty());
    }
}
