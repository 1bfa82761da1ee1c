//! Failure classification: every upstream answer, transport error or local problem becomes a
//! [`Failure`] — which side, what kind, whether a retry can help (and after how long), what
//! to tell the operator — with upstream text sanitized so credentials never reach a record.

use std::time::Duration;

use serde_json::{Value, json};

use crate::http::{TransportError, header_value};
use crate::models::token::TokenError;
use crate::sync::retry::{MAX_RETRY_DELAY, throttle_wait};

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
    /// QuickBooks' `TotalAmt` for a written document differs from BigCommerce's total.
    TotalMismatch,
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
            FailureKind::TotalMismatch => "total_mismatch",
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

    /// QuickBooks totals a document it accepted differently from BigCommerce (typically its
    /// own sales tax added on top, or tax codes at other rates). Not retryable: the document
    /// stays linked, and a replay after the fix updates it.
    pub fn total_mismatch(
        document: &str,
        bigcommerce_total: &str,
        quickbooks_total: &str,
        quickbooks_tax: Option<&str>,
    ) -> Failure {
        Failure::new(
            Service::QuickBooks,
            FailureKind::TotalMismatch,
            Retryability::NotRetryable,
            &format!(
                "QuickBooks totals the {document} {quickbooks_total} (its tax: {}) but BigCommerce's total is {bigcommerce_total}",
                quickbooks_tax.unwrap_or("none")
            ),
            "compare the document in QuickBooks with the order: a difference in tax means the company computes its own \
             (use invoice.tax.mode 'auto' or 'txn_detail' in the mapping, or map invoice.tax.codes to codes at \
             BigCommerce's rates); then POST /admin/replay/{entity}/{id}, which updates the same document",
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

    pub(crate) fn audit_detail(&self) -> Value {
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

/// A header holding a whole number. A number too large for `u64` (all digits) reads as
/// `u64::MAX`, so an absurd `Retry-After` means "wait as long as allowed", never "no wait".
fn header_u64(headers: &[(String, String)], name: &str) -> Option<u64> {
    let text = header_value(headers, name)?.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

/// `Retry-After` (delta-seconds; an HTTP date is not read and counts as absent).
fn retry_after(headers: &[(String, String)]) -> Option<Duration> {
    header_u64(headers, "retry-after").map(Duration::from_secs)
}

/// How long a QuickBooks 429 asks to wait: its `Retry-After`, capped at a day, or 60 s when it
/// names no time (the same wait its job's retry uses).
pub fn quickbooks_throttle_wait(headers: &[(String, String)]) -> Duration {
    throttle_wait(retry_after(headers))
}

/// Classifies a non-2xx BigCommerce response.
pub fn classify_bigcommerce(status: u16, headers: &[(String, String)]) -> Failure {
    let f = match status {
        429 => {
            let asked = header_u64(headers, "x-rate-limit-time-reset-ms")
                .map(Duration::from_millis)
                .or_else(|| header_u64(headers, "x-retry-after").map(Duration::from_secs))
                .or_else(|| retry_after(headers));
            Failure::new(
                Service::BigCommerce,
                FailureKind::RateLimited,
                Retryability::retryable(Some(throttle_wait(asked))),
                "BigCommerce rate limit reached (the quota is shared by every app on the store)",
                "nothing to do: the connector waits for the rate-limit window to reset (60 s when BigCommerce \
                 names no time, at most a day) and retries",
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
            Retryability::retryable(retry_after(headers)),
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
        qb(
            K::RateLimited,
            Retryability::retryable(Some(quickbooks_throttle_wait(headers))),
            "QuickBooks throttled the connector (too many requests for this company)",
            "nothing to do: the connector waits for QuickBooks' Retry-After (60 s when it names no time, at \
             most a day) and retries",
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
                    Retryability::retryable(retry_after(headers)),
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

#[cfg(test)]
mod tests;
