//! A VAT/GST company (CONTRACT §11) on the in-memory models: each line's `TaxCodeRef` from its
//! BigCommerce tax class (`invoice.tax.codes`), read from the order's tax rows only for such a
//! company; a tax-inclusive store posted `TaxInclusive` with the invoice still tied to the cent.

mod common;

use common::*;
use ml_core::http::Request;
use ml_core::sync::record::State;
use ml_sim::bigcommerce::OrderShape;
use rust_decimal::Decimal;
use serde_json::{Value, json};

const ORDER: u64 = 101;

fn put_mapping(w: &mut World, tax: Value) {
    let mapping = json!({"version": 1, "invoice": {"default_item": "BigCommerce Sales",
           "shipping": {"item": "Shipping Income"}, "discount": {"account": "Discounts given"},
           "tax": tax}});
    let resp = w.request(Request {
        method: "PUT".into(),
        path_and_query: "/admin/mapping".into(),
        headers: vec![
            ("authorization".into(), format!("Bearer {ADMIN_TOKEN}")),
            ("content-type".into(), "application/json".into()),
        ],
        body: serde_json::to_vec(&mapping).unwrap(),
    });
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
}

/// A world whose QuickBooks company is a UK company with VAT, holding `order`.
fn vat_world(order: Value) -> World {
    let mut w = World::new();
    w.put_order(ORDER, order);
    let mut q = w.qbo.borrow_mut();
    q.preferences = Some(json!({"TaxPrefs": {"UsingSalesTax": true},
        "CurrencyPrefs": {"HomeCurrency": {"value": "GBP"}}}));
    q.company_info = Some(json!({"Country": "GB"}));
    // Totals computed as QuickBooks does (net lines − discount + the tax sent), nothing added.
    q.automated_tax = Some(Decimal::ZERO);
    drop(q);
    w
}

fn line_ids(order: &Value) -> Vec<u64> {
    order["consignments"]["shipping"][0]["line_items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_u64().unwrap())
        .collect()
}

fn only_invoice(w: &World) -> Value {
    let q = w.qbo.borrow();
    assert_eq!(q.invoices.len(), 1, "exactly one invoice");
    q.invoices.values().next().unwrap().clone()
}

fn sales_lines(inv: &Value) -> Vec<Value> {
    inv["Line"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["DetailType"] == json!("SalesItemLineDetail"))
        .cloned()
        .collect()
}

fn dec(v: &Value) -> Decimal {
    v.to_string()
        .trim_matches('"')
        .parse()
        .unwrap_or_else(|e| panic!("{v} is not a number: {e}"))
}

fn row(product: Option<u64>, kind: &str, class: &str) -> Value {
    json!({"id": 1, "order_id": ORDER, "order_address_id": 1, "tax_rate_id": 1, "sales_tax_id": "",
           "tax_class_id": 0, "name": "VAT", "class": class, "rate": "20.0000", "priority": 0,
           "priority_amount": "1.0000", "line_amount": "1.0000", "order_pickup_method_id": 0,
           "order_product_id": product.map(|p| p.to_string()), "line_item_type": kind})
}

#[test]
fn a_vat_company_codes_each_line_by_its_bigcommerce_tax_class() {
    let order = order_json(ORDER, &plain_shape(1));
    let ids = line_ids(&order);
    assert_eq!(ids.len(), 2);
    let mut w = vat_world(order);
    w.bc.borrow_mut().taxes.insert(
        ORDER,
        vec![
            row(Some(ids[0]), "item", "Zero Rated"),
            row(Some(ids[1]), "item", "Standard"),
            row(None, "shipping", "Standard"),
        ],
    );
    // No `default`: every class the order names is mapped.
    put_mapping(
        &mut w,
        json!({"mode": "auto", "codes": {"Zero Rated": "0.0% Z", "Standard": "20.0% S"}}),
    );
    w.deliver("store/order/created", ORDER, &hash(1));
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted, "{:?}", rec.last_error);
    let inv = only_invoice(&w);
    let codes: Vec<Value> = sales_lines(&inv)
        .iter()
        .map(|l| l["SalesItemLineDetail"]["TaxCodeRef"]["value"].clone())
        .collect();
    assert_eq!(
        codes,
        vec![json!("tc-0.0% Z"), json!("tc-20.0% S"), json!("tc-20.0% S")],
        "product lines in order, then shipping"
    );
    assert_eq!(inv["GlobalTaxCalculation"], json!("TaxExcluded"));
    assert_eq!(w.bc.borrow().taxes_reads, 1, "one extra BigCommerce call");
}

#[test]
fn a_line_whose_class_is_not_mapped_takes_the_default_code() {
    let order = order_json(ORDER, &plain_shape(1));
    let ids = line_ids(&order);
    let mut w = vat_world(order);
    w.bc.borrow_mut()
        .taxes
        .insert(ORDER, vec![row(Some(ids[0]), "item", "Zero Rated")]);
    put_mapping(
        &mut w,
        json!({"mode": "auto", "codes": {"Zero Rated": "0.0% Z", "default": "20.0% S"}}),
    );
    w.deliver("store/order/created", ORDER, &hash(1));
    assert_eq!(w.record(ORDER).state, State::Posted);
    let codes: Vec<Value> = sales_lines(&only_invoice(&w))
        .iter()
        .map(|l| l["SalesItemLineDetail"]["TaxCodeRef"]["value"].clone())
        .collect();
    assert_eq!(
        codes,
        vec![json!("tc-0.0% Z"), json!("tc-20.0% S"), json!("tc-20.0% S")]
    );
}

#[test]
fn an_unknown_tax_class_with_no_default_fails_naming_the_class_to_add() {
    let order = order_json(ORDER, &plain_shape(1));
    let ids = line_ids(&order);
    let mut w = vat_world(order);
    w.bc.borrow_mut().taxes.insert(
        ORDER,
        vec![
            row(Some(ids[0]), "item", "Luxury Goods"),
            row(Some(ids[1]), "item", "Standard"),
            row(None, "shipping", "Standard"),
        ],
    );
    put_mapping(
        &mut w,
        json!({"mode": "auto", "codes": {"Standard": "20.0% S"}}),
    );
    w.deliver("store/order/created", ORDER, &hash(1));
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Failed);
    let err = rec.last_error.unwrap();
    assert!(
        err.contains("'Luxury Goods'") && err.contains("invoice.tax.codes"),
        "names the class and where to add it: {err}"
    );
    assert!(w.qbo.borrow().invoices.is_empty(), "never a wrong invoice");
}

#[test]
fn a_us_company_never_reads_the_tax_rows() {
    let mut w = World::new();
    w.put_order(ORDER, order_json(ORDER, &plain_shape(1)));
    w.deliver("store/order/created", ORDER, &hash(1));
    assert_eq!(w.record(ORDER).state, State::Posted);
    assert_eq!(w.bc.borrow().taxes_reads, 0);
}

#[test]
fn a_tax_inclusive_store_posts_tax_inclusive_with_net_amounts_and_ties_to_the_cent() {
    for seed in 1..=12u64 {
        let shape = OrderShape {
            lines: 3,
            tax_inclusive: true,
            tax_rate_bp: 2000,
            coupon: seed % 2 == 0,
            manual_discount: seed % 3 == 0,
            handling: seed % 4 == 0,
            ..plain_shape(seed)
        };
        let order = order_json(ORDER, &shape);
        let bc_total = dec(&order["total_inc_tax"]).round_dp(2);
        let bc_tax = dec(&order["total_tax"]).round_dp(2);
        let bc_lines: Vec<Value> = order["consignments"]["shipping"][0]["line_items"]
            .as_array()
            .unwrap()
            .clone();
        let mut w = vat_world(order);
        put_mapping(
            &mut w,
            json!({"mode": "auto", "codes": {"default": "20.0% S"}}),
        );
        w.deliver("store/order/created", ORDER, &hash(1));
        let rec = w.record(ORDER);
        assert_eq!(
            rec.state,
            State::Posted,
            "seed {seed}: {:?}",
            rec.last_error
        );
        let inv = only_invoice(&w);
        assert_eq!(
            inv["GlobalTaxCalculation"],
            json!("TaxInclusive"),
            "seed {seed}"
        );
        assert_eq!(
            dec(&inv["TotalAmt"]),
            bc_total,
            "seed {seed}: ties to the cent"
        );
        assert_eq!(
            dec(&inv["TxnTaxDetail"]["TotalTax"]).round_dp(2),
            dec(&inv["TxnTaxDetail"]["TotalTax"]),
        );
        assert!(
            (dec(&inv["TxnTaxDetail"]["TotalTax"]) - bc_tax).abs() <= Decimal::new(5, 2),
            "seed {seed}: BigCommerce's tax, give or take the rounding residue"
        );
        let lines = sales_lines(&inv);
        assert!(lines.len() >= bc_lines.len(), "seed {seed}: {inv}");
        for (l, bc) in lines.iter().zip(&bc_lines) {
            let d = &l["SalesItemLineDetail"];
            assert!(d.get("TaxInclusiveAmt").is_some(), "seed {seed}: {l}\n{bc}");
            // Amount is the net amount; TaxInclusiveAmt BigCommerce's own inc-tax figure.
            assert_eq!(
                dec(&l["Amount"]),
                dec(&bc["total_ex_tax"]).round_dp(2),
                "seed {seed}"
            );
            assert_eq!(
                dec(&d["TaxInclusiveAmt"]),
                dec(&bc["total_inc_tax"]).round_dp(2),
                "seed {seed}"
            );
            assert_eq!(
                (dec(&d["Qty"]) * dec(&d["UnitPrice"])).round_dp(2),
                dec(&l["Amount"]),
                "seed {seed}"
            );
        }
    }
}
