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
    tie(
        check,
        order.total_ex_tax,
        minus(check, charges, discounts)?,
        1,
    )?;
    let check = "total_inc_tax = total_ex_tax + total_tax";
    tie(
        check,
        order.total_inc_tax,
        sum(check, &[order.total_ex_tax, order.total_tax])?,
        1,
    )?;
    Ok(())
}
