//! The mapping engine: BigCommerce order → QuickBooks invoice (CONTRACT.md §4). Pure.
//!
//! Flow for a job: [`plan()`] says which catalog products / customer group to fetch; after
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
//! - `TxnDate` is the calendar date of `date_created` in the store's time zone ([`dates`]).
//! - The invoice posts in the order's transactional currency, with `ExchangeRate` when it is
//!   foreign ([`currency`]).
//! - Product lines keep BigCommerce's quantity (`Qty × UnitPrice = Amount`, split in two lines
//!   when no price fits), gift certificates sold go to the gift-certificate item, and a discount
//!   over lines of several classes posts per class ([`lines`]).
//! - Tax follows the company (`books::tax`): mode `auto` is decided per company before a document
//!   is laid out. For a VAT/GST company ([`TaxMode::Vat`]) every sales line carries the
//!   `TaxCodeRef` its BigCommerce tax class maps to (`tax.codes`, else `default`; the classes come
//!   from the order's tax rows, `Order::tax_classes`), and the lines stay BigCommerce's ex-tax
//!   amounts with BigCommerce's tax as `TxnTaxDetail.TotalTax`. `GlobalTaxCalculation` is
//!   `TaxExcluded`, or `TaxInclusive` for a tax-inclusive store, whose lines also state
//!   BigCommerce's inc-tax amount in `TaxInclusiveAmt` (QuickBooks keeps a line's `Amount` net
//!   either way), so the net amounts, the tax and the total are BigCommerce's own figures.
//!   Discounts of a tax-inclusive store are read as BigCommerce states them ([`totals`]:
//!   `discount_includes_tax`).
//!   US companies never get `GlobalTaxCalculation`.
//!
//! Files: [`config`] (the configuration and its validation), [`plan`](mod@plan) (rule matching and what
//! to fetch), [`totals`] (the tie-out check), [`invoice`] (the layout), [`refund`] (refund
//! documents laid out with the same rules), [`dates`] (the invoice date in the store's zone),
//! [`currency`] (the currency and exchange rate), [`lines`] (quantities and prices, the
//! discount per class), [`error`].

pub mod config;
pub mod currency;
pub mod dates;
pub mod error;
pub mod invoice;
pub mod lines;
pub mod plan;
pub mod refund;
pub mod totals;

pub use config::*;
pub use dates::{StoreFacts, ZoneSource};
pub use error::*;
pub use invoice::*;
pub use plan::*;
pub use refund::*;
pub use totals::*;
