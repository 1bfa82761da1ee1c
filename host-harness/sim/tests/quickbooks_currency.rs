//! The QuickBooks simulator's currencies: as strict as QuickBooks about the home currency,
//! multicurrency, the enabled currency list and one currency per customer.

use ml_sim::quickbooks::{Currencies, QboSim, QboSimConfig, QboSimHandle};
use serde_json::{Value, json};

async fn company(currencies: Currencies) -> QboSimHandle {
    QboSim::start(QboSimConfig {
        currencies,
        ..QboSimConfig::default()
    })
    .await
    .expect("simulator starts")
}

fn item_id(sim: &QboSimHandle, name: &str) -> Value {
    sim.items()
        .into_iter()
        .find(|i| i["Name"] == name)
        .map(|i| i["Id"].clone())
        .expect("seeded item")
}

fn invoice(
    sim: &QboSimHandle,
    customer: &Value,
    currency: Option<&str>,
    rate: Option<&str>,
) -> Value {
    let mut inv = json!({
        "CustomerRef": {"value": customer},
        "Line": [{"Amount": 10.0, "DetailType": "SalesItemLineDetail",
                  "SalesItemLineDetail": {"ItemRef": {"value": item_id(sim, "BigCommerce Sales")},
                                          "Qty": 1, "UnitPrice": 10.0}}],
    });
    if let Some(c) = currency {
        inv["CurrencyRef"] = json!({"value": c});
    }
    if let Some(r) = rate {
        inv["ExchangeRate"] = serde_json::from_str(r).unwrap();
    }
    inv
}

fn fault_text(v: &Value) -> String {
    v.to_string()
}

#[tokio::test]
async fn without_multicurrency_a_foreign_customer_or_invoice_is_refused() {
    let sim = company(Currencies::default()).await;
    let err = sim
        .post(
            "customer",
            json!({"DisplayName": "Ana (EUR)", "CurrencyRef": {"value": "EUR"}}),
        )
        .unwrap_err();
    assert!(
        fault_text(&err).contains("multicurrency is not enabled"),
        "{err}"
    );
    let ana = sim.post("customer", json!({"DisplayName": "Ana"})).unwrap();
    assert_eq!(
        ana["CurrencyRef"]["value"], "USD",
        "home currency by default"
    );
    let err = sim
        .post(
            "invoice",
            invoice(&sim, &ana["Id"], Some("EUR"), Some("1.1")),
        )
        .unwrap_err();
    assert!(fault_text(&err).contains("EUR"), "{err}");
}

#[tokio::test]
async fn a_currency_not_in_the_list_is_refused_and_an_enabled_one_is_a_company_currency() {
    let sim = company(Currencies::multicurrency("USD", &["EUR"])).await;
    let listed: Vec<Value> = sim.records("CompanyCurrency");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["Code"], "EUR");
    let err = sim
        .post(
            "customer",
            json!({"DisplayName": "Ana (GBP)", "CurrencyRef": {"value": "GBP"}}),
        )
        .unwrap_err();
    assert!(fault_text(&err).contains("GBP"), "{err}");
    let euro = sim
        .post(
            "customer",
            json!({"DisplayName": "Ana (EUR)", "CurrencyRef": {"value": "EUR"}}),
        )
        .unwrap();
    assert_eq!(euro["CurrencyRef"]["value"], "EUR");
}

#[tokio::test]
async fn an_invoice_must_be_in_its_customers_currency_and_gets_a_rate_when_foreign() {
    let sim = company(Currencies::multicurrency("USD", &["EUR"])).await;
    let home = sim.post("customer", json!({"DisplayName": "Ana"})).unwrap();
    let euro = sim
        .post(
            "customer",
            json!({"DisplayName": "Ana (EUR)", "CurrencyRef": {"value": "EUR"}}),
        )
        .unwrap();
    // A euro invoice for the dollar customer, and the other way round: refused.
    let err = sim
        .post(
            "invoice",
            invoice(&sim, &home["Id"], Some("EUR"), Some("1.25")),
        )
        .unwrap_err();
    assert!(fault_text(&err).contains("customer's currency"), "{err}");
    let err = sim
        .post("invoice", invoice(&sim, &euro["Id"], None, None))
        .unwrap_err();
    assert!(fault_text(&err).contains("customer's currency"), "{err}");
    // In the customer's currency: the rate sent is kept; none sent gets QuickBooks' own.
    let inv = sim
        .post(
            "invoice",
            invoice(&sim, &euro["Id"], Some("EUR"), Some("1.25")),
        )
        .unwrap();
    assert_eq!(inv["ExchangeRate"].to_string(), "1.25");
    let inv = sim
        .post("invoice", invoice(&sim, &euro["Id"], Some("EUR"), None))
        .unwrap();
    assert!(inv.get("ExchangeRate").is_some(), "{inv}");
    // A home-currency invoice takes no other rate than 1.
    let err = sim
        .post(
            "invoice",
            invoice(&sim, &home["Id"], Some("USD"), Some("1.1")),
        )
        .unwrap_err();
    assert!(fault_text(&err).contains("ExchangeRate"), "{err}");
}
