use super::*;
use crate::models::token::TokenError;
use crate::sync::failure::{classify_bigcommerce, classify_quickbooks};

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-26T15:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn secs(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const MID: u32 = 1 << 31; // jitter input that lands near the middle (+0 %)

#[test]
fn failures_and_audit_never_carry_credentials() {
    let token = "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0..KM1_Fezsm6BUSaqq";
    let headers = h(&[
        ("Authorization", &format!("Bearer {token}")),
        (
            "WWW-Authenticate",
            "Bearer realm=\"Intuit\", error=\"invalid_token\"",
        ),
        ("X-Auth-Token", "bc-static-token-8f7d6c5b4a39"),
        ("intuit_tid", "1-5f732f5f-25dcb83b777d318c396aaf06"),
    ]);
    let f = classify_quickbooks(401, Some("3200"), &headers).with_upstream_message(
        "Token expired: AB0161601391072Qx9wJ1lFzT2c; Authorization: Bearer abc",
    );
    let mut rec = SyncRecord::new(Entity::Order, "250", t0());
    rec.attempt_failed(&f, t0(), 10, 60, MID);
    let bc = classify_bigcommerce(401, &headers);
    rec.attempt_failed(&bc, t0(), 10, 60, MID);
    let all = format!(
        "{} {f:?} {bc:?} {}",
        serde_json::to_string(&rec).unwrap(),
        explain(&f)
    );
    for secret in [
        token,
        "KM1_Fezsm6BUSaqq",
        "bc-static-token-8f7d6c5b4a39",
        "AB0161601391072Qx9wJ1lFzT2c",
        "Bearer abc",
    ] {
        assert!(!all.contains(secret), "leaked {secret}: {all}");
    }
    assert!(all.contains("Token expired: [redacted]"));
}

#[test]
fn retryable_failures_schedule_until_max_attempts_then_fail() {
    let mut rec = SyncRecord::new(Entity::Order, "250", t0());
    assert!(rec.received("store/order/created", "h1", None, t0()));
    let f = classify_quickbooks(500, None, &[]);
    let j = ((200u64 << 32) / 401 + 1) as u32;
    let mut now = t0();
    for attempt in 1..=2u32 {
        rec.attempt_failed(&f, now, 3, 60, j);
        assert_eq!(rec.state, State::Retrying);
        assert_eq!(rec.attempts, attempt);
        let expected = now + secs(60 * (1 << (attempt - 1)));
        assert_eq!(rec.next_attempt_at, Some(expected));
        assert!(!rec.is_due(expected - secs(1), false));
        assert!(rec.is_due(expected, false));
        now = expected;
    }
    rec.attempt_failed(&f, now, 3, 60, j);
    assert_eq!(rec.state, State::Failed);
    assert_eq!(rec.next_attempt_at, None);
    assert!(
        rec.last_error
            .as_deref()
            .unwrap()
            .starts_with("gave up after 3 attempts")
    );
    assert!(!rec.is_due(now + secs(100_000), true));
    let steps: Vec<&str> = rec.audit.iter().map(|a| a.step.as_str()).collect();
    assert_eq!(
        steps,
        [
            "received",
            "attempt_failed",
            "attempt_failed",
            "attempt_failed"
        ]
    );
    assert_eq!(rec.audit[1].detail["status"], 500);
    assert_eq!(rec.audit[1].detail["retryable"], true);
}

#[test]
fn a_429_record_waits_at_least_sixty_seconds_even_with_a_tiny_base() {
    let mut rec = SyncRecord::new(Entity::Customer, "42", t0());
    rec.attempt_failed(&classify_quickbooks(429, None, &[]), t0(), 10, 1, 0);
    assert_eq!(rec.next_attempt_at, Some(t0() + secs(60)));
}

#[test]
fn a_429_with_a_huge_retry_after_waits_a_day_at_most_and_never_overflows_the_date() {
    for value in [
        "99999999999999",
        "18446744073709551615",
        "999999999999999999999999",
    ] {
        for failure in [
            classify_quickbooks(429, None, &h(&[("Retry-After", value)])),
            classify_bigcommerce(429, &h(&[("Retry-After", value)])),
            classify_bigcommerce(429, &h(&[("X-Rate-Limit-Time-Reset-Ms", value)])),
        ] {
            let mut rec = SyncRecord::new(Entity::Order, "250", t0());
            rec.attempt_failed(&failure, t0(), 10, 60, MID);
            assert_eq!(rec.state, State::Retrying, "{value}");
            assert_eq!(rec.next_attempt_at, Some(t0() + secs(86_400)), "{value}");
        }
    }
}

#[test]
fn a_429_waits_for_its_retry_after_when_given_else_sixty_seconds_for_both_services() {
    let wait = |f: &Failure| {
        let mut rec = SyncRecord::new(Entity::Order, "250", t0());
        rec.attempt_failed(f, t0(), 10, 1, 0);
        (rec.next_attempt_at.unwrap() - t0()).num_seconds()
    };
    assert_eq!(wait(&classify_quickbooks(429, None, &[])), 60);
    assert_eq!(wait(&classify_bigcommerce(429, &[])), 60);
    assert_eq!(
        wait(&classify_quickbooks(429, None, &h(&[("Retry-After", "5")]))),
        5
    );
    assert_eq!(
        wait(&classify_bigcommerce(429, &h(&[("Retry-After", "5")]))),
        5
    );
    assert_eq!(
        wait(&classify_quickbooks(
            429,
            None,
            &h(&[("Retry-After", "7200")])
        )),
        7200
    );
    assert_eq!(
        wait(&classify_bigcommerce(
            429,
            &h(&[("X-Rate-Limit-Time-Reset-Ms", "15000")])
        )),
        15
    );
}

#[test]
fn a_retry_time_past_the_end_of_the_calendar_is_clamped_not_a_panic() {
    let end = DateTime::<Utc>::MAX_UTC - secs(10);
    let mut rec = SyncRecord::new(Entity::Order, "250", end);
    rec.attempt_failed(&classify_quickbooks(500, None, &[]), end, 10, 60, MID);
    assert_eq!(rec.state, State::Retrying);
    assert_eq!(rec.next_attempt_at, Some(DateTime::<Utc>::MAX_UTC));
}

#[test]
fn not_found_fails_at_once_with_its_reason() {
    let mut rec = SyncRecord::new(Entity::Order, "9", t0());
    rec.attempt_failed(&classify_bigcommerce(404, &[]), t0(), 10, 60, MID);
    assert_eq!(rec.state, State::Failed);
    assert_eq!(rec.reason.as_deref(), Some("not_found"));
    assert_eq!(rec.attempts, 1);
}

#[test]
fn lost_authorization_parks_until_reauthorized() {
    let mut rec = SyncRecord::new(Entity::Order, "9", t0());
    rec.attempt_failed(
        &Failure::from_token_error(&TokenError::NeedsReauth),
        t0(),
        10,
        60,
        MID,
    );
    assert_eq!(rec.state, State::NeedsReauth);
    assert!(!rec.is_due(t0() + secs(86_400), false));
    assert!(rec.is_due(t0() + secs(1), true));
    rec.reauthorized(t0() + secs(2));
    assert_eq!((rec.state, rec.attempts), (State::Pending, 0));
}

#[test]
fn pending_records_become_due_after_thirty_seconds() {
    let rec = SyncRecord::new(Entity::Order, "1", t0());
    assert!(!rec.is_due(t0() + secs(29), false));
    assert!(rec.is_due(t0() + secs(30), false));
}

#[test]
fn posting_clears_errors_and_matches_the_contract_json() {
    let mut rec = SyncRecord::new(Entity::Order, "250", t0());
    rec.received("store/order/created", "abc", None, t0());
    rec.attempt_failed(
        &classify_quickbooks(500, None, &h(&[("intuit_tid", "tid-1")])),
        t0() + secs(1),
        10,
        60,
        MID,
    );
    rec.posted("266", "0", Some("req-1"), t0() + secs(120));
    let v = serde_json::to_value(&rec).unwrap();
    assert_eq!(v["entity"], "order");
    assert_eq!(v["id"], "250");
    assert_eq!(v["state"], "posted");
    assert_eq!(v["qbo_id"], "266");
    assert_eq!(v["qbo_sync_token"], "0");
    assert_eq!(v["attempts"], 2);
    assert_eq!(v["next_attempt_at"], Value::Null);
    assert_eq!(v["last_error"], Value::Null);
    assert_eq!(
        v["audit"][0],
        json!({"at": "2026-11-26T15:00:00Z", "step": "received",
            "detail": {"scope": "store/order/created", "hash": "abc"}})
    );
    assert_eq!(v["audit"][1]["detail"]["intuit_tid"], "tid-1");
    assert_eq!(v["audit"][2]["detail"]["qbo_id"], "266");
    assert_eq!(v["audit"][2]["detail"]["requestid"], "req-1");
    let back: SyncRecord = serde_json::from_value(v).unwrap();
    assert_eq!(back, rec);
    assert!(rec.summary().get("audit").is_none());
    assert_eq!(rec.summary()["state"], "posted");
}

#[test]
fn contract_example_json_deserializes() {
    let text = r#"{"entity": "order", "id": "250", "state": "posted", "qbo_id": "266", "qbo_sync_token": "0",
            "attempts": 2, "next_attempt_at": null, "last_error": null,
            "audit": [{"at": "2026-11-26T15:00:00Z", "step": "received", "detail": {"scope": "store/order/created", "hash": "x"}}]}"#;
    let rec: SyncRecord = serde_json::from_str(text).unwrap();
    assert_eq!(
        (rec.entity, rec.state, rec.attempts),
        (Entity::Order, State::Posted, 2)
    );
}

#[test]
fn redeliveries_change_nothing_and_new_events_reopen_finished_records() {
    let mut rec = SyncRecord::new(Entity::Order, "1", t0());
    assert!(rec.received("store/order/created", "h1", None, t0()));
    rec.posted("5", "0", None, t0());
    assert!(!rec.received("store/order/created", "h1", None, t0() + secs(1)));
    assert_eq!(rec.state, State::Posted);
    assert!(rec.received("store/order/updated", "h2", None, t0() + secs(2)));
    assert_eq!((rec.state, rec.attempts), (State::Pending, 0));
    assert_eq!(
        rec.qbo_id.as_deref(),
        Some("5"),
        "an update re-syncs the same invoice"
    );
}

#[test]
fn a_record_remembers_a_bounded_number_of_bounded_event_keys() {
    let mut rec = SyncRecord::new(Entity::Order, "1", t0());
    let scope = format!("store/order/{}", "x".repeat(116)); // the longest scope accepted
    for i in 0..500 {
        let hash = format!("{i:0>128}");
        assert!(rec.received(&scope, &hash, Some(i64::MAX), t0()));
    }
    assert_eq!(rec.recent_hashes.len(), RECENT_HASHES);
    assert!(rec.recent_hashes.iter().all(|k| k.len() <= 128 + 128 + 21));
    assert!(rec.audit.len() <= MAX_AUDIT);
}

#[test]
fn skipped_and_replayed_records_are_audited() {
    let mut rec = SyncRecord::new(Entity::Order, "1", t0());
    rec.skipped("incomplete order (status 0)", t0());
    assert_eq!(rec.state, State::Skipped);
    assert!(!rec.is_due(t0() + secs(60), true));
    rec.replay_requested(t0() + secs(5));
    assert_eq!(rec.state, State::Pending);
    assert_eq!(rec.audit.last().unwrap().detail["from"], "skipped");
}

#[test]
fn audit_is_trimmed_but_keeps_the_first_entry() {
    let mut rec = SyncRecord::new(Entity::Order, "1", t0());
    rec.received("store/order/created", "first", None, t0());
    for i in 0..(MAX_AUDIT + 10) {
        rec.note("n", json!(i), t0());
    }
    assert_eq!(rec.audit.len(), MAX_AUDIT);
    assert_eq!(rec.audit[0].step, "received");
    assert_eq!(rec.audit.last().unwrap().detail, json!(MAX_AUDIT + 9));
}

#[test]
fn state_and_entity_names_round_trip() {
    for s in [
        "pending",
        "retrying",
        "posted",
        "failed",
        "needs_reauth",
        "skipped",
    ] {
        assert_eq!(State::parse(s).unwrap().as_str(), s);
        assert_eq!(serde_json::to_value(State::parse(s).unwrap()).unwrap(), s);
    }
    assert_eq!(Entity::parse("customer"), Some(Entity::Customer));
    assert_eq!(Entity::parse("invoice"), None);
}

#[test]
fn documents_are_listed_once_per_source_and_every_create_and_void_is_audited() {
    use crate::books::documents::{DocKind, Document, InvoiceState};
    let mut rec = SyncRecord::new(Entity::Order, "250", t0());
    rec.document_planned("order", "rid-inv", t0());
    let mut inv = Document::new(DocKind::Invoice, "266", "order");
    inv.sync_token = Some("0".into());
    inv.state = Some(InvoiceState::Open);
    rec.document_written(inv.clone(), "document_created", Some("rid-inv"), t0());
    assert!(
        rec.pending.is_empty(),
        "a confirmed write is no longer pending"
    );
    assert_eq!(
        rec.qbo_id.as_deref(),
        Some("266"),
        "qbo_id follows the invoice"
    );
    rec.document_planned("gateway", "rid-pay", t0());
    assert_eq!(
        rec.pending.get("gateway").map(String::as_str),
        Some("rid-pay")
    );
    let pay = Document::new(DocKind::Payment, "301", "gateway");
    rec.document_written(pay.clone(), "document_created", Some("rid-pay"), t0());
    rec.document_written(pay, "document_adopted", None, t0());
    assert_eq!(rec.documents.len(), 2, "one document per source");
    rec.document_voided("order", "1", Some("rid-void"), t0());
    assert_eq!(rec.documents[0].state, Some(InvoiceState::Voided));
    assert_eq!(rec.qbo_sync_token.as_deref(), Some("1"));
    let audited: Vec<(&str, &str)> = rec
        .audit
        .iter()
        .filter(|a| a.step.starts_with("document_"))
        .map(|a| {
            (
                a.step.as_str(),
                a.detail["qbo_id"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        audited,
        [
            ("document_created", "266"),
            ("document_created", "301"),
            ("document_adopted", "301"),
            ("document_voided", "266")
        ]
    );
    let v = serde_json::to_value(&rec).unwrap();
    assert_eq!(v["documents"][1]["type"], "Payment");
    assert_eq!(serde_json::from_value::<SyncRecord>(v).unwrap(), rec);
}

#[test]
fn a_record_from_before_documents_lists_its_invoice() {
    let mut rec = SyncRecord::new(Entity::Order, "250", t0());
    rec.posted("266", "3", None, t0());
    let docs = rec.documents();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].qbo_id, "266");
    assert_eq!(docs[0].source, "order");
    assert_eq!(docs[0].sync_token.as_deref(), Some("3"));
    assert!(
        SyncRecord::new(Entity::Customer, "1", t0())
            .documents()
            .is_empty()
    );
}

#[test]
fn a_refund_event_marks_refunds_due() {
    let mut rec = SyncRecord::new(Entity::Order, "250", t0());
    rec.received("store/order/updated", "h1", Some(1), t0());
    assert!(!rec.refunds_due);
    rec.received("store/order/refund/created", "h1", Some(2), t0());
    assert!(rec.refunds_due);
}
