//! Mapping rules, config validation, tax modes and the recorded fixtures.

use std::collections::HashMap;
use std::str::FromStr;

use ml_core::books::mapping::{
    MappingConfig, MappingError, OrderContext, ResolvedRefs, TaxMode, build_invoice, check_totals,
    note_has_marker, plan, plan_exact,
};
use ml_core::models::bigcommerce::{self, CatalogProduct, Order, OrderProduct, ProductId};
use ml_core::models::money::{Money, round2};
use ml_core::models::quickbooks::DetailType;
use rust_decimal::Decimal;
use serde_json::json;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn m(s: &str) -> Money {
    Money::new(d(s))
}

fn fixture(name: &str) -> Vec<u8> {
    let p = format!(
        "{}/../../../shared/fixtures/bigcommerce/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn line(id: u64, product_id: u64, sku: &str, qty: u32, total_ex: &str) -> serde_json::Value {
    json!({"id": id, "product_id": product_id, "sku": sku, "name": format!("Product {id}"),
           "quantity": qty, "total_ex_tax": total_ex})
}

/// A consistent order: lines + shipping − discount, tax on top.
fn order(
    lines: Vec<serde_json::Value>,
    shipping: &str,
    coupon: &str,
    tax: &str,
    customer_id: u64,
) -> Order {
    let sub: Decimal = lines
        .iter()
        .map(|l| d(l["total_ex_tax"].as_str().unwrap()))
        .sum();
    let ex = sub + d(shipping) - d(coupon);
    let v = json!({
        "id": 250, "customer_id": customer_id, "channel_id": 1,
        "date_created": "Mon, 06 Jan 2025 23:59:59 +0000",
        "subtotal_ex_tax": sub.to_string(), "shipping_cost_ex_tax": shipping,
        "coupon_discount": coupon, "discount_amount": "0.0000",
        "total_ex_tax": ex.to_string(), "total_tax": tax, "total_inc_tax": (ex + d(tax)).to_string(),
        "default_currency_code": "EUR", "currency_code": "USD",
        "billing_address": {"first_name": "Ana", "street_1": "1 Main St", "city": "Austin", "zip": "78701",
                            "state": "Texas", "country": "United States", "email": "ana@example.com"},
        "consignments": {"shipping": [{"id": 1, "street_1": "2 Side St", "city": "Austin", "shipping_method": "Flat Rate",
                                       "line_items": lines}]}
    });
    serde_json::from_value(v).unwrap()
}

fn refs_for(config: &MappingConfig, ctx: &OrderContext) -> ResolvedRefs {
    let p = plan_exact(config, ctx).unwrap();
    ResolvedRefs {
        items: p
            .items
            .iter()
            .map(|n| (n.clone(), format!("item:{n}")))
            .collect(),
        account_items: p
            .accounts
            .iter()
            .map(|n| (n.clone(), format!("acct-item:{n}")))
            .collect(),
        classes: p
            .classes
            .iter()
            .map(|n| (n.clone(), format!("class:{n}")))
            .collect(),
        discount_account: p.discount_account.map(|n| format!("acct:{n}")),
        tax_codes: p
            .tax_codes
            .iter()
            .map(|n| (n.clone(), format!("taxcode:{n}")))
            .collect(),
    }
}

fn config(rules: serde_json::Value, tax: serde_json::Value) -> MappingConfig {
    let v = json!({"version": 1, "invoice": {
        "default_item": "BigCommerce Sales", "default_class": "Online",
        "rules": rules, "shipping": {"item": "Shipping Income"},
        "discount": {"account": "Discounts given"}, "tax": tax}});
    MappingConfig::parse(&serde_json::to_vec(&v).unwrap()).unwrap()
}

fn line_tax() -> serde_json::Value {
    json!({"mode": "line", "item": "Sales Tax Collected"})
}

/// (item ref, class ref) of each product line.
fn product_refs(
    inv: &ml_core::models::quickbooks::Invoice,
    n: usize,
) -> Vec<(String, Option<String>)> {
    inv.line
        .iter()
        .take(n)
        .map(|l| {
            let s = l.sales_item_line_detail.as_ref().unwrap();
            (
                s.item_ref.value.clone(),
                s.class_ref.as_ref().map(|c| c.value.clone()),
            )
        })
        .collect()
}

#[test]
fn the_contract_example_parses_and_the_default_round_trips() {
    let example = br#"{"version": 1, "invoice": {"doc_number": "{order_id}", "default_item": "BigCommerce Sales",
      "default_class": null, "rules": [
        {"match": {"sku_prefix": "APP-"}, "item": "Apparel Sales", "class": "Apparel"},
        {"match": {"customer_group_id": 2}, "class": "Wholesale"},
        {"match": {"category_id": 23}, "account": "Home Goods Revenue"}],
      "shipping": {"item": "Shipping Income"}, "handling": {"item": "Handling Income"},
      "wrapping": {"item": "Gift Wrap Income"}, "discount": {"account": "Discounts given"},
      "tax": {"mode": "line", "item": "Sales Tax Collected"}},
      "customers": {"guest": {"mode": "per_email"}}}"#;
    let c = MappingConfig::parse(example).unwrap();
    assert_eq!(c.invoice.rules.len(), 3);
    assert!(c.needs_catalog() && c.needs_customer_group());
    let def = MappingConfig::default();
    assert_eq!(def.invoice.default_item, "BigCommerce Sales");
    let again = MappingConfig::parse(&serde_json::to_vec(&def).unwrap()).unwrap();
    assert_eq!(again, def);
}

#[test]
fn parse_reports_every_problem_with_its_path() {
    let bad = br#"{"version": 2, "extra": 1, "invoice": {
        "doc_number": "BC-{channel_id}-{order_id}-{store}", "default_item": "",
        "rules": [
          {"match": {"colour": "red"}, "item": "X"},
          {"match": {"sku": "A"}},
          {"match": {"sku": "B"}, "item": "I", "account": "A"},
          {"match": {"product_id": "seven"}, "class": 5}
        ],
        "shipping": {"itme": "Ship"},
        "tax": {"mode": "line"}},
      "customers": {"guest": {"mode": "single"}}}"#;
    let problems = MappingConfig::parse(bad).unwrap_err();
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    for expected in [
        "$.version",
        "$.extra",
        "$.invoice.doc_number",
        "$.invoice.default_item",
        "$.invoice.rules[0].match.colour",
        "$.invoice.rules[1]",
        "$.invoice.rules[2]",
        "$.invoice.rules[3].match.product_id",
        "$.invoice.rules[3].class",
        "$.invoice.shipping.itme",
        "$.invoice.shipping.item",
        "$.invoice.tax.item",
        "$.customers.guest.name",
    ] {
        assert!(
            paths.contains(&expected),
            "missing {expected} in {problems:#?}"
        );
    }
    assert!(problems.iter().all(|p| !p.message.is_empty()));
    let doc = problems
        .iter()
        .find(|p| p.path == "$.invoice.doc_number")
        .unwrap();
    assert!(
        doc.message.contains("unknown placeholder '{store}'"),
        "{}",
        doc.message
    );

    let too_long = br#"{"version":1,"invoice":{"doc_number":"INVOICE-NO-{order_id}-X","default_item":"S","tax":{"mode":"none"}}}"#;
    let p = MappingConfig::parse(too_long).unwrap_err();
    assert_eq!(p[0].path, "$.invoice.doc_number");
    assert!(p[0].message.contains("21"), "{}", p[0].message);

    let bad_mode = br#"{"version":1,"invoice":{"default_item":"S","tax":{"mode":"automatic"}},"customers":{"guest":{"mode":"x"}}}"#;
    let p = MappingConfig::parse(bad_mode).unwrap_err();
    assert_eq!(
        p.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(),
        vec!["$.invoice.tax.mode", "$.customers.guest.mode"]
    );

    assert_eq!(MappingConfig::parse(b"{nope").unwrap_err()[0].path, "$");
}

#[test]
fn sku_and_sku_prefix_rules_pick_item_and_class_first_match_wins() {
    let c = config(
        json!([
            {"match": {"sku": "APP-HAT"}, "item": "Hats"},
            {"match": {"sku_prefix": "APP-"}, "item": "Apparel Sales", "class": "Apparel"}
        ]),
        line_tax(),
    );
    let o = order(
        vec![
            line(1, 10, "APP-HAT", 1, "10.0000"),
            line(2, 11, "APP-TEE", 2, "30.0000"),
            line(3, 12, "MUG", 1, "5.0000"),
        ],
        "0",
        "0",
        "0",
        0,
    );
    let lines = bigcommerce::line_items(&o);
    let catalog = HashMap::new();
    let ctx = OrderContext {
        order: &o,
        lines: &lines,
        catalog: &catalog,
        customer_group_id: None,
    };
    let draft = build_invoice(&c, &ctx, &refs_for(&c, &ctx), "7").unwrap();
    assert_eq!(
        product_refs(&draft.invoice, 3),
        vec![
            ("item:Hats".into(), Some("class:Online".into())),
            ("item:Apparel Sales".into(), Some("class:Apparel".into())),
            ("item:BigCommerce Sales".into(), Some("class:Online".into())),
        ]
    );
}

#[test]
fn product_channel_and_account_rules_map_to_the_accounts_service_item() {
    let c = config(
        json!([
            {"match": {"product_id": 12}, "account": "Mug Revenue"},
            {"match": {"channel_id": 1}, "class": "Web"}
        ]),
        line_tax(),
    );
    let o = order(
        vec![
            line(1, 12, "MUG", 1, "5.0000"),
            line(2, 13, "BOWL", 1, "6.0000"),
        ],
        "0",
        "0",
        "0",
        0,
    );
    let lines = bigcommerce::line_items(&o);
    let catalog = HashMap::new();
    let ctx = OrderContext {
        order: &o,
        lines: &lines,
        catalog: &catalog,
        customer_group_id: None,
    };
    let p = plan(&c, &o, &lines);
    assert!(p.accounts.contains("Mug Revenue"));
    assert!(
        p.catalog_products.is_empty(),
        "no catalog calls without category/brand rules"
    );
    let draft = build_invoice(&c, &ctx, &refs_for(&c, &ctx), "7").unwrap();
    assert_eq!(
        product_refs(&draft.invoice, 2),
        vec![
            ("acct-item:Mug Revenue".into(), Some("class:Online".into())),
            ("item:BigCommerce Sales".into(), Some("class:Web".into())),
        ]
    );
}

#[test]
fn category_and_brand_rules_use_catalog_data_and_are_planned() {
    let c = config(
        json!([
            {"match": {"category_id": 23}, "account": "Home Goods Revenue"},
            {"match": {"brand_id": 7}, "item": "Northbound"}
        ]),
        line_tax(),
    );
    let o = order(
        vec![
            line(1, 10, "A", 1, "10.0000"),
            line(2, 11, "B", 1, "20.0000"),
            line(3, 0, "CUSTOM", 1, "1.0000"),
        ],
        "0",
        "0",
        "0",
        0,
    );
    let lines = bigcommerce::line_items(&o);
    let p = plan(&c, &o, &lines);
    assert_eq!(
        p.catalog_products,
        vec![ProductId(10), ProductId(11)],
        "custom products (id 0) need no catalog call"
    );
    let mut catalog = HashMap::new();
    catalog.insert(
        ProductId(10),
        CatalogProduct {
            id: ProductId(10),
            categories: vec![18, 23],
            ..Default::default()
        },
    );
    catalog.insert(
        ProductId(11),
        CatalogProduct {
            id: ProductId(11),
            categories: vec![18],
            brand_id: 7,
            ..Default::default()
        },
    );
    let ctx = OrderContext {
        order: &o,
        lines: &lines,
        catalog: &catalog,
        customer_group_id: None,
    };
    let draft = build_invoice(&c, &ctx, &refs_for(&c, &ctx), "7").unwrap();
    let refs: Vec<String> = product_refs(&draft.invoice, 3)
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(
        refs,
        vec![
            "acct-item:Home Goods Revenue",
            "item:Northbound",
            "item:BigCommerce Sales"
        ]
    );

    // Catalog data missing for a product a rule needs: a clear error, not a guess.
    let empty = HashMap::new();
    let ctx = OrderContext {
        order: &o,
        lines: &lines,
        catalog: &empty,
        customer_group_id: None,
    };
    assert_eq!(
        build_invoice(&c, &ctx, &ResolvedRefs::default(), "7").unwrap_err(),
        MappingError::MissingCatalogProduct { product_id: 10 }
    );
}

#[test]
fn customer_group_rules_apply_to_registered_buyers_and_guests_are_group_zero() {
    let c = config(
        json!([{"match": {"customer_group_id": 2}, "class": "Wholesale"},
                          {"match": {"customer_group_id": 0}, "class": "Retail"}]),
        line_tax(),
    );
    let registered = order(vec![line(1, 10, "A", 1, "10.0000")], "0", "0", "0", 42);
    let lines = bigcommerce::line_items(&registered);
    assert!(plan(&c, &registered, &lines).needs_customer_group);
    let catalog = HashMap::new();
    let ctx = OrderContext {
        order: &registered,
        lines: &lines,
        catalog: &catalog,
        customer_group_id: Some(2),
    };
    let draft = build_invoice(&c, &ctx, &refs_for(&c, &ctx), "7").unwrap();
    assert_eq!(
        product_refs(&draft.invoice, 1)[0].1.as_deref(),
        Some("class:Wholesale")
    );

    let guest = order(vec![line(1, 10, "A", 1, "10.0000")], "0", "0", "0", 0);
    let lines = bigcommerce::line_items(&guest);
    assert!(!plan(&c, &guest, &lines).needs_customer_group);
    let ctx = OrderContext {
        order: &guest,
        lines: &lines,
        catalog: &catalog,
        customer_group_id: None,
    };
    let draft = build_invoice(&c, &ctx, &refs_for(&c, &ctx), "7").unwrap();
    assert_eq!(
        product_refs(&draft.invoice, 1)[0].1.as_deref(),
        Some("class:Retail")
    );
}

#[test]
fn tax_line_mode_adds_shipping_discount_and_tax_lines_and_ties_to_the_cent() {
    let c = config(json!([]), line_tax());
    // 3 × 3.3333 = 9.9999 → 10.00; repeating unit price must still give Qty × UnitPrice = Amount.
    let o = order(
        vec![
            line(1, 10, "A", 3, "9.9999"),
            line(2, 11, "B", 1, "20.0000"),
        ],
        "5.0000",
        "2.0000",
        "2.5600",
        0,
    );
    let lines = bigcommerce::line_items(&o);
    let catalog = HashMap::new();
    let ctx = OrderContext {
        order: &o,
        lines: &lines,
        catalog: &catalog,
        customer_group_id: None,
    };
    let draft = build_invoice(&c, &ctx, &refs_for(&c, &ctx), "7").unwrap();
    let inv = &draft.invoice;
    let kinds: Vec<DetailType> = inv.line.iter().map(|l| l.detail_type).collect();
    assert_eq!(
        kinds,
        vec![
            DetailType::SalesItemLineDetail,
            DetailType::SalesItemLineDetail,
            DetailType::SalesItemLineDetail,
            DetailType::DiscountLineDetail,
            DetailType::SalesItemLineDetail
        ]
    );
    let first = inv.line[0].sales_item_line_detail.as_ref().unwrap();
    assert_eq!(inv.line[0].amount, m("10.00"));
    assert_eq!(first.qty, Some(d("3")));
    assert_eq!(
        round2(first.qty.unwrap() * first.unit_price.unwrap()),
        d("10.00")
    );
    assert_eq!(inv.line[2].amount, m("5.00"));
    assert_eq!(
        inv.line[2]
            .sales_item_line_detail
            .as_ref()
            .unwrap()
            .item_ref
            .value,
        "item:Shipping Income"
    );
    assert_eq!(inv.line[3].amount, m("2.00"));
    assert_eq!(
        inv.line[3]
            .discount_line_detail
            .as_ref()
            .unwrap()
            .discount_account_ref
            .as_ref()
            .unwrap()
            .value,
        "acct:Discounts given"
    );
    // BigCommerce: 29.9999 + 5 − 2 = 32.9999 ex, + 2.56 tax = 35.5599 → 35.56. Lines round to
    // 10 + 20 + 5 − 2 = 33.00, so the tax line absorbs −0.0001 rounding: 2.56.
    assert_eq!(draft.target, m("35.56"));
    assert_eq!(draft.total, m("35.56"));
    assert_eq!(inv.line[4].amount, m("2.56"));
    assert_eq!(
        inv.line[4]
            .sales_item_line_detail
            .as_ref()
            .unwrap()
            .item_ref
            .value,
        "item:Sales Tax Collected"
    );
    assert_eq!(inv.txn_tax_detail, None);
    assert_eq!(inv.global_tax_calculation, None);
    // Header fields.
    assert_eq!(inv.doc_number.as_deref(), Some("250"));
    assert_eq!(
        inv.txn_date.unwrap().to_string(),
        "2025-01-06",
        "UTC date of date_created"
    );
    assert_eq!(
        inv.currency_ref.as_ref().unwrap().value,
        "EUR",
        "transactional currency"
    );
    assert_eq!(inv.bill_email.as_ref().unwrap().address, "ana@example.com");
    assert_eq!(
        inv.bill_addr.as_ref().unwrap().line1.as_deref(),
        Some("1 Main St")
    );
    assert_eq!(
        inv.ship_addr.as_ref().unwrap().line1.as_deref(),
        Some("2 Side St")
    );
    assert!(note_has_marker(inv.private_note.as_deref().unwrap(), 250));
    assert!(!note_has_marker(inv.private_note.as_deref().unwrap(), 25));
}

#[test]
fn rounding_residue_goes_to_tax_and_stays_within_a_cent_per_line() {
    let c = config(json!([]), line_tax());
    // Two lines each rounding up by 0.005: 1.005 + 1.005 = 2.01 exactly in BC, lines say 1.01 + 1.01.
    let o = order(
        vec![line(1, 10, "A", 1, "1.0050"), line(2, 11, "B", 1, "1.0050")],
        "0",
        "0",
        "0.2000",
        0,
    );
    let lines = bigcommerce::line_items(&o);
    let catalog = HashMap::new();
    let ctx = OrderContext {
        order: &o,
        lines: &lines,
        catalog: &catalog,
        customer_group_id: None,
    };
    let draft = build_invoice(&c, &ctx, &refs_for(&c, &ctx), "7").unwrap();
    assert_eq!(draft.target, m("2.21"));
    assert_eq!(draft.total, m("2.21"));
    assert_eq!(draft.residue, m("-0.01"));
    assert_eq!(draft.invoice.line.last().unwrap().amount, m("0.19"));
}

#[test]
fn txn_detail_mode_sends_total_tax_and_none_mode_totals_ex_tax() {
    let o = order(
        vec![line(1, 10, "A", 1, "1.0050"), line(2, 11, "B", 1, "1.0050")],
        "0",
        "0",
        "0.2000",
        0,
    );
    let lines = bigcommerce::line_items(&o);
    let catalog = HashMap::new();
    let ctx = OrderContext {
        order: &o,
        lines: &lines,
        catalog: &catalog,
        customer_group_id: None,
    };

    let c = config(json!([]), json!({"mode": "txn_detail"}));
    let draft = build_invoice(&c, &ctx, &refs_for(&c, &ctx), "7").unwrap();
    assert_eq!(
        draft.invoice.txn_tax_detail.as_ref().unwrap().total_tax,
        Some(m("0.19"))
    );
    assert_eq!(draft.invoice.line.len(), 2);
    assert_eq!(draft.total, m("2.21"));

    let c = config(json!([]), json!({"mode": "none"}));
    assert_eq!(c.invoice.tax.mode, TaxMode::None);
    let draft = build_invoice(&c, &ctx, &refs_for(&c, &ctx), "7").unwrap();
    assert_eq!(draft.invoice.txn_tax_detail, None);
    // total_ex_tax 2.01; lines 1.01 + 1.01 → the largest line absorbs −0.01, keeping Qty × UnitPrice exact.
    assert_eq!(draft.total, m("2.01"));
    let amounts: Vec<Money> = draft.invoice.line.iter().map(|l| l.amount).collect();
    assert_eq!(amounts, vec![m("1.00"), m("1.01")]);
    let s = draft.invoice.line[0]
        .sales_item_line_detail
        .as_ref()
        .unwrap();
    assert_eq!(round2(s.qty.unwrap() * s.unit_price.unwrap()), d("1.00"));
}

#[test]
fn bundled_children_at_price_zero_are_skipped() {
    let products: Vec<OrderProduct> =
        bigcommerce::decode(&fixture("spec_v2_order_products_149.json")).unwrap();
    let mut o = order(vec![], "0", "0", "0", 0);
    o.subtotal_ex_tax = m("55.99");
    o.total_ex_tax = m("55.99");
    o.total_inc_tax = m("55.99");
    let c = config(json!([]), line_tax());
    let catalog = HashMap::new();
    let ctx = OrderContext {
        order: &o,
        lines: &products,
        catalog: &catalog,
        customer_group_id: None,
    };
    let draft = build_invoice(&c, &ctx, &refs_for(&c, &ctx), "7").unwrap();
    assert_eq!(draft.invoice.line.len(), 1);
    let desc = draft.invoice.line[0].description.as_deref().unwrap();
    assert!(
        desc.starts_with("Fog Linen Chambray Towel - Beige Stripe (Size: S"),
        "{desc}"
    );
    assert!(desc.ends_with("[SKU S-ORAN]"), "{desc}");
}

#[test]
fn recorded_order_218_does_not_tie_and_is_refused() {
    let o: Order = bigcommerce::decode(&fixture("spec_v2_order_218_with_fees.json")).unwrap();
    let products: Vec<OrderProduct> =
        bigcommerce::decode(&fixture("spec_v2_order_products_149.json")).unwrap();
    let err = check_totals(&o, &[]).unwrap_err();
    let MappingError::TotalsDoNotTie {
        check,
        bigcommerce,
        computed,
        difference,
    } = &err
    else {
        panic!("expected TotalsDoNotTie, got {err}")
    };
    assert!(check.starts_with("total_ex_tax"), "{check}");
    assert_eq!(*bigcommerce, m("64.53"));
    // 62.6793 + 11.09 + 0 + 0 + 16.30 − 5 − 5
    assert_eq!(*computed, m("80.0693"));
    assert_eq!(*difference, m("-15.5393"));
    assert!(err.to_string().contains("Nothing was posted"), "{err}");

    let c = MappingConfig::default();
    let catalog = HashMap::new();
    let ctx = OrderContext {
        order: &o,
        lines: &products,
        catalog: &catalog,
        customer_group_id: None,
    };
    let refs = refs_for(&c, &ctx);
    assert!(matches!(
        build_invoice(&c, &ctx, &refs, "1"),
        Err(MappingError::TotalsDoNotTie { .. })
    ));
}

#[test]
fn unknown_names_and_long_doc_numbers_are_plain_mapping_errors() {
    let c = config(
        json!([{"match": {"sku_prefix": "APP-"}, "item": "Apparel Sales"}]),
        line_tax(),
    );
    let o = order(vec![line(1, 10, "APP-1", 1, "10.0000")], "0", "0", "0", 0);
    let lines = bigcommerce::line_items(&o);
    let catalog = HashMap::new();
    let ctx = OrderContext {
        order: &o,
        lines: &lines,
        catalog: &catalog,
        customer_group_id: None,
    };
    let err = build_invoice(&c, &ctx, &ResolvedRefs::default(), "7").unwrap_err();
    assert_eq!(
        err.to_string(),
        "Item 'Apparel Sales' not found in QuickBooks: create it or change the mapping"
    );

    let mut c2 = c.clone();
    c2.invoice.doc_number = "BC-{channel_id}-{order_id}".into();
    let mut big = o.clone();
    big.id = bigcommerce::OrderId(12_345_678_901_234);
    big.channel_id = 1_234_567;
    let err = build_invoice(
        &c2,
        &OrderContext { order: &big, ..ctx },
        &refs_for(&c, &ctx),
        "7",
    )
    .unwrap_err();
    assert!(
        matches!(err, MappingError::DocNumberTooLong { len: 25, .. }),
        "{err}"
    );
}
