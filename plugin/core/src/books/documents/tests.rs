use super::*;
use crate::models::bigcommerce::{OrderId, RefundPayment};

fn m(s: &str) -> Money {
    s.parse().unwrap()
}

fn order(status_id: u64, payment_status: &str) -> Order {
    Order {
        id: OrderId(250),
        status_id,
        payment_status: payment_status.into(),
        payment_method: "Credit Card".into(),
        payment_provider_id: "ch_3PqRsTuVwXyZ0123456789abcdef".into(),
        total_inc_tax: m("82.62"),
        ..Order::default()
    }
}

fn facts(status_id: u64, payment_status: &str) -> OrderFacts {
    OrderFacts::new(&order(status_id, payment_status), m("82.62"))
}

fn invoice(state: InvoiceState) -> Document {
    Document {
        doc_number: Some("250".into()),
        total: Some(m("82.62")),
        state: Some(state),
        ..Document::new(DocKind::Invoice, "266", ORDER)
    }
}

fn payment(source: &str, amount: &str) -> Document {
    Document {
        amount: Some(m(amount)),
        ..Document::new(DocKind::Payment, "301", source)
    }
}

fn refund(id: u64, total: &str) -> Refund {
    Refund {
        id,
        order_id: OrderId(250),
        total_amount: m(total),
        payments: vec![RefundPayment {
            provider_id: "braintree".into(),
            amount: m(total),
            ..RefundPayment::default()
        }],
        ..Refund::default()
    }
}

#[test]
fn an_unpaid_order_gets_one_invoice_and_nothing_else() {
    let p = plan(&facts(11, "pending"), &[], None, Some("250")).unwrap();
    assert_eq!(p.invoice, InvoiceAction::Create { generation: 1 });
    assert!(p.payments.is_empty());
    assert!(p.refunds.is_empty());
}

#[test]
fn a_captured_order_gets_one_gateway_payment_for_its_total() {
    let p = plan(&facts(11, "captured"), &[], None, Some("250")).unwrap();
    assert_eq!(
        p.payments,
        vec![PlannedPayment {
            source: GATEWAY,
            amount: m("82.62"),
            account: PaymentAccount::Deposit,
            ref_num: Some("ch_3PqRsTuVwXyZ012345".into()),
            method: Some("Credit Card".into()),
        }]
    );
    assert_eq!(p.payments[0].ref_num.as_ref().unwrap().len(), 21);
}

#[test]
fn every_paid_payment_status_counts_and_authorized_does_not() {
    for s in [
        "captured",
        "paid",
        "Partially Refunded",
        "refunded",
        " captured ",
    ] {
        assert!(is_paid(s), "{s}");
    }
    for s in [
        "authorized",
        "",
        "pending",
        "declined",
        "void",
        "capture pending",
    ] {
        assert!(!is_paid(s), "{s}");
    }
    let p = plan(&facts(11, "authorized"), &[], None, None).unwrap();
    assert!(p.payments.is_empty(), "no payment until captured");
}

#[test]
fn gift_certificates_and_store_credit_are_their_own_payments_and_tie_to_the_total() {
    let mut o = order(11, "captured");
    o.gift_certificate_amount = m("25.0000");
    o.store_credit_amount = m("10.0000");
    let p = plan(&OrderFacts::new(&o, m("82.62")), &[], None, None).unwrap();
    let got: Vec<(&str, Money, PaymentAccount)> = p
        .payments
        .iter()
        .map(|x| (x.source, x.amount, x.account))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                GIFT_CERTIFICATE,
                m("25.00"),
                PaymentAccount::GiftCertificate
            ),
            (STORE_CREDIT, m("10.00"), PaymentAccount::StoreCredit),
            (GATEWAY, m("47.62"), PaymentAccount::Deposit),
        ]
    );
    let sum: Money = p.payments.iter().map(|x| x.amount).sum();
    assert_eq!(sum, m("82.62"));
    assert_eq!(p.payments[0].ref_num, None, "only the gateway has a ref");
}

#[test]
fn an_order_paid_entirely_by_gift_certificate_has_no_gateway_payment() {
    let mut o = order(11, "captured");
    o.gift_certificate_amount = m("82.62");
    let p = plan(&OrderFacts::new(&o, m("82.62")), &[], None, None).unwrap();
    assert_eq!(p.payments.len(), 1);
    assert_eq!(p.payments[0].source, GIFT_CERTIFICATE);
}

#[test]
fn payments_never_exceed_the_invoice_even_when_it_books_less_than_was_paid() {
    // Tax mode `none`: the invoice totals the ex-tax amount.
    let mut o = order(11, "captured");
    o.gift_certificate_amount = m("80.00");
    let p = plan(&OrderFacts::new(&o, m("76.50")), &[], None, None).unwrap();
    let sum: Money = p.payments.iter().map(|x| x.amount).sum();
    assert_eq!(sum, m("76.50"));
    assert_eq!(p.payments.len(), 1);
}

#[test]
fn a_posted_payment_is_never_planned_again() {
    let docs = [invoice(InvoiceState::Paid), payment(GATEWAY, "82.62")];
    let p = plan(&facts(11, "captured"), &docs, None, Some("250")).unwrap();
    assert_eq!(p.invoice, InvoiceAction::Sync);
    assert!(p.payments.is_empty());
}

#[test]
fn a_captured_later_order_gets_its_payment_when_the_capture_is_seen() {
    let docs = [invoice(InvoiceState::Open)];
    assert!(
        plan(&facts(11, "authorized"), &docs, None, None)
            .unwrap()
            .payments
            .is_empty()
    );
    let p = plan(&facts(11, "captured"), &docs, None, None).unwrap();
    assert_eq!(p.payments.len(), 1);
}

#[test]
fn status_zero_cancelled_and_archived_orders_are_never_invoiced_when_nothing_was_posted() {
    for (status, deleted) in [(0, false), (5, false), (6, false), (11, true)] {
        let mut f = facts(status, "captured");
        f.is_deleted = deleted;
        let p = plan(&f, &[], None, None).unwrap();
        assert!(
            matches!(p.invoice, InvoiceAction::Skip(_)),
            "{status}/{deleted}"
        );
        assert!(p.payments.is_empty());
    }
}

#[test]
fn refunded_orders_seen_first_are_invoiced_in_full() {
    for status in [4, 14] {
        let p = plan(&facts(status, "refunded"), &[], None, None).unwrap();
        assert_eq!(p.invoice, InvoiceAction::Create { generation: 1 });
        assert_eq!(p.payments[0].amount, m("82.62"), "full original total");
    }
}

#[test]
fn a_cancelled_unpaid_invoice_is_voided_and_a_paid_one_stays() {
    let docs = [invoice(InvoiceState::Open)];
    assert_eq!(
        plan(&facts(5, "pending"), &docs, None, None)
            .unwrap()
            .invoice,
        InvoiceAction::Void
    );
    assert_eq!(
        plan(&facts(6, ""), &docs, None, None).unwrap().invoice,
        InvoiceAction::Void
    );
    let paid = [invoice(InvoiceState::Paid), payment(GATEWAY, "82.62")];
    assert_eq!(
        plan(&facts(5, "captured"), &paid, None, None)
            .unwrap()
            .invoice,
        InvoiceAction::Keep(KeepReason::CancelledAfterPayment)
    );
    // Paid in BigCommerce but the payment not posted yet: it is posted, the invoice stays.
    let p = plan(&facts(5, "captured"), &docs, None, None).unwrap();
    assert_eq!(
        p.invoice,
        InvoiceAction::Keep(KeepReason::CancelledAfterPayment)
    );
    assert_eq!(p.payments.len(), 1);
}

#[test]
fn a_voided_invoice_stays_voided_and_a_reopened_order_gets_a_new_invoice() {
    let docs = [invoice(InvoiceState::Voided)];
    assert_eq!(
        plan(&facts(5, ""), &docs, None, None).unwrap().invoice,
        InvoiceAction::Keep(KeepReason::Voided)
    );
    let p = plan(&facts(11, "captured"), &docs, None, None).unwrap();
    assert_eq!(p.invoice, InvoiceAction::Create { generation: 2 });
    assert_eq!(p.payments.len(), 1, "the new invoice gets the payment");
    let mut second = invoice(InvoiceState::Voided);
    second.source = invoice_source(2);
    let twice = [invoice(InvoiceState::Voided), second];
    assert_eq!(
        plan(&facts(11, ""), &twice, None, None).unwrap().invoice,
        InvoiceAction::Create { generation: 3 }
    );
    assert_eq!(invoice_doc_number("250", 2).unwrap(), "250-2");
    assert_eq!(invoice_doc_number("250", 1).unwrap(), "250");
    assert!(invoice_doc_number("BC-1234567890123456-", 2).is_err());
}

#[test]
fn refunds_of_a_paid_order_become_refund_receipts_numbered_in_id_order() {
    let docs = [invoice(InvoiceState::Paid), payment(GATEWAY, "82.62")];
    let refunds = [refund(18, "5.00"), refund(17, "20.00")];
    let p = plan(
        &facts(14, "partially refunded"),
        &docs,
        Some(&refunds),
        Some("250"),
    )
    .unwrap();
    let got: Vec<(u64, DocKind, Option<&str>, Money)> = p
        .refunds
        .iter()
        .map(|r| (r.refund_id, r.kind, r.doc_number.as_deref(), r.amount))
        .collect();
    assert_eq!(
        got,
        vec![
            (17, DocKind::RefundReceipt, Some("250-R1"), m("20.00")),
            (18, DocKind::RefundReceipt, Some("250-R2"), m("5.00")),
        ]
    );
}

#[test]
fn a_posted_refund_is_skipped_and_numbering_stays_stable() {
    let mut r1 = Document::new(DocKind::RefundReceipt, "340", refund_source(17));
    r1.amount = Some(m("20.00"));
    let docs = [invoice(InvoiceState::Paid), payment(GATEWAY, "82.62"), r1];
    let refunds = [refund(17, "20.00"), refund(18, "5.00")];
    let p = plan(
        &facts(14, "partially refunded"),
        &docs,
        Some(&refunds),
        Some("250"),
    )
    .unwrap();
    assert_eq!(p.refunds.len(), 1);
    assert_eq!(p.refunds[0].doc_number.as_deref(), Some("250-R2"));
}

#[test]
fn refunds_of_an_unpaid_order_become_credit_memos() {
    let docs = [invoice(InvoiceState::Open)];
    let p = plan(
        &facts(14, ""),
        &docs,
        Some(&[refund(3, "10.00")]),
        Some("BC-250"),
    )
    .unwrap();
    assert_eq!(p.refunds[0].kind, DocKind::CreditMemo);
    assert_eq!(p.refunds[0].doc_number.as_deref(), Some("BC-250-R1"));
}

#[test]
fn a_refund_larger_than_what_was_paid_is_refused_with_the_figures() {
    let docs = [invoice(InvoiceState::Paid), payment(GATEWAY, "82.62")];
    let refunds = [refund(17, "80.00"), refund(18, "5.00")];
    let err = plan(&facts(14, "refunded"), &docs, Some(&refunds), Some("250")).unwrap_err();
    assert_eq!(
        err,
        PlanError::RefundExceedsPaid {
            order_id: 250,
            refund_id: 18,
            amount: m("5.00"),
            available: m("2.62"),
        }
    );
    assert!(err.to_string().contains("replay the order"));
}

#[test]
fn a_refund_number_over_21_characters_is_refused() {
    let docs = [invoice(InvoiceState::Paid), payment(GATEWAY, "82.62")];
    let err = plan(
        &facts(14, "refunded"),
        &docs,
        Some(&[refund(1, "1.00")]),
        Some("BC-STORE-A-1234567890"),
    )
    .unwrap_err();
    assert!(matches!(err, PlanError::DocNumberTooLong { len: 24, .. }));
}

#[test]
fn refunds_wait_while_the_invoice_is_voided() {
    let docs = [invoice(InvoiceState::Voided)];
    let p = plan(
        &facts(5, ""),
        &docs,
        Some(&[refund(1, "1.00")]),
        Some("250"),
    )
    .unwrap();
    assert!(p.refunds.is_empty());
}

#[test]
fn refunds_are_looked_up_only_when_the_order_says_so() {
    assert!(!may_have_refunds(&order(11, "captured"), false));
    assert!(may_have_refunds(&order(14, "captured"), false));
    assert!(may_have_refunds(&order(4, "refunded"), false));
    assert!(may_have_refunds(&order(2, "partially refunded"), false));
    assert!(may_have_refunds(&order(2, "captured"), true));
}

#[test]
fn the_invoice_is_paid_once_its_payments_cover_it() {
    let docs = [invoice(InvoiceState::Open), payment(GATEWAY, "82.62")];
    assert_eq!(
        invoice_standing(m("82.62"), &docs),
        (InvoiceState::Paid, Money::ZERO)
    );
    assert_eq!(
        invoice_standing(m("90.00"), &docs),
        (InvoiceState::Open, m("7.38"))
    );
    assert_eq!(
        invoice_standing(m("80.00"), &docs),
        (InvoiceState::Paid, m("-2.62"))
    );
}

#[test]
fn document_markers_name_the_order_and_the_source_exactly() {
    let note = format!("paid {}", document_marker(250, "gateway"));
    assert!(note_has_document_marker(&note, 250, "gateway"));
    assert!(!note_has_document_marker(&note, 25, "gateway"));
    assert!(!note_has_document_marker(&note, 250, "gate"));
    let r = document_marker(250, &refund_source(17));
    assert!(note_has_document_marker(&r, 250, "refund/17"));
    assert!(!note_has_document_marker(&r, 250, "refund/1"));
}

#[test]
fn documents_serialize_as_the_contract_shows() {
    let d = Document {
        doc_number: Some("250-R1".into()),
        amount: Some(m("20")),
        ..Document::new(DocKind::RefundReceipt, "340", refund_source(17))
    };
    assert_eq!(
        serde_json::to_value(&d).unwrap(),
        serde_json::json!({"type": "RefundReceipt", "qbo_id": "340", "source": "refund/17",
                               "doc_number": "250-R1", "amount": "20.00"})
    );
    let i = invoice(InvoiceState::Open);
    let v = serde_json::to_value(&i).unwrap();
    assert_eq!(v["total"], "82.62");
    assert_eq!(v["state"], "open");
    let back: Document = serde_json::from_value(v).unwrap();
    assert_eq!(back, i);
}
