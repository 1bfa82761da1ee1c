//! The QuickBooks simulator's company profiles (CONTRACT §11): a US company with automated
//! sales tax and a UK company with VAT, over real HTTP.

use ml_sim::quickbooks::{CompanyProfile, QboSim, QboSimConfig, QboSimHandle};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Api {
    sim: QboSimHandle,
    http: reqwest::Client,
    token: String,
}

impl Api {
    async fn start(profile: CompanyProfile) -> Api {
        let sim = QboSim::start(QboSimConfig {
            profile,
            ..QboSimConfig::default()
        })
        .await
        .expect("simulator starts");
        let token = sim.issue_access_token();
        Api {
            sim,
            http: reqwest::Client::new(),
            token,
        }
    }

    fn url(&self, rest: &str) -> String {
        format!(
            "{}/v3/company/{}/{rest}",
            self.sim.base_url(),
            self.sim.realm_id()
        )
    }

    async fn get(&self, rest: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(self.url(rest))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap())
    }

    async fn query(&self, stmt: &str) -> Vec<Value> {
        let resp = self
            .http
            .get(
                url::Url::parse_with_params(
                    &self.url("query"),
                    &[("query", stmt), ("minorversion", "75")],
                )
                .unwrap()
                .to_string(),
            )
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let v: Value = resp.json().await.unwrap();
        let entity = stmt.split_whitespace().nth(3).unwrap();
        v["QueryResponse"][entity]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn id_of(&self, entity: &str, name: &str) -> String {
        let found = self
            .query(&format!("select * from {entity} where Name = '{name}'"))
            .await;
        found[0]["Id"].as_str().unwrap().to_string()
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap())
    }

    async fn customer(&self) -> String {
        let (s, v) = self
            .post("customer", json!({"DisplayName": "Tax Test Shopper"}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["Customer"]["Id"].as_str().unwrap().to_string()
    }
}

fn sale(item: &str, amount: &str, code: Option<&str>) -> Value {
    let mut d =
        json!({"ItemRef": {"value": item}, "Qty": 1, "UnitPrice": amount.parse::<f64>().unwrap()});
    if let Some(c) = code {
        d["TaxCodeRef"] = json!({"value": c});
    }
    json!({"Amount": amount.parse::<f64>().unwrap(), "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": d})
}

fn num(v: &Value) -> String {
    let d: rust_decimal::Decimal = v.to_string().trim_matches('"').parse().unwrap();
    d.normalize().to_string()
}

#[tokio::test]
async fn the_us_profile_adds_its_own_sales_tax_unless_the_total_tax_is_overridden() {
    let api = Api::start(CompanyProfile::UsAst).await;
    let cust = api.customer().await;
    let item = api.id_of("Item", "BigCommerce Sales").await;
    let tax_item = api.id_of("Item", "Sales Tax Collected").await;

    // Tax posted as a line, no override: QuickBooks adds 8.25 % on top — the double tax.
    let (s, v) = api
        .post(
            "invoice",
            json!({"CustomerRef": {"value": cust},
                   "Line": [sale(&item, "100.00", None), sale(&tax_item, "8.00", Some("NON"))]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(num(&v["Invoice"]["TxnTaxDetail"]["TotalTax"]), "8.25");
    assert_eq!(num(&v["Invoice"]["TotalAmt"]), "116.25");

    // With the override, QuickBooks takes the tax it is given.
    let (s, v) = api
        .post(
            "invoice",
            json!({"CustomerRef": {"value": cust}, "Line": [sale(&item, "100.00", None)],
                   "TxnTaxDetail": {"TotalTax": 8.00}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(num(&v["Invoice"]["TotalAmt"]), "108");

    // GlobalTaxCalculation is for companies outside the US.
    let (s, v) = api
        .post(
            "invoice",
            json!({"CustomerRef": {"value": cust}, "Line": [sale(&item, "100.00", None)],
                   "GlobalTaxCalculation": "TaxExcluded"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn the_uk_profile_requires_a_tax_code_on_every_line_and_computes_vat_from_its_rate() {
    let api = Api::start(CompanyProfile::UkVat).await;
    let cust = api.customer().await;
    let item = api.id_of("Item", "BigCommerce Sales").await;
    let standard = api.id_of("TaxCode", "20.0% S").await;
    let zero = api.id_of("TaxCode", "0.0% Z").await;

    // A line without a tax code: the ValidationFault QuickBooks gives VAT companies.
    let (s, v) = api
        .post(
            "invoice",
            json!({"CustomerRef": {"value": cust}, "CurrencyRef": {"value": "GBP"},
                   "Line": [sale(&item, "100.00", Some(&standard)), sale(&item, "10.00", None)]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let err = &v["Fault"]["Error"][0];
    assert_eq!(err["code"], "6000", "{v}");
    assert!(err["Detail"].as_str().unwrap().contains("VAT rate"), "{v}");
    assert_eq!(v["Fault"]["type"], "ValidationFault");

    // A code the company lacks.
    let (s, _) = api
        .post(
            "invoice",
            json!({"CustomerRef": {"value": cust}, "Line": [sale(&item, "10.00", Some("TAX"))]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Tax excluded (the default): 20 % of 100 on top, nothing on the zero-rated 10.
    let (s, v) = api
        .post(
            "invoice",
            json!({"CustomerRef": {"value": cust},
                   "Line": [sale(&item, "100.00", Some(&standard)), sale(&item, "10.00", Some(&zero))]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let inv = &v["Invoice"];
    assert_eq!(inv["GlobalTaxCalculation"], "TaxExcluded");
    assert_eq!(num(&inv["TxnTaxDetail"]["TotalTax"]), "20");
    assert_eq!(num(&inv["TotalAmt"]), "130");
    assert_eq!(inv["CurrencyRef"]["value"], "GBP");

    // Tax inclusive: `Amount` is the net amount, as QuickBooks stores it; the tax is the rate's
    // share of the amount with tax (`TaxInclusiveAmt` when sent, else the net grossed up).
    let mut gross = sale(&item, "100.00", Some(&standard));
    gross["SalesItemLineDetail"]["TaxInclusiveAmt"] = json!(120.00);
    let (s, v) = api
        .post(
            "invoice",
            json!({"CustomerRef": {"value": cust}, "GlobalTaxCalculation": "TaxInclusive",
                   "Line": [gross, sale(&item, "10.00", Some(&zero))]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["Invoice"]["GlobalTaxCalculation"], "TaxInclusive");
    assert_eq!(num(&v["Invoice"]["TxnTaxDetail"]["TotalTax"]), "20");
    assert_eq!(num(&v["Invoice"]["TotalAmt"]), "130");
    let (s, v) = api
        .post(
            "invoice",
            json!({"CustomerRef": {"value": cust}, "GlobalTaxCalculation": "TaxInclusive",
                   "Line": [sale(&item, "100.00", Some(&standard))]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(num(&v["Invoice"]["TxnTaxDetail"]["TotalTax"]), "20");
    assert_eq!(num(&v["Invoice"]["TotalAmt"]), "120");
    // With an override, QuickBooks takes the tax as sent.
    let mut gross = sale(&item, "83.33", Some(&standard));
    gross["SalesItemLineDetail"]["TaxInclusiveAmt"] = json!(100.00);
    let (s, v) = api
        .post(
            "invoice",
            json!({"CustomerRef": {"value": cust}, "GlobalTaxCalculation": "TaxInclusive",
                   "Line": [gross], "TxnTaxDetail": {"TotalTax": 16.67}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(num(&v["Invoice"]["TotalAmt"]), "100");

    // An override is taken as given; NotApplicable books no tax.
    let (s, v) = api
        .post(
            "invoice",
            json!({"CustomerRef": {"value": cust}, "GlobalTaxCalculation": "TaxExcluded",
                   "Line": [sale(&item, "100.00", Some(&standard))], "TxnTaxDetail": {"TotalTax": 19.99}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(num(&v["Invoice"]["TotalAmt"]), "119.99");
    let (s, v) = api
        .post(
            "invoice",
            json!({"CustomerRef": {"value": cust}, "GlobalTaxCalculation": "NotApplicable",
                   "Line": [sale(&item, "100.00", Some(&standard))]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(num(&v["Invoice"]["TotalAmt"]), "100");
    let (s, _) = api
        .post(
            "invoice",
            json!({"CustomerRef": {"value": cust}, "GlobalTaxCalculation": "Sometimes",
                   "Line": [sale(&item, "100.00", Some(&standard))]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn each_profile_serves_its_preferences_company_info_tax_codes_and_rates() {
    for (profile, country, currency, partner, codes) in [
        (CompanyProfile::UsAst, "US", "USD", true, vec!["TAX", "NON"]),
        (
            CompanyProfile::UkVat,
            "GB",
            "GBP",
            false,
            vec!["20.0% S", "5.0% R", "0.0% Z", "Exempt"],
        ),
    ] {
        let api = Api::start(profile).await;
        let prefs = api.query("select * from Preferences").await;
        let p = &prefs[0];
        assert_eq!(p["TaxPrefs"]["UsingSalesTax"], true, "{profile:?}");
        assert_eq!(p["TaxPrefs"]["PartnerTaxEnabled"], partner, "{profile:?}");
        assert_eq!(p["CurrencyPrefs"]["HomeCurrency"]["value"], currency);
        assert_eq!(p["CurrencyPrefs"]["MultiCurrencyEnabled"], false);
        let (s, read) = api.get("preferences").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(&read["Preferences"], p);
        let (s, info) = api
            .get(&format!("companyinfo/{}", api.sim.realm_id()))
            .await;
        assert_eq!(s, StatusCode::OK, "{info}");
        assert_eq!(info["CompanyInfo"]["Country"], country);
        let found: Vec<String> = api
            .query("select * from TaxCode")
            .await
            .iter()
            .map(|c| c["Name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(found, codes, "{profile:?}");
        let rates = api.query("select * from TaxRate").await;
        assert!(!rates.is_empty(), "{profile:?}");
        for r in &rates {
            assert!(r.get("RateValue").is_some(), "{r}");
            let id = r["Id"].as_str().unwrap();
            let (s, one) = api.get(&format!("taxrate/{id}")).await;
            assert_eq!(s, StatusCode::OK, "{one}");
            assert_eq!(&one["TaxRate"]["Name"], &r["Name"]);
        }
        assert_eq!(CompanyProfile::from_name(profile.name()), Some(profile));
    }
}
