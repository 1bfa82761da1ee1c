//! BigCommerce API models and request builders.
//!
//! The models accept what the API really sends (reference §3-4): money as strings or numbers,
//! `""`/`null`/`{}` for "no value", numbers as strings, extra keys. Every field has a default so
//! a missing key never fails a sync; decoding errors name the JSON path that failed.

use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::http::{HttpRequest, HttpResponse, Method};
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

/// Lenient field decoders for what BigCommerce actually sends.
pub mod lenient {
    use std::fmt;

    use chrono::{DateTime, Utc};
    use serde::de::{self, Deserializer, IgnoredAny, Visitor};

    struct U64Visitor;
    impl<'de> Visitor<'de> for U64Visitor {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a non-negative integer (or its text)")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("{v} is negative")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            // Integers sometimes arrive as `4.0`; only whole values are accepted.
            let text = format!("{v}");
            let whole = text.strip_suffix(".0").unwrap_or(&text);
            whole
                .parse()
                .map(Some)
                .map_err(|_| E::custom(format!("{v} is not a whole number")))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let t = v.trim();
            if t.is_empty() {
                return Ok(None);
            }
            t.parse()
                .map(Some)
                .map_err(|_| E::custom(format!("'{v}' is not an integer")))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(u64::from(v)))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(U64Visitor)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
            if m.next_key::<IgnoredAny>()?.is_some() {
                return Err(de::Error::custom("expected an integer, found an object"));
            }
            Ok(None)
        }
    }

    /// Integer from a number or numeric string; blanks are 0.
    pub fn u64_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(U64Visitor).map(Option::unwrap_or_default)
    }

    /// Integer from a number or numeric string; blanks are `None`.
    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_any(U64Visitor)
    }

    struct StringVisitor;
    impl<'de> Visitor<'de> for StringVisitor {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
            Ok(format!("{v}"))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_unit<E: de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
            d.deserialize_any(StringVisitor)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<String, A::Error> {
            // `{}` (e.g. `credit_card_type`) and other objects carry no text we use.
            while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(String::new())
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<String, A::Error> {
            while s.next_element::<IgnoredAny>()?.is_some() {}
            Ok(String::new())
        }
    }

    /// Text from a string or a scalar; `null`, `{}` and `[]` are `""`.
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        d.deserialize_any(StringVisitor)
    }

    /// A boolean from `true`/`false`, `1`/`0`, `"true"`/`"1"`; blanks are false.
    pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
                Ok(v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
                Ok(v != 0)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
                Ok(v != 0)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" => Ok(true),
                    "false" | "0" | "no" | "" => Ok(false),
                    _ => Err(E::custom(format!("'{v}' is not a boolean"))),
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_none<E: de::Error>(self) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
                d.deserialize_any(V)
            }
        }
        d.deserialize_any(V)
    }

    /// An RFC 2822 (v2) or RFC 3339 (v3) timestamp; blanks are `None`.
    pub fn datetime<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let s = string(d)?;
        let t = s.trim();
        if t.is_empty() {
            return Ok(None);
        }
        DateTime::parse_from_rfc2822(t)
            .or_else(|_| DateTime::parse_from_rfc3339(t))
            .map(|dt| Some(dt.with_timezone(&Utc)))
            .map_err(|_| de::Error::custom(format!("'{s}' is not an RFC 2822 or RFC 3339 date")))
    }

    /// A list; `null`, `""`, `{}` and link objects (`{"url":…,"resource":…}`) are empty.
    /// A malformed element is an error naming its index (never silently dropped).
    pub fn vec<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        let v = <serde_json::Value as serde::Deserialize>::deserialize(d)?;
        let serde_json::Value::Array(items) = v else {
            return Ok(Vec::new());
        };
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                serde_path_to_error::deserialize(item).map_err(|e| {
                    let path = e.path().to_string();
                    let at = if path == "." {
                        format!("[{i}]")
                    } else {
                        format!("[{i}].{path}")
                    };
                    de::Error::custom(format!("{at}: {}", e.inner()))
                })
            })
            .collect()
    }

    /// A list of integers written as numbers or numeric strings.
    pub fn vec_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        #[derive(serde::Deserialize)]
        struct L(#[serde(deserialize_with = "u64_or_zero")] u64);
        vec::<D, L>(d).map(|v| v.into_iter().map(|l| l.0).collect())
    }
}

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
    #[serde(deserialize_with = "lenient::string")]
    pub currency: String,
}

// ---------------------------------------------------------------------------------------------
// Errors and parsing

/// Why a BigCommerce response could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BcError {
    /// The body is not the JSON we expected; `path` says where.
    #[error(
        "BigCommerce sent a response we could not read at `{path}`: {message}. \
         This is a connector bug or an API change: report it with the order id"
    )]
    Decode { path: String, message: String },
    /// BigCommerce answered with an error status (boxed: it carries headers and details).
    #[error("{0}")]
    Api(Box<BcApiError>),
}

impl From<BcApiError> for BcError {
    fn from(e: BcApiError) -> Self {
        BcError::Api(Box::new(e))
    }
}

/// One error from BigCommerce, from either the v2 array shape or the v3 object shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("BigCommerce answered HTTP {status}: {message}{}", advice(*status))]
pub struct BcApiError {
    pub status: u16,
    pub message: String,
    /// Field-level reasons (v3 `errors`, v2 `details`), as `(field, reason)`.
    pub details: Vec<(String, String)>,
    pub rate_limit: RateLimit,
}

fn advice(status: u16) -> &'static str {
    match status {
        401 => " (check bigcommerce_access_token)",
        403 => " (the API account lacks a scope: grant orders, customers and products read access)",
        404 => " (the resource does not exist or was deleted)",
        429 => " (rate limited; the sync will retry after the window resets)",
        500..=599 => " (BigCommerce is having trouble; the sync will retry)",
        _ => "",
    }
}

impl BcApiError {
    /// Whether trying again later can help (429, 5xx).
    pub fn is_retryable(&self) -> bool {
        self.status == 429 || self.status >= 500
    }
}

/// Rate-limit headers of a BigCommerce response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// `X-Rate-Limit-Time-Reset-Ms`: milliseconds until the window resets.
    pub reset_ms: Option<u64>,
    /// `X-Rate-Limit-Requests-Left`.
    pub requests_left: Option<u64>,
    /// `X-Rate-Limit-Requests-Quota`.
    pub quota: Option<u64>,
    /// `X-Rate-Limit-Time-Window-Ms`.
    pub window_ms: Option<u64>,
    /// `X-Retry-After` (seconds), sent on some responses.
    pub retry_after_secs: Option<u64>,
}

impl RateLimit {
    /// Reads the headers (case-insensitively); absent or garbled headers are `None`.
    pub fn from_response(resp: &HttpResponse) -> Self {
        let n = |name: &str| resp.header(name).and_then(|v| v.trim().parse::<u64>().ok());
        RateLimit {
            reset_ms: n("X-Rate-Limit-Time-Reset-Ms"),
            requests_left: n("X-Rate-Limit-Requests-Left"),
            quota: n("X-Rate-Limit-Requests-Quota"),
            window_ms: n("X-Rate-Limit-Time-Window-Ms"),
            retry_after_secs: n("X-Retry-After").or_else(|| n("Retry-After")),
        }
    }

    /// How long to wait before the next call, in milliseconds: the reset time when the quota
    /// is spent (or a retry-after was given), else nothing.
    pub fn wait_ms(&self) -> Option<u64> {
        if let Some(s) = self.retry_after_secs {
            return Some(s.saturating_mul(1000));
        }
        match self.requests_left {
            Some(0) => self.reset_ms,
            _ => None,
        }
    }
}

/// Turns an error response (v2 array or v3 object, or anything else) into a [`BcApiError`].
pub fn parse_api_error(resp: &HttpResponse) -> BcApiError {
    let rate_limit = RateLimit::from_response(resp);
    let mut message = String::new();
    let mut details = Vec::new();
    let value: Option<serde_json::Value> = serde_json::from_slice(&resp.body).ok();
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match &value {
        Some(serde_json::Value::Array(items)) => {
            let msgs: Vec<String> = items
                .iter()
                .filter_map(|i| i.get("message").map(text))
                .collect();
            message = msgs.join("; ");
            for i in items {
                if let Some(serde_json::Value::Object(d)) = i.get("details") {
                    details.extend(d.iter().map(|(k, v)| (k.clone(), text(v))));
                }
            }
        }
        Some(serde_json::Value::Object(o)) => {
            message = o
                .get("title")
                .or_else(|| o.get("message"))
                .map(text)
                .unwrap_or_default();
            if let Some(serde_json::Value::Object(e)) = o.get("errors") {
                details.extend(e.iter().map(|(k, v)| (k.clone(), text(v))));
            }
        }
        _ => {}
    }
    if message.is_empty() {
        let body = String::from_utf8_lossy(&resp.body);
        message = body.chars().take(200).collect::<String>();
        if message.trim().is_empty() {
            message = "no error message".into();
        }
    }
    if !details.is_empty() {
        let d: Vec<String> = details.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        message = format!("{message} ({})", d.join(", "));
    }
    BcApiError {
        status: resp.status,
        message,
        details,
        rate_limit,
    }
}

/// Decodes a JSON body, naming the path of the first problem.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, BcError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| BcError::Decode {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// Checks the status, then decodes the body.
pub fn parse_response<T: DeserializeOwned>(resp: &HttpResponse) -> Result<T, BcError> {
    if !resp.is_success() {
        return Err(parse_api_error(resp).into());
    }
    decode(&resp.body)
}

/// An order response.
pub fn parse_order(resp: &HttpResponse) -> Result<Order, BcError> {
    parse_response(resp)
}

/// An order-products page (a 204 or empty body is an empty page).
pub fn parse_order_products(resp: &HttpResponse) -> Result<Vec<OrderProduct>, BcError> {
    if resp.status == 204 || (resp.is_success() && resp.body.iter().all(u8::is_ascii_whitespace)) {
        return Ok(Vec::new());
    }
    parse_response(resp)
}

#[derive(Deserialize)]
struct DataList<T> {
    #[serde(default = "Vec::new")]
    data: Vec<T>,
}

#[derive(Deserialize)]
struct DataOne<T> {
    data: T,
}

/// A v3 `/customers` response; an unknown id gives an empty list.
pub fn parse_customers(resp: &HttpResponse) -> Result<Vec<Customer>, BcError> {
    parse_response::<DataList<Customer>>(resp).map(|l| l.data)
}

/// A v3 catalog product response (`{"data": {...}}`).
pub fn parse_catalog_product(resp: &HttpResponse) -> Result<CatalogProduct, BcError> {
    parse_response::<DataOne<CatalogProduct>>(resp).map(|d| d.data)
}

/// A `/v2/store` response.
pub fn parse_store(resp: &HttpResponse) -> Result<Store, BcError> {
    parse_response(resp)
}

// ---------------------------------------------------------------------------------------------
// Request builders

fn get(base: &str, store_hash: &str, token: &str, path_and_query: &str) -> HttpRequest {
    let base = base.trim_end_matches('/');
    let hash =
        percent_encoding::utf8_percent_encode(store_hash, percent_encoding::NON_ALPHANUMERIC);
    HttpRequest::new(
        Method::Get,
        format!("{base}/stores/{hash}/{path_and_query}"),
    )
    .header("X-Auth-Token", token)
    .header("Accept", "application/json")
    .header("User-Agent", "ml-connector")
}

/// The order with its line items, shipping, fees, discounts and tax in one call:
/// `GET {base}/stores/{hash}/v2/orders/{id}?include=consignments.line_items,fees&consignment_structure=object`.
pub fn order_with_line_items(
    base: &str,
    store_hash: &str,
    token: &str,
    id: OrderId,
) -> HttpRequest {
    get(
        base,
        store_hash,
        token,
        &format!(
            "v2/orders/{id}?include=consignments.line_items,fees&consignment_structure=object"
        ),
    )
}

/// One page (1-based, 250 per page) of an order's products: the fallback when consignments
/// are not embedded.
pub fn order_products(
    base: &str,
    store_hash: &str,
    token: &str,
    id: OrderId,
    page: u32,
) -> HttpRequest {
    get(
        base,
        store_hash,
        token,
        &format!("v2/orders/{id}/products?limit=250&page={}", page.max(1)),
    )
}

/// Registered customers by id, with addresses (`/v3/customers?id:in=…&include=addresses`).
pub fn customers_by_ids(
    base: &str,
    store_hash: &str,
    token: &str,
    ids: &[CustomerId],
) -> HttpRequest {
    let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    get(
        base,
        store_hash,
        token,
        &format!("v3/customers?id:in={}&include=addresses", list.join(",")),
    )
}

/// A catalog product (`/v3/catalog/products/{id}`), for `categories` and `brand_id`.
pub fn catalog_product(base: &str, store_hash: &str, token: &str, id: ProductId) -> HttpRequest {
    get(
        base,
        store_hash,
        token,
        &format!("v3/catalog/products/{id}"),
    )
}

/// The store profile (`/v2/store`).
pub fn store(base: &str, store_hash: &str, token: &str) -> HttpRequest {
    get(base, store_hash, token, "v2/store")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::money::dec;

    fn fixture(name: &str) -> Vec<u8> {
        let p = format!(
            "{}/../../../shared/fixtures/bigcommerce/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn recorded_order_218_parses_with_fees_and_rfc2822_dates() {
        let o: Order = decode(&fixture("spec_v2_order_218_with_fees.json")).unwrap();
        assert_eq!(o.id, OrderId(218));
        assert_eq!(o.customer_id, CustomerId(11));
        assert_eq!(
            o.date_created.unwrap().to_rfc3339(),
            "2019-03-05T21:40:11+00:00"
        );
        assert_eq!(o.subtotal_ex_tax, Money::new(dec!(62.6793)));
        assert_eq!(o.total_inc_tax, Money::new(dec!(69.84)));
        assert_eq!(o.fees.len(), 2);
        // The misspelled `cost_exc_tax` is read too.
        assert_eq!(o.fees[0].cost_ex_tax, Money::new(dec!(12.3)));
        assert_eq!(o.fees_ex_tax(), Money::new(dec!(16.3)));
        assert_eq!(o.fees[1].tax_class_id, None);
        assert_eq!(o.billing_address.email, "janedoe@example.com");
        assert_eq!(o.channel_id, 1);
        assert_eq!(o.default_currency_code, "USD");
        assert!(!o.is_tax_inclusive_pricing);
        assert_eq!(o.consignments, None);
        assert!(line_items(&o).is_empty());
    }

    #[test]
    fn recorded_products_parse_including_the_bundled_child() {
        let p: Vec<OrderProduct> = decode(&fixture("spec_v2_order_products_149.json")).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].sku, "S-ORAN");
        assert_eq!(p[0].quantity, dec!(1));
        assert_eq!(p[0].applied_discounts[0].target, "order");
        assert_eq!(p[0].applied_discounts[0].code, "");
        assert_eq!(p[0].product_options[0].display_value, "S");
        assert_eq!(p[1].parent_order_product_id, Some(65));
        assert!(p[1].is_bundled_product);
    }

    #[test]
    fn recorded_list_coupons_and_customers_parse() {
        let orders: Vec<Order> = decode(&fixture("v2_orders_list_real_2013_vcr.json")).unwrap();
        assert!(!orders.is_empty());
        assert!(
            orders
                .iter()
                .all(|o| o.id.0 > 0 && o.date_created.is_some())
        );
        let c: Vec<Coupon> = decode(&fixture("spec_v2_order_coupons_120.json")).unwrap();
        assert_eq!(c[0].discount, Money::new(dec!(5)));
        assert_eq!(c[0].coupon_type, 2);
        let resp = HttpResponse::new(200, fixture("spec_v3_customers_get.json"));
        let cs = parse_customers(&resp).unwrap();
        assert_eq!(cs[0].company, "Acme Corp");
        assert_eq!(cs[0].addresses[0].address1, "Addr1");
    }

    #[test]
    fn consignments_embed_line_items_and_links_are_ignored() {
        let body = serde_json::json!({
            "id": "77", "customer_id": "", "credit_card_type": {}, "is_tax_inclusive_pricing": "1",
            "fees": {"url": "x", "resource": "/orders/77/fees"},
            "consignments": {
                "shipping": [{"id": 5, "first_name": "A", "street_1": "1 Main", "cost_ex_tax": 5.1,
                    "line_items": [{"id": 1, "product_id": 3, "quantity": "2", "total_ex_tax": "20.0000"}]}],
                "pickups": [{"id": 9, "line_items": [{"url": "u", "resource": "/orders/77/products/2"}]}],
                "downloads": [{"recipient_email": "r@x", "line_items": {"url": "u", "resource": "r"}}],
                "email": {"gift_certificates": [{"recipient_email": "g@x",
                    "line_items": [{"id": 4, "product_id": 0, "quantity": 1, "total_ex_tax": "25"}]}]}
            },
            "unexpected": [1, 2, 3]
        });
        let o: Order = decode(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert!(o.is_guest());
        assert!(o.is_tax_inclusive_pricing);
        assert!(o.fees.is_empty());
        let lines = line_items(&o);
        assert_eq!(lines.iter().map(|l| l.id).collect::<Vec<_>>(), vec![1, 4]);
        assert_eq!(lines[0].quantity, dec!(2));
        assert_eq!(
            o.first_shipping_address().unwrap().cost_ex_tax,
            Money::new(dec!(5.1))
        );
        assert_eq!(
            o.first_shipping_address().unwrap().address.street_1,
            "1 Main"
        );
    }

    #[test]
    fn decode_errors_name_the_json_path() {
        let body = br#"{"id": 1, "consignments": {"shipping": [{"line_items": [{"id": 1, "quantity": 1, "total_ex_tax": "abc"}]}]}}"#;
        let err = decode::<Order>(body).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("consignments"), "{msg}");
        assert!(msg.contains("total_ex_tax"), "{msg}");
        let err = decode::<Order>(br#"{"total_inc_tax": "x1"}"#).unwrap_err();
        assert!(
            matches!(&err, BcError::Decode { path, .. } if path == "total_inc_tax"),
            "{err}"
        );
    }

    #[test]
    fn v2_and_v3_errors_parse_into_one_type() {
        let r = HttpResponse::new(404, fixture("spec_v2_404.json"));
        let e = parse_api_error(&r);
        assert_eq!(e.status, 404);
        assert_eq!(e.message, "The requested resource was not found.");
        assert!(!e.is_retryable());
        let v3 = br#"{"status":422,"title":"Invalid input","type":"https://x","errors":{"email":"already used"}}"#;
        let e = parse_api_error(&HttpResponse::new(422, v3.to_vec()));
        assert_eq!(
            e.details,
            vec![("email".to_string(), "already used".to_string())]
        );
        assert!(
            e.to_string()
                .contains("Invalid input (email: already used)"),
            "{e}"
        );
        let e = parse_api_error(&HttpResponse::new(503, b"<html>down</html>".to_vec()));
        assert!(e.is_retryable());
        assert!(e.to_string().contains("down"));
    }

    #[test]
    fn rate_limit_headers_are_read_case_insensitively() {
        let mut r = HttpResponse::new(429, Vec::new());
        r.headers
            .push(("x-rate-limit-time-reset-ms".into(), "15000".into()));
        r.headers
            .push(("X-Rate-Limit-Requests-Left".into(), "0".into()));
        let rl = RateLimit::from_response(&r);
        assert_eq!(rl.reset_ms, Some(15000));
        assert_eq!(rl.requests_left, Some(0));
        assert_eq!(rl.wait_ms(), Some(15000));
        assert_eq!(parse_api_error(&r).rate_limit, rl);
        assert_eq!(RateLimit::default().wait_ms(), None);
    }

    #[test]
    fn request_builders_use_the_documented_urls_and_headers() {
        let r = order_with_line_items(
            "https://api.bigcommerce.com/",
            "abc123",
            "tok",
            OrderId(250),
        );
        assert_eq!(
            r.url,
            "https://api.bigcommerce.com/stores/abc123/v2/orders/250?include=consignments.line_items,fees&consignment_structure=object"
        );
        assert_eq!(
            crate::http::header_value(&r.headers, "x-auth-token"),
            Some("tok")
        );
        assert_eq!(
            crate::http::header_value(&r.headers, "accept"),
            Some("application/json")
        );
        assert_eq!(
            order_products("http://h", "s", "t", OrderId(1), 2).url,
            "http://h/stores/s/v2/orders/1/products?limit=250&page=2"
        );
        assert_eq!(
            customers_by_ids("http://h", "s", "t", &[CustomerId(4), CustomerId(5)]).url,
            "http://h/stores/s/v3/customers?id:in=4,5&include=addresses"
        );
        assert_eq!(
            catalog_product("http://h", "s", "t", ProductId(9)).url,
            "http://h/stores/s/v3/catalog/products/9"
        );
        assert_eq!(
            store("http://h", "s", "t").url,
            "http://h/stores/s/v2/store"
        );
        let cp = parse_catalog_product(&HttpResponse::new(
            200,
            br#"{"data":{"id":9,"categories":[23,"24"],"brand_id":3}}"#.to_vec(),
        ))
        .unwrap();
        assert_eq!(
            (cp.id, cp.categories, cp.brand_id),
            (ProductId(9), vec![23, 24], 3)
        );
    }
}
