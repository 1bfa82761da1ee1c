//! Why an order cannot become an invoice.

use crate::books::mapping::dates::ZoneSource;
use crate::models::money::Money;

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
        "this QuickBooks company books VAT/GST, so every line needs a tax code, and invoice.tax.codes has none for {class}: \
         add an entry for that class, or a \"default\" entry, to invoice.tax.codes in the mapping naming one of the \
         company's tax codes (e.g. {{\"default\": \"20.0% S\"}}), then replay the order"
    )]
    MissingTaxCode { class: String },
    #[error(
        "Tax code '{name}' not found in QuickBooks: check invoice.tax.codes in the mapping against the company's tax codes"
    )]
    UnknownTaxCode { name: String },
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
    #[error("{}", zone_message(name, *from))]
    UnknownTimeZone { name: String, from: ZoneSource },
    #[error(
        "the order is in {code}, a currency with {decimals} decimal places; the connector books only \
         currencies with 2 (amounts are never rounded silently): post this order by hand in QuickBooks"
    )]
    CurrencyDecimals { code: String, decimals: u32 },
    #[error(
        "the order is in {code} but the store's default currency is {home} and BigCommerce gave no usable \
         exchange rate (store_default_to_transactional_exchange_rate = '{rate}'): check the order's currency \
         settings in BigCommerce, then replay it"
    )]
    MissingExchangeRate {
        code: String,
        home: String,
        rate: String,
    },
    #[error(
        "the order has nothing to invoice (no priced lines, charges or tax): nothing was posted"
    )]
    NothingToInvoice,
    #[error(
        "the order's amounts are too large to add up exactly ({what}): check the order in BigCommerce; \
         nothing was posted"
    )]
    AmountTooLarge { what: String },
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
    #[error(
        "refund {refund_id} refunds {item_type} item {item_id}, which is not part of the order: \
         check the refund in BigCommerce, then replay the order"
    )]
    RefundItemUnknown {
        refund_id: u64,
        item_type: String,
        item_id: u64,
    },
    #[error(
        "refund {refund_id} has an item of type '{item_type}', which the connector does not know: \
         report it, with the refund"
    )]
    RefundItemType { refund_id: u64, item_type: String },
    #[error(
        "refund {refund_id} has a {item_type} item without an amount: check the refund in BigCommerce, then replay the order"
    )]
    RefundItemWithoutAmount { refund_id: u64, item_type: String },
    #[error(
        "refund {refund_id}'s items and tax do not add up to its total: BigCommerce says {bigcommerce}, \
         its items and tax add up to {computed} (difference {difference}). Nothing was posted for it: \
         check the refund in BigCommerce, then replay the order"
    )]
    RefundDoesNotTie {
        refund_id: u64,
        bigcommerce: Money,
        computed: Money,
        difference: Money,
    },
    #[error(
        "refund {refund_id} has nothing to refund (no items, no tax): nothing was posted for it"
    )]
    NothingToRefund { refund_id: u64 },
}

fn zone_message(name: &str, from: ZoneSource) -> String {
    match from {
        ZoneSource::Variable => format!(
            "the store_timezone variable is '{name}', which is not an IANA time zone: set it to a name \
             such as America/Los_Angeles (or empty to use the store's setting), then replay the order"
        ),
        ZoneSource::Store => format!(
            "BigCommerce's store time zone is '{name}', which is not an IANA time zone: set the \
             store_timezone variable to the store's zone (such as America/Los_Angeles), then replay the order"
        ),
    }
}
