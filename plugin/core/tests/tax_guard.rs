//! The tax mode `auto` and the total guard (CONTRACT §11), on the in-memory models: a US
//! company with automated sales tax adds its own tax to an invoice sent without an override.

mod common;

use common::*;
use ml_core::http::Request;
use ml_core::sync::record::State;
use rust_decimal::Decimal;
use serde_json::{Value, json};

const ORDER: u64 = 101;

fn put_mapping(w: &mut World, mapping: Value) {
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

fn mapping(tax: Value) -> Value {
    json!({"version": 1, "invoice": {"default_item": "BigCommerce Sales",
           "shipping": {"item": "Shipping Income"}, "discount": {"account": "Discounts given"},
           "tax": tax}})
}

/// A world whose QuickBooks company computes 7.25 of tax on any invoice without an override.
fn ast_world() -> World {
    let mut w = World::new();
    w.put_order(ORDER, order_json(ORDER, &plain_shape(1)));
    w.qbo.borrow_mut().automated_tax = Some(Decimal::new(725, 2));
    w
}

fn only_invoice(w: &World) -> Value {
    let q = w.qbo.borrow();
    assert_eq!(q.invoices.len(), 1, "exactly one invoice");
    q.invoices.values().next().unwrap().clone()
}

#[test]
fn auto_mode_sends_bigcommerce_tax_as_the_override_so_quickbooks_adds_none() {
    let mut w = ast_world();
    let resp = w.deliver("store/order/created", ORDER, &hash(1));
    assert_eq!(resp.status, 200);
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted, "{:?}", rec.last_error);
    let inv = only_invoice(&w);
    let order = w.bc.borrow().orders[&ORDER].clone();
    let bc_total: Decimal = order["total_inc_tax"].as_str().unwrap().parse().unwrap();
    let qbo_total: Decimal = inv["TotalAmt"].as_str().unwrap().parse().unwrap();
    assert_eq!(qbo_total, bc_total.round_dp(2));
    assert!(inv.pointer("/TxnTaxDetail/TotalTax").is_some());
    // Preferences and CompanyInfo are read once per realm, then cached.
    assert_eq!(w.qbo.borrow().company_reads, 2);
    w.put_order(202, order_json(202, &plain_shape(2)));
    w.deliver("store/order/created", 202, &hash(2));
    assert_eq!(w.record(202).state, State::Posted);
    assert_eq!(w.qbo.borrow().company_reads, 2);
}

#[test]
fn line_mode_on_an_automated_sales_tax_company_fails_with_total_mismatch_and_a_replay_updates_the_same_invoice()
 {
    let mut w = ast_world();
    put_mapping(
        &mut w,
        mapping(json!({"mode": "line", "item": "Sales Tax Collected"})),
    );
    w.deliver("store/order/created", ORDER, &hash(1));
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Failed);
    assert_eq!(rec.reason.as_deref(), Some("total_mismatch"));
    let err = rec.last_error.clone().unwrap();
    let order = w.bc.borrow().orders[&ORDER].clone();
    let bc_total: Decimal = order["total_inc_tax"].as_str().unwrap().parse().unwrap();
    let bc_total = bc_total.round_dp(2).to_string();
    let qbo_total = only_invoice(&w)["TotalAmt"].as_str().unwrap().to_string();
    assert_ne!(qbo_total, bc_total);
    assert!(
        err.contains(&bc_total) && err.contains(&qbo_total) && err.contains("7.25"),
        "both totals and QuickBooks' tax: {err}"
    );
    assert!(err.contains("replay"), "{err}");
    let qbo_id = rec.qbo_id.clone().expect("the invoice stays linked");

    // Nothing retries it on its own.
    w.advance(3600);
    w.retry_due();
    assert_eq!(w.record(ORDER).state, State::Failed);

    // The fix: tax as the company books it. The replay updates the same invoice.
    put_mapping(&mut w, mapping(json!({"mode": "auto"})));
    let resp = w.admin("POST", &format!("/admin/replay/order/{ORDER}"));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted, "{:?}", rec.last_error);
    assert_eq!(rec.qbo_id.as_deref(), Some(qbo_id.as_str()));
    let q = w.qbo.borrow();
    assert_eq!(q.invoice_creates_accepted, 1, "never a second invoice");
    assert_eq!(q.invoice_updates_accepted, 1);
    let inv = q.invoices[&qbo_id].clone();
    assert_eq!(inv["TotalAmt"].as_str().unwrap(), bc_total);
}

#[test]
fn a_replay_after_the_company_itself_is_fixed_updates_the_invoice_even_with_the_same_content() {
    let mut w = ast_world();
    put_mapping(
        &mut w,
        mapping(json!({"mode": "line", "item": "Sales Tax Collected"})),
    );
    w.deliver("store/order/created", ORDER, &hash(1));
    assert_eq!(w.record(ORDER).reason.as_deref(), Some("total_mismatch"));
    // The company turns automated sales tax off for this customer (QuickBooks adds nothing now).
    w.qbo.borrow_mut().automated_tax = Some(Decimal::ZERO);
    w.admin("POST", &format!("/admin/replay/order/{ORDER}"));
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Posted, "{:?}", rec.last_error);
    let q = w.qbo.borrow();
    assert_eq!(q.invoice_creates_accepted, 1);
    assert_eq!(q.invoice_updates_accepted, 1);
}

#[test]
fn a_vat_company_gets_tax_codes_on_every_line_or_a_failure_naming_what_to_add() {
    let mut w = World::new();
    w.put_order(ORDER, order_json(ORDER, &plain_shape(1)));
    {
        let mut q = w.qbo.borrow_mut();
        q.preferences = Some(json!({"TaxPrefs": {"UsingSalesTax": true},
            "CurrencyPrefs": {"HomeCurrency": {"value": "GBP"}}}));
        q.company_info = Some(json!({"Country": "GB"}));
    }
    // No tax.codes: the record fails naming what to add.
    w.deliver("store/order/created", ORDER, &hash(1));
    let rec = w.record(ORDER);
    assert_eq!(rec.state, State::Failed);
    let err = rec.last_error.unwrap();
    assert!(
        err.contains("invoice.tax.codes") && err.contains("default"),
        "{err}"
    );
    assert!(w.qbo.borrow().invoices.is_empty(), "never a wrong invoice");

    put_mapping(
        &mut w,
        mapping(json!({"mode": "auto", "codes": {"default": "20.0% S"}})),
    );
    w.admin("POST", &format!("/admin/replay/order/{ORDER}"));
    assert_eq!(w.record(ORDER).state, State::Posted);
    let inv = only_invoice(&w);
    assert_eq!(inv["GlobalTaxCalculation"], json!("TaxExcluded"));
    for l in inv["Line"].as_array().unwrap() {
        if l["DetailType"] == json!("SalesItemLineDetail") {
            assert_eq!(
                l.pointer("/SalesItemLineDetail/TaxCodeRef/value"),
                Some(&json!("tc-20.0% S")),
                "{l}"
            );
        }
    }
}
