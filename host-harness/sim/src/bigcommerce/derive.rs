//! An order's sub-resources as BigCommerce serves them, derived from the generated order:
//! shipping addresses, coupons and tax rows (`/v2/orders/{id}/shipping_addresses`,
//! `/coupons`, `/taxes`, with `details=true` the line each row taxes).

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::r#gen::{CONSIGNMENT_MONEY, dec, money, string_money};

/// The `/v2/orders/{id}/shipping_addresses` rows of an order, derived from its embedded shipping
/// consignments (line items dropped, money back to 4-decimal strings, the quotes link in its v2 form).
pub fn shipping_addresses(order: &Value) -> Vec<Value> {
    let id = order["id"].as_u64().unwrap_or(0);
    let shipping = order["consignments"]["shipping"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    shipping
        .into_iter()
        .map(|c| {
            let mut row = string_money(c, CONSIGNMENT_MONEY);
            if let Some(obj) = row.as_object_mut() {
                obj.remove("line_items");
                let address_id = obj.get("id").and_then(Value::as_u64).unwrap_or(0);
                obj.insert("order_id".into(), json!(id));
                let url = obj
                    .get("shipping_quotes")
                    .and_then(|q| q["url"].as_str())
                    .and_then(|u| u.split("/v2/").next())
                    .map(|base| format!("{base}/v2"))
                    .unwrap_or_default();
                obj.insert(
                    "shipping_quotes".into(),
                    json!({
                        "url": format!("{url}/orders/{id}/shippingaddresses/{address_id}/shippingquotes"),
                        "resource": format!("/orders/{id}/shippingaddresses/{address_id}/shippingquotes"),
                    }),
                );
            }
            row
        })
        .collect()
}

/// The `/v2/orders/{id}/coupons` rows, derived from the coupon `applied_discounts` on the lines
/// (a coupon code ending in digits is a percentage coupon of that many percent, anything else a
/// fixed amount off the order).
pub fn coupons(order: &Value, products: &[Value]) -> Vec<Value> {
    let id = order["id"].as_u64().unwrap_or(0);
    let mut found: Vec<(String, String, Decimal)> = Vec::new();
    for row in products {
        for d in row["applied_discounts"].as_array().into_iter().flatten() {
            let Some(code) = d["code"].as_str() else {
                continue;
            };
            let coupon_id = d["id"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| d["id"].to_string());
            let amount = dec(&d["amount"]);
            match found.iter_mut().find(|f| f.1 == code) {
                Some(f) => f.2 += amount,
                None => found.push((coupon_id, code.to_string(), amount)),
            }
        }
    }
    found
        .into_iter()
        .enumerate()
        .map(|(i, (coupon_id, code, discount))| {
            let digits: String = code
                .chars()
                .rev()
                .take_while(char::is_ascii_digit)
                .collect();
            let percent: Option<u64> = digits.chars().rev().collect::<String>().parse().ok();
            let (kind, face) = match percent {
                Some(p) => (1, json!(p)),
                None if code.ends_with("5OFF") => (2, json!(5)),
                None => (2, decimal_number(discount)),
            };
            json!({
                "id": id * 10 + 3 + i as u64,
                "coupon_id": coupon_id.parse::<u64>().unwrap_or(0),
                "order_id": id,
                "code": code,
                "amount": face,
                "type": kind,
                "discount": decimal_number(discount),
            })
        })
        .collect()
}

fn decimal_number(d: Decimal) -> Value {
    serde_json::from_str(&d.normalize().to_string()).unwrap_or(json!(0))
}

/// The `/v2/orders/{id}/taxes` rows: one per order with tax, its rate read back from the totals
/// (to the nearest 0.25 %, which every generated rate is), its amount the order's `total_tax`.
pub fn taxes(order: &Value) -> Vec<Value> {
    let id = order["id"].as_u64().unwrap_or(0);
    let total_tax = dec(&order["total_tax"]);
    let total_ex = dec(&order["total_ex_tax"]);
    if total_tax.is_zero() || total_ex.is_zero() {
        return Vec::new();
    }
    let quarter = Decimal::new(25, 2);
    let pct = (total_tax * Decimal::from(100) / total_ex / quarter).round() * quarter;
    let address_id = order["consignments"]["shipping"][0]["id"]
        .as_u64()
        .unwrap_or(id * 10 + 1);
    let incl = order["is_tax_inclusive_pricing"].as_bool().unwrap_or(false);
    vec![json!({
        "id": id * 10 + 4,
        "order_id": id,
        "order_address_id": address_id,
        "tax_rate_id": 1,
        "sales_tax_id": "",
        "tax_class_id": 0,
        "name": if incl { "VAT" } else { "Sales Tax" },
        "class": "Default Tax Class",
        "rate": money(pct),
        "priority": 0,
        "priority_amount": money(total_tax),
        "line_amount": money(total_tax),
        "order_pickup_method_id": 0,
    })]
}

/// The `/v2/orders/{id}/taxes?details=true` rows: one per taxed order product
/// (`line_item_type` `item`, its `order_product_id`) and one for taxed shipping, handling and
/// gift wrapping, every one in the store's `Default Tax Class` at the order's rate.
pub fn tax_details(order: &Value, products: &[Value]) -> Vec<Value> {
    let Some(first) = taxes(order).into_iter().next() else {
        return Vec::new();
    };
    let id = order["id"].as_u64().unwrap_or(0);
    let mut out = Vec::new();
    let mut row = |n: usize, product: Option<u64>, kind: &str, tax: Decimal| {
        if tax.is_zero() {
            return;
        }
        let mut r = first.clone();
        r["id"] = json!(id * 100 + n as u64);
        r["priority_amount"] = money(tax);
        r["line_amount"] = money(tax);
        r["order_product_id"] = product.map_or(Value::Null, |p| json!(p.to_string()));
        r["line_item_type"] = json!(kind);
        out.push(r);
    };
    for (n, p) in products.iter().enumerate() {
        row(n, p["id"].as_u64(), "item", dec(&p["total_tax"]));
    }
    let n = products.len();
    row(n, None, "shipping", dec(&order["shipping_cost_tax"]));
    row(n + 1, None, "handling", dec(&order["handling_cost_tax"]));
    row(
        n + 2,
        None,
        "gift-wrapping",
        dec(&order["wrapping_cost_tax"]),
    );
    out
}
