//! Tax booked the way the company books it (issue 12, CONTRACT §11): the real component in the
//! real harness against the QuickBooks simulator in each company profile — US with automated
//! sales tax, UK with VAT — plus the total guard and the mapping's name check.

use std::time::Duration;

use ml_e2e::env::{TestEnv, TestOptions, eventually_named};
use ml_sim::bigcommerce::{GeneratedOrder, OrderShape, generate};
use ml_sim::quickbooks::{CompanyProfile, QboSimConfig};
use rust_decimal::Decimal;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn shape(seed: u64) -> OrderShape {
    OrderShape {
        lines: 3,
        tax_inclusive: false,
        tax_rate_bp: 800,
        coupon: true,
        manual_discount: false,
        shipping: true,
        handling: false,
        wrapping: false,
        guest: false,
        seed,
    }
}

fn mapping(tax: Value) -> Value {
    json!({"version": 1, "invoice": {"default_item": "BigCommerce Sales",
           "shipping": {"item": "Shipping Income"}, "handling": {"item": "Handling Income"},
           "wrapping": {"item": "Gift Wrap Income"}, "discount": {"account": "Discounts given"},
           "tax": tax}})
}

fn dec(v: &Value) -> Decimal {
    match v {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.to_string().parse().unwrap(),
        other => panic!("not a number: {other}"),
    }
}

async fn start(profile: CompanyProfile) -> TestEnv {
    TestEnv::start(TestOptions {
        qbo: QboSimConfig {
            profile,
            ..QboSimConfig::default()
        },
        ..TestOptions::default()
    })
    .await
}

async fn wait_state(env: &TestEnv, id: u64, state: &str) -> Value {
    eventually_named(&format!("order {id} is {state}"), WAIT, || async {
        let (status, rec) = env.admin_get(&format!("/admin/records/order/{id}")).await;
        (status == 200 && rec["state"] == state).then_some(rec)
    })
    .await
}

fn invoices_for(env: &TestEnv, id: u64) -> Vec<Value> {
    env.qbo
        .invoices()
        .into_iter()
        .filter(|i| i["DocNumber"].as_str().and_then(|d| d.parse::<u64>().ok()) == Some(id))
        .collect()
}

/// An order of a UK store (prices in pounds).
fn uk_order(id: u64) -> GeneratedOrder {
    uk_order_with(id, &shape(id))
}

/// An order of the given shape from a UK store.
fn uk_order_with(id: u64, shape: &OrderShape) -> GeneratedOrder {
    let mut g = generate(id, shape);
    for k in [
        "currency_code",
        "default_currency_code",
        "store_default_currency_code",
    ] {
        g.order[k] = json!("GBP");
    }
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_us_company_with_automated_sales_tax_gets_bigcommerce_tax_as_the_override_and_adds_none()
{
    let env = start(CompanyProfile::UsAst).await;
    let g = generate(4101, &shape(1));
    let raw = g.order.clone();
    env.bc.place_order(g).await.unwrap();
    let rec = wait_state(&env, 4101, "posted").await;
    let invoices = invoices_for(&env, 4101);
    assert_eq!(invoices.len(), 1);
    let inv = &invoices[0];
    assert_eq!(rec["qbo_id"], inv["Id"]);
    assert_eq!(
        dec(&inv["TotalAmt"]),
        dec(&raw["total_inc_tax"]).round_dp(2),
        "ties to the cent: {inv}"
    );
    let gap = dec(&inv["TxnTaxDetail"]["TotalTax"]) - dec(&raw["total_tax"]).round_dp(2);
    assert!(
        gap.abs() <= Decimal::new(3, 2),
        "QuickBooks took BigCommerce's tax: {inv}"
    );
    assert!(inv.get("GlobalTaxCalculation").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uk_vat_company_gets_a_tax_code_on_every_line_and_the_invoice_ties() {
    let env = start(CompanyProfile::UkVat).await;
    // Without tax.codes the order fails naming what to add, and nothing is posted.
    env.bc.place_order(uk_order(4201)).await.unwrap();
    let rec = wait_state(&env, 4201, "failed").await;
    let err = rec["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("invoice.tax.codes") && err.contains("default"),
        "{rec}"
    );
    assert!(invoices_for(&env, 4201).is_empty(), "never a wrong invoice");

    let (status, body) = env
        .admin_put(
            "/admin/mapping",
            &mapping(json!({"mode": "auto", "codes": {"default": "20.0% S"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = env
        .admin_post("/admin/replay/order/4201", &Value::Null)
        .await;
    assert_eq!(status, 200, "{body}");
    let rec = wait_state(&env, 4201, "posted").await;
    let raw = env.bc.order(4201).unwrap();
    let invoices = invoices_for(&env, 4201);
    assert_eq!(invoices.len(), 1);
    let inv = &invoices[0];
    assert_eq!(rec["qbo_id"], inv["Id"]);
    assert_eq!(inv["GlobalTaxCalculation"], "TaxExcluded");
    assert_eq!(inv["CurrencyRef"]["value"], "GBP");
    assert_eq!(
        dec(&inv["TotalAmt"]),
        dec(&raw["total_inc_tax"]).round_dp(2),
        "ties to the cent: {inv}"
    );
    let codes = env.qbo.records("TaxCode");
    let standard = codes
        .iter()
        .find(|c| c["Name"] == "20.0% S")
        .expect("the VAT company has a standard-rate code");
    let sales: Vec<&Value> = inv["Line"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["DetailType"] == "SalesItemLineDetail")
        .collect();
    assert!(!sales.is_empty());
    for l in sales {
        assert_eq!(
            l["SalesItemLineDetail"]["TaxCodeRef"]["value"], standard["Id"],
            "{l}"
        );
    }

    // A second order posts straight away.
    env.bc.place_order(uk_order(4202)).await.unwrap();
    wait_state(&env, 4202, "posted").await;
    assert_eq!(invoices_for(&env, 4202).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tax_as_a_line_on_an_automated_sales_tax_company_fails_with_total_mismatch_and_a_replay_updates_the_same_invoice()
 {
    let env = start(CompanyProfile::UsAst).await;
    let (status, body) = env
        .admin_put(
            "/admin/mapping",
            &mapping(json!({"mode": "line", "item": "Sales Tax Collected"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let g = generate(4301, &shape(3));
    let total = dec(&g.order["total_inc_tax"]).round_dp(2);
    env.bc.place_order(g).await.unwrap();
    let rec = wait_state(&env, 4301, "failed").await;
    assert_eq!(rec["reason"], "total_mismatch", "{rec}");
    let invoices = invoices_for(&env, 4301);
    assert_eq!(invoices.len(), 1);
    let inv = &invoices[0];
    let qbo_total = dec(&inv["TotalAmt"]);
    assert!(qbo_total > total, "QuickBooks added its own tax: {inv}");
    let err = rec["last_error"].as_str().unwrap();
    let qbo_tax = dec(&inv["TxnTaxDetail"]["TotalTax"]);
    for figure in [total, qbo_total, qbo_tax] {
        assert!(
            err.contains(&figure.normalize().to_string()) || err.contains(&format!("{figure:.2}")),
            "{figure} in {err}"
        );
    }

    // The fix: tax as the company books it. The replay updates the same invoice.
    let (status, body) = env
        .admin_put("/admin/mapping", &mapping(json!({"mode": "auto"})))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = env
        .admin_post("/admin/replay/order/4301", &Value::Null)
        .await;
    assert_eq!(status, 200, "{body}");
    let rec = wait_state(&env, 4301, "posted").await;
    let invoices = invoices_for(&env, 4301);
    assert_eq!(invoices.len(), 1, "never a second invoice");
    assert_eq!(rec["qbo_id"], inv["Id"]);
    assert_eq!(invoices[0]["Id"], inv["Id"]);
    assert_eq!(dec(&invoices[0]["TotalAmt"]), total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_naming_what_the_company_lacks_is_refused_with_each_unknown_name() {
    let env = start(CompanyProfile::UkVat).await;
    let mut bad =
        mapping(json!({"mode": "auto", "codes": {"default": "20.0% S", "Books": "0.0% Zero"}}));
    bad["invoice"]["default_item"] = json!("BigComerce Sales");
    bad["invoice"]["rules"] = json!([
        {"match": {"sku_prefix": "APP-"}, "item": "Apparel Sales", "class": "Aparel"},
        {"match": {"category_id": 23}, "account": "Home Goods Revenu"}
    ]);
    let (status, body) = env.admin_put("/admin/mapping", &bad).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "unknown_names");
    let names: Vec<(String, String)> = body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["path"].as_str().unwrap().to_string(),
                p["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (path, name) in [
        ("$.invoice.default_item", "BigComerce Sales"),
        ("$.invoice.rules[0].class", "Aparel"),
        ("$.invoice.rules[1].account", "Home Goods Revenu"),
        ("$.invoice.tax.codes.Books", "0.0% Zero"),
    ] {
        assert!(
            names.contains(&(path.to_string(), name.to_string())),
            "{path} {name} in {body}"
        );
        assert!(body["message"].as_str().unwrap().contains(name), "{body}");
    }
    assert_eq!(names.len(), 4, "only the unknown names: {body}");
    // Nothing was saved.
    let (_, current) = env.admin_get("/admin/mapping").await;
    assert_ne!(current["invoice"]["default_item"], "BigComerce Sales");

    // Fixed, it is accepted.
    bad["invoice"]["default_item"] = json!("BigCommerce Sales");
    bad["invoice"]["rules"] = json!([
        {"match": {"sku_prefix": "APP-"}, "item": "Apparel Sales", "class": "Apparel"},
        {"match": {"category_id": 23}, "account": "Home Goods Revenue"}
    ]);
    bad["invoice"]["tax"]["codes"] = json!({"default": "20.0% S", "Books": "0.0% Z"});
    let (status, body) = env.admin_put("/admin/mapping", &bad).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uk_vat_company_books_a_tax_inclusive_store_tax_inclusive_and_the_invoice_ties() {
    let env = start(CompanyProfile::UkVat).await;
    let (status, body) = env
        .admin_put(
            "/admin/mapping",
            &mapping(json!({"mode": "auto", "codes": {"default": "20.0% S"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // VAT-inclusive prices at 20 %, with a coupon and a staff discount (stated with tax).
    for (n, id) in [4501u64, 4502, 4503].into_iter().enumerate() {
        let mut s = shape(id);
        s.tax_inclusive = true;
        s.tax_rate_bp = 2000;
        s.manual_discount = n == 1;
        s.handling = n == 2;
        let g = uk_order_with(id, &s);
        assert_eq!(g.order["is_tax_inclusive_pricing"], true);
        let raw = g.order.clone();
        let products = g.products.clone();
        env.bc.place_order(g).await.unwrap();
        let rec = wait_state(&env, id, "posted").await;
        let invoices = invoices_for(&env, id);
        assert_eq!(invoices.len(), 1);
        let inv = &invoices[0];
        assert_eq!(rec["qbo_id"], inv["Id"]);
        assert_eq!(inv["GlobalTaxCalculation"], "TaxInclusive", "{inv}");
        assert_eq!(
            dec(&inv["TotalAmt"]),
            dec(&raw["total_inc_tax"]).round_dp(2),
            "ties to the cent: {inv}"
        );
        let gap = dec(&inv["TxnTaxDetail"]["TotalTax"]) - dec(&raw["total_tax"]).round_dp(2);
        assert!(gap.abs() <= Decimal::new(5, 2), "BigCommerce's VAT: {inv}");
        let sales: Vec<&Value> = inv["Line"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["DetailType"] == "SalesItemLineDetail")
            .collect();
        for (l, p) in sales.iter().zip(&products) {
            let d = &l["SalesItemLineDetail"];
            assert_eq!(
                dec(&l["Amount"]),
                dec(&p["total_ex_tax"]).round_dp(2),
                "net: {l}"
            );
            assert_eq!(
                dec(&d["TaxInclusiveAmt"]),
                dec(&p["total_inc_tax"]).round_dp(2),
                "BigCommerce's price with VAT: {l}"
            );
            assert_eq!(dec(&d["Qty"]), dec(&p["quantity"]), "{l}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uk_vat_company_codes_each_line_by_its_bigcommerce_tax_class() {
    let env = start(CompanyProfile::UkVat).await;
    let (status, body) = env
        .admin_put(
            "/admin/mapping",
            &mapping(json!({"mode": "auto",
                "codes": {"Default Tax Class": "20.0% S", "Children's Clothing": "0.0% Z"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let g = uk_order(4601);
    let products = g.products.clone();
    let ids: Vec<u64> = products.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    let raw = g.order.clone();
    env.bc.place_order(g).await.unwrap();
    // Wait for the first run to settle (the generated tax rows name the default class only),
    // then name one line's class as a UK store would and replay.
    wait_state(&env, 4601, "posted").await;
    let row = |n: u64, product: Option<u64>, kind: &str, class: &str| {
        json!({"id": n, "order_id": 4601, "order_address_id": 1, "tax_rate_id": 1,
               "sales_tax_id": "", "tax_class_id": n, "name": "VAT", "class": class,
               "rate": "20.0000", "priority": 0, "priority_amount": "1.0000",
               "line_amount": "1.0000", "order_pickup_method_id": 0,
               "order_product_id": product.map(|p| p.to_string()), "line_item_type": kind})
    };
    env.bc
        .put_subresource(
            4601,
            "taxes",
            json!([
                row(1, Some(ids[0]), "item", "Children's Clothing"),
                row(2, Some(ids[1]), "item", "Default Tax Class"),
                row(3, None, "shipping", "Default Tax Class"),
                row(4, Some(ids[2]), "item", "Luxury Goods"),
            ]),
        )
        .unwrap();
    // "Luxury Goods" is mapped nowhere and there is no default: failed, naming it.
    let (status, body) = env
        .admin_post("/admin/replay/order/4601", &Value::Null)
        .await;
    assert_eq!(status, 200, "{body}");
    let rec = wait_state(&env, 4601, "failed").await;
    let err = rec["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("Luxury Goods") && err.contains("invoice.tax.codes"),
        "{rec}"
    );

    let (status, body) = env
        .admin_put(
            "/admin/mapping",
            &mapping(json!({"mode": "auto",
                "codes": {"Default Tax Class": "20.0% S", "Children's Clothing": "0.0% Z",
                          "default": "5.0% R"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = env
        .admin_post("/admin/replay/order/4601", &Value::Null)
        .await;
    assert_eq!(status, 200, "{body}");
    let rec = wait_state(&env, 4601, "posted").await;
    let invoices = invoices_for(&env, 4601);
    assert_eq!(invoices.len(), 1, "the same invoice, updated");
    let inv = &invoices[0];
    assert_eq!(rec["qbo_id"], inv["Id"]);
    let code_id = |name: &str| {
        env.qbo
            .records("TaxCode")
            .into_iter()
            .find(|c| c["Name"] == name)
            .unwrap()["Id"]
            .clone()
    };
    let sales: Vec<&Value> = inv["Line"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["DetailType"] == "SalesItemLineDetail")
        .collect();
    let codes: Vec<Value> = sales
        .iter()
        .map(|l| l["SalesItemLineDetail"]["TaxCodeRef"]["value"].clone())
        .collect();
    assert_eq!(
        codes[..4],
        [
            code_id("0.0% Z"),
            code_id("20.0% S"),
            code_id("5.0% R"),
            code_id("20.0% S")
        ],
        "three product lines, then shipping: {inv}"
    );
    assert_eq!(
        dec(&inv["TotalAmt"]),
        dec(&raw["total_inc_tax"]).round_dp(2),
        "ties to the cent: {inv}"
    );
}
