//! Order variants for accounting rules (CONTRACT §11), applied to a generated order: a
//! foreign transactional currency, a gift certificate sold, a creation time. Every change
//! keeps BigCommerce's totals identity exact.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::r#gen::GeneratedOrder;

fn dec(v: &Value) -> Decimal {
    match v {
        Value::String(s) => s.parse().unwrap_or_default(),
        Value::Number(n) => n.to_string().parse().unwrap_or_default(),
        _ => Decimal::ZERO,
    }
}

fn money(d: Decimal) -> Value {
    Value::String(format!("{:.4}", d.round_dp(4)))
}

/// Makes the order one paid in `code` (display and transactional currency), with BigCommerce's
/// `store_default_to_transactional_exchange_rate` = `rate` (units of `code` per unit of the
/// store's default currency). The amounts stay as generated: they are in `code` now.
pub fn in_currency(order: &mut GeneratedOrder, code: &str, rate: &str) {
    let o = &mut order.order;
    o["currency_id"] = json!(2);
    o["currency_code"] = json!(code);
    o["currency_exchange_rate"] = json!(rate);
    o["default_currency_id"] = json!(2);
    o["default_currency_code"] = json!(code);
    o["store_default_to_transactional_exchange_rate"] = json!(rate);
}

/// Adds a gift certificate of `cents` sold to `recipient` (an email consignment; no tax,
/// no discount), raising the subtotal and totals by its amount.
pub fn add_gift_certificate(order: &mut GeneratedOrder, cents: i64, recipient: &str) {
    let amount = Decimal::new(cents, 2);
    let id = order.order["id"].as_u64().unwrap_or(0);
    let line_id = order
        .products
        .iter()
        .filter_map(|p| p["id"].as_u64())
        .max()
        .unwrap_or(0)
        + 1;
    let row = json!({
        "id": line_id,
        "order_id": id,
        "product_id": 0,
        "variant_id": 0,
        "order_address_id": 0,
        "name": format!("${} Gift Certificate", amount.normalize()),
        "name_customer": format!("${} Gift Certificate", amount.normalize()),
        "name_merchant": format!("${} Gift Certificate", amount.normalize()),
        "sku": "",
        "type": "giftcertificate",
        "quantity": 1,
        "base_price": money(amount),
        "price_ex_tax": money(amount),
        "price_inc_tax": money(amount),
        "price_tax": money(Decimal::ZERO),
        "base_total": money(amount),
        "total_ex_tax": money(amount),
        "total_inc_tax": money(amount),
        "total_tax": money(Decimal::ZERO),
        "discounted_total_inc_tax": money(amount),
        "applied_discounts": [],
        "product_options": [],
        "is_bundled_product": false,
        "parent_order_product_id": null,
        "gift_certificate_id": 9000 + line_id,
        "is_refunded": false,
        "quantity_refunded": 0,
        "refund_amount": "0.0000",
        "quantity_shipped": 0,
    });
    order.products.push(row.clone());
    let o = &mut order.order;
    if let Some(list) = o["consignments"]["email"]["gift_certificates"].as_array_mut() {
        list.push(json!({"recipient_email": recipient, "line_items": [row]}));
    }
    for key in [
        "subtotal_ex_tax",
        "subtotal_inc_tax",
        "total_ex_tax",
        "total_inc_tax",
    ] {
        let v = dec(&o[key]) + amount;
        o[key] = money(v);
    }
    let items = o["items_total"].as_u64().unwrap_or(0) + 1;
    o["items_total"] = json!(items);
}

/// Sets the order's creation time (RFC 2822, as BigCommerce writes it).
pub fn created_at(order: &mut GeneratedOrder, rfc2822: &str) {
    order.order["date_created"] = json!(rfc2822);
}
