//! The demo's orders: the three every demo starts with, the extra ones Enter places, and what
//! became of each.

use std::path::PathBuf;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

use ml_sim::bigcommerce::OrderShape;

/// First order id the demo places (real BigCommerce stores start numbering at 100).
pub(super) const FIRST_ORDER_ID: u64 = 100;

/// Record states after which waiting longer will not produce an invoice by itself.
pub(super) const TERMINAL_STATES: &[&str] = &["posted", "failed", "skipped", "needs_reauth"];

/// One demo order and what became of it.
#[derive(Debug, Clone)]
pub struct DemoOrder {
    /// BigCommerce order id.
    pub order_id: u64,
    /// What kind of order it is ("registered customer", "guest", ...).
    pub label: String,
    /// The order's `total_inc_tax`.
    pub order_total: Decimal,
    /// The QuickBooks invoice, once it exists.
    pub invoice: Option<Value>,
    /// The invoice's `TotalAmt`.
    pub invoice_total: Option<Decimal>,
    /// The sync record with its audit trail (`GET /admin/records/order/{id}`), when the
    /// connector has one.
    pub record: Option<Value>,
}

impl DemoOrder {
    /// The order became an invoice for exactly its total.
    pub fn invoiced(&self) -> bool {
        self.invoice_total == Some(self.order_total)
    }

    /// The sync record's `state`, if any.
    pub fn state(&self) -> Option<&str> {
        self.record.as_ref().and_then(|r| r["state"].as_str())
    }
}

/// What a demo run did.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// `http://127.0.0.1:PORT` of the connector.
    pub connector_url: String,
    /// The generated admin token (for `Authorization: Bearer ...`).
    pub admin_token: String,
    /// The generated webhook secret (header `x-ml-webhook-secret`).
    pub webhook_secret: String,
    /// The temporary data directory (removed when the demo stops).
    pub data_dir: PathBuf,
    /// The orders placed, in order.
    pub orders: Vec<DemoOrder>,
    /// Every invoice in the simulated company when the report was taken.
    pub invoice_count: usize,
}

impl DemoReport {
    /// Every order became an invoice for its exact total.
    pub fn all_invoiced(&self) -> bool {
        !self.orders.is_empty() && self.orders.iter().all(DemoOrder::invoiced)
    }
}

/// Reads a money value the APIs send as a string or a JSON number.
pub(super) fn money(v: &Value) -> Option<Decimal> {
    match v {
        Value::String(s) => Decimal::from_str(s.trim()).ok(),
        Value::Number(n) => Decimal::from_str(&n.to_string()).ok(),
        _ => None,
    }
}

/// The three orders every demo starts with: what a newcomer wants to see mapped.
pub(super) fn initial_orders() -> Vec<(&'static str, OrderShape)> {
    let base = OrderShape {
        lines: 2,
        tax_inclusive: false,
        tax_rate_bp: 800,
        coupon: false,
        manual_discount: false,
        shipping: true,
        handling: false,
        wrapping: false,
        guest: false,
        seed: 20_260_105,
    };
    vec![
        (
            "registered customer, 8 % sales tax, paid shipping",
            base.clone(),
        ),
        (
            "guest checkout, 6.25 % sales tax",
            OrderShape {
                lines: 1,
                tax_rate_bp: 625,
                guest: true,
                seed: base.seed + 1,
                ..base.clone()
            },
        ),
        (
            "tax-inclusive prices (20 % VAT), coupon, paid shipping",
            OrderShape {
                lines: 3,
                tax_inclusive: true,
                tax_rate_bp: 2000,
                coupon: true,
                seed: base.seed + 2,
                ..base
            },
        ),
    ]
}

pub(super) fn describe(shape: &OrderShape) -> String {
    let mut parts = vec![
        if shape.guest {
            "guest checkout".to_string()
        } else {
            "registered customer".to_string()
        },
        format!("{} line(s)", shape.lines),
    ];
    if shape.tax_inclusive {
        parts.push("tax-inclusive prices".into());
    }
    for (on, what) in [
        (shape.coupon, "coupon"),
        (shape.manual_discount, "manual discount"),
        (shape.shipping, "paid shipping"),
        (shape.handling, "handling"),
        (shape.wrapping, "gift wrapping"),
    ] {
        if on {
            parts.push(what.into());
        }
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_reads_strings_and_numbers_exactly() {
        assert_eq!(
            money(&Value::String("12.3400".into())),
            Some(Decimal::new(1234, 2))
        );
        assert_eq!(
            money(&serde_json::json!(107.6)),
            Some(Decimal::new(1076, 1))
        );
        assert_eq!(money(&Value::Null), None);
    }

    #[test]
    fn the_initial_orders_are_a_registered_customer_a_guest_and_a_tax_inclusive_coupon_order() {
        let orders = initial_orders();
        assert_eq!(orders.len(), 3);
        assert!(!orders[0].1.guest);
        assert!(orders[1].1.guest);
        let third = &orders[2].1;
        assert!(third.tax_inclusive && third.coupon && third.shipping);
    }
}
