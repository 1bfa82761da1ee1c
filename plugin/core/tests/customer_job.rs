//! Deterministic tests of the customer job and of customer matching (shared with orders),
//! on a `FakeHost` wired to the shared in-memory models of BigCommerce and QuickBooks
//! (`common`), whose name list keeps one DisplayName namespace across customers, vendors and
//! employees.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::{Bc, Qbo, parse_statement, wired_host};
use ml_core::books::customer::CustomerSource;
use ml_core::jobs::run::{self, RunResult, Trigger};
use ml_core::sync::record::{Entity, State, SyncRecord};
use ml_core::sync::resolve::{self, Matched};
use ml_core::sync::store::{self, EventRef};
use ml_core::sync::upstream;
use ml_core::testing::FakeHost;
use serde_json::{Value, json};

struct World {
    host: FakeHost,
    bc: Rc<RefCell<Bc>>,
    qbo: Rc<RefCell<Qbo>>,
    hashes: u32,
}

impl World {
    fn new() -> Self {
        let (host, bc, qbo) = wired_host();
        World {
            host,
            bc,
            qbo,
            hashes: 0,
        }
    }

    fn put_customer(&mut self, c: Value) {
        let id = c["id"].as_u64().unwrap();
        self.bc.borrow_mut().customers.insert(id, c);
    }

    fn edit_customer(&mut self, id: u64, f: impl FnOnce(&mut Value)) {
        f(self.bc.borrow_mut().customers.get_mut(&id).unwrap());
    }

    /// Delivers a webhook for customer `id` (a fresh hash each time) and runs its job.
    fn deliver(&mut self, scope: &str, id: u64) -> RunResult {
        self.hashes += 1;
        let ev = EventRef {
            scope: scope.into(),
            hash: format!("{:040x}", self.hashes),
            created_at: None,
        };
        run::sync(
            &mut self.host,
            Entity::Customer,
            &id.to_string(),
            Trigger::Event(ev),
        )
        .unwrap()
    }

    fn record(&mut self, id: u64) -> SyncRecord {
        store::load_record(&mut self.host, Entity::Customer, &id.to_string())
            .unwrap()
            .expect("a record")
    }

    fn steps(&mut self, id: u64) -> Vec<String> {
        self.record(id).audit.into_iter().map(|a| a.step).collect()
    }

    fn customers(&self) -> Vec<Value> {
        self.qbo.borrow().customers.clone()
    }

    fn writes(&self) -> Vec<Value> {
        self.qbo.borrow().writes.clone()
    }

    /// QuickBooks data calls (not token refreshes) since the log was last cleared.
    fn qbo_calls(&self) -> usize {
        self.host.calls_to("/v3/company/")
    }

    /// Resolves a customer as the order job does.
    fn resolve(&mut self, source: &CustomerSource) -> (resolve::CustomerLink, Matched) {
        let up = upstream::upstreams(&mut self.host).unwrap();
        resolve::customer(&mut self.host, &up, source, false).unwrap()
    }
}

fn bc_customer(id: u64, first: &str, last: &str, email: &str) -> Value {
    json!({
        "id": id, "email": email, "first_name": first, "last_name": last, "company": "", "phone": "555-0100",
        "customer_group_id": 0, "date_created": "2025-01-06T15:04:05Z", "date_modified": "2025-01-07T09:00:00Z",
        "address_count": 1,
        "addresses": [{"id": 7, "customer_id": id, "first_name": first, "last_name": last, "company": "",
            "address1": "1 Main St", "address2": "", "city": "Austin", "state_or_province": "Texas",
            "postal_code": "78701", "country": "United States", "country_code": "US", "phone": "555-0100",
            "address_type": "residential"}]
    })
}

fn ana() -> Value {
    bc_customer(42, "Ana", "Diaz", "ana@example.com")
}

#[test]
fn a_created_customer_becomes_one_quickbooks_customer_with_every_field() {
    let mut w = World::new();
    let mut c = ana();
    c["company"] = json!("");
    c["addresses"].as_array_mut().unwrap().push(json!({"address1": "9 Dock Rd", "city": "Boston",
        "state_or_province": "Massachusetts", "postal_code": "02110", "country": "United States", "country_code": "US"}));
    w.put_customer(c);
    assert_eq!(
        w.deliver("store/customer/created", 42),
        RunResult::Ran(State::Posted)
    );

    let customers = w.customers();
    assert_eq!(customers.len(), 1);
    let q = &customers[0];
    assert_eq!(q["DisplayName"], "Ana Diaz");
    assert_eq!(q["GivenName"], "Ana");
    assert_eq!(q["FamilyName"], "Diaz");
    assert_eq!(q["PrimaryEmailAddr"]["Address"], "ana@example.com");
    assert_eq!(q["PrimaryPhone"]["FreeFormNumber"], "555-0100");
    assert_eq!(q["BillAddr"]["Line1"], "1 Main St");
    assert_eq!(q["BillAddr"]["CountrySubDivisionCode"], "Texas");
    assert_eq!(q["ShipAddr"]["City"], "Boston");
    assert_eq!(q["Notes"], "BigCommerce customer 42");

    let rec = w.record(42);
    assert_eq!(rec.qbo_id.as_deref(), q["Id"].as_str());
    assert_eq!(rec.qbo_sync_token.as_deref(), Some("0"));
    let steps = w.steps(42);
    for step in ["received", "fetched", "matched", "posted"] {
        assert!(
            steps.contains(&step.to_string()),
            "{step} missing from {steps:?}"
        );
    }
    assert_eq!(
        w.record(42)
            .audit
            .iter()
            .find(|a| a.step == "matched")
            .unwrap()
            .detail["matched_by"],
        "created"
    );
}

#[test]
fn an_update_with_nothing_relevant_changed_makes_no_quickbooks_call() {
    let mut w = World::new();
    w.put_customer(ana());
    w.deliver("store/customer/created", 42);
    w.edit_customer(42, |c| c["date_modified"] = json!("2025-02-01T00:00:00Z"));
    w.host.requests.clear();
    assert_eq!(
        w.deliver("store/customer/updated", 42),
        RunResult::Ran(State::Posted)
    );
    assert_eq!(
        w.qbo_calls(),
        0,
        "no QuickBooks request for an unchanged customer"
    );
    assert_eq!(w.writes().len(), 1, "only the create");
    assert_eq!(w.steps(42).last().map(String::as_str), Some("unchanged"));
}

#[test]
fn a_changed_email_and_address_sparse_update_the_same_customer() {
    let mut w = World::new();
    w.put_customer(ana());
    w.deliver("store/customer/created", 42);
    w.edit_customer(42, |c| {
        c["email"] = json!("ana.diaz@example.org");
        c["addresses"][0]["address1"] = json!("22 Elm St");
    });
    assert_eq!(
        w.deliver("store/customer/updated", 42),
        RunResult::Ran(State::Posted)
    );
    let customers = w.customers();
    assert_eq!(customers.len(), 1, "the same customer, updated");
    assert_eq!(
        customers[0]["PrimaryEmailAddr"]["Address"],
        "ana.diaz@example.org"
    );
    assert_eq!(customers[0]["BillAddr"]["Line1"], "22 Elm St");
    assert_eq!(customers[0]["DisplayName"], "Ana Diaz");
    let update = w.writes().last().cloned().unwrap();
    assert_eq!(update["sparse"], true);
    assert!(
        update.get("DisplayName").is_none(),
        "an unchanged name is not rewritten: {update}"
    );
    assert_eq!(w.record(42).qbo_sync_token.as_deref(), Some("1"));
}

#[test]
fn an_address_event_fetches_the_customer_and_updates_it() {
    let mut w = World::new();
    w.put_customer(ana());
    w.deliver("store/customer/created", 42);
    w.edit_customer(42, |c| c["addresses"][0]["city"] = json!("Dallas"));
    assert_eq!(
        w.deliver("store/customer/address/updated", 42),
        RunResult::Ran(State::Posted)
    );
    assert_eq!(w.customers()[0]["BillAddr"]["City"], "Dallas");
}

#[test]
fn a_renamed_customer_gets_its_new_display_name() {
    let mut w = World::new();
    w.put_customer(ana());
    w.deliver("store/customer/created", 42);
    w.edit_customer(42, |c| c["last_name"] = json!("Díaz-López"));
    w.deliver("store/customer/updated", 42);
    let customers = w.customers();
    assert_eq!(customers.len(), 1);
    assert_eq!(customers[0]["DisplayName"], "Ana Díaz-López");
    assert_eq!(customers[0]["FamilyName"], "Díaz-López");
}

#[test]
fn a_rename_onto_a_vendor_name_takes_the_next_candidate() {
    let mut w = World::new();
    w.put_customer(ana());
    w.deliver("store/customer/created", 42);
    w.qbo
        .borrow_mut()
        .vendors
        .push(json!({"Id": "900", "DisplayName": "Ana Smith"}));
    w.edit_customer(42, |c| c["last_name"] = json!("Smith"));
    assert_eq!(
        w.deliver("store/customer/updated", 42),
        RunResult::Ran(State::Posted)
    );
    assert_eq!(
        w.customers()[0]["DisplayName"],
        "Ana Smith (ana@example.com)"
    );
}

#[test]
fn a_stale_sync_token_is_re_read_and_the_update_retried_once() {
    let mut w = World::new();
    w.put_customer(ana());
    w.deliver("store/customer/created", 42);
    // Someone edits the customer in QuickBooks: its SyncToken moves on.
    w.qbo.borrow_mut().customers[0]["SyncToken"] = json!("3");
    w.edit_customer(42, |c| c["phone"] = json!("555-0199"));
    w.host.requests.clear();
    assert_eq!(
        w.deliver("store/customer/updated", 42),
        RunResult::Ran(State::Posted)
    );
    assert_eq!(w.host.calls_to("GET /customer/"), 1, "one re-read");
    assert_eq!(
        w.customers()[0]["PrimaryPhone"]["FreeFormNumber"],
        "555-0199"
    );
    assert_eq!(w.record(42).qbo_sync_token.as_deref(), Some("4"));
}

#[test]
fn a_deleted_customer_becomes_inactive_and_keeps_its_link() {
    let mut w = World::new();
    w.put_customer(ana());
    w.deliver("store/customer/created", 42);
    w.bc.borrow_mut().customers.remove(&42);
    w.host.requests.clear();
    assert_eq!(
        w.deliver("store/customer/deleted", 42),
        RunResult::Ran(State::Posted)
    );
    assert_eq!(
        w.host.calls_to("bc.test"),
        1,
        "the deletion is confirmed with BigCommerce, not taken from the webhook"
    );
    let customers = w.customers();
    assert_eq!(customers.len(), 1, "deactivated, never deleted");
    assert_eq!(customers[0]["Active"], false);
    assert!(w.steps(42).contains(&"deactivated".to_string()));
    let link = resolve::load_link(&mut w.host, "link/customer/42").expect("the link is kept");
    assert!(link.inactive);

    // A redelivery finds it already inactive.
    w.host.requests.clear();
    assert_eq!(
        w.deliver("store/customer/deleted", 42),
        RunResult::Ran(State::Posted)
    );
    assert_eq!(w.qbo_calls(), 0);
}

#[test]
fn a_customer_gone_from_bigcommerce_on_update_is_deactivated_too() {
    let mut w = World::new();
    w.put_customer(ana());
    w.deliver("store/customer/created", 42);
    w.bc.borrow_mut().customers.remove(&42);
    assert_eq!(
        w.deliver("store/customer/updated", 42),
        RunResult::Ran(State::Posted)
    );
    assert_eq!(w.customers()[0]["Active"], false);
}

#[test]
fn a_customer_deleted_before_it_was_synced_is_skipped() {
    let mut w = World::new();
    assert_eq!(
        w.deliver("store/customer/deleted", 77),
        RunResult::Ran(State::Skipped)
    );
    assert!(w.customers().is_empty());
    assert_eq!(w.qbo_calls(), 0);
    let rec = w.record(77);
    assert!(
        rec.audit.iter().any(|a| a
            .detail
            .to_string()
            .contains("customer deleted before it was synced")),
        "{:?}",
        rec.audit
    );
}

#[test]
fn an_inactive_customer_with_the_same_email_is_adopted_and_reactivated() {
    let mut w = World::new();
    w.qbo
        .borrow_mut()
        .insert_customer(json!({"DisplayName": "A. Diaz", "Active": false,
        "PrimaryEmailAddr": {"Address": "ana@example.com"}}));
    w.put_customer(ana());
    assert_eq!(
        w.deliver("store/customer/created", 42),
        RunResult::Ran(State::Posted)
    );
    let customers = w.customers();
    assert_eq!(customers.len(), 1, "adopted, not duplicated");
    assert_eq!(customers[0]["Active"], true);
    assert_eq!(
        customers[0]["DisplayName"], "A. Diaz",
        "an adopted customer keeps its owner's name"
    );
    assert_eq!(customers[0]["BillAddr"]["Line1"], "1 Main St");
    assert!(
        w.qbo.borrow().statements[0].contains("Active IN (true, false)"),
        "inactive customers are searched too"
    );
    let matched = w
        .record(42)
        .audit
        .into_iter()
        .find(|a| a.step == "matched")
        .unwrap();
    assert_eq!(matched.detail["matched_by"], "email");
}

#[test]
fn a_customer_with_exactly_the_name_and_no_email_is_adopted() {
    let mut w = World::new();
    w.qbo
        .borrow_mut()
        .insert_customer(json!({"DisplayName": "Ana Diaz"}));
    w.put_customer(ana());
    w.deliver("store/customer/created", 42);
    let customers = w.customers();
    assert_eq!(customers.len(), 1);
    assert_eq!(
        customers[0]["PrimaryEmailAddr"]["Address"],
        "ana@example.com"
    );
    let matched = w
        .record(42)
        .audit
        .into_iter()
        .find(|a| a.step == "matched")
        .unwrap();
    assert_eq!(matched.detail["matched_by"], "name");
}

#[test]
fn two_customers_with_the_same_name_and_different_emails_are_two_quickbooks_customers() {
    let mut w = World::new();
    w.put_customer(ana());
    w.put_customer(bc_customer(43, "Ana", "Diaz", "ana2@example.com"));
    w.deliver("store/customer/created", 42);
    assert_eq!(
        w.deliver("store/customer/created", 43),
        RunResult::Ran(State::Posted)
    );
    let names: Vec<Value> = w
        .customers()
        .iter()
        .map(|c| c["DisplayName"].clone())
        .collect();
    assert_eq!(
        names,
        [json!("Ana Diaz"), json!("Ana Diaz (ana2@example.com)")]
    );
}

#[test]
fn a_vendor_and_employee_clash_moves_to_the_email_variant_then_the_bc_id() {
    let mut w = World::new();
    w.qbo
        .borrow_mut()
        .vendors
        .push(json!({"Id": "900", "DisplayName": "Ana Diaz"}));
    w.qbo
        .borrow_mut()
        .employees
        .push(json!({"Id": "901", "DisplayName": "Ana Diaz (ana@example.com)", "Active": false}));
    w.put_customer(ana());
    assert_eq!(
        w.deliver("store/customer/created", 42),
        RunResult::Ran(State::Posted)
    );
    let customers = w.customers();
    assert_eq!(customers.len(), 1);
    assert_eq!(customers[0]["DisplayName"], "Ana Diaz (BC 42)");
    assert!(
        !w.steps(42).contains(&"attempt_failed".to_string()),
        "a 6240 is no failed attempt"
    );
}

#[test]
fn every_candidate_taken_falls_back_to_a_numbered_name() {
    let mut w = World::new();
    for name in [
        "Ana Diaz",
        "Ana Diaz (ana@example.com)",
        "Ana Diaz (BC 42)",
        "Ana Diaz (BC 42) 2",
    ] {
        w.qbo
            .borrow_mut()
            .vendors
            .push(json!({"DisplayName": name}));
    }
    w.put_customer(ana());
    assert_eq!(
        w.deliver("store/customer/created", 42),
        RunResult::Ran(State::Posted)
    );
    assert_eq!(w.customers()[0]["DisplayName"], "Ana Diaz (BC 42) 3");
}

#[test]
fn quotes_ampersands_accents_and_cjk_are_escaped_in_queries_and_round_trip() {
    let cases = [
        (
            50,
            "Amy's",
            "Bird & Co",
            "%27Amy%5C%27s%20Bird%20%26%20Co%27",
        ),
        (51, "The \"Best\"", "Shop", "%27The%20%22Best%22%20Shop%27"),
        (52, "José", "Müller", "%27Jos%C3%A9%20M%C3%BCller%27"),
        (
            53,
            "太郎",
            "山田",
            "%27%E5%A4%AA%E9%83%8E%20%E5%B1%B1%E7%94%B0%27",
        ),
    ];
    for (id, first, last, encoded) in cases {
        let mut w = World::new();
        // No email: the name is what is looked up.
        w.put_customer(bc_customer(id, first, last, ""));
        assert_eq!(
            w.deliver("store/customer/created", id),
            RunResult::Ran(State::Posted),
            "{first} {last}"
        );
        let name = format!("{first} {last}");
        let urls: Vec<String> = w
            .host
            .requests
            .iter()
            .map(|r| r.url.clone())
            .filter(|u| u.contains("/query?"))
            .collect();
        assert!(
            urls.iter().any(|u| u.contains(encoded)),
            "{name}: no query URL contains {encoded}: {urls:?}"
        );
        assert!(
            w.qbo
                .borrow()
                .statements
                .iter()
                .any(|s| parse_statement(s).2 == name),
            "{name} decodes back intact"
        );
        assert_eq!(w.customers()[0]["DisplayName"], name.as_str());

        // Matching by that exact name finds it again rather than creating a second one.
        let mut other = bc_customer(id + 100, first, last, "");
        other["phone"] = json!("");
        w.put_customer(other);
        w.deliver("store/customer/created", id + 100);
        assert_eq!(w.customers().len(), 1, "{name}: found by its escaped name");
    }
}

#[test]
fn a_6240_from_a_concurrent_creator_adopts_that_customer() {
    let mut w = World::new();
    // Another instance creates Ana between our lookup and our create.
    w.qbo.borrow_mut().race = Some((
        "Ana Diaz".into(),
        json!({"DisplayName": "Ana Diaz", "PrimaryEmailAddr": {"Address": "ana@example.com"}, "Notes": "BigCommerce customer 42"}),
    ));
    w.put_customer(ana());
    assert_eq!(
        w.deliver("store/customer/created", 42),
        RunResult::Ran(State::Posted)
    );
    let customers = w.customers();
    assert_eq!(customers.len(), 1, "adopted, never a second customer");
    assert_eq!(w.record(42).qbo_id.as_deref(), customers[0]["Id"].as_str());
    assert_eq!(
        customers[0]["PrimaryPhone"]["FreeFormNumber"], "555-0100",
        "then brought up to date"
    );
}

#[test]
fn a_6240_race_without_email_is_recognized_by_the_note() {
    let mut w = World::new();
    w.qbo.borrow_mut().race = Some((
        "Ana Diaz".into(),
        json!({"DisplayName": "Ana Diaz", "Notes": "BigCommerce customer 42", "GivenName": "Ana"}),
    ));
    // No email to re-query by: the clashing customer carries our note for customer 42.
    w.put_customer(bc_customer(42, "Ana", "Diaz", ""));
    assert_eq!(
        w.deliver("store/customer/created", 42),
        RunResult::Ran(State::Posted)
    );
    assert_eq!(w.customers().len(), 1);
}

#[test]
fn a_held_link_lease_defers_creation_to_a_retry() {
    let mut w = World::new();
    w.put_customer(ana());
    // An order job is creating this customer right now.
    let lease = store::try_acquire(&mut w.host, "lease/link/customer/42", 120_000)
        .unwrap()
        .unwrap();
    assert_eq!(
        w.deliver("store/customer/created", 42),
        RunResult::Ran(State::Retrying)
    );
    assert!(
        w.customers().is_empty(),
        "nothing created while another worker holds the link"
    );
    // The order job finishes: it created and linked the customer.
    let up = upstream::upstreams(&mut w.host).unwrap();
    let source = CustomerSource::from_billing_address(
        &json!({"first_name": "Ana", "last_name": "Diaz", "email": "ana@example.com", "street_1": "1 Main St"}),
        None,
    );
    let source = CustomerSource {
        bc_customer_id: Some(42),
        ..source
    };
    store::release(&mut w.host, lease).unwrap();
    let (link, how) = resolve::customer(&mut w.host, &up, &source, false).unwrap();
    assert_eq!(how, Matched::Created);
    w.host.advance(chrono::Duration::minutes(5));
    run::retry_due(&mut w.host).unwrap();
    assert_eq!(w.record(42).state, State::Posted);
    let customers = w.customers();
    assert_eq!(
        customers.len(),
        1,
        "the order's customer and the customer event's are one"
    );
    assert_eq!(customers[0]["Id"], link.qbo_id.as_str());
    assert_eq!(
        customers[0]["BillAddr"]["City"], "Austin",
        "the customer event brought the full data"
    );
}

#[test]
fn an_order_and_customer_events_share_one_customer_through_the_link() {
    let mut w = World::new();
    w.put_customer(ana());
    let source = CustomerSource {
        bc_customer_id: Some(42),
        ..CustomerSource::from_v3_customer(&ana())
    };
    let (first, how) = w.resolve(&source);
    assert_eq!(how, Matched::Created);
    w.deliver("store/customer/updated", 42);
    let (again, how) = w.resolve(&source);
    assert_eq!(how, Matched::Link);
    assert_eq!(first.qbo_id, again.qbo_id);
    assert_eq!(w.customers().len(), 1);
    assert_eq!(
        w.writes().len(),
        1,
        "same content as the order created: no update"
    );
}

#[test]
fn guests_with_the_same_email_share_one_customer_per_email() {
    let mut w = World::new();
    let guest = |email: &str| {
        CustomerSource::from_billing_address(
            &json!({"first_name": "Jane", "last_name": "Doe", "email": email, "street_1": "555 East Street", "city": "Austin"}),
            None,
        )
    };
    let (a, how) = w.resolve(&guest("jane@example.com"));
    assert_eq!(how, Matched::Created);
    w.host.requests.clear();
    let (b, how) = w.resolve(&guest("Jane@Example.com"));
    assert_eq!(
        (how, &b.qbo_id),
        (Matched::Link, &a.qbo_id),
        "a later guest order with that email reuses it"
    );
    assert_eq!(w.qbo_calls(), 0);
    let (c, _) = w.resolve(&guest("jane.other@example.com"));
    assert_ne!(c.qbo_id, a.qbo_id, "another email is another customer");
    assert_eq!(w.customers().len(), 2);
    assert_eq!(
        w.customers()[1]["DisplayName"],
        "Jane Doe (jane.other@example.com)"
    );
}

#[test]
fn an_order_reactivates_an_inactive_customer_matched_by_email() {
    let mut w = World::new();
    w.qbo
        .borrow_mut()
        .insert_customer(json!({"DisplayName": "Jane Doe", "Active": false,
        "PrimaryEmailAddr": {"Address": "jane@example.com"}}));
    let source = CustomerSource::from_billing_address(
        &json!({"first_name": "Jane", "last_name": "Doe", "email": "jane@example.com"}),
        None,
    );
    let (link, how) = w.resolve(&source);
    assert_eq!(how, Matched::Email);
    assert!(!link.inactive);
    assert_eq!(
        w.customers()[0]["Active"],
        true,
        "an invoice cannot reference an inactive customer"
    );
    assert_eq!(link.sync_token, "1");
}

#[test]
fn a_backslash_in_a_customers_name_or_email_still_syncs_and_renames() {
    let mut w = World::new();
    w.put_customer(bc_customer(42, "Jo\\hn", "O\\Brien", "jo\\hn@example.com"));
    assert_eq!(
        w.deliver("store/customer/created", 42),
        RunResult::Ran(State::Posted),
        "{:?}",
        w.record(42).last_error
    );
    assert_eq!(w.customers()[0]["DisplayName"], "Jo/hn O/Brien");
    w.edit_customer(42, |c| c["last_name"] = json!("O\\Neil"));
    assert_eq!(
        w.deliver("store/customer/updated", 42),
        RunResult::Ran(State::Posted),
        "{:?}",
        w.record(42).last_error
    );
    assert_eq!(w.customers()[0]["DisplayName"], "Jo/hn O/Neil");
    assert_eq!(w.customers().len(), 1);
}

#[test]
fn a_deleted_webhook_for_a_customer_bigcommerce_still_has_deactivates_nothing() {
    let mut w = World::new();
    w.put_customer(ana());
    w.deliver("store/customer/created", 42);
    // A forged or stale `deleted` event: BigCommerce still has the customer.
    assert_eq!(
        w.deliver("store/customer/deleted", 42),
        RunResult::Ran(State::Posted)
    );
    let customers = w.customers();
    assert_eq!(customers.len(), 1);
    assert_eq!(customers[0]["Active"], true, "not deactivated");
    assert!(!w.steps(42).contains(&"deactivated".to_string()));
    let link = resolve::load_link(&mut w.host, "link/customer/42").unwrap();
    assert!(!link.inactive);
}
