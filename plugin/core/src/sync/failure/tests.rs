use super::*;

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
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
        Retryability::Retryable {
            min_delay: Some(Duration::from_secs(60))
        },
        "no time named: 60 s (CONTRACT §3)"
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
fn quickbooks_throttling_waits_for_retry_after_else_sixty_seconds() {
    let waits = |headers: &[(String, String)]| classify_quickbooks(429, None, headers).retryable;
    let secs = |s| Retryability::Retryable {
        min_delay: Some(Duration::from_secs(s)),
    };
    assert_eq!(waits(&[]), secs(60));
    assert_eq!(waits(&h(&[("Retry-After", "120")])), secs(120));
    assert_eq!(waits(&h(&[("Retry-After", "5")])), secs(5));
    assert_eq!(
        waits(&h(&[("Retry-After", "99999999999999999999")])),
        secs(86_400)
    );
    assert_eq!(
        waits(&h(&[("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")])),
        secs(60),
        "an HTTP date is not read: the default wait"
    );
    assert_eq!(waits(&h(&[("Retry-After", "-5")])), secs(60));
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
fn explanations_name_the_problem_and_the_fix() {
    let text = explain(&classify_quickbooks(400, Some("6210"), &[]));
    assert!(text.contains("closed accounting period"));
    assert!(text.contains("What to do:"));
    assert!(text.contains("QuickBooks error 6210"));
}
