//! An order's whole life reaches QuickBooks (issue 11): payments, cancellations, refunds and
//! edits, each document exactly once, through the real component in the real harness against
//! the simulators over HTTP.

use std::time::Duration;

use ml_e2e::env::{TestEnv, TestOptions, eventually_named};
use ml_sim::bigcommerce::{
    OrderShape, Payment, RefundPart, capture, generate_paid, refund_of, refund_one_unit,
};
use ml_sim::control::{FaultAction, FaultRule};
use rust_decimal::Decimal;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const RETRY_TICK: Duration = Duration::from_millis(200);

fn shape(seed: u64) -> OrderShape {
    OrderShape {
        lines: 3,
        tax_inclusive: false,
        tax_rate_bp: 800,
        coupon: seed.is_multiple_of(2),
        manual_discount: false,
        shipping: true,
        handling: seed.is_multiple_of(3),
        wrapping: false,
        guest: seed.is_multiple_of(5),
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

async fn wait_until(env: &TestEnv, id: u64, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually_named(&format!("order {id}: {what}"), WAIT, || async {
        let (status, rec) = env.admin_get(&format!("/admin/records/order/{id}")).await;
        (status == 200 && check(&rec)).then_some(rec)
    })
    .await
}

/// Waits until a run has posted the order's payment and ended: the payment is saved to the record
/// the moment QuickBooks has it, the invoice's standing at the end of the run, when the record is
/// posted again.
async fn wait_paid(env: &TestEnv, id: u64) -> Value {
    wait_until(env, id, "posted with its payment", |r| {
        r["state"] == "posted" && !docs_of(r, "Payment").is_empty()
    })
    .await
}

async fn wait_state(env: &TestEnv, id: u64, state: &str) -> Value {
    wait_until(env, id, &format!("is {state}"), |r| r["state"] == state).await
}

fn invoices_for(env: &TestEnv, doc: &str) -> Vec<Value> {
    env.qbo
        .invoices()
        .into_iter()
        .filter(|i| i["DocNumber"] == doc)
        .collect()
}

fn payments_for(env: &TestEnv, invoice_id: &Value) -> Vec<Value> {
    env.qbo
        .records("Payment")
        .into_iter()
        .filter(|p| p["Line"][0]["LinkedTxn"][0]["TxnId"] == *invoice_id)
        .collect()
}

fn account_name(env: &TestEnv, id: &Value) -> String {
    env.qbo
        .records("Account")
        .into_iter()
        .find(|a| a["Id"] == *id)
        .and_then(|a| a["Name"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn docs_of(rec: &Value, kind: &str) -> Vec<Value> {
    rec["documents"]
        .as_array()
        .map(|d| d.iter().filter(|x| x["type"] == kind).cloned().collect())
        .unwrap_or_default()
}

fn steps(rec: &Value) -> Vec<String> {
    rec["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["step"].as_str().unwrap().to_string())
        .collect()
}

fn post_fault(path: &str, remaining: u32, action: FaultAction) -> FaultRule {
    FaultRule {
        method: Some("POST".into()),
        path_contains: path.into(),
        remaining,
        action,
    }
}

async fn deliver(env: &TestEnv, scope: &str, id: u64) {
    env.bc
        .deliver(scope, json!({"type": "order", "id": id}))
        .await
        .unwrap();
}

/// `store/order/statusUpdated` as BigCommerce sends it: the data names both statuses, so two
/// status changes in the same second are two events, not a redelivery.
async fn status_updated(env: &TestEnv, id: u64, from: u64, to: u64) {
    env.bc
        .deliver(
            "store/order/statusUpdated",
            json!({"type": "order", "id": id,
                   "status": {"previous_status_id": from, "new_status_id": to}}),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_order_gets_one_payment_and_its_invoice_is_paid_under_redelivery_and_replay() {
    let env = TestEnv::start(TestOptions::default()).await;
    let order = generate_paid(1101, &shape(1), Payment::Captured);
    let raw = order.order.clone();
    let report = env.bc.place_order(order).await.unwrap();
    let rec = wait_state(&env, 1101, "posted").await;

    let invoices = invoices_for(&env, "1101");
    assert_eq!(invoices.len(), 1, "one invoice");
    let inv = &invoices[0];
    let total = dec(&raw["total_inc_tax"]).round_dp(2);
    assert_eq!(dec(&inv["TotalAmt"]), total);
    assert_eq!(dec(&inv["Balance"]), Decimal::ZERO, "a fully paid invoice");
    let payments = payments_for(&env, &inv["Id"]);
    assert_eq!(payments.len(), 1, "one payment: {payments:#?}");
    let p = &payments[0];
    assert_eq!(dec(&p["TotalAmt"]), total);
    assert_eq!(p["CustomerRef"]["value"], inv["CustomerRef"]["value"]);
    let provider = raw["payment_provider_id"].as_str().unwrap();
    assert_eq!(
        p["PaymentRefNum"],
        json!(provider.chars().take(21).collect::<String>())
    );
    assert_eq!(
        account_name(&env, &p["DepositToAccountRef"]["value"]),
        "Undeposited Funds"
    );
    assert!(
        p.get("PaymentMethodRef").is_none(),
        "no method mapped by default"
    );

    // The record lists both documents, and the audit shows each create with its id.
    let invoice_docs = docs_of(&rec, "Invoice");
    assert_eq!(invoice_docs.len(), 1);
    assert_eq!(invoice_docs[0]["qbo_id"], inv["Id"]);
    assert_eq!(invoice_docs[0]["state"], "paid");
    let payment_docs = docs_of(&rec, "Payment");
    assert_eq!(
        payment_docs,
        vec![
            json!({"type": "Payment", "qbo_id": p["Id"], "sync_token": "0", "source": "gateway",
                    "amount": format!("{total:.2}")})
        ]
    );
    let created: Vec<&Value> = rec["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["step"] == "document_created")
        .collect();
    assert_eq!(created.len(), 2, "{:?}", steps(&rec));
    assert_eq!(created[1]["detail"]["qbo_id"], p["Id"]);

    // Redelivery, a new event and a replay: nothing new.
    env.bc
        .deliver_raw("store/order/created", &report.body)
        .await
        .unwrap();
    deliver(&env, "store/order/updated", 1101).await;
    let (status, replayed) = env.admin_post("/admin/replay/order/1101", &json!({})).await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["state"], "posted");
    assert_eq!(invoices_for(&env, "1101").len(), 1);
    assert_eq!(payments_for(&env, &inv["Id"]).len(), 1, "still one payment");
    assert_eq!(env.qbo.records("Payment").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gift_certificate_and_store_credit_amounts_are_payments_from_their_liability_accounts() {
    let env = TestEnv::start(TestOptions::default()).await;
    let gift = generate_paid(1111, &shape(2), Payment::GiftCertificate(1_500));
    let credit = generate_paid(1112, &shape(3), Payment::StoreCredit(700));
    let whole = generate_paid(1113, &shape(4), Payment::GiftCertificate(10_000_000));
    let totals: Vec<(u64, Decimal)> = [&gift, &credit, &whole]
        .iter()
        .map(|g| {
            (
                g.order["id"].as_u64().unwrap(),
                dec(&g.order["total_inc_tax"]).round_dp(2),
            )
        })
        .collect();
    for g in [gift, credit, whole] {
        env.bc.place_order(g).await.unwrap();
    }
    let expect: [(u64, &[(&str, &str)]); 3] = [
        (
            1111,
            &[
                ("Gift Certificates Outstanding", "gift_certificate"),
                ("Undeposited Funds", "gateway"),
            ],
        ),
        (
            1112,
            &[
                ("Store Credit Outstanding", "store_credit"),
                ("Undeposited Funds", "gateway"),
            ],
        ),
        (
            1113,
            &[("Gift Certificates Outstanding", "gift_certificate")],
        ),
    ];
    for ((id, total), (_, wanted)) in totals.iter().zip(expect.iter()) {
        let rec = wait_state(&env, *id, "posted").await;
        let inv = &invoices_for(&env, &id.to_string())[0];
        let payments = payments_for(&env, &inv["Id"]);
        let mut accounts: Vec<String> = payments
            .iter()
            .map(|p| account_name(&env, &p["DepositToAccountRef"]["value"]))
            .collect();
        accounts.sort();
        let mut want: Vec<String> = wanted.iter().map(|(a, _)| a.to_string()).collect();
        want.sort();
        assert_eq!(accounts, want, "order {id}");
        let sum: Decimal = payments.iter().map(|p| dec(&p["TotalAmt"])).sum();
        assert_eq!(sum, *total, "order {id}: payments tie to the total");
        assert_eq!(dec(&inv["Balance"]), Decimal::ZERO, "order {id}");
        let mut sources: Vec<String> = docs_of(&rec, "Payment")
            .iter()
            .map(|d| d["source"].as_str().unwrap().to_string())
            .collect();
        sources.sort();
        let mut want_sources: Vec<String> = wanted.iter().map(|(_, s)| s.to_string()).collect();
        want_sources.sort();
        assert_eq!(sources, want_sources, "order {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorized_order_gets_its_payment_when_the_capture_is_seen() {
    let env = TestEnv::start(TestOptions::default()).await;
    let (status, body) = env
        .admin_put(
            "/admin/mapping",
            &json!({"version": 1,
                    "invoice": {"default_item": "BigCommerce Sales", "shipping": {"item": "Shipping Income"},
                                "handling": {"item": "Handling Income"}, "discount": {"account": "Discounts given"},
                                "tax": {"mode": "auto"}},
                    "payments": {"methods": {"Credit Card": "Visa"}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    env.bc
        .place_order(generate_paid(1121, &shape(5), Payment::Authorized))
        .await
        .unwrap();
    let rec = wait_state(&env, 1121, "posted").await;
    let inv = invoices_for(&env, "1121").remove(0);
    assert!(
        payments_for(&env, &inv["Id"]).is_empty(),
        "authorized is not paid"
    );
    assert_eq!(docs_of(&rec, "Invoice")[0]["state"], "open");

    assert!(env.bc.update_order(1121, capture));
    deliver(&env, "store/order/updated", 1121).await;
    let rec = wait_paid(&env, 1121).await;
    let payments = payments_for(&env, &inv["Id"]);
    assert_eq!(payments.len(), 1);
    let method = env
        .qbo
        .records("PaymentMethod")
        .into_iter()
        .find(|m| m["Id"] == payments[0]["PaymentMethodRef"]["value"])
        .unwrap();
    assert_eq!(method["Name"], "Visa", "payments.methods maps the method");
    assert_eq!(docs_of(&rec, "Invoice")[0]["state"], "paid");
    let read = invoices_for(&env, "1121").remove(0);
    assert_eq!(dec(&read["Balance"]), Decimal::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_payment_answer_is_found_again_and_never_posted_twice() {
    let env = TestEnv::start(
        TestOptions::default()
            .retry_every(RETRY_TICK)
            .var("retry_base_seconds", "1"),
    )
    .await;
    // QuickBooks creates the payment, then the answer is lost (a 504 after the write).
    env.qbo.control().inject(post_fault(
        "/payment",
        1,
        FaultAction::AfterHandler { ms: 10 },
    ));
    env.bc
        .place_order(generate_paid(1131, &shape(6), Payment::Captured))
        .await
        .unwrap();
    let rec = wait_paid(&env, 1131).await;
    let inv = invoices_for(&env, "1131").remove(0);
    let payments = payments_for(&env, &inv["Id"]);
    assert_eq!(payments.len(), 1, "exactly one payment: {payments:#?}");
    assert_eq!(docs_of(&rec, "Payment")[0]["qbo_id"], payments[0]["Id"]);
    let s = steps(&rec);
    assert!(s.contains(&"attempt_failed".to_string()), "{s:?}");
    assert!(
        s.contains(&"document_adopted".to_string()),
        "the payment found in QuickBooks is adopted: {s:?}"
    );
    assert!(rec.get("pending").is_none(), "nothing left pending: {rec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_account_the_company_lacks_fails_with_its_name_and_a_replay_completes_the_payment()
 {
    let env = TestEnv::start(TestOptions::default()).await;
    let mapping = |account: &str| {
        json!({"version": 1,
               "invoice": {"default_item": "BigCommerce Sales", "shipping": {"item": "Shipping Income"},
                           "handling": {"item": "Handling Income"}, "discount": {"account": "Discounts given"},
                           "tax": {"mode": "auto"}},
               "payments": {"deposit_account": account}})
    };
    let (status, body) = env
        .admin_put("/admin/mapping", &mapping("Stripe Clearing"))
        .await;
    assert_eq!(
        status, 200,
        "a name is checked on the first order that needs it: {body}"
    );
    env.bc
        .place_order(generate_paid(1141, &shape(7), Payment::Captured))
        .await
        .unwrap();
    let rec = wait_state(&env, 1141, "failed").await;
    let error = rec["last_error"].as_str().unwrap();
    assert!(error.contains("Stripe Clearing"), "{error}");
    assert!(error.contains("payments.deposit_account"), "{error}");
    assert_eq!(rec["reason"], "mapping");
    assert!(env.qbo.records("Payment").is_empty());

    let (status, _) = env.admin_put("/admin/mapping", &mapping("Checking")).await;
    assert_eq!(status, 200);
    let (status, rec) = env.admin_post("/admin/replay/order/1141", &json!({})).await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["state"], "posted", "{rec}");
    let inv = invoices_for(&env, "1141");
    assert_eq!(inv.len(), 1, "the invoice is not posted again");
    let payments = payments_for(&env, &inv[0]["Id"]);
    assert_eq!(payments.len(), 1);
    assert_eq!(
        account_name(&env, &payments[0]["DepositToAccountRef"]["value"]),
        "Checking"
    );
}

fn set_status(order: &mut Value, id: u64, name: &str) {
    order["status_id"] = json!(id);
    order["status"] = json!(name);
    order["custom_status"] = json!(name);
}

fn refund_docs(env: &TestEnv, entity: &str, doc_prefix: &str) -> Vec<Value> {
    env.qbo
        .records(entity)
        .into_iter()
        .filter(|r| {
            r["DocNumber"]
                .as_str()
                .is_some_and(|d| d.starts_with(doc_prefix))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_unpaid_order_voids_its_invoice_once_and_a_reopened_one_gets_a_dash_2_invoice()
{
    let env = TestEnv::start(TestOptions::default()).await;
    env.bc
        .place_order(generate_paid(1201, &shape(8), Payment::Unpaid))
        .await
        .unwrap();
    let rec = wait_state(&env, 1201, "posted").await;
    let first = docs_of(&rec, "Invoice")[0]["qbo_id"].clone();

    assert!(env.bc.update_order(1201, |o| set_status(o, 5, "Cancelled")));
    status_updated(&env, 1201, 7, 5).await;
    let rec = wait_until(&env, 1201, "voided", |r| {
        docs_of(r, "Invoice")[0]["state"] == "voided"
    })
    .await;
    assert_eq!(rec["state"], "posted");
    let voided = invoices_for(&env, "1201");
    assert_eq!(voided.len(), 1);
    assert_eq!(dec(&voided[0]["TotalAmt"]), Decimal::ZERO, "amounts zero");
    let void_steps: Vec<&Value> = rec["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["step"] == "document_voided")
        .collect();
    assert_eq!(void_steps.len(), 1);
    assert_eq!(void_steps[0]["detail"]["qbo_id"], first);

    // Redelivered and replayed: voided once (a second void would be refused by QuickBooks).
    deliver(&env, "store/order/updated", 1201).await;
    let (status, replayed) = env.admin_post("/admin/replay/order/1201", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(replayed["state"], "posted", "{replayed}");
    let posts = env
        .qbo
        .control()
        .requests()
        .into_iter()
        .filter(|r| {
            r.query
                .as_deref()
                .is_some_and(|q| q.contains("operation=void"))
        })
        .count();
    assert_eq!(posts, 1, "one void request");

    // Reopened: a voided invoice is never un-voided; a new one is numbered 1201-2.
    assert!(
        env.bc
            .update_order(1201, |o| set_status(o, 11, "Awaiting Fulfillment"))
    );
    status_updated(&env, 1201, 5, 11).await;
    let rec = wait_until(&env, 1201, "re-invoiced", |r| {
        docs_of(r, "Invoice").len() == 2
    })
    .await;
    let invoices = docs_of(&rec, "Invoice");
    assert_eq!(invoices[0]["state"], "voided");
    assert_eq!(invoices[1]["state"], "open");
    assert_eq!(invoices[1]["doc_number"], "1201-2");
    assert_eq!(invoices[1]["source"], "order/2");
    assert_eq!(rec["qbo_id"], invoices[1]["qbo_id"]);
    let second = invoices_for(&env, "1201-2");
    assert_eq!(second.len(), 1);
    assert_eq!(
        dec(&invoices_for(&env, "1201")[0]["TotalAmt"]),
        Decimal::ZERO
    );
    deliver(&env, "store/order/updated", 1201).await;
    assert_eq!(
        invoices_for(&env, "1201-2").len(),
        1,
        "still one new invoice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_paid_order_keeps_its_invoice_and_the_record_notes_cancelled_after_payment() {
    let env = TestEnv::start(TestOptions::default()).await;
    env.bc
        .place_order(generate_paid(1211, &shape(9), Payment::Captured))
        .await
        .unwrap();
    wait_paid(&env, 1211).await;
    assert!(env.bc.update_order(1211, |o| set_status(o, 5, "Cancelled")));
    status_updated(&env, 1211, 11, 5).await;
    let rec = wait_until(&env, 1211, "noted", |r| {
        steps(r).contains(&"cancelled_after_payment".to_string())
    })
    .await;
    let inv = invoices_for(&env, "1211").remove(0);
    assert!(dec(&inv["TotalAmt"]) > Decimal::ZERO, "not voided");
    assert_eq!(docs_of(&rec, "Invoice")[0]["state"], "paid");
    assert_eq!(
        docs_of(&rec, "Invoice")[0]["note"],
        "cancelled_after_payment"
    );
    let runs = |r: &Value| steps(r).iter().filter(|s| *s == "fetched").count();
    let before = runs(&rec);
    deliver(&env, "store/order/updated", 1211).await;
    let rec = wait_until(&env, 1211, "ran again", |r| {
        r["state"] == "posted" && runs(r) > before
    })
    .await;
    let notes = steps(&rec)
        .iter()
        .filter(|s| *s == "cancelled_after_payment")
        .count();
    assert_eq!(notes, 1, "noted once: {:?}", steps(&rec));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_void_answer_is_checked_in_quickbooks_and_never_voided_twice() {
    let env = TestEnv::start(
        TestOptions::default()
            .retry_every(RETRY_TICK)
            .var("retry_base_seconds", "1"),
    )
    .await;
    env.bc
        .place_order(generate_paid(1221, &shape(10), Payment::Unpaid))
        .await
        .unwrap();
    wait_state(&env, 1221, "posted").await;
    env.qbo.control().inject(post_fault(
        "/invoice",
        1,
        FaultAction::AfterHandler { ms: 10 },
    ));
    assert!(env.bc.update_order(1221, |o| set_status(o, 6, "Declined")));
    status_updated(&env, 1221, 7, 6).await;
    let rec = wait_until(&env, 1221, "voided", |r| {
        r["state"] == "posted" && docs_of(r, "Invoice")[0]["state"] == "voided"
    })
    .await;
    assert!(
        steps(&rec).contains(&"attempt_failed".to_string()),
        "{:?}",
        steps(&rec)
    );
    assert_eq!(
        dec(&invoices_for(&env, "1221")[0]["TotalAmt"]),
        Decimal::ZERO
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_of_a_paid_order_become_refund_receipts_numbered_in_order_exactly_once() {
    let env = TestEnv::start(TestOptions::default()).await;
    let order = generate_paid(1301, &shape(12), Payment::Captured);
    let (raw, products) = (order.order.clone(), order.products.clone());
    env.bc.place_order(order).await.unwrap();
    wait_paid(&env, 1301).await;

    let first = refund_of(
        &raw,
        &products,
        &[
            RefundPart::Product {
                line: 0,
                quantity: 1,
            },
            RefundPart::Shipping,
        ],
        "Damaged in transit",
    );
    let stored = env.bc.refund_order(1301, first).await.unwrap();
    let rec = wait_until(&env, 1301, "refund 1 posted", |r| {
        docs_of(r, "RefundReceipt").len() == 1
    })
    .await;
    let receipts = refund_docs(&env, "RefundReceipt", "1301-R");
    assert_eq!(receipts.len(), 1);
    let r1 = &receipts[0];
    assert_eq!(r1["DocNumber"], "1301-R1");
    assert_eq!(
        dec(&r1["TotalAmt"]),
        dec(&stored["total_amount"]),
        "ties to the cent"
    );
    assert_eq!(
        account_name(&env, &r1["DepositToAccountRef"]["value"]),
        "Undeposited Funds"
    );
    let inv = invoices_for(&env, "1301").remove(0);
    assert_eq!(r1["CustomerRef"]["value"], inv["CustomerRef"]["value"]);
    let items: Vec<String> = r1["Line"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["SalesItemLineDetail"]["ItemRef"]["name"].as_str())
        .map(str::to_string)
        .collect();
    assert!(items.contains(&"Shipping Income".to_string()), "{items:?}");
    // Tax as the (US, automated sales tax) company books it: BigCommerce's tax as the override.
    // (A rounding residue of a cent per line may be absorbed in the tax.)
    let tax_gap = dec(&r1["TxnTaxDetail"]["TotalTax"]) - dec(&stored["total_tax"]).round_dp(2);
    assert!(tax_gap.abs() <= Decimal::new(5, 2), "{r1}");
    let doc = &docs_of(&rec, "RefundReceipt")[0];
    assert_eq!(doc["source"], format!("refund/{}", stored["id"]));
    assert_eq!(doc["doc_number"], "1301-R1");
    assert_eq!(doc["qbo_id"], r1["Id"]);

    let second = refund_of(&raw, &products, &[RefundPart::Order(250)], "Goodwill");
    env.bc.refund_order(1301, second).await.unwrap();
    wait_until(&env, 1301, "refund 2 posted", |r| {
        docs_of(r, "RefundReceipt").len() == 2
    })
    .await;
    let receipts = refund_docs(&env, "RefundReceipt", "1301-R");
    let mut numbers: Vec<&str> = receipts
        .iter()
        .map(|r| r["DocNumber"].as_str().unwrap())
        .collect();
    numbers.sort();
    assert_eq!(numbers, ["1301-R1", "1301-R2"]);
    let goodwill = receipts
        .iter()
        .find(|r| r["DocNumber"] == "1301-R2")
        .unwrap();
    assert_eq!(dec(&goodwill["TotalAmt"]), Decimal::new(250, 2));

    // Every way the same refunds come back changes nothing.
    deliver(&env, "store/order/updated", 1301).await;
    env.bc
        .deliver(
            "store/order/refund/created",
            json!({"type": "order", "id": 1301, "refund": {"refund_id": stored["id"]}}),
        )
        .await
        .unwrap();
    let (status, replayed) = env.admin_post("/admin/replay/order/1301", &json!({})).await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["state"], "posted", "{replayed}");
    assert_eq!(refund_docs(&env, "RefundReceipt", "1301-R").len(), 2);
    assert_eq!(invoices_for(&env, "1301").len(), 1);
    assert_eq!(payments_for(&env, &inv["Id"]).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_of_an_unpaid_order_becomes_a_credit_memo() {
    let env = TestEnv::start(TestOptions::default()).await;
    let order = generate_paid(1311, &shape(13), Payment::Unpaid);
    let (raw, products) = (order.order.clone(), order.products.clone());
    env.bc.place_order(order).await.unwrap();
    wait_state(&env, 1311, "posted").await;
    let stored = env
        .bc
        .refund_order(
            1311,
            refund_of(
                &raw,
                &products,
                &[RefundPart::Product {
                    line: 1,
                    quantity: 1,
                }],
                "",
            ),
        )
        .await
        .unwrap();
    let rec = wait_until(&env, 1311, "credit memo posted", |r| {
        docs_of(r, "CreditMemo").len() == 1
    })
    .await;
    let memos = refund_docs(&env, "CreditMemo", "1311-R");
    assert_eq!(memos.len(), 1);
    assert_eq!(memos[0]["DocNumber"], "1311-R1");
    assert_eq!(dec(&memos[0]["TotalAmt"]), dec(&stored["total_amount"]));
    assert!(refund_docs(&env, "RefundReceipt", "1311").is_empty());
    assert!(docs_of(&rec, "Payment").is_empty());
}

/// A captured order stored in BigCommerce with one unit of its first line already refunded,
/// before any webhook: the order as stored.
fn put_refunded_order(env: &TestEnv, id: u64, seed: u64) -> Value {
    let order = generate_paid(id, &shape(seed), Payment::Captured);
    let (raw, products) = (order.order.clone(), order.products.clone());
    env.bc.put_order(order);
    env.bc
        .add_refund(id, refund_one_unit(&raw, &products, ""))
        .unwrap();
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_first_seen_refunded_is_invoiced_in_full_paid_and_refunded() {
    let env = TestEnv::start(TestOptions::default()).await;
    let raw = put_refunded_order(&env, 1321, 14);
    let total = dec(&raw["total_inc_tax"]).round_dp(2);
    assert_eq!(env.bc.order(1321).unwrap()["status_id"], 14);
    deliver(&env, "store/order/created", 1321).await;
    let rec = wait_state(&env, 1321, "posted").await;
    let inv = invoices_for(&env, "1321").remove(0);
    assert_eq!(dec(&inv["TotalAmt"]), total, "the full original total");
    assert_eq!(payments_for(&env, &inv["Id"]).len(), 1);
    assert_eq!(refund_docs(&env, "RefundReceipt", "1321-R1").len(), 1);
    let kinds: Vec<String> = rec["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["Invoice", "Payment", "RefundReceipt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_fails_after_the_payment_leaves_the_invoice_paid_on_the_record_and_its_retry_posts_the_refund()
 {
    let env = TestEnv::start(TestOptions::default().var("retry_base_seconds", "1")).await;
    put_refunded_order(&env, 1351, 18);
    // The invoice and the payment go in; the refund's create fails (a retryable 503).
    env.qbo.control().inject(post_fault(
        "/refundreceipt",
        1,
        FaultAction::Status {
            status: 503,
            headers: vec![],
            body: String::new(),
        },
    ));
    deliver(&env, "store/order/created", 1351).await;
    let rec = wait_state(&env, 1351, "retrying").await;
    assert_eq!(docs_of(&rec, "Payment").len(), 1, "{rec:#}");
    assert!(docs_of(&rec, "RefundReceipt").is_empty());
    // The run ended before its last step, yet the record's invoice already says what the
    // payment made of it.
    assert_eq!(docs_of(&rec, "Invoice")[0]["state"], "paid", "{rec:#}");
    assert_eq!(dec(&docs_of(&rec, "Invoice")[0]["balance"]), Decimal::ZERO);

    // The retry is due a second or so later (with jitter): retry-due runs it then.
    let rec = eventually_named("order 1351: posted by its retry", WAIT, || async {
        let (status, body) = env.admin_post("/admin/retry-due", &Value::Null).await;
        assert_eq!(status, 200, "{body}");
        let (_, rec) = env.admin_get("/admin/records/order/1351").await;
        (rec["state"] == "posted").then_some(rec)
    })
    .await;
    assert_eq!(docs_of(&rec, "RefundReceipt").len(), 1, "{rec:#}");
    assert_eq!(refund_docs(&env, "RefundReceipt", "1351-R1").len(), 1);
    let inv = invoices_for(&env, "1351").remove(0);
    assert_eq!(payments_for(&env, &inv["Id"]).len(), 1, "the payment once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_refunds_fail_with_what_to_fix_and_a_replay_after_the_fix_posts_exactly_what_is_missing()
 {
    let env = TestEnv::start(TestOptions::default()).await;
    let order = generate_paid(1331, &shape(15), Payment::Captured);
    let (raw, products) = (order.order.clone(), order.products.clone());
    env.bc.place_order(order).await.unwrap();
    wait_paid(&env, 1331).await;

    // A refund whose items and total do not tie.
    let mut broken = refund_one_unit(&raw, &products, "");
    let real_total = broken["total_amount"].clone();
    broken["total_amount"] = json!(dec(&real_total) + Decimal::new(500, 2));
    let stored = env.bc.refund_order(1331, broken).await.unwrap();
    let rec = wait_state(&env, 1331, "failed").await;
    let error = rec["last_error"].as_str().unwrap();
    assert!(
        error.contains(&format!("refund {}", stored["id"])),
        "{error}"
    );
    assert!(error.contains("do not add up"), "{error}");
    assert!(
        refund_docs(&env, "RefundReceipt", "1331").is_empty(),
        "nothing half-posted"
    );

    // Fixed in BigCommerce; a replay posts the one missing document.
    assert!(
        env.bc
            .update_refunds(1331, |r| r[0]["total_amount"] = real_total.clone())
    );
    let (status, rec) = env.admin_post("/admin/replay/order/1331", &json!({})).await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["state"], "posted", "{rec}");
    assert_eq!(refund_docs(&env, "RefundReceipt", "1331-R1").len(), 1);

    // A refund larger than what was paid and not yet refunded.
    let huge = refund_of(&raw, &products, &[RefundPart::Order(1_000_000)], "");
    let big = env.bc.refund_order(1331, huge).await.unwrap();
    let rec = wait_state(&env, 1331, "failed").await;
    let error = rec["last_error"].as_str().unwrap();
    assert!(error.contains(&format!("refund {}", big["id"])), "{error}");
    assert!(error.contains("was paid"), "{error}");
    assert_eq!(refund_docs(&env, "RefundReceipt", "1331").len(), 1);
    assert_eq!(invoices_for(&env, "1331").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updated_and_refund_events_and_a_lost_answer_post_one_refund_document() {
    let env = TestEnv::start(
        TestOptions::default()
            .retry_every(RETRY_TICK)
            .var("retry_base_seconds", "1"),
    )
    .await;
    let order = generate_paid(1341, &shape(16), Payment::Captured);
    let (raw, products) = (order.order.clone(), order.products.clone());
    env.bc.place_order(order).await.unwrap();
    wait_paid(&env, 1341).await;
    env.qbo.control().inject(post_fault(
        "/refundreceipt",
        1,
        FaultAction::AfterHandler { ms: 10 },
    ));
    let stored = env
        .bc
        .add_refund(
            1341,
            refund_of(
                &raw,
                &products,
                &[RefundPart::Product {
                    line: 2,
                    quantity: 1,
                }],
                "",
            ),
        )
        .unwrap();
    let refund_event = env.bc.deliver(
        "store/order/refund/created",
        json!({"type": "order", "id": 1341, "refund": {"refund_id": stored["id"]}}),
    );
    let updated = env
        .bc
        .deliver("store/order/updated", json!({"type": "order", "id": 1341}));
    let status = env.bc.deliver(
        "store/order/statusUpdated",
        json!({"type": "order", "id": 1341,
                 "status": {"previous_status_id": 11, "new_status_id": 14}}),
    );
    let (a, b, c) = tokio::join!(refund_event, updated, status);
    a.unwrap();
    b.unwrap();
    c.unwrap();
    let rec = wait_until(&env, 1341, "refund posted", |r| {
        r["state"] == "posted" && docs_of(r, "RefundReceipt").len() == 1
    })
    .await;
    assert_eq!(
        refund_docs(&env, "RefundReceipt", "1341").len(),
        1,
        "exactly one"
    );
    assert!(rec.get("pending").is_none(), "{rec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_after_payment_updates_the_invoice_and_the_record_notes_the_new_balance() {
    let env = TestEnv::start(TestOptions::default()).await;
    env.bc
        .place_order(generate_paid(1401, &shape(17), Payment::Captured))
        .await
        .unwrap();
    let rec = wait_paid(&env, 1401).await;
    let inv_id = docs_of(&rec, "Invoice")[0]["qbo_id"].clone();
    // The merchant adds a handling charge after payment.
    assert!(env.bc.update_order(1401, |o| {
        let add = Decimal::new(300, 2);
        for k in [
            "handling_cost_ex_tax",
            "handling_cost_inc_tax",
            "base_handling_cost",
        ] {
            o[k] = json!(format!("{:.4}", dec(&o[k]) + add));
        }
        for k in ["total_ex_tax", "total_inc_tax"] {
            o[k] = json!(format!("{:.4}", dec(&o[k]) + add));
        }
    }));
    deliver(&env, "store/order/updated", 1401).await;
    let rec = wait_until(&env, 1401, "balance noted", |r| {
        steps(r).contains(&"balance_changed".to_string())
    })
    .await;
    let inv = invoices_for(&env, "1401").remove(0);
    assert_eq!(inv["Id"], inv_id, "the same invoice, updated");
    assert_eq!(dec(&inv["Balance"]), Decimal::new(300, 2));
    let doc = &docs_of(&rec, "Invoice")[0];
    assert_eq!(doc["balance"], "3.00");
    assert_eq!(doc["state"], "open");
    let note = rec["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["step"] == "balance_changed")
        .unwrap();
    assert_eq!(note["detail"]["balance"], "3.00");
    assert_eq!(payments_for(&env, &inv["Id"]).len(), 1, "no new payment");
}
