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
mod tests;
