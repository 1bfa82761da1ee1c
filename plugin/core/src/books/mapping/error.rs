//! Why an order cannot become an invoice.

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
         add a \"default\" entry to invoice.tax.codes in the mapping naming one of the company's tax codes \
         (e.g. {{\"default\": \"20.0% S\"}}), then replay the order"
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
