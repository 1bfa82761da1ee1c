//! Every JSON property the QuickBooks simulator emits (and every property it accepts) must exist
//! in Intuit's XSDs, read in place from `shared/specs/quickbooks/intuit-xsd/`.
//!
//! JSON mirrors the XML: elements and attributes both become properties; simple-content types
//! (`ReferenceType`, `MemoRef`) carry their text as `value`. Extension bases are followed
//! (IntuitEntity → NameBase → Customer, Transaction → SalesTransaction → Invoice, …).

use std::collections::{BTreeSet, HashMap};

use ml_sim::quickbooks::{QboSim, QboSimConfig, schema};
use roxmltree::{Document, Node};
use serde_json::{Value, json};

const XSD_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/specs/quickbooks/intuit-xsd"
);
const XS: &str = "http://www.w3.org/2001/XMLSchema";

struct Schema {
    types: HashMap<String, Node<'static, 'static>>,
    elements: HashMap<String, Node<'static, 'static>>,
}

/// A property: its name and, for complex content, the complexType node that describes it.
type Prop = (String, Option<Node<'static, 'static>>);

fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

impl Schema {
    fn load() -> Schema {
        let mut types = HashMap::new();
        let mut elements = HashMap::new();
        for file in [
            "IntuitBaseTypes.xsd",
            "IntuitNamesTypes.xsd",
            "Finance.xsd",
            "Report.xsd",
            "IntuitRestServiceDef.xsd",
            "SalesTax.xsd",
        ] {
            let text: &'static str = Box::leak(
                std::fs::read_to_string(format!("{XSD_DIR}/{file}"))
                    .unwrap_or_else(|e| panic!("read {file}: {e}"))
                    .into_boxed_str(),
            );
            let doc: &'static Document<'static> =
                Box::leak(Box::new(Document::parse(text).expect("XSD parses")));
            for n in doc.root_element().children().filter(Node::is_element) {
                if n.tag_name().namespace() != Some(XS) {
                    continue;
                }
                match (n.tag_name().name(), n.attribute("name")) {
                    ("complexType", Some(name)) => {
                        types.insert(name.to_string(), n);
                    }
                    ("element", Some(name)) => {
                        elements.insert(name.to_string(), n);
                    }
                    _ => {}
                }
            }
        }
        Schema { types, elements }
    }

    fn element_type(&self, el: Node<'static, 'static>) -> Option<Node<'static, 'static>> {
        if let Some(t) = el.attribute("type") {
            return self.types.get(local(t)).copied();
        }
        el.children().find(|c| c.tag_name().name() == "complexType")
    }

    fn props(&self, ty: Node<'static, 'static>) -> Vec<Prop> {
        let mut out = Vec::new();
        self.walk(ty, &mut out);
        out
    }

    fn walk(&self, n: Node<'static, 'static>, out: &mut Vec<Prop>) {
        for c in n.children().filter(Node::is_element) {
            match c.tag_name().name() {
                "element" => {
                    if let Some(name) = c.attribute("name") {
                        out.push((name.to_string(), self.element_type(c)));
                    } else if let Some(r) = c.attribute("ref") {
                        let r = local(r);
                        if r == "IntuitObject" {
                            for (name, el) in &self.elements {
                                if el.attribute("substitutionGroup").map(local)
                                    == Some("IntuitObject")
                                {
                                    out.push((name.clone(), self.element_type(*el)));
                                }
                            }
                        } else if let Some(el) = self.elements.get(r) {
                            out.push((r.to_string(), self.element_type(*el)));
                        }
                    }
                }
                "attribute" => {
                    if let Some(name) = c.attribute("name") {
                        out.push((name.to_string(), None));
                    }
                }
                "simpleContent" => {
                    out.push(("value".to_string(), None));
                    self.walk(c, out);
                }
                "extension" | "restriction" => {
                    if let Some(base) = c.attribute("base").and_then(|b| self.types.get(local(b))) {
                        self.walk(*base, out);
                    }
                    self.walk(c, out);
                }
                "sequence" | "choice" | "all" | "complexContent" => self.walk(c, out),
                _ => {}
            }
        }
    }

    fn named(&self, ty: &str) -> Node<'static, 'static> {
        *self
            .types
            .get(ty)
            .unwrap_or_else(|| panic!("XSD has no complexType {ty}"))
    }

    /// Collects `path: problem` for every key of `v` not in type `ty` (recursively).
    fn check(&self, ty: Node<'static, 'static>, v: &Value, path: &str, problems: &mut Vec<String>) {
        let Some(obj) = v.as_object() else {
            problems.push(format!(
                "{path}: expected an object for a complex type, got {v}"
            ));
            return;
        };
        let props = self.props(ty);
        for (k, child) in obj {
            let here = format!("{path}.{k}");
            match props.iter().find(|(name, _)| name == k) {
                None => problems.push(format!(
                    "{here}: not in XSD type {}",
                    ty.attribute("name").unwrap_or("(inline)")
                )),
                Some((_, Some(child_ty))) => match child {
                    Value::Array(items) => {
                        for (i, item) in items.iter().enumerate() {
                            self.check(*child_ty, item, &format!("{here}[{i}]"), problems);
                        }
                    }
                    other => self.check(*child_ty, other, &here, problems),
                },
                Some((_, None)) => {
                    if child.is_object() || child.is_array() {
                        problems.push(format!(
                            "{here}: XSD says a simple value, the simulator sent {child}"
                        ));
                    }
                }
            }
        }
    }
}

fn assert_conforms(schema: &Schema, ty: &str, v: &Value, what: &str) {
    let mut problems = Vec::new();
    schema.check(schema.named(ty), v, what, &mut problems);
    assert!(
        problems.is_empty(),
        "{what} does not match the XSD:\n{}",
        problems.join("\n")
    );
}

#[test]
fn accepted_request_properties_all_exist_in_the_xsd() {
    let schema = Schema::load();
    let mut problems = Vec::new();
    for (ty, accepted) in schema::ACCEPTED {
        let names: BTreeSet<String> = schema
            .props(schema.named(ty))
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for p in *accepted {
            if !names.contains(*p) {
                problems.push(format!("{ty}.{p}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "accepted but not in the XSD: {problems:?}"
    );
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn get(&self, rest: &str) -> Value {
        self.http
            .get(format!("{}/{rest}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
    async fn query(&self, stmt: &str) -> Value {
        let url = url::Url::parse_with_params(&format!("{}/query", self.base), &[("query", stmt)])
            .unwrap();
        self.http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
    async fn post(&self, rest: &str, body: Value) -> Value {
        self.http
            .post(format!("{}/{rest}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn every_property_the_simulator_emits_exists_in_the_xsd() {
    let schema = Schema::load();
    let sim = QboSim::start(QboSimConfig::default()).await.unwrap();
    let c = Client {
        http: reqwest::Client::new(),
        base: format!("{}/v3/company/{}", sim.base_url(), sim.realm_id()),
        token: sim.issue_access_token(),
    };
    let address = json!({"Line1": "1 Main St", "City": "Austin", "CountrySubDivisionCode": "TX", "PostalCode": "78701", "Country": "US"});
    let customer = c
        .post(
            "customer",
            json!({"DisplayName": "Conformance Person", "GivenName": "Con", "FamilyName": "Formance",
                   "PrimaryEmailAddr": {"Address": "con@example.com"}, "PrimaryPhone": {"FreeFormNumber": "555-0101"},
                   "BillAddr": address, "ShipAddr": address, "Notes": "from BigCommerce"}),
        )
        .await;
    assert_conforms(&schema, "Customer", &customer["Customer"], "Customer");
    let cust_id = customer["Customer"]["Id"].as_str().unwrap();

    let income = c
        .query("SELECT * FROM Account WHERE Name = 'Home Goods Revenue'")
        .await["QueryResponse"]["Account"][0]["Id"]
        .clone();
    let item = c
        .post(
            "item",
            json!({"Name": "Home Goods", "Type": "Service", "IncomeAccountRef": {"value": income}}),
        )
        .await;
    assert_conforms(&schema, "Item", &item["Item"], "Item");
    let class = c.query("SELECT * FROM Class WHERE Name = 'Home'").await["QueryResponse"]["Class"]
        [0]
    .clone();
    let discount = c
        .query("SELECT * FROM Account WHERE Name = 'Discounts given'")
        .await["QueryResponse"]["Account"][0]["Id"]
        .clone();
    let invoice = c
        .post(
            "invoice",
            json!({"CustomerRef": {"value": cust_id}, "DocNumber": "BC-1", "PrivateNote": "order 1",
                   "CustomerMemo": {"value": "Thanks"}, "BillEmail": {"Address": "con@example.com"}, "ShipAddr": address,
                   "Line": [
                     {"Amount": 30, "Description": "Lamp", "DetailType": "SalesItemLineDetail",
                      "SalesItemLineDetail": {"ItemRef": {"value": item["Item"]["Id"]}, "ClassRef": {"value": class["Id"]}, "Qty": 2, "UnitPrice": 15, "TaxCodeRef": {"value": "TAX"}}},
                     {"Amount": 3, "DetailType": "DiscountLineDetail",
                      "DiscountLineDetail": {"PercentBased": false, "DiscountAccountRef": {"value": discount}}},
                     {"Description": "Gift message", "DetailType": "DescriptionOnly"}],
                   "TxnTaxDetail": {"TotalTax": 2.4}}),
        )
        .await;
    assert!(
        invoice.get("Invoice").is_some(),
        "invoice created: {invoice}"
    );
    assert_conforms(&schema, "Invoice", &invoice["Invoice"], "Invoice");
    let inv_id = invoice["Invoice"]["Id"].as_str().unwrap();
    let voided = c
        .post(
            "invoice?operation=void",
            json!({"Id": inv_id, "SyncToken": "0"}),
        )
        .await;
    assert_conforms(&schema, "Invoice", &voided["Invoice"], "voided Invoice");
    let deleted = c
        .post(
            "invoice?operation=delete",
            json!({"Id": inv_id, "SyncToken": "1"}),
        )
        .await;
    assert_conforms(&schema, "Invoice", &deleted["Invoice"], "deleted Invoice");

    let account = c
        .post(
            "account",
            json!({"Name": "Marketplace Fees Income", "AccountType": "Income"}),
        )
        .await;
    assert_conforms(&schema, "Account", &account["Account"], "Account");

    // The documents of an order's life: payment, refund receipt, credit memo.
    let uf = c
        .query("SELECT * FROM Account WHERE Name = 'Undeposited Funds'")
        .await["QueryResponse"]["Account"][0]["Id"]
        .clone();
    let card = c
        .query("SELECT * FROM PaymentMethod WHERE Name = 'Credit Card'")
        .await["QueryResponse"]["PaymentMethod"][0]
        .clone();
    assert_conforms(&schema, "PaymentMethod", &card, "PaymentMethod");
    let sale = json!({"Amount": 30, "Description": "Lamp", "DetailType": "SalesItemLineDetail",
                      "SalesItemLineDetail": {"ItemRef": {"value": item["Item"]["Id"]}, "ClassRef": {"value": class["Id"]}, "Qty": 2, "UnitPrice": 15}});
    let paid = c
        .post(
            "invoice",
            json!({"CustomerRef": {"value": cust_id}, "DocNumber": "BC-2", "Line": [sale]}),
        )
        .await;
    let payment = c
        .post(
            "payment",
            json!({"CustomerRef": {"value": cust_id}, "TotalAmt": 30, "TxnDate": "2026-01-05",
                   "DepositToAccountRef": {"value": uf}, "PaymentMethodRef": {"value": card["Id"]},
                   "PaymentRefNum": "ch_1", "PrivateNote": "paid",
                   "Line": [{"Amount": 30, "LinkedTxn": [{"TxnId": paid["Invoice"]["Id"], "TxnType": "Invoice"}]}]}),
        )
        .await;
    assert!(
        payment.get("Payment").is_some(),
        "payment created: {payment}"
    );
    assert_conforms(&schema, "Payment", &payment["Payment"], "Payment");
    let paid_now = c
        .get(&format!(
            "invoice/{}",
            paid["Invoice"]["Id"].as_str().unwrap()
        ))
        .await;
    assert_conforms(&schema, "Invoice", &paid_now["Invoice"], "paid Invoice");
    let refund = c
        .post(
            "refundreceipt",
            json!({"CustomerRef": {"value": cust_id}, "DocNumber": "BC-2-R1", "DepositToAccountRef": {"value": uf},
                   "PaymentMethodRef": {"value": card["Id"]}, "PrivateNote": "refund",
                   "Line": [sale], "TxnTaxDetail": {"TotalTax": 1}}),
        )
        .await;
    assert!(refund.get("RefundReceipt").is_some(), "{refund}");
    assert_conforms(
        &schema,
        "RefundReceipt",
        &refund["RefundReceipt"],
        "RefundReceipt",
    );
    let memo = c
        .post(
            "creditmemo",
            json!({"CustomerRef": {"value": cust_id}, "DocNumber": "BC-3-R1", "Line": [sale]}),
        )
        .await;
    assert!(memo.get("CreditMemo").is_some(), "{memo}");
    assert_conforms(&schema, "CreditMemo", &memo["CreditMemo"], "CreditMemo");

    for entity in [
        "Customer",
        "Vendor",
        "Employee",
        "Item",
        "Account",
        "Class",
        "TaxCode",
        "TaxRate",
        "CompanyInfo",
        "Preferences",
    ] {
        let v = c
            .query(&format!(
                "SELECT * FROM {entity} WHERE Active IN (true, false)"
            ))
            .await;
        let v = if v["QueryResponse"][entity].is_array() {
            v
        } else {
            c.query(&format!("SELECT * FROM {entity}")).await
        };
        let qr = &v["QueryResponse"];
        assert_conforms(
            &schema,
            "QueryResponse",
            qr,
            &format!("QueryResponse of {entity}"),
        );
        assert!(
            qr[entity].as_array().is_some_and(|a| !a.is_empty()),
            "{entity} has seed records"
        );
    }
    let count = c.query("SELECT COUNT(*) FROM Item").await;
    assert_conforms(
        &schema,
        "QueryResponse",
        &count["QueryResponse"],
        "COUNT QueryResponse",
    );
    let info = c.get(&format!("companyinfo/{}", sim.realm_id())).await;
    assert_conforms(&schema, "CompanyInfo", &info["CompanyInfo"], "CompanyInfo");
    let prefs = c.get("preferences").await;
    assert_conforms(&schema, "Preferences", &prefs["Preferences"], "Preferences");

    // Faults: the envelope is IntuitResponse (Fault element + time attribute).
    let faults = [
        c.post("customer", json!({"DisplayName": "Ana Diaz"})).await,
        c.post("customer", json!({"DisplayName": "X", "Bogus": 1}))
            .await,
        c.post(
            "invoice",
            json!({"CustomerRef": {"value": "0"}, "Line": []}),
        )
        .await,
        c.query("SELECT * FROM").await,
        c.get("customer/abc").await,
        c.get("nowhere/1/2").await,
    ];
    for f in &faults {
        assert!(f.get("Fault").is_some(), "a Fault: {f}");
        assert_conforms(&schema, "IntuitResponse", f, "Fault response");
    }
    // Success envelopes carry `time` (an IntuitResponse attribute) beside the entity.
    assert_conforms(
        &schema,
        "IntuitResponse",
        &json!({"time": customer["time"]}),
        "envelope",
    );
}

#[test]
fn the_checker_rejects_properties_the_xsd_lacks() {
    let schema = Schema::load();
    let mut problems = Vec::new();
    let bad_invoice = json!({"Line": [{"Amount": 1, "SalesItemLineDetail": {"ItemRef": {"value": "1", "label": "x"}}}], "Totl": 1});
    schema.check(
        schema.named("Invoice"),
        &bad_invoice,
        "Invoice",
        &mut problems,
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems.iter().any(|p| p.starts_with("Invoice.Totl")));
    assert!(problems.iter().any(|p| p.contains("ItemRef.label")));
    let mut problems = Vec::new();
    let bad_fault = json!({"Fault": {"Error": [{"Message": "m", "Detail": "d", "code": "1", "element": "", "hint": "x"}], "type": "ValidationFault"}, "time": "t"});
    schema.check(
        schema.named("IntuitResponse"),
        &bad_fault,
        "Fault",
        &mut problems,
    );
    assert_eq!(
        problems,
        vec!["Fault.Fault.Error[0].hint: not in XSD type Error".to_string()]
    );
}

#[tokio::test]
async fn the_vat_profile_emits_only_xsd_properties() {
    let schema = Schema::load();
    let sim = QboSim::start(QboSimConfig {
        profile: ml_sim::quickbooks::CompanyProfile::UkVat,
        ..QboSimConfig::default()
    })
    .await
    .unwrap();
    let c = Client {
        http: reqwest::Client::new(),
        base: format!("{}/v3/company/{}", sim.base_url(), sim.realm_id()),
        token: sim.issue_access_token(),
    };
    for entity in ["TaxCode", "TaxRate", "Preferences", "CompanyInfo"] {
        let v = c.query(&format!("SELECT * FROM {entity}")).await;
        let qr = &v["QueryResponse"];
        assert!(qr[entity].as_array().is_some_and(|a| !a.is_empty()), "{v}");
        assert_conforms(&schema, "QueryResponse", qr, &format!("VAT {entity}"));
    }
    let customer = c
        .post("customer", json!({"DisplayName": "VAT Shopper"}))
        .await;
    let item = c
        .query("SELECT * FROM Item WHERE Name = 'BigCommerce Sales'")
        .await;
    let code = c
        .query("SELECT * FROM TaxCode WHERE Name = '20.0% S'")
        .await;
    let inv = c
        .post(
            "invoice",
            json!({"CustomerRef": {"value": customer["Customer"]["Id"]}, "GlobalTaxCalculation": "TaxExcluded",
                   "Line": [{"Amount": 10, "DetailType": "SalesItemLineDetail",
                             "SalesItemLineDetail": {"ItemRef": {"value": item["QueryResponse"]["Item"][0]["Id"]},
                                                     "TaxCodeRef": {"value": code["QueryResponse"]["TaxCode"][0]["Id"]}}}]}),
        )
        .await;
    assert!(inv.get("Invoice").is_some(), "{inv}");
    assert_conforms(&schema, "Invoice", &inv["Invoice"], "VAT Invoice");
}
