//! BigCommerce API models: ids, orders with their lines, consignments, fees and discounts,
//! customers, coupons, catalog products and the store profile.

use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::models::bigcommerce::lenient;
use crate::models::money::Money;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                lenient::u64_or_zero(d).map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// A BigCommerce order id.
    OrderId
);
id_type!(
    /// A BigCommerce customer id (0 = guest).
    CustomerId
);
id_type!(
    /// A BigCommerce catalog product id (0 = custom product).
    ProductId
);

/// A postal address as the v2 Orders API writes it (billing address, shipping address).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Address {
    #[serde(deserialize_with = "lenient::string")]
    pub first_name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub last_name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub company: String,
    #[serde(deserialize_with = "lenient::string")]
    pub street_1: String,
    #[serde(deserialize_with = "lenient::string")]
    pub street_2: String,
    #[serde(deserialize_with = "lenient::string")]
    pub city: String,
    #[serde(deserialize_with = "lenient::string")]
    pub state: String,
    #[serde(deserialize_with = "lenient::string")]
    pub zip: String,
    #[serde(deserialize_with = "lenient::string")]
    pub country: String,
    #[serde(deserialize_with = "lenient::string")]
    pub country_iso2: String,
    #[serde(deserialize_with = "lenient::string")]
    pub phone: String,
    #[serde(deserialize_with = "lenient::string")]
    pub email: String,
}

impl Address {
    /// Whether any postal field is filled in.
    pub fn has_postal_data(&self) -> bool {
        [
            &self.street_1,
            &self.street_2,
            &self.city,
            &self.state,
            &self.zip,
            &self.country,
        ]
        .iter()
        .any(|s| !s.trim().is_empty())
    }
}

/// A shipping consignment (`/shipping_addresses`, or `consignments.shipping[]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ShippingAddress {
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub id: u64,
    #[serde(flatten)]
    pub address: Address,
    #[serde(deserialize_with = "lenient::string")]
    pub shipping_method: String,
    pub base_cost: Money,
    pub cost_ex_tax: Money,
    pub cost_inc_tax: Money,
    pub cost_tax: Money,
    pub base_handling_cost: Money,
    pub handling_cost_ex_tax: Money,
    pub handling_cost_inc_tax: Money,
    pub handling_cost_tax: Money,
    /// Embedded only with `include=consignments.line_items`.
    #[serde(deserialize_with = "embedded_line_items")]
    pub line_items: Vec<OrderProduct>,
}

/// A pickup consignment.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct PickupConsignment {
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub id: u64,
    #[serde(deserialize_with = "lenient::string")]
    pub pickup_method_display_name: String,
    #[serde(deserialize_with = "embedded_line_items")]
    pub line_items: Vec<OrderProduct>,
}

/// A digital-download or email gift-certificate consignment.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RecipientConsignment {
    #[serde(deserialize_with = "lenient::string")]
    pub recipient_email: String,
    #[serde(deserialize_with = "embedded_line_items")]
    pub line_items: Vec<OrderProduct>,
}

/// Email consignments (gift certificates).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct EmailConsignments {
    #[serde(deserialize_with = "lenient::vec")]
    pub gift_certificates: Vec<RecipientConsignment>,
}

/// `consignments` as embedded with `consignment_structure=object`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Consignments {
    #[serde(deserialize_with = "lenient::vec")]
    pub shipping: Vec<ShippingAddress>,
    #[serde(deserialize_with = "lenient::vec")]
    pub pickups: Vec<PickupConsignment>,
    #[serde(deserialize_with = "lenient::vec")]
    pub downloads: Vec<RecipientConsignment>,
    pub email: EmailConsignments,
}

/// `line_items` are either embedded order products or, without the include, link objects
/// (`{"url":…,"resource":…}`, alone or in a list); links are dropped.
fn embedded_line_items<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<OrderProduct>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    let serde_json::Value::Array(items) = v else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let is_link = item
            .as_object()
            .is_some_and(|o| !o.contains_key("quantity") && !o.contains_key("product_id"));
        if is_link || !item.is_object() {
            continue;
        }
        let p: OrderProduct = serde_path_to_error::deserialize(item).map_err(|e| {
            serde::de::Error::custom(format!("line_items[{i}].{}: {}", e.path(), e.inner()))
        })?;
        out.push(p);
    }
    Ok(out)
}

/// `consignments`: the object form is used; the link form or an array means "not embedded".
fn consignments<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Consignments>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    let Some(o) = v.as_object() else {
        return Ok(None);
    };
    if !["shipping", "pickups", "downloads", "email"]
        .iter()
        .any(|k| o.contains_key(*k))
    {
        return Ok(None);
    }
    serde_path_to_error::deserialize(v)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("{}: {}", e.path(), e.inner())))
}

/// A custom fee (`include=fees`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Fee {
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub id: u64,
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    pub fee_type: String,
    #[serde(deserialize_with = "lenient::string")]
    pub display_name_customer: String,
    #[serde(deserialize_with = "lenient::string")]
    pub display_name_merchant: String,
    pub base_cost: Money,
    /// One documented example spells it `cost_exc_tax`.
    #[serde(alias = "cost_exc_tax")]
    pub cost_ex_tax: Money,
    pub cost_inc_tax: Money,
    pub cost_tax: Money,
    #[serde(deserialize_with = "lenient::opt_u64")]
    pub tax_class_id: Option<u64>,
}

/// A discount applied to one line (`applied_discounts[]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct AppliedDiscount {
    #[serde(deserialize_with = "lenient::string")]
    pub id: String,
    pub amount: Money,
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub code: String,
    /// `order` or `product`.
    #[serde(deserialize_with = "lenient::string")]
    pub target: String,
}

/// A chosen product option (`Size: S`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ProductOption {
    #[serde(deserialize_with = "lenient::string")]
    pub display_name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub display_value: String,
}

/// One order line (`/v2/orders/{id}/products`, or embedded in consignments).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct OrderProduct {
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub id: u64,
    pub order_id: OrderId,
    pub product_id: ProductId,
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub variant_id: u64,
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub order_address_id: u64,
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub name_customer: String,
    #[serde(deserialize_with = "lenient::string")]
    pub name_merchant: String,
    #[serde(deserialize_with = "lenient::string")]
    pub sku: String,
    /// `physical`, `digital` or `giftcertificate`.
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    pub product_type: String,
    #[serde(with = "crate::models::money::decimal_number")]
    pub quantity: Decimal,
    pub base_price: Money,
    pub price_ex_tax: Money,
    pub price_inc_tax: Money,
    pub price_tax: Money,
    pub base_total: Money,
    pub total_ex_tax: Money,
    pub total_inc_tax: Money,
    pub total_tax: Money,
    #[serde(deserialize_with = "lenient::vec")]
    pub applied_discounts: Vec<AppliedDiscount>,
    #[serde(deserialize_with = "lenient::vec")]
    pub product_options: Vec<ProductOption>,
    #[serde(deserialize_with = "lenient::bool")]
    pub is_bundled_product: bool,
    #[serde(deserialize_with = "lenient::opt_u64")]
    pub parent_order_product_id: Option<u64>,
    #[serde(deserialize_with = "lenient::string")]
    pub brand: String,
    #[serde(deserialize_with = "lenient::opt_u64")]
    pub gift_certificate_id: Option<u64>,
}

/// An order (`GET /v2/orders/{id}`), with the fields used for invoicing (reference §3.2).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Order {
    pub id: OrderId,
    pub customer_id: CustomerId,
    #[serde(deserialize_with = "lenient::datetime")]
    pub date_created: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "lenient::datetime")]
    pub date_modified: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub status_id: u64,
    #[serde(deserialize_with = "lenient::string")]
    pub status: String,
    #[serde(deserialize_with = "lenient::string")]
    pub custom_status: String,
    pub subtotal_ex_tax: Money,
    pub subtotal_inc_tax: Money,
    pub subtotal_tax: Money,
    pub base_shipping_cost: Money,
    pub shipping_cost_ex_tax: Money,
    pub shipping_cost_inc_tax: Money,
    pub shipping_cost_tax: Money,
    pub base_handling_cost: Money,
    pub handling_cost_ex_tax: Money,
    pub handling_cost_inc_tax: Money,
    pub handling_cost_tax: Money,
    pub base_wrapping_cost: Money,
    pub wrapping_cost_ex_tax: Money,
    pub wrapping_cost_inc_tax: Money,
    pub wrapping_cost_tax: Money,
    pub total_ex_tax: Money,
    pub total_inc_tax: Money,
    pub total_tax: Money,
    #[serde(deserialize_with = "lenient::bool")]
    pub is_tax_inclusive_pricing: bool,
    pub discount_amount: Money,
    pub coupon_discount: Money,
    pub store_credit_amount: Money,
    pub gift_certificate_amount: Money,
    #[serde(deserialize_with = "lenient::string")]
    pub payment_method: String,
    #[serde(deserialize_with = "lenient::string")]
    pub payment_status: String,
    /// The gateway's transaction reference (QuickBooks `PaymentRefNum`, cut to 21 characters).
    #[serde(deserialize_with = "lenient::string")]
    pub payment_provider_id: String,
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub currency_id: u64,
    /// Display currency.
    #[serde(deserialize_with = "lenient::string")]
    pub currency_code: String,
    #[serde(with = "crate::models::money::decimal_number")]
    pub currency_exchange_rate: Decimal,
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub default_currency_id: u64,
    /// Transactional currency (what the shopper paid in): QuickBooks `CurrencyRef`.
    #[serde(deserialize_with = "lenient::string")]
    pub default_currency_code: String,
    #[serde(deserialize_with = "lenient::string")]
    pub store_default_currency_code: String,
    /// Store default currency → transactional currency: one unit of the store's default
    /// currency is worth this many units of `default_currency_code`.
    #[serde(with = "crate::models::money::decimal_number")]
    pub store_default_to_transactional_exchange_rate: Decimal,
    pub billing_address: Address,
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub shipping_address_count: u64,
    #[serde(deserialize_with = "lenient::string")]
    pub customer_message: String,
    #[serde(deserialize_with = "lenient::string")]
    pub staff_notes: String,
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub channel_id: u64,
    #[serde(deserialize_with = "lenient::string")]
    pub order_source: String,
    #[serde(deserialize_with = "lenient::string")]
    pub external_id: String,
    #[serde(deserialize_with = "lenient::bool")]
    pub is_deleted: bool,
    /// Present with `include=consignments…&consignment_structure=object`.
    #[serde(deserialize_with = "consignments")]
    pub consignments: Option<Consignments>,
    /// Present with `include=fees` (a link object otherwise, read as empty).
    #[serde(deserialize_with = "lenient::vec")]
    pub fees: Vec<Fee>,
    /// The tax class of each line, from `/v2/orders/{id}/taxes?details=true`: read only for
    /// VAT/GST companies (never sent by BigCommerce on the order itself).
    #[serde(skip)]
    pub tax_classes: Option<TaxClasses>,
}

/// One row of `GET /v2/orders/{id}/taxes?details=true` (the fields the books read).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct OrderTax {
    /// The order product (for `line_item_type` `item` or `handling`); null otherwise.
    #[serde(deserialize_with = "lenient::opt_u64")]
    pub order_product_id: Option<u64>,
    /// `item`, `shipping`, `handling` or `gift-wrapping`.
    #[serde(deserialize_with = "lenient::string")]
    pub line_item_type: String,
    /// The tax class name (`Default Tax Class`, `Automatic Tax`, a merchant's class, …).
    #[serde(deserialize_with = "lenient::string")]
    pub class: String,
}

/// The BigCommerce tax class of an order's lines and charges (from its tax rows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaxClasses {
    /// Order product id → tax class name.
    pub products: std::collections::BTreeMap<u64, String>,
    pub shipping: Option<String>,
    pub handling: Option<String>,
    pub wrapping: Option<String>,
}

impl TaxClasses {
    /// The classes named by an order's tax rows: a line taxed by several rows of one class
    /// has that class; the first row of a line wins when rows disagree.
    pub fn from_rows(rows: &[OrderTax]) -> TaxClasses {
        let mut out = TaxClasses::default();
        for r in rows {
            let class = r.class.trim();
            if class.is_empty() {
                continue;
            }
            let slot = match (r.line_item_type.trim(), r.order_product_id) {
                ("item", Some(id)) => {
                    out.products.entry(id).or_insert_with(|| class.to_string());
                    continue;
                }
                ("shipping", _) => &mut out.shipping,
                ("handling", _) => &mut out.handling,
                ("gift-wrapping" | "wrapping", _) => &mut out.wrapping,
                _ => continue,
            };
            slot.get_or_insert_with(|| class.to_string());
        }
        out
    }
}

impl Order {
    /// Guests have customer id 0 and no customer record.
    pub fn is_guest(&self) -> bool {
        self.customer_id.0 == 0
    }

    /// The first shipping consignment, if the order has one embedded.
    pub fn first_shipping_address(&self) -> Option<&ShippingAddress> {
        self.consignments.as_ref().and_then(|c| c.shipping.first())
    }

    /// Sum of the custom fees, ex tax.
    pub fn fees_ex_tax(&self) -> Money {
        self.fees.iter().map(|f| f.cost_ex_tax).sum()
    }
}

/// All order lines embedded in the order's consignments, in consignment order (shipping,
/// pickups, downloads, gift certificates), each line once (a line id seen twice is kept once).
pub fn line_items(order: &Order) -> Vec<OrderProduct> {
    let Some(c) = &order.consignments else {
        return Vec::new();
    };
    let groups = c
        .shipping
        .iter()
        .map(|s| &s.line_items)
        .chain(c.pickups.iter().map(|p| &p.line_items))
        .chain(c.downloads.iter().map(|d| &d.line_items))
        .chain(c.email.gift_certificates.iter().map(|g| &g.line_items));
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for lines in groups {
        for l in lines {
            if l.id == 0 || seen.insert(l.id) {
                out.push(l.clone());
            }
        }
    }
    out
}

/// A coupon applied to an order (`/v2/orders/{id}/coupons`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Coupon {
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub id: u64,
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub coupon_id: u64,
    pub order_id: OrderId,
    #[serde(deserialize_with = "lenient::string")]
    pub code: String,
    /// Face value: money or a percentage depending on `coupon_type`.
    #[serde(with = "crate::models::money::decimal_number")]
    pub amount: Decimal,
    /// 0 per item, 1 percentage, 2 per total, 3 shipping, 4 free shipping, 5 promotion.
    #[serde(rename = "type", deserialize_with = "lenient::u64_or_zero")]
    pub coupon_type: u64,
    /// Actual money off.
    pub discount: Money,
}

/// A customer address (v3, `include=addresses`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct CustomerAddress {
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub id: u64,
    pub customer_id: CustomerId,
    #[serde(deserialize_with = "lenient::string")]
    pub first_name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub last_name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub company: String,
    #[serde(deserialize_with = "lenient::string")]
    pub address1: String,
    #[serde(deserialize_with = "lenient::string")]
    pub address2: String,
    #[serde(deserialize_with = "lenient::string")]
    pub city: String,
    #[serde(deserialize_with = "lenient::string")]
    pub state_or_province: String,
    #[serde(deserialize_with = "lenient::string")]
    pub postal_code: String,
    #[serde(deserialize_with = "lenient::string")]
    pub country: String,
    #[serde(deserialize_with = "lenient::string")]
    pub country_code: String,
    #[serde(deserialize_with = "lenient::string")]
    pub phone: String,
    #[serde(deserialize_with = "lenient::string")]
    pub address_type: String,
}

/// A registered customer (v3 `/customers`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Customer {
    pub id: CustomerId,
    #[serde(deserialize_with = "lenient::string")]
    pub email: String,
    #[serde(deserialize_with = "lenient::string")]
    pub first_name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub last_name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub company: String,
    #[serde(deserialize_with = "lenient::string")]
    pub phone: String,
    #[serde(deserialize_with = "lenient::string")]
    pub notes: String,
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub customer_group_id: u64,
    #[serde(deserialize_with = "lenient::datetime")]
    pub date_created: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "lenient::datetime")]
    pub date_modified: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "lenient::vec")]
    pub addresses: Vec<CustomerAddress>,
}

/// A catalog product (`/v3/catalog/products/{id}`), for category and brand rules.
/// Serializable so the connector can cache it (it reads back through the same lenient fields).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct CatalogProduct {
    pub id: ProductId,
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub sku: String,
    #[serde(deserialize_with = "lenient::vec_u64")]
    pub categories: Vec<u64>,
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub brand_id: u64,
}

/// One refunded item of a refund (`item_type` `PRODUCT`, `SHIPPING`, `HANDLING`,
/// `GIFT_WRAPPING`, `FEE` or `ORDER`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct RefundItem {
    #[serde(deserialize_with = "lenient::string")]
    pub item_type: String,
    /// Order-product id (`PRODUCT`, `GIFT_WRAPPING`), order-address id (`SHIPPING`,
    /// `HANDLING`), order id (`ORDER`, `FEE`).
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub item_id: u64,
    /// Units refunded (`PRODUCT` only).
    #[serde(with = "crate::models::money::decimal_number")]
    pub quantity: Decimal,
    /// The amount refunded for this item, ex tax; `null` for a `PRODUCT` refunded by quantity.
    #[serde(with = "crate::models::money::opt")]
    pub requested_amount: Option<Money>,
    #[serde(deserialize_with = "lenient::string")]
    pub reason: String,
}

/// One payment a refund was paid back through.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct RefundPayment {
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub id: u64,
    /// `storecredit` when the shopper got store credit back.
    #[serde(deserialize_with = "lenient::string")]
    pub provider_id: String,
    pub amount: Money,
    #[serde(deserialize_with = "lenient::bool")]
    pub offline: bool,
    #[serde(deserialize_with = "lenient::bool")]
    pub is_declined: bool,
}

/// A refund (`GET /v3/orders/{id}/payment_actions/refunds`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Refund {
    #[serde(deserialize_with = "lenient::u64_or_zero")]
    pub id: u64,
    pub order_id: OrderId,
    #[serde(deserialize_with = "lenient::datetime")]
    pub created: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "lenient::string")]
    pub reason: String,
    /// What the shopper gets back, tax included.
    pub total_amount: Money,
    /// Tax refunded (may be negative).
    pub total_tax: Money,
    #[serde(deserialize_with = "lenient::vec")]
    pub items: Vec<RefundItem>,
    #[serde(deserialize_with = "lenient::vec")]
    pub payments: Vec<RefundPayment>,
}

impl Refund {
    /// Whether every payment of the refund went back as store credit.
    pub fn is_store_credit(&self) -> bool {
        !self.payments.is_empty()
            && self
                .payments
                .iter()
                .all(|p| p.provider_id.eq_ignore_ascii_case("storecredit"))
    }
}

/// Store profile (`/v2/store`), for the status page.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Store {
    #[serde(deserialize_with = "lenient::string")]
    pub id: String,
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub domain: String,
    #[serde(deserialize_with = "lenient::string")]
    pub secure_url: String,
    /// The store's default currency.
    #[serde(deserialize_with = "lenient::string")]
    pub currency: String,
    /// The store's time zone setting.
    pub timezone: StoreTimezone,
}

/// The store's time zone (`/v2/store` → `timezone`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct StoreTimezone {
    /// IANA name (`America/Chicago`).
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
}
