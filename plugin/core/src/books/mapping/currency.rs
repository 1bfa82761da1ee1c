//! The currency an order is booked in (CONTRACT §11).
//!
//! BigCommerce has two currencies on an order: the *display* currency (`currency_code`, what
//! prices were shown in) and the *transactional* one (`default_currency_code`, what the shopper
//! paid in, and what every amount on the order is stated in). The invoice posts in the
//! transactional currency. When BigCommerce leaves it empty, the order is in the store's default
//! currency (`store_default_currency_code`, else `/v2/store` → `currency`) — never the display
//! currency, whose amounts the order does not carry.
//!
//! A foreign order (transactional ≠ store default) carries QuickBooks' `ExchangeRate`: home
//! units per foreign unit. BigCommerce's `store_default_to_transactional_exchange_rate` is the
//! other way round (one unit of the store's default currency is worth that many transactional
//! units: 1 USD = 0.92 EUR gives 0.92), so the rate sent is its inverse, to
//! [`RATE_DECIMALS`] places. The store's default currency is taken to be the QuickBooks company's
//! home currency (QuickBooks checks the currency itself: one it has not enabled is refused).
//!
//! Amounts are 2-decimal money here: a currency with other minor units (JPY 0, KWD 3) is refused
//! with [`MappingError::CurrencyDecimals`], never rounded silently.

use rust_decimal::{Decimal, RoundingStrategy};

use crate::books::mapping::dates::StoreFacts;
use crate::books::mapping::error::MappingError;
use crate::models::bigcommerce::Order;

/// Decimal places of the `ExchangeRate` sent (BigCommerce states its rate to 10).
pub const RATE_DECIMALS: u32 = 10;

/// The currency an invoice posts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderCurrency {
    /// ISO 4217 code, upper-case.
    pub code: String,
    /// Home units per unit of `code`; `Some` only for a foreign order.
    pub exchange_rate: Option<Decimal>,
}

impl OrderCurrency {
    /// Whether the order is in a currency other than the store's default.
    pub fn is_foreign(&self) -> bool {
        self.exchange_rate.is_some()
    }
}

/// ISO 4217 minor units of the currencies that have other than 2 (the rest have 2).
pub fn minor_units(code: &str) -> u32 {
    match code {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}

fn code(s: &str) -> String {
    s.trim().to_ascii_uppercase()
}

/// The store's default currency as far as the order and the store facts say.
pub fn store_default_currency(order: &Order, store: &StoreFacts) -> String {
    let from_order = code(&order.store_default_currency_code);
    if from_order.is_empty() {
        code(&store.default_currency)
    } else {
        from_order
    }
}

/// The currency `order` posts in; `None` when nothing names one (the company's home currency).
pub fn order_currency(
    order: &Order,
    store: &StoreFacts,
) -> Result<Option<OrderCurrency>, MappingError> {
    let home = store_default_currency(order, store);
    let transactional = code(&order.default_currency_code);
    let code = if transactional.is_empty() {
        home.clone()
    } else {
        transactional
    };
    if code.is_empty() {
        return Ok(None);
    }
    let decimals = minor_units(&code);
    if decimals != 2 {
        return Err(MappingError::CurrencyDecimals { code, decimals });
    }
    if home.is_empty() || home == code {
        return Ok(Some(OrderCurrency {
            code,
            exchange_rate: None,
        }));
    }
    let bc_rate = order.store_default_to_transactional_exchange_rate;
    let rate = (bc_rate > Decimal::ZERO)
        .then(|| Decimal::ONE.checked_div(bc_rate))
        .flatten()
        .map(|r| {
            r.round_dp_with_strategy(RATE_DECIMALS, RoundingStrategy::MidpointAwayFromZero)
                .normalize()
        })
        .filter(|r| *r > Decimal::ZERO)
        .ok_or_else(|| MappingError::MissingExchangeRate {
            code: code.clone(),
            home: home.clone(),
            rate: bc_rate.to_string(),
        })?;
    Ok(Some(OrderCurrency {
        code,
        exchange_rate: Some(rate),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn order(transactional: &str, display: &str, store_default: &str, rate: &str) -> Order {
        Order {
            default_currency_code: transactional.into(),
            currency_code: display.into(),
            store_default_currency_code: store_default.into(),
            store_default_to_transactional_exchange_rate: d(rate),
            ..Order::default()
        }
    }

    fn store(currency: &str) -> StoreFacts {
        StoreFacts {
            default_currency: currency.into(),
            ..StoreFacts::default()
        }
    }

    #[test]
    fn a_home_currency_order_has_no_exchange_rate() {
        let c = order_currency(&order("USD", "USD", "USD", "1"), &store("USD"))
            .unwrap()
            .unwrap();
        assert_eq!(c.code, "USD");
        assert_eq!(c.exchange_rate, None);
        assert!(!c.is_foreign());
    }

    #[test]
    fn a_foreign_order_sends_home_units_per_foreign_unit() {
        // 1 USD = 0.8 EUR in BigCommerce's terms → 1 EUR = 1.25 USD in QuickBooks' terms.
        let c = order_currency(&order("eur", "EUR", "USD", "0.8000000000"), &store(""))
            .unwrap()
            .unwrap();
        assert_eq!(c.code, "EUR");
        assert_eq!(c.exchange_rate, Some(d("1.25")));
        // A rate whose inverse does not terminate is cut to 10 places.
        let c = order_currency(&order("GBP", "GBP", "USD", "0.75"), &store(""))
            .unwrap()
            .unwrap();
        assert_eq!(c.exchange_rate, Some(d("1.3333333333")));
    }

    #[test]
    fn an_empty_transactional_currency_falls_back_to_the_store_default_never_the_display_one() {
        // Displayed in EUR, paid in the store's currency.
        let c = order_currency(&order("", "EUR", "", "1"), &store("USD"))
            .unwrap()
            .unwrap();
        assert_eq!(c.code, "USD");
        assert_eq!(c.exchange_rate, None);
        let c = order_currency(&order("", "EUR", "CAD", "1"), &store("USD"))
            .unwrap()
            .unwrap();
        assert_eq!(c.code, "CAD");
        // Nothing names a currency: the company's home currency (no CurrencyRef).
        assert_eq!(
            order_currency(&order("", "EUR", "", "1"), &store("")).unwrap(),
            None
        );
    }

    #[test]
    fn currencies_without_two_decimals_are_refused_by_name() {
        for (c, places) in [("JPY", 0), ("KWD", 3)] {
            let e = order_currency(&order(c, c, "USD", "150"), &store("USD")).unwrap_err();
            assert_eq!(
                e,
                MappingError::CurrencyDecimals {
                    code: c.into(),
                    decimals: places
                }
            );
            assert!(e.to_string().contains(c));
        }
    }

    #[test]
    fn a_foreign_order_without_a_rate_is_refused() {
        let e = order_currency(&order("EUR", "EUR", "USD", "0"), &store("USD")).unwrap_err();
        assert!(matches!(e, MappingError::MissingExchangeRate { .. }));
        assert!(e.to_string().contains("EUR"), "{e}");
    }
}
