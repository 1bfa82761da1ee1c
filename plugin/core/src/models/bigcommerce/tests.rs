use super::*;
use crate::http::HttpResponse;
use crate::models::money::{Money, dec};

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

#[test]
fn tax_rows_name_each_lines_tax_class() {
    let body = br#"[
      {"id": 1, "order_id": 7, "tax_class_id": 0, "class": "Default Tax Class", "rate": "20.0000",
       "order_product_id": "11", "line_item_type": "item"},
      {"id": 2, "order_id": 7, "tax_class_id": 3, "class": "Children's Clothing", "rate": "0.0000",
       "order_product_id": 12, "line_item_type": "item"},
      {"id": 3, "order_id": 7, "class": "Second Rate", "order_product_id": "12", "line_item_type": "item"},
      {"id": 4, "order_id": 7, "class": "Shipping", "order_product_id": null, "line_item_type": "shipping"},
      {"id": 5, "order_id": 7, "class": "Wrap", "order_product_id": null, "line_item_type": "gift-wrapping"},
      {"id": 6, "order_id": 7, "class": "", "order_product_id": "13", "line_item_type": "item"}
    ]"#;
    let resp = HttpResponse {
        status: 200,
        headers: vec![],
        body: body.to_vec(),
    };
    let rows = parse_order_taxes(&resp).unwrap();
    assert_eq!(rows.len(), 6);
    let c = TaxClasses::from_rows(&rows);
    assert_eq!(
        c.products.get(&11).map(String::as_str),
        Some("Default Tax Class")
    );
    // The first row of a line wins; a blank class names nothing.
    assert_eq!(
        c.products.get(&12).map(String::as_str),
        Some("Children's Clothing")
    );
    assert_eq!(c.products.get(&13), None);
    assert_eq!(c.shipping.as_deref(), Some("Shipping"));
    assert_eq!(c.wrapping.as_deref(), Some("Wrap"));
    assert_eq!(c.handling, None);
    // An order without tax rows (a 204) has none.
    let empty = HttpResponse {
        status: 204,
        headers: vec![],
        body: vec![],
    };
    assert!(parse_order_taxes(&empty).unwrap().is_empty());
}
