//! Sync records: one per BigCommerce entity, with its state machine and audit trail.
//!
//! Everything here is pure: transitions take `now`, jitter is a random input, and the
//! caller persists the record. Audit details are built only from classified fields
//! (status, fault code, Intuit transaction id, fixed explanations, sanitized upstream
//! text), never from request headers or bodies, so credentials cannot reach them.
//! Failures are classified in [`crate::sync::failure`]; delays come from
//! [`crate::sync::retry`].

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::books::documents::{self, DocKind, Document, InvoiceState};
use crate::sync::failure::{Failure, Retryability, explain};
use crate::sync::retry::{retry_at, retry_delay};

/// A `pending` record untouched this long is presumed orphaned and counts as due.
pub const PENDING_STALE_AFTER: chrono::Duration = chrono::Duration::seconds(30);
/// Audit entries kept per record; the first (`received`) and the newest survive trimming.
pub const MAX_AUDIT: usize = 200;

/// The BigCommerce entity a record syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Order,
    Customer,
}

impl Entity {
    /// `order` / `customer`, as in routes and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Order => "order",
            Entity::Customer => "customer",
        }
    }

    /// Parses a route segment.
    pub fn parse(s: &str) -> Option<Entity> {
        match s {
            "order" => Some(Entity::Order),
            "customer" => Some(Entity::Customer),
            _ => None,
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a record stands (contract §3 "Sync records").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Accepted, not finished yet.
    Pending,
    /// A retryable failure; runs again at `next_attempt_at`.
    Retrying,
    /// In QuickBooks (`qbo_id`).
    Posted,
    /// Needs a human; `last_error` says why.
    Failed,
    /// QuickBooks authorization lost; resumes once re-authorized.
    NeedsReauth,
    /// Nothing to post.
    Skipped,
}

impl State {
    /// The snake_case name used in JSON and the `status` query parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Retrying => "retrying",
            State::Posted => "posted",
            State::Failed => "failed",
            State::NeedsReauth => "needs_reauth",
            State::Skipped => "skipped",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<State> {
        [
            State::Pending,
            State::Retrying,
            State::Posted,
            State::Failed,
            State::NeedsReauth,
            State::Skipped,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// One line of a record's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub step: String,
    pub detail: Value,
}

fn epoch() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

/// What identifies one webhook event across redeliveries. BigCommerce's `hash` is the SHA-1
/// of `data` alone, so every `store/order/updated` of an order has the same hash as its
/// `created`; a redelivery repeats scope, hash and `created_at`, a new event does not.
pub fn event_key(scope: &str, hash: &str, created_at: Option<i64>) -> String {
    match created_at {
        Some(at) => format!("{hash}/{scope}/{at}"),
        None => format!("{hash}/{scope}"),
    }
}

/// How many webhook hashes a record remembers for duplicate detection.
const RECENT_HASHES: usize = 32;

/// One BigCommerce entity's sync state. Serializes as the contract's JSON, plus extensions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRecord {
    pub entity: Entity,
    pub id: String,
    pub state: State,
    pub qbo_id: Option<String>,
    pub qbo_sync_token: Option<String>,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub audit: Vec<AuditEntry>,
    /// Machine-readable reason of the last failure (`not_found`, `mapping`, …).
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default = "epoch")]
    pub created_at: DateTime<Utc>,
    /// Last transition; a `pending` record idle for 30 s counts as due.
    #[serde(default = "epoch")]
    pub updated_at: DateTime<Utc>,
    /// Digest of what was last posted, to skip updates that change nothing.
    #[serde(default)]
    pub content_digest: Option<String>,
    /// QuickBooks `requestid` of the write in flight, reused on every retry of that write.
    #[serde(default)]
    pub requestid: Option<String>,
    /// `hash` of the last webhook received (redelivery detection).
    #[serde(default)]
    pub last_hash: Option<String>,
    #[serde(default)]
    pub last_scope: Option<String>,
    /// The last few webhook hashes handled: duplicates (BigCommerce delivers at least once)
    /// are recognised even when other events came in between.
    #[serde(default)]
    pub recent_hashes: Vec<String>,
    /// Every document posted for the entity (CONTRACT §7): invoice, payments, refunds.
    #[serde(default)]
    pub documents: Vec<Document>,
    /// Writes planned but not confirmed, by document source (`gateway`, `refund/17`,
    /// `void:order`) → `requestid`. A source listed here may already exist in QuickBooks: it
    /// is looked up before it is written again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending: BTreeMap<String, String>,
    /// A `store/order/refund/created` event arrived and its refunds are not all posted yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refunds_due: bool,
    /// BigCommerce's `date_modified` of the order the last run worked from (a retry may reuse
    /// the order its failed run read): the sweep compares changes with it, so a change made
    /// after that read is synced even when the record itself was saved later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_modified: Option<DateTime<Utc>>,
}

impl SyncRecord {
    /// A fresh `pending` record.
    pub fn new(entity: Entity, id: impl Into<String>, now: DateTime<Utc>) -> SyncRecord {
        SyncRecord {
            entity,
            id: id.into(),
            state: State::Pending,
            qbo_id: None,
            qbo_sync_token: None,
            attempts: 0,
            next_attempt_at: None,
            last_error: None,
            audit: Vec::new(),
            reason: None,
            created_at: now,
            updated_at: now,
            content_digest: None,
            requestid: None,
            last_hash: None,
            last_scope: None,
            recent_hashes: Vec::new(),
            documents: Vec::new(),
            pending: BTreeMap::new(),
            refunds_due: false,
            source_modified: None,
        }
    }

    /// The documents, with the invoice of a record written before documents were listed
    /// (only `qbo_id`) filled in as its first document.
    pub fn documents(&self) -> Vec<Document> {
        if self.documents.is_empty()
            && self.entity == Entity::Order
            && let Some(id) = &self.qbo_id
        {
            let mut d = Document::new(DocKind::Invoice, id.clone(), documents::ORDER);
            d.sync_token = self.qbo_sync_token.clone();
            d.state = Some(InvoiceState::Open);
            return vec![d];
        }
        self.documents.clone()
    }

    /// Records a write about to be sent for document `source`, so a retry after a crash looks
    /// the document up before writing it again.
    pub fn document_planned(&mut self, source: &str, requestid: &str, now: DateTime<Utc>) {
        self.pending
            .insert(source.to_string(), requestid.to_string());
        self.note(
            "write_planned",
            json!({ "source": source, "requestid": requestid }),
            now,
        );
    }

    /// A document is in QuickBooks: listed (replacing the entry for its source) and audited
    /// as `document_created` (`document_adopted` when it was found there after an
    /// unconfirmed write, `document_updated` for a new version of a listed one).
    pub fn document_written(
        &mut self,
        doc: Document,
        step: &str,
        requestid: Option<&str>,
        now: DateTime<Utc>,
    ) {
        self.documents = self.documents();
        self.pending.remove(&doc.source);
        let mut detail =
            json!({"type": doc.kind.as_str(), "qbo_id": doc.qbo_id, "source": doc.source});
        if let Some(n) = &doc.doc_number {
            detail["doc_number"] = json!(n);
        }
        if let Some(a) = doc.amount.or(doc.total) {
            detail["amount"] = json!(a.to_qbo_string());
        }
        if let Some(r) = requestid {
            detail["requestid"] = json!(r);
        }
        if doc.kind == DocKind::Invoice {
            self.qbo_id = Some(doc.qbo_id.clone());
            self.qbo_sync_token = doc.sync_token.clone();
        }
        match self.documents.iter_mut().find(|d| d.source == doc.source) {
            Some(existing) => *existing = doc,
            None => self.documents.push(doc),
        }
        self.note(step, detail, now);
    }

    /// The invoice for `source` was voided in QuickBooks.
    pub fn document_voided(
        &mut self,
        source: &str,
        sync_token: &str,
        requestid: Option<&str>,
        now: DateTime<Utc>,
    ) {
        self.documents = self.documents();
        self.pending.remove(&format!("void:{source}"));
        let Some(doc) = self.documents.iter_mut().find(|d| d.source == source) else {
            return;
        };
        doc.state = Some(InvoiceState::Voided);
        doc.sync_token = Some(sync_token.to_string());
        doc.balance = Some(crate::models::money::Money::ZERO);
        let detail = json!({"type": doc.kind.as_str(), "qbo_id": doc.qbo_id, "source": source,
                            "requestid": requestid});
        if doc.kind == DocKind::Invoice {
            self.qbo_sync_token = Some(sync_token.to_string());
        }
        self.note("document_voided", detail, now);
    }

    /// The record as listed by `GET /admin/records`: everything but `audit`.
    pub fn summary(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(obj) = v.as_object_mut() {
            obj.remove("audit");
        }
        v
    }

    /// Appends an audit entry, trimming the oldest (but never the first) past [`MAX_AUDIT`].
    pub fn note(&mut self, step: &str, detail: Value, now: DateTime<Utc>) {
        self.audit.push(AuditEntry {
            at: now,
            step: step.to_string(),
            detail,
        });
        if self.audit.len() > MAX_AUDIT {
            self.audit.remove(1);
        }
        self.updated_at = now;
    }

    /// A webhook for this entity arrived. Returns `false` for a redelivery of the last event
    /// (same `hash`), which changes nothing.
    ///
    /// Every new event means "re-sync": finished records go back to `pending` with a fresh
    /// attempt budget. `retrying` keeps its schedule (it may be waiting out a rate limit) and
    /// `needs_reauth` stays parked until re-authorization.
    pub fn received(
        &mut self,
        scope: &str,
        hash: &str,
        created_at: Option<i64>,
        now: DateTime<Utc>,
    ) -> bool {
        let key = event_key(scope, hash, created_at);
        if self.has_seen(&key) {
            return false;
        }
        self.last_hash = Some(hash.to_string());
        self.recent_hashes.push(key);
        if self.recent_hashes.len() > RECENT_HASHES {
            self.recent_hashes.remove(0);
        }
        self.last_scope = Some(scope.to_string());
        if scope.ends_with("/refund/created") {
            self.refunds_due = true;
        }
        if matches!(
            self.state,
            State::Posted | State::Failed | State::Skipped | State::Pending
        ) {
            self.state = State::Pending;
            self.attempts = 0;
            self.next_attempt_at = None;
        }
        let mut detail = json!({ "scope": scope, "hash": hash });
        if let Some(at) = created_at {
            detail["created_at"] = json!(at);
        }
        self.note("received", detail, now);
        true
    }

    /// Whether the webhook with this [`event_key`] was already handled.
    pub fn has_seen(&self, key: &str) -> bool {
        self.recent_hashes.iter().any(|h| h == key)
    }

    /// Records the `requestid` of a write before it is sent, so retries reuse it.
    pub fn write_planned(&mut self, requestid: &str, now: DateTime<Utc>) {
        self.requestid = Some(requestid.to_string());
        self.note("write_planned", json!({ "requestid": requestid }), now);
    }

    /// An attempt failed: schedule a retry, give up (`failed`), or park (`needs_reauth`).
    pub fn attempt_failed(
        &mut self,
        failure: &Failure,
        now: DateTime<Utc>,
        max_attempts: u32,
        base_secs: u64,
        jitter: u32,
    ) {
        self.attempts = self.attempts.saturating_add(1);
        self.reason = Some(failure.reason().to_string());
        let mut detail = failure.audit_detail();
        detail["attempt"] = json!(self.attempts);
        match failure.retryable {
            Retryability::NeedsReauth => {
                self.state = State::NeedsReauth;
                self.next_attempt_at = None;
                self.last_error = Some(explain(failure));
            }
            Retryability::NotRetryable => {
                self.state = State::Failed;
                self.next_attempt_at = None;
                self.last_error = Some(explain(failure));
            }
            Retryability::Retryable { .. } if self.attempts >= max_attempts.max(1) => {
                self.state = State::Failed;
                self.next_attempt_at = None;
                self.last_error = Some(format!(
                    "gave up after {} attempts (max_attempts): {} Replay with POST /admin/replay/{}/{} once it is fixed.",
                    self.attempts,
                    explain(failure),
                    self.entity,
                    self.id
                ));
                detail["gave_up"] = json!(true);
            }
            Retryability::Retryable { min_delay } => {
                let delay = retry_delay(self.attempts, base_secs, jitter, min_delay);
                let at = retry_at(now, delay);
                self.state = State::Retrying;
                self.next_attempt_at = Some(at);
                self.last_error = Some(explain(failure));
                detail["next_attempt_at"] = json!(at);
            }
        }
        self.note("attempt_failed", detail, now);
    }

    /// The document is in QuickBooks.
    pub fn posted(
        &mut self,
        qbo_id: &str,
        sync_token: &str,
        requestid: Option<&str>,
        now: DateTime<Utc>,
    ) {
        self.attempts = self.attempts.saturating_add(1);
        self.state = State::Posted;
        self.qbo_id = Some(qbo_id.to_string());
        self.qbo_sync_token = Some(sync_token.to_string());
        self.next_attempt_at = None;
        self.last_error = None;
        self.reason = None;
        self.requestid = None;
        self.note(
            "posted",
            json!({ "qbo_id": qbo_id, "sync_token": sync_token, "requestid": requestid }),
            now,
        );
    }

    /// Nothing to post (incomplete order, archived before posting, …).
    pub fn skipped(&mut self, reason: &str, now: DateTime<Utc>) {
        self.attempts = self.attempts.saturating_add(1);
        self.state = State::Skipped;
        self.next_attempt_at = None;
        self.last_error = None;
        self.reason = Some(reason.to_string());
        self.note("skipped", json!({ "reason": reason }), now);
    }

    /// An operator asked to run the record now: fresh attempt budget, whatever the state.
    /// A posted record keeps `qbo_id`, so the run updates instead of creating.
    pub fn replay_requested(&mut self, now: DateTime<Utc>) {
        let from = self.state;
        self.state = State::Pending;
        self.attempts = 0;
        self.next_attempt_at = None;
        self.note("replay_requested", json!({ "from": from.as_str() }), now);
    }

    /// QuickBooks was re-authorized: a parked record becomes pending again.
    pub fn reauthorized(&mut self, now: DateTime<Utc>) {
        if self.state == State::NeedsReauth {
            self.state = State::Pending;
            self.attempts = 0;
            self.note("reauthorized", json!({}), now);
        }
    }

    /// Whether `retry-due` should run this record now. `reauthorized` says whether
    /// QuickBooks currently has a working authorization.
    pub fn is_due(&self, now: DateTime<Utc>, reauthorized: bool) -> bool {
        match self.state {
            State::Retrying => self.next_attempt_at.is_none_or(|at| at <= now),
            State::NeedsReauth => reauthorized,
            State::Pending => now - self.updated_at >= PENDING_STALE_AFTER,
            State::Posted | State::Failed | State::Skipped => false,
        }
    }
}

#[cfg(test)]
mod tests {
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
}
