//! Tie-out: BigCommerce's own totals identity, checked before anything is posted (see the
//! money rules in [`crate::books::mapping`]).

use rust_decimal::Decimal;

use crate::books::mapping::error::MappingError;
use crate::books::mapping::plan::is_skipped;
use crate::models::bigcommerce::{Order, OrderProduct};
use crate::models::money::Money;

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
