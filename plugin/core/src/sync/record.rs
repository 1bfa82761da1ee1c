//! Sync records: one per BigCommerce entity, with its state machine, failure
//! classification, retry schedule and audit trail.
//!
//! Everything here is pure: transitions take `now`, jitter is a random input, and the
//! caller persists the record. Audit details are built only from classified fields
//! (status, fault code, Intuit transaction id, fixed explanations, sanitized upstream
//! text), never from request headers or bodies, so credentials cannot reach them.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::http::{TransportError, header_value};
use crate::models::token::TokenError;

/// Longest retry delay from the schedule.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
/// QuickBooks asks for a 60 s pause after a 429.
pub const QBO_THROTTLE_DELAY: Duration = Duration::from_secs(60);
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

/// Which side a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    BigCommerce,
    QuickBooks,
    /// The connector itself (mapping rules, configuration).
    Connector,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::BigCommerce => "BigCommerce",
            Service::QuickBooks => "QuickBooks",
            Service::Connector => "the connector",
        }
    }
}

/// What kind of failure happened; [`FailureKind::code`] is the record's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    RateLimited,
    ServerError,
    Transport,
    /// The host refused the outbound request (allow-list / configuration).
    HostRefused,
    NotFound,
    BigCommerceAuth,
    /// QuickBooks access token rejected (3200/401): refresh and retry once inline.
    TokenExpired,
    /// 5010: re-read the object for its SyncToken and retry.
    StaleObject,
    /// 6240: pick the next DisplayName candidate.
    DuplicateName,
    /// 610/2500: a referenced item/account/customer is gone; re-resolve names.
    InvalidReference,
    DuplicateDocNumber,
    Validation,
    CompanyInactive,
    PeriodClosed,
    DepositedTransaction,
    NeedsReauth,
    Mapping,
    Configuration,
    Storage,
    Unreadable,
    ClientError,
    Unexpected,
}

impl FailureKind {
    /// Stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::RateLimited => "rate_limited",
            FailureKind::ServerError => "server_error",
            FailureKind::Transport => "transport",
            FailureKind::HostRefused => "host_refused",
            FailureKind::NotFound => "not_found",
            FailureKind::BigCommerceAuth => "bigcommerce_auth",
            FailureKind::TokenExpired => "token_expired",
            FailureKind::StaleObject => "stale_object",
            FailureKind::DuplicateName => "duplicate_name",
            FailureKind::InvalidReference => "invalid_reference",
            FailureKind::DuplicateDocNumber => "duplicate_doc_number",
            FailureKind::Validation => "validation",
            FailureKind::CompanyInactive => "company_inactive",
            FailureKind::PeriodClosed => "period_closed",
            FailureKind::DepositedTransaction => "deposited_transaction",
            FailureKind::NeedsReauth => "needs_reauth",
            FailureKind::Mapping => "mapping",
            FailureKind::Configuration => "configuration",
            FailureKind::Storage => "storage",
            FailureKind::Unreadable => "unreadable",
            FailureKind::ClientError => "client_error",
            FailureKind::Unexpected => "unexpected",
        }
    }
}

/// Whether and how a failure may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retryability {
    /// Retry on the schedule, waiting at least `min_delay` (Retry-After, rate-limit reset).
    Retryable { min_delay: Option<Duration> },
    /// Retrying cannot help; a human must act, then replay.
    NotRetryable,
    /// Park until QuickBooks is re-authorized.
    NeedsReauth,
}

impl Retryability {
    fn retryable(min_delay: Option<Duration>) -> Self {
        Retryability::Retryable { min_delay }
    }
}

/// A classified failure: what happened, whether to retry, and what a human should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub service: Service,
    pub kind: FailureKind,
    pub retryable: Retryability,
    /// Plain-language account of what went wrong.
    pub explanation: String,
    /// What to do about it.
    pub suggested_fix: String,
    /// Upstream HTTP status, if any.
    pub status: Option<u16>,
    /// Intuit's transaction id (support asks for it).
    pub intuit_tid: Option<String>,
    /// QuickBooks fault code, e.g. `6240`.
    pub fault_code: Option<String>,
}

impl Failure {
    fn new(
        service: Service,
        kind: FailureKind,
        retryable: Retryability,
        explanation: &str,
        fix: &str,
    ) -> Self {
        Failure {
            service,
            kind,
            retryable,
            explanation: explanation.to_string(),
            suggested_fix: fix.to_string(),
            status: None,
            intuit_tid: None,
            fault_code: None,
        }
    }

    /// The mapping rules cannot produce a document (unknown item name, …). Not retryable.
    pub fn mapping(message: &str) -> Failure {
        Failure::new(
            Service::Connector,
            FailureKind::Mapping,
            Retryability::NotRetryable,
            &format!("the mapping rules cannot be applied: {}", sanitize(message)),
            "fix the mapping (GET/PUT /admin/mapping) or create the named item/account in QuickBooks, then \
             POST /admin/replay/{entity}/{id}",
        )
    }

    /// QuickBooks authorization is lost; the record parks until re-authorization.
    /// A variable is missing or unusable (credentials, encryption key): a human fixes the
    /// configuration, then replays.
    pub fn configuration(message: &str) -> Failure {
        Failure::new(
            Service::Connector,
            FailureKind::Configuration,
            Retryability::NotRetryable,
            &format!(
                "the connector is not configured correctly: {}",
                sanitize(message)
            ),
            "fix the variable named above (spin.toml or SPIN_VARIABLE_<NAME>), restart, then \
             POST /admin/replay/{entity}/{id}",
        )
    }

    /// The connector's own storage or coordination (a lease held elsewhere) failed for now.
    pub fn storage(message: &str) -> Failure {
        Failure::new(
            Service::Connector,
            FailureKind::Storage,
            Retryability::retryable(None),
            &format!(
                "the connector could not finish this time: {}",
                sanitize(message)
            ),
            "nothing to do: the connector retries on its schedule",
        )
    }

    /// An upstream answer the connector cannot read.
    pub fn unreadable(service: Service, message: &str) -> Failure {
        Failure::new(
            service,
            FailureKind::Unreadable,
            Retryability::NotRetryable,
            &format!(
                "{} sent data the connector cannot read: {}",
                service.name(),
                sanitize(message)
            ),
            "check the record's details, correct the data or report it, then POST /admin/replay/{entity}/{id}",
        )
    }

    pub fn needs_reauth(message: &str) -> Failure {
        Failure::new(
            Service::QuickBooks,
            FailureKind::NeedsReauth,
            Retryability::NeedsReauth,
            &format!(
                "QuickBooks authorization is no longer valid: {}",
                sanitize(message)
            ),
            "re-authorize at /oauth/quickbooks/connect; waiting records resume by themselves",
        )
    }

    /// A token endpoint failure seen while syncing.
    pub fn from_token_error(err: &TokenError) -> Failure {
        match err {
            TokenError::NeedsReauth | TokenError::NoRefreshToken => {
                Failure::needs_reauth(&err.to_string())
            }
            TokenError::Unavailable { status } => {
                let mut f = Failure::new(
                    Service::QuickBooks,
                    FailureKind::ServerError,
                    Retryability::retryable(None),
                    "the QuickBooks token endpoint is unavailable",
                    "nothing to do: the connector retries on its schedule",
                );
                f.status = Some(*status);
                f
            }
            TokenError::InvalidClient => Failure::new(
                Service::QuickBooks,
                FailureKind::NeedsReauth,
                Retryability::NeedsReauth,
                "QuickBooks rejected the app's client id/secret",
                "check qbo_client_id and qbo_client_secret, then re-authorize at /oauth/quickbooks/connect",
            ),
            TokenError::Rejected { .. } | TokenError::Malformed(_) => Failure::new(
                Service::QuickBooks,
                FailureKind::Unexpected,
                Retryability::retryable(None),
                &sanitize(&err.to_string()),
                "check qbo_oauth_base and the app settings; the connector retries on its schedule",
            ),
        }
    }

    /// Appends upstream text (a fault `Message`/`Detail`) after removing anything that looks
    /// like a token: Intuit echoes token prefixes in 401 details.
    pub fn with_upstream_message(mut self, message: &str) -> Failure {
        let clean = sanitize(message);
        if !clean.is_empty() {
            self.explanation = format!(
                "{} ({} said: {clean})",
                self.explanation,
                self.service.name()
            );
        }
        self
    }

    /// The record `reason` code.
    pub fn reason(&self) -> &'static str {
        self.kind.code()
    }

    /// Whether the schedule applies (as opposed to `failed` / `needs_reauth`).
    pub fn is_retryable(&self) -> bool {
        matches!(self.retryable, Retryability::Retryable { .. })
    }

    fn with_http(mut self, status: u16, headers: &[(String, String)]) -> Failure {
        self.status = Some(status);
        self.intuit_tid = intuit_tid(headers);
        self
    }

    fn audit_detail(&self) -> Value {
        json!({
            "service": self.service.name(),
            "status": self.status,
            "intuit_tid": self.intuit_tid,
            "fault_code": self.fault_code,
            "retryable": self.is_retryable(),
            "reason": self.reason(),
            "explanation": self.explanation,
        })
    }
}

/// Removes token-like runs (16+ characters of base64/URL-safe alphabet containing a digit)
/// and caps the length. Keeps ordinary words, numbers and punctuation readable.
pub fn sanitize(text: &str) -> String {
    let is_tok =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '+' | '/' | '=' | '-');
    let mut out = String::with_capacity(text.len().min(400));
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.chars().count() >= 16 && run.chars().any(|c| c.is_ascii_digit()) {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    let mut after_scheme = false;
    for c in text.chars() {
        if is_tok(c) {
            run.push(c);
            continue;
        }
        // A word after "Bearer"/"Basic" is a credential whatever its shape.
        let word_was_scheme =
            run.eq_ignore_ascii_case("bearer") || run.eq_ignore_ascii_case("basic");
        if after_scheme && !run.is_empty() {
            out.push_str("[redacted]");
            run.clear();
            after_scheme = false;
        } else {
            flush(&mut run, &mut out);
        }
        if word_was_scheme {
            after_scheme = true;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    if after_scheme && !run.is_empty() {
        out.push_str("[redacted]");
    } else {
        flush(&mut run, &mut out);
    }
    let trimmed = out.trim();
    if trimmed.chars().count() > 300 {
        format!("{}…", trimmed.chars().take(300).collect::<String>())
    } else {
        trimmed.to_string()
    }
}

fn intuit_tid(headers: &[(String, String)]) -> Option<String> {
    let raw =
        header_value(headers, "intuit_tid").or_else(|| header_value(headers, "intuit-tid"))?;
    let clean: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect();
    (!clean.is_empty()).then_some(clean)
}

fn header_u64(headers: &[(String, String)], name: &str) -> Option<u64> {
    header_value(headers, name)?.trim().parse().ok()
}

/// Classifies a non-2xx BigCommerce response.
pub fn classify_bigcommerce(status: u16, headers: &[(String, String)]) -> Failure {
    let f = match status {
        429 => {
            let min = header_u64(headers, "x-rate-limit-time-reset-ms")
                .map(Duration::from_millis)
                .or_else(|| header_u64(headers, "x-retry-after").map(Duration::from_secs))
                .or_else(|| header_u64(headers, "retry-after").map(Duration::from_secs));
            Failure::new(
                Service::BigCommerce,
                FailureKind::RateLimited,
                Retryability::retryable(min),
                "BigCommerce rate limit reached (the quota is shared by every app on the store)",
                "nothing to do: the connector waits for the rate-limit window to reset and retries",
            )
        }
        404 => Failure::new(
            Service::BigCommerce,
            FailureKind::NotFound,
            Retryability::NotRetryable,
            "BigCommerce has no such order/customer (deleted, or a different store)",
            "check bigcommerce_store_hash; if the entity was deleted there is nothing to sync",
        ),
        401 | 403 => Failure::new(
            Service::BigCommerce,
            FailureKind::BigCommerceAuth,
            Retryability::NotRetryable,
            "BigCommerce refused the API token",
            "check bigcommerce_access_token and that its API account has the scopes store_v2_orders_read_only \
             and store_v2_customers_read_only, then replay",
        ),
        500..=599 => Failure::new(
            Service::BigCommerce,
            FailureKind::ServerError,
            Retryability::retryable(header_u64(headers, "retry-after").map(Duration::from_secs)),
            "BigCommerce had a server error or is in maintenance",
            "nothing to do: the connector retries on its schedule",
        ),
        400..=499 => Failure::new(
            Service::BigCommerce,
            FailureKind::ClientError,
            Retryability::NotRetryable,
            &format!("BigCommerce rejected the request with HTTP {status}"),
            "this is likely a connector bug or an unusual store setup: report it with the record's audit trail",
        ),
        _ => Failure::new(
            Service::BigCommerce,
            FailureKind::Unexpected,
            Retryability::retryable(None),
            &format!("BigCommerce answered with unexpected HTTP {status}"),
            "check bigcommerce_api_base; the connector retries on its schedule",
        ),
    };
    f.with_http(status, headers)
}

/// Classifies a QuickBooks response that failed (non-2xx, or a 2xx carrying a `Fault`).
pub fn classify_quickbooks(
    status: u16,
    fault_code: Option<&str>,
    headers: &[(String, String)],
) -> Failure {
    use FailureKind as K;
    let code = fault_code
        .map(|c| c.trim().trim_start_matches('0'))
        .filter(|c| !c.is_empty());
    let qb = |kind, retry, explanation: &str, fix: &str| {
        Failure::new(Service::QuickBooks, kind, retry, explanation, fix)
    };
    let not = Retryability::NotRetryable;
    let retry = Retryability::retryable(None);
    let bug = "this is likely a connector bug: report it with the record's audit trail (it includes intuit_tid)";

    let mut f = if status == 429 || code == Some("3001") {
        let after = header_u64(headers, "retry-after")
            .map(Duration::from_secs)
            .unwrap_or(Duration::ZERO);
        qb(
            K::RateLimited,
            Retryability::retryable(Some(after.max(QBO_THROTTLE_DELAY))),
            "QuickBooks throttled the connector (too many requests for this company)",
            "nothing to do: the connector waits at least 60 s and retries",
        )
    } else {
        match code {
            Some("3200") => qb(
                K::TokenExpired,
                retry,
                "QuickBooks rejected the access token",
                "nothing to do: the connector refreshes the token and retries",
            ),
            Some("120") | Some("3100") => qb(
                K::NeedsReauth,
                Retryability::NeedsReauth,
                "QuickBooks says the connection lost its authorization (the user lost access or the app was \
                 disconnected)",
                "re-authorize with a QuickBooks admin at /oauth/quickbooks/connect; waiting records resume by themselves",
            ),
            Some("5010") => qb(
                K::StaleObject,
                retry,
                "the QuickBooks object changed since it was read (stale SyncToken)",
                "nothing to do: the connector re-reads it and retries",
            ),
            Some("6240") => qb(
                K::DuplicateName,
                retry,
                "the customer name is already used by another customer, vendor or employee in QuickBooks",
                "nothing to do: the connector picks a disambiguated name and retries",
            ),
            Some("610") | Some("2500") => qb(
                K::InvalidReference,
                retry,
                "a referenced QuickBooks item, account, class or customer no longer exists or is inactive",
                "nothing to do if it was renamed: the connector re-resolves names and retries; otherwise \
                 reactivate it or fix the mapping",
            ),
            Some("6140") => qb(
                K::DuplicateDocNumber,
                not,
                "QuickBooks already has an invoice with this document number that the connector did not create",
                "check that invoice in QuickBooks; change invoice.doc_number in the mapping or remove the clash, \
                 then replay",
            ),
            Some("6190") => qb(
                K::CompanyInactive,
                Retryability::retryable(Some(MAX_RETRY_DELAY)),
                "the QuickBooks company's subscription is not active",
                "renew the QuickBooks subscription; the connector retries hourly, and replay works afterwards",
            ),
            Some("6210") => qb(
                K::PeriodClosed,
                not,
                "the invoice date falls in a closed accounting period in QuickBooks",
                "change the closing date in QuickBooks (Account and Settings > Advanced) or post manually, then replay",
            ),
            Some("6540") => qb(
                K::DepositedTransaction,
                not,
                "the QuickBooks invoice is part of a deposit and can no longer be changed",
                "make the change in QuickBooks by hand; nothing else to do",
            ),
            Some("6000") => qb(
                K::Validation,
                not,
                "QuickBooks rejected the document (business validation error, e.g. amounts that do not add up)",
                "check the order's amounts and the mapping, then replay; report it if the order looks normal",
            ),
            Some("2050") => qb(
                K::Validation,
                not,
                "a text field is longer than QuickBooks allows",
                bug,
            ),
            Some("2210") => qb(
                K::Validation,
                not,
                "QuickBooks rejected the customer's email address",
                "correct the email address in BigCommerce, then replay",
            ),
            Some("2010") | Some("2020") | Some("2030") | Some("2170") | Some("500") => qb(
                K::Validation,
                not,
                "QuickBooks rejected the request as malformed",
                bug,
            ),
            Some(_) if status >= 500 => qb(
                K::ServerError,
                retry,
                "QuickBooks had a server error",
                "nothing to do: the connector retries on its schedule",
            ),
            Some(_) => qb(
                K::Validation,
                not,
                "QuickBooks rejected the document",
                "read the fault code in the audit trail (Intuit's error code list explains it), fix the data or \
                 mapping, then replay",
            ),
            None => match status {
                401 => qb(
                    K::TokenExpired,
                    retry,
                    "QuickBooks rejected the access token",
                    "nothing to do: the connector refreshes the token and retries",
                ),
                403 => qb(
                    K::NeedsReauth,
                    Retryability::NeedsReauth,
                    "QuickBooks refused access to this company",
                    "re-authorize with a QuickBooks admin at /oauth/quickbooks/connect",
                ),
                500..=599 => qb(
                    K::ServerError,
                    Retryability::retryable(
                        header_u64(headers, "retry-after").map(Duration::from_secs),
                    ),
                    "QuickBooks had a server error",
                    "nothing to do: the connector retries on its schedule",
                ),
                404 => qb(
                    K::ClientError,
                    not,
                    "QuickBooks does not know this URL or company",
                    "check qbo_api_base and qbo_realm_id (sandbox and production companies differ), then replay",
                ),
                400..=499 => qb(
                    K::ClientError,
                    not,
                    &format!("QuickBooks rejected the request with HTTP {status}"),
                    bug,
                ),
                _ => qb(
                    K::Unexpected,
                    retry,
                    &format!("QuickBooks answered with unexpected HTTP {status}"),
                    "check qbo_api_base; the connector retries on its schedule",
                ),
            },
        }
    };
    f.fault_code = code.map(str::to_string);
    f.with_http(status, headers)
}

/// Classifies a request that got no response.
pub fn classify_transport(service: Service, err: &TransportError) -> Failure {
    match err {
        TransportError::Refused(msg) => Failure::new(
            service,
            FailureKind::HostRefused,
            Retryability::NotRetryable,
            &format!(
                "the host refused to send the request to {}: {}",
                service.name(),
                sanitize(msg)
            ),
            "check the *_api_base variables and allowed_outbound_hosts in spin.toml, then replay",
        ),
        TransportError::Timeout => Failure::new(
            service,
            FailureKind::Transport,
            Retryability::retryable(None),
            &format!("the request to {} timed out", service.name()),
            "nothing to do: the connector retries; writes reuse their requestid so nothing is duplicated",
        ),
        TransportError::Connect(msg) | TransportError::Other(msg) => Failure::new(
            service,
            FailureKind::Transport,
            Retryability::retryable(None),
            &format!("could not reach {}: {}", service.name(), sanitize(msg)),
            "nothing to do if it is temporary: the connector retries; otherwise check network and the *_api_base \
             variables",
        ),
    }
}

/// Plain-language text for humans: what happened, identifiers for support, what to do.
pub fn explain(failure: &Failure) -> String {
    let mut ids = Vec::new();
    if let Some(s) = failure.status {
        ids.push(format!("HTTP {s}"));
    }
    if let Some(c) = &failure.fault_code {
        ids.push(format!("QuickBooks error {c}"));
    }
    if let Some(t) = &failure.intuit_tid {
        ids.push(format!("intuit_tid {t}"));
    }
    let ids = if ids.is_empty() {
        String::new()
    } else {
        format!(" [{}]", ids.join(", "))
    };
    format!(
        "{}{ids}. What to do: {}.",
        failure.explanation, failure.suggested_fix
    )
}

/// Delay before retry number `attempt` (1-based): `base × 2^(attempt−1)`, capped at
/// [`MAX_RETRY_DELAY`], spread ±20 % by `jitter` (uniform random input), and never below
/// `min` (Retry-After, rate-limit reset, QuickBooks' 60 s).
pub fn retry_delay(attempt: u32, base_secs: u64, jitter: u32, min: Option<Duration>) -> Duration {
    let cap_ms = MAX_RETRY_DELAY.as_millis() as u64;
    let exp = attempt.saturating_sub(1).min(40);
    let raw_ms = base_secs
        .saturating_mul(1000)
        .saturating_mul(1u64 << exp)
        .min(cap_ms);
    // Map the 32-bit random input onto 0..=400 per-mille without modulo bias, then shift to ±200.
    let permille = (u64::from(jitter) * 401) >> 32;
    let jittered = raw_ms * (800 + permille) / 1000;
    let delay = Duration::from_millis(jittered.min(cap_ms));
    delay.max(min.unwrap_or(Duration::ZERO))
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
        }
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
                let at =
                    now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1));
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
    fn schedule_doubles_from_the_base_and_caps_at_an_hour() {
        // jitter input chosen so the per-mille offset is exactly 0: (j*401)>>32 == 200.
        let j = ((200u64 << 32) / 401 + 1) as u32;
        assert_eq!((u64::from(j) * 401) >> 32, 200);
        let d: Vec<u64> = (1..=8)
            .map(|a| retry_delay(a, 60, j, None).as_secs())
            .collect();
        assert_eq!(d, vec![60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(retry_delay(100, 60, j, None), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(u32::MAX, u64::MAX, j, None), MAX_RETRY_DELAY);
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_spans_it() {
        for attempt in 1..=5 {
            let nominal = 10_000u64 * (1 << (attempt - 1));
            for j in [0, 1, 12345, MID, u32::MAX - 1, u32::MAX] {
                let ms = retry_delay(attempt, 10, j, None).as_millis() as u64;
                assert!(
                    ms >= nominal * 8 / 10 && ms <= nominal * 12 / 10,
                    "attempt {attempt} jitter {j}: {ms}"
                );
            }
        }
        assert_eq!(retry_delay(1, 10, 0, None), Duration::from_secs(8));
        assert_eq!(retry_delay(1, 10, u32::MAX, None), Duration::from_secs(12));
        // At the cap jitter can only shorten the delay.
        assert!(retry_delay(9, 60, u32::MAX, None) <= MAX_RETRY_DELAY);
        assert!(retry_delay(9, 60, 0, None) >= Duration::from_secs(2880));
    }

    #[test]
    fn minimum_delays_win_over_short_schedules() {
        assert_eq!(
            retry_delay(1, 1, 0, Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
        assert!(retry_delay(7, 60, MID, Some(Duration::from_secs(5))).as_secs() >= 2880);
    }

    #[test]
    fn bigcommerce_429_waits_for_the_window_reset() {
        let f = classify_bigcommerce(429, &h(&[("X-Rate-Limit-Time-Reset-Ms", "15000")]));
        assert_eq!(f.kind, FailureKind::RateLimited);
        assert_eq!(
            f.retryable,
            Retryability::Retryable {
                min_delay: Some(Duration::from_millis(15_000))
            }
        );
        let f = classify_bigcommerce(429, &h(&[("x-retry-after", "7")]));
        assert_eq!(
            f.retryable,
            Retryability::Retryable {
                min_delay: Some(Duration::from_secs(7))
            }
        );
        let f = classify_bigcommerce(429, &[]);
        assert_eq!(
            f.retryable,
            Retryability::Retryable { min_delay: None },
            "platform load: plain backoff"
        );
    }

    #[test]
    fn bigcommerce_statuses_are_classified() {
        let nf = classify_bigcommerce(404, &[]);
        assert_eq!(
            (nf.kind, nf.retryable, nf.reason()),
            (
                FailureKind::NotFound,
                Retryability::NotRetryable,
                "not_found"
            )
        );
        for s in [401, 403] {
            let f = classify_bigcommerce(s, &[]);
            assert_eq!(f.retryable, Retryability::NotRetryable);
            assert!(f.suggested_fix.contains("bigcommerce_access_token"));
        }
        for s in [500, 502, 503, 507] {
            assert!(classify_bigcommerce(s, &[]).is_retryable(), "{s}");
        }
        assert_eq!(
            classify_bigcommerce(422, &[]).retryable,
            Retryability::NotRetryable
        );
        assert_eq!(classify_bigcommerce(503, &[]).status, Some(503));
    }

    #[test]
    fn quickbooks_throttling_waits_at_least_sixty_seconds() {
        let f = classify_quickbooks(429, None, &[]);
        assert_eq!(
            f.retryable,
            Retryability::Retryable {
                min_delay: Some(QBO_THROTTLE_DELAY)
            }
        );
        let f = classify_quickbooks(429, None, &h(&[("Retry-After", "120")]));
        assert_eq!(
            f.retryable,
            Retryability::Retryable {
                min_delay: Some(Duration::from_secs(120))
            }
        );
        let f = classify_quickbooks(429, None, &h(&[("Retry-After", "5")]));
        assert_eq!(
            f.retryable,
            Retryability::Retryable {
                min_delay: Some(QBO_THROTTLE_DELAY)
            }
        );
        assert_eq!(
            classify_quickbooks(400, Some("003001"), &[]).kind,
            FailureKind::RateLimited
        );
    }

    #[test]
    fn every_quickbooks_fault_code_is_classified() {
        use FailureKind as K;
        let r = Retryability::retryable(None);
        let n = Retryability::NotRetryable;
        let cases: &[(u16, Option<&str>, FailureKind, Retryability)] = &[
            (401, Some("3200"), K::TokenExpired, r),
            (401, None, K::TokenExpired, r),
            (403, Some("3100"), K::NeedsReauth, Retryability::NeedsReauth),
            (400, Some("120"), K::NeedsReauth, Retryability::NeedsReauth),
            (403, None, K::NeedsReauth, Retryability::NeedsReauth),
            (400, Some("5010"), K::StaleObject, r),
            (400, Some("6240"), K::DuplicateName, r),
            (400, Some("610"), K::InvalidReference, r),
            (400, Some("2500"), K::InvalidReference, r),
            (400, Some("6140"), K::DuplicateDocNumber, n),
            (
                400,
                Some("6190"),
                K::CompanyInactive,
                Retryability::retryable(Some(MAX_RETRY_DELAY)),
            ),
            (400, Some("6210"), K::PeriodClosed, n),
            (400, Some("6540"), K::DepositedTransaction, n),
            (400, Some("6000"), K::Validation, n),
            (400, Some("2010"), K::Validation, n),
            (400, Some("2020"), K::Validation, n),
            (400, Some("2030"), K::Validation, n),
            (400, Some("2050"), K::Validation, n),
            (400, Some("2170"), K::Validation, n),
            (400, Some("2210"), K::Validation, n),
            (400, Some("500"), K::Validation, n),
            (400, Some("9999"), K::Validation, n),
            (500, Some("10000"), K::ServerError, r),
            (500, None, K::ServerError, r),
            (503, None, K::ServerError, r),
            (404, None, K::ClientError, n),
            (400, None, K::ClientError, n),
        ];
        for (status, code, kind, retry) in cases {
            let f = classify_quickbooks(*status, *code, &[]);
            assert_eq!((f.kind, f.retryable), (*kind, *retry), "{status} {code:?}");
            assert!(!f.explanation.is_empty() && !f.suggested_fix.is_empty());
        }
        assert_eq!(
            classify_quickbooks(400, Some("6240"), &[])
                .fault_code
                .as_deref(),
            Some("6240")
        );
    }

    #[test]
    fn intuit_tid_is_read_under_either_spelling() {
        let f = classify_quickbooks(
            500,
            None,
            &h(&[("Intuit-Tid", "1-5f732f5f-25dcb83b777d318c396aaf06")]),
        );
        assert_eq!(
            f.intuit_tid.as_deref(),
            Some("1-5f732f5f-25dcb83b777d318c396aaf06")
        );
        let f = classify_quickbooks(500, None, &h(&[("intuit_tid", "abc")]));
        assert_eq!(f.intuit_tid.as_deref(), Some("abc"));
        assert!(explain(&f).contains("intuit_tid abc"));
    }

    #[test]
    fn transport_failures_are_retryable_but_refusals_are_not() {
        assert!(classify_transport(Service::QuickBooks, &TransportError::Timeout).is_retryable());
        assert!(
            classify_transport(
                Service::BigCommerce,
                &TransportError::Connect("refused".into())
            )
            .is_retryable()
        );
        let f = classify_transport(
            Service::BigCommerce,
            &TransportError::Refused("not allowed".into()),
        );
        assert_eq!(f.retryable, Retryability::NotRetryable);
        assert!(f.suggested_fix.contains("allowed_outbound_hosts"));
    }

    #[test]
    fn mapping_and_token_failures_map_to_failed_and_needs_reauth() {
        let f = Failure::mapping("unknown item \"Apparel Sales\"");
        assert_eq!(
            (f.kind, f.retryable),
            (FailureKind::Mapping, Retryability::NotRetryable)
        );
        assert!(f.explanation.contains("Apparel Sales"));
        assert_eq!(
            Failure::from_token_error(&TokenError::NeedsReauth).retryable,
            Retryability::NeedsReauth
        );
        assert!(Failure::from_token_error(&TokenError::Unavailable { status: 503 }).is_retryable());
        assert_eq!(
            Failure::needs_reauth("x").retryable,
            Retryability::NeedsReauth
        );
    }

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
    fn sanitize_keeps_ordinary_text() {
        assert_eq!(
            sanitize("The name supplied already exists. : null"),
            "The name supplied already exists. : null"
        );
        assert_eq!(
            sanitize("Duplicate Document Number Error, DocNumber=1001"),
            "Duplicate Document Number Error, DocNumber=1001"
        );
        assert_eq!(
            sanitize("Basic Y2lkOmNzZWNyZXQ= sent"),
            "Basic [redacted] sent"
        );
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
    fn explanations_name_the_problem_and_the_fix() {
        let text = explain(&classify_quickbooks(400, Some("6210"), &[]));
        assert!(text.contains("closed accounting period"));
        assert!(text.contains("What to do:"));
        assert!(text.contains("QuickBooks error 6210"));
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
}
