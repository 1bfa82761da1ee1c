//! Accounting rules (issue 12, CONTRACT §11): invoice dates in the store's time zone, foreign
//! currencies with their own customer, gift certificates sold on their liability item — the
//! real component in the real harness against the simulators over HTTP.

use std::time::Duration;

use ml_e2e::env::{TestEnv, TestOptions, eventually_named};
use ml_sim::bigcommerce::ledger::{add_gift_certificate, created_at, in_currency};
use ml_sim::bigcommerce::{
    BcSimConfig, GeneratedOrder, OrderShape, Payment, generate, generate_paid,
};
use ml_sim::quickbooks::{Currencies, QboSimConfig};
use rust_decimal::Decimal;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn shape(seed: u64, coupon: bool) -> OrderShape {
    OrderShape {
        lines: 2,
        tax_inclusive: false,
        tax_rate_bp: 800,
        coupon,
        manual_discount: false,
        shipping: true,
        handling: false,
        wrapping: false,
        guest: false,
        seed,
    }
}

fn dec(v: &Value) -> Decimal {
    match v {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.to_string().parse().unwrap(),
        other => panic!("not a number: {other}"),
    }
}

async fn wait_state(env: &TestEnv, id: u64, state: &str) -> Value {
    eventually_named(&format!("order {id} is {state}"), WAIT, || async {
        let (status, rec) = env.admin_get(&format!("/admin/records/order/{id}")).await;
        (status == 200 && rec["state"] == state).then_some(rec)
    })
    .await
}

fn invoice(env: &TestEnv, doc: &str) -> Value {
    let found: Vec<Value> = env
        .qbo
        .invoices()
        .into_iter()
        .filter(|i| i["DocNumber"] == doc)
        .collect();
    assert_eq!(found.len(), 1, "one invoice {doc}");
    found.into_iter().next().unwrap()
}

fn customer(env: &TestEnv, id: &Value) -> Value {
    env.qbo
        .customers()
        .into_iter()
        .find(|c| &c["Id"] == id)
        .expect("the invoice's customer")
}

/// A second order by the buyer of `first`.
fn same_buyer(first: &GeneratedOrder, id: u64, seed: u64) -> GeneratedOrder {
    let mut o = generate(id, &shape(seed, false));
    o.order["customer_id"] = first.order["customer_id"].clone();
    o.order["billing_address"] = first.order["billing_address"].clone();
    o.customer = first.customer.clone();
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evening_order_in_california_is_invoiced_on_its_own_day() {
    // No store_timezone variable: the store's own setting (GET /v2/store) is used.
    let env = TestEnv::start(TestOptions {
        bc: BcSimConfig {
            store_timezone: "America/Los_Angeles".into(),
            ..BcSimConfig::default()
        },
        ..TestOptions::default()
    })
    .await;
    // 20:30 on 14 March in Los Angeles (PDT) is 03:30 on the 15th in UTC.
    let mut order = generate(1601, &shape(1, false));
    created_at(&mut order, "Sat, 15 Mar 2025 03:30:00 +0000");
    env.bc.place_order(order).await.unwrap();
    wait_state(&env, 1601, "posted").await;
    assert_eq!(invoice(&env, "1601")["TxnDate"], "2025-03-14");

    // A second order reads no store profile again (cached).
    let mut order = generate(1602, &shape(2, false));
    created_at(&mut order, "Sat, 15 Mar 2025 06:59:59 +0000");
    env.bc.place_order(order).await.unwrap();
    wait_state(&env, 1602, "posted").await;
    assert_eq!(invoice(&env, "1602")["TxnDate"], "2025-03-14");
    assert_eq!(env.bc.control().calls_to("/v2/store"), 1, "read once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_currency_order_posts_in_its_currency_to_a_customer_of_its_own() {
    let env = TestEnv::start(TestOptions {
        qbo: QboSimConfig {
            currencies: Currencies::multicurrency("USD", &["EUR"]),
            ..QboSimConfig::default()
        },
        ..TestOptions::default()
    })
    .await;
    // The buyer first pays in dollars, then in euros.
    let home = generate(1611, &shape(11, false));
    let mut euro = same_buyer(&home, 1612, 12);
    // BigCommerce: 1 USD = 0.8 EUR; QuickBooks: 1 EUR = 1.25 USD.
    in_currency(&mut euro, "EUR", "0.8000000000");
    let euro_total = dec(&euro.order["total_inc_tax"]).round_dp(2);
    env.bc.place_order(home).await.unwrap();
    wait_state(&env, 1611, "posted").await;
    env.bc.place_order(euro).await.unwrap();
    wait_state(&env, 1612, "posted").await;

    let usd = invoice(&env, "1611");
    let eur = invoice(&env, "1612");
    assert_eq!(usd["CurrencyRef"]["value"], "USD");
    assert_eq!(eur["CurrencyRef"]["value"], "EUR");
    assert_eq!(dec(&eur["ExchangeRate"]), Decimal::new(125, 2));
    assert_eq!(dec(&eur["TotalAmt"]), euro_total, "in euros, to the cent");
    assert_ne!(
        usd["CustomerRef"]["value"], eur["CustomerRef"]["value"],
        "one customer per currency"
    );
    let usd_customer = customer(&env, &usd["CustomerRef"]["value"]);
    let eur_customer = customer(&env, &eur["CustomerRef"]["value"]);
    assert_eq!(eur_customer["CurrencyRef"]["value"], "EUR");
    assert_eq!(
        eur_customer["DisplayName"].as_str().unwrap(),
        format!("{} (EUR)", usd_customer["DisplayName"].as_str().unwrap())
    );

    // Another euro order by the same buyer goes to the same euro customer.
    let mut again = same_buyer(&generate(1611, &shape(11, false)), 1613, 13);
    in_currency(&mut again, "EUR", "0.8000000000");
    env.bc.place_order(again).await.unwrap();
    wait_state(&env, 1613, "posted").await;
    assert_eq!(
        invoice(&env, "1613")["CustomerRef"]["value"],
        eur["CustomerRef"]["value"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_currency_the_company_has_not_enabled_or_without_cents_fails_naming_it() {
    let env = TestEnv::start(TestOptions {
        qbo: QboSimConfig {
            currencies: Currencies::multicurrency("USD", &["EUR"]),
            ..QboSimConfig::default()
        },
        ..TestOptions::default()
    })
    .await;
    let mut pounds = generate(1621, &shape(21, false));
    in_currency(&mut pounds, "GBP", "0.7500000000");
    env.bc.place_order(pounds).await.unwrap();
    let rec = wait_state(&env, 1621, "failed").await;
    let err = rec["last_error"].to_string();
    assert!(
        err.contains("GBP") && err.contains("Multicurrency"),
        "{err}"
    );

    let mut yen = generate(1622, &shape(22, false));
    in_currency(&mut yen, "JPY", "150.0000000000");
    env.bc.place_order(yen).await.unwrap();
    let rec = wait_state(&env, 1622, "failed").await;
    let err = rec["last_error"].to_string();
    assert!(err.contains("JPY") && err.contains("decimal"), "{err}");
    assert!(
        env.qbo.invoices().is_empty(),
        "nothing posted for either order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gift_certificate_sold_is_booked_on_the_liability_item_not_income() {
    let env = TestEnv::start(TestOptions::default()).await;
    let mut order = generate(1631, &shape(31, true));
    add_gift_certificate(&mut order, 5000, "friend@example.com");
    let total = dec(&order.order["total_inc_tax"]).round_dp(2);
    env.bc.place_order(order).await.unwrap();
    wait_state(&env, 1631, "posted").await;
    let inv = invoice(&env, "1631");
    assert_eq!(dec(&inv["TotalAmt"]), total, "ties to the cent");
    let gift_item = env
        .qbo
        .items()
        .into_iter()
        .find(|i| i["Name"] == "Gift Certificates")
        .expect("the seeded gift certificate item");
    let lines: Vec<&Value> = inv["Line"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["SalesItemLineDetail"]["ItemRef"]["value"] == gift_item["Id"])
        .collect();
    assert_eq!(lines.len(), 1, "one gift certificate line");
    assert_eq!(dec(&lines[0]["Amount"]), Decimal::new(5000, 2));
    assert_eq!(dec(&lines[0]["SalesItemLineDetail"]["Qty"]), Decimal::ONE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_foreign_currency_order_posts_its_payment_in_that_currency_at_the_invoice_rate() {
    let env = TestEnv::start(TestOptions {
        qbo: QboSimConfig {
            currencies: Currencies::multicurrency("USD", &["EUR"]),
            ..QboSimConfig::default()
        },
        ..TestOptions::default()
    })
    .await;
    // Paid by card in euros; BigCommerce: 1 USD = 0.8 EUR, so 1 EUR = 1.25 USD.
    let mut euro = generate_paid(1631, &shape(31, true), Payment::Captured);
    in_currency(&mut euro, "EUR", "0.8000000000");
    let euro_total = dec(&euro.order["total_inc_tax"]).round_dp(2);
    env.bc.place_order(euro).await.unwrap();
    let rec = wait_state(&env, 1631, "posted").await;
    let inv = invoice(&env, "1631");
    let payments: Vec<Value> = env
        .qbo
        .records("Payment")
        .into_iter()
        .filter(|p| p["Line"][0]["LinkedTxn"][0]["TxnId"] == inv["Id"])
        .collect();
    assert_eq!(payments.len(), 1, "{rec}");
    let p = &payments[0];
    assert_eq!(p["CurrencyRef"]["value"], "EUR", "{p}");
    assert_eq!(
        dec(&p["ExchangeRate"]),
        Decimal::new(125, 2),
        "the invoice's rate: {p}"
    );
    assert_eq!(
        p["CustomerRef"]["value"], inv["CustomerRef"]["value"],
        "the euro customer"
    );
    assert_eq!(dec(&p["TotalAmt"]), euro_total, "in euros, to the cent");
    assert_eq!(
        customer(&env, &p["CustomerRef"]["value"])["CurrencyRef"]["value"],
        "EUR"
    );
}
