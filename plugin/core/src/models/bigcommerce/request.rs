//! BigCommerce request builders (paths, headers and query parameters as documented).

use crate::http::{HttpRequest, Method};
use crate::models::bigcommerce::entities::{CustomerId, OrderId, ProductId};

pub(crate) fn get(base: &str, store_hash: &str, token: &str, path_and_query: &str) -> HttpRequest {
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

/// One page (1-based, 250 per page) of an order's tax rows with the line each taxes
/// (`/v2/orders/{id}/taxes?details=true`): where a line's tax class is read.
pub fn order_taxes(
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
        &format!(
            "v2/orders/{id}/taxes?details=true&limit=250&page={}",
            page.max(1)
        ),
    )
}

/// An order's refunds, oldest first (`/v3/orders/{id}/payment_actions/refunds`).
pub fn order_refunds(base: &str, store_hash: &str, token: &str, id: OrderId) -> HttpRequest {
    get(
        base,
        store_hash,
        token,
        &format!("v3/orders/{id}/payment_actions/refunds"),
    )
}

/// The store profile (`/v2/store`).
pub fn store(base: &str, store_hash: &str, token: &str) -> HttpRequest {
    get(base, store_hash, token, "v2/store")
}
