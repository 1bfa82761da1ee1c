//! The simulator's responses, fetched over real HTTP, validated against BigCommerce's official
//! OpenAPI files (read in place from `shared/specs/bigcommerce/`).
//!
//! OpenAPI 3.0 schemas are not quite JSON Schema, so each spec is adapted before validation:
//! `nullable: true` becomes a `null` alternative, and `oneOf` becomes `anyOf` — the specs use
//! `oneOf` between alternatives that are not mutually exclusive (e.g. a `{url, resource}` link
//! object with no required fields vs. the embedded object), so a literal `oneOf` rejects any
//! payload, the spec's own examples included. Formats are not checked: v2 dates are RFC 2822.

use std::time::Duration;

use ml_sim::bigcommerce::{
    BcSim, BcSimConfig, BcSimHandle, OrderShape, generate, shapes, shared_dir,
};
use serde_json::{Value, json};

fn spec(name: &str) -> Value {
    let path = shared_dir().join("specs/bigcommerce").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Rewrites OpenAPI 3.0 schema keywords into JSON Schema ones, everywhere in the document.
fn adapt(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for child in map.values_mut() {
                adapt(child);
            }
            if let Some(one_of) = map.remove("oneOf") {
                map.insert("anyOf".into(), one_of);
            }
            if map.remove("nullable") == Some(Value::Bool(true)) {
                if let Some(Value::Array(e)) = map.get_mut("enum") {
                    e.push(Value::Null);
                }
                match map.get("type").cloned() {
                    Some(Value::String(t)) => {
                        map.insert("type".into(), json!([t, "null"]));
                    }
                    _ => {
                        let inner = Value::Object(std::mem::take(map));
                        map.insert("anyOf".into(), json!([inner, {"type": "null"}]));
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(adapt),
        _ => {}
    }
}

fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    while let Some(r) = v.get("$ref").and_then(Value::as_str) {
        v = doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {r}"));
    }
    v
}

/// The JSON Schema for `method path` answering `status`, with the spec's components alongside
/// so in-document `$ref`s resolve.
fn response_schema(doc: &Value, path: &str, method: &str, status: &str) -> Value {
    let op = doc["paths"][path]
        .get(method)
        .unwrap_or_else(|| panic!("the spec has no {method} {path}"));
    let response = resolve(doc, &op["responses"][status]);
    let schema = resolve(doc, &response["content"]["application/json"]["schema"]).clone();
    assert!(
        schema.is_object() && schema != json!({}),
        "{method} {path} {status}: the spec gives no schema"
    );
    let mut root = json!({"$schema": "http://json-schema.org/draft-04/schema#", "allOf": [schema]});
    root["components"] = doc["components"].clone();
    root
}

fn check(doc: &Value, path: &str, method: &str, status: &str, instance: &Value) {
    let schema = response_schema(doc, path, method, status);
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(false)
        .build(&schema)
        .unwrap_or_else(|e| panic!("schema for {method} {path} does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .take(10)
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status} does not conform:\n{}\nbody: {instance:#}",
        errors.join("\n")
    );
}

fn adapted(name: &str) -> Value {
    let mut doc = spec(name);
    adapt(&mut doc);
    doc
}

async fn get(h: &BcSimHandle, path: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!("{}{}", h.store_url(), path))
        .header("X-Auth-Token", h.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
    r.json().await.unwrap()
}

async fn sim_with_orders() -> (BcSimHandle, Vec<u64>) {
    let h = BcSim::start(BcSimConfig::default()).await.unwrap();
    let mut ids = Vec::new();
    // Every knob combination, so each optional part of an order shows up at least once.
    for (i, s) in shapes(128, 11).iter().enumerate() {
        let id = 500 + i as u64;
        h.put_order(generate(id, s));
        ids.push(id);
    }
    (h, ids)
}

#[tokio::test]
async fn orders_and_their_sub_resources_conform_to_the_orders_v2_spec() {
    let doc = adapted("orders.v2.oas2.yml");
    let (h, ids) = sim_with_orders().await;
    for id in ids.iter().step_by(9) {
        let full = get(
            &h,
            &format!(
                "/v2/orders/{id}?include=consignments.line_items,fees&consignment_structure=object"
            ),
        )
        .await;
        check(&doc, "/orders/{order_id}", "get", "200", &full);
        let plain = get(&h, &format!("/v2/orders/{id}")).await;
        check(&doc, "/orders/{order_id}", "get", "200", &plain);
        let products = get(&h, &format!("/v2/orders/{id}/products")).await;
        check(&doc, "/orders/{order_id}/products", "get", "200", &products);
        let addresses = get(&h, &format!("/v2/orders/{id}/shipping_addresses")).await;
        check(
            &doc,
            "/orders/{order_id}/shipping_addresses",
            "get",
            "200",
            &addresses,
        );
    }
    let with_coupon = ids
        .iter()
        .find(|id| h.order(**id).unwrap()["coupon_discount"] != "0.0000")
        .unwrap();
    let coupons = get(&h, &format!("/v2/orders/{with_coupon}/coupons")).await;
    check(&doc, "/orders/{order_id}/coupons", "get", "200", &coupons);
    let with_tax = ids
        .iter()
        .find(|id| h.order(**id).unwrap()["total_tax"] != "0.0000")
        .unwrap();
    let taxes = get(&h, &format!("/v2/orders/{with_tax}/taxes")).await;
    check(&doc, "/orders/{order_id}/taxes", "get", "200", &taxes);
}

#[tokio::test]
async fn the_validator_rejects_a_broken_order() {
    // Guards against a vacuous schema: a wrong type must fail validation.
    let doc = adapted("orders.v2.oas2.yml");
    let shape = OrderShape {
        lines: 1,
        tax_inclusive: false,
        tax_rate_bp: 0,
        coupon: false,
        manual_discount: false,
        shipping: false,
        handling: false,
        wrapping: false,
        guest: true,
        seed: 1,
    };
    let mut products = Value::Array(generate(1, &shape).products);
    products[0]["quantity"] = json!("two");
    let schema = response_schema(&doc, "/orders/{order_id}/products", "get", "200");
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&schema)
        .unwrap();
    assert!(!validator.is_valid(&products));
    products[0]["quantity"] = json!(2);
    products[0]["not_a_field"] = json!(true);
    assert!(
        !validator.is_valid(&products),
        "orderProducts forbids unknown fields"
    );
}

#[tokio::test]
async fn the_store_conforms_to_the_store_information_spec() {
    let doc = adapted("store_information.v2.yml");
    let h = BcSim::start(BcSimConfig::default()).await.unwrap();
    let store = get(&h, "/v2/store").await;
    check(&doc, "/store", "get", "200", &store);
}

#[tokio::test]
async fn customers_conform_to_the_customers_v3_spec() {
    let doc = adapted("customers.v3.yml");
    let h = BcSim::start(BcSimConfig::default()).await.unwrap();
    for q in [
        "/v3/customers?id:in=1,2,3,4,5,6&include=addresses",
        "/v3/customers?id:in=3",
        "/v3/customers?id:in=999",
    ] {
        let body = get(&h, q).await;
        check(&doc, "/customers", "get", "200", &body);
    }
}

#[tokio::test]
async fn hooks_conform_to_the_webhooks_v3_spec() {
    let doc = adapted("webhooks.v3.yml");
    let h = BcSim::start(BcSimConfig {
        delivery_timeout: Duration::from_secs(1),
        ..BcSimConfig::default()
    })
    .await
    .unwrap();
    let created: Value = reqwest::Client::new()
        .post(format!("{}/v3/hooks", h.store_url()))
        .header("X-Auth-Token", h.token())
        .json(&json!({"scope": "store/order/*", "destination": "https://connector.example/webhooks/bigcommerce",
            "is_active": true, "headers": {"x-ml-webhook-secret": "s3cret"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    check(&doc, "/hooks", "post", "200", &created);
    let list = get(&h, "/v3/hooks").await;
    check(&doc, "/hooks", "get", "200", &list);
    let one = get(&h, &format!("/v3/hooks/{}", created["data"]["id"])).await;
    check(&doc, "/hooks/{webhook_id}", "get", "200", &one);
}
