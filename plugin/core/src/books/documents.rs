//! An order's documents (CONTRACT §7): what the connector posted for it — the invoice, the
//! payments, the refunds — and the plan of what to create, update or void next. Pure.
//!
//! Every document has a *source*, the BigCommerce fact it stands for, and there is never more
//! than one document per source: `order` (the invoice; `order/2`, `order/3` for the invoices
//! of an order reopened after a void), `gateway`, `gift_certificate`, `store_credit` (the
//! payments) and `refund/{id}` (one refund receipt or credit memo per BigCommerce refund).
//! [`plan`] compares what BigCommerce says with the documents already posted and lists only
//! what is missing; the job executes the list under the order's lease.

use serde::{Deserialize, Serialize};

use crate::books::mapping::DOC_NUMBER_MAX;
use crate::models::bigcommerce::{Order, Refund};
use crate::models::money::Money;

/// Source of an order's first invoice.
pub const ORDER: &str = "order";
/// Source of the payment made through the payment gateway.
pub const GATEWAY: &str = "gateway";
/// Source of the amount paid with gift certificates.
pub const GIFT_CERTIFICATE: &str = "gift_certificate";
/// Source of the amount paid with store credit.
pub const STORE_CREDIT: &str = "store_credit";

/// Source of the document for BigCommerce refund `id`.
pub fn refund_source(id: u64) -> String {
    format!("refund/{id}")
}

/// Source of the invoice of generation `n` (1 = the first invoice).
pub fn invoice_source(generation: u32) -> String {
    if generation <= 1 {
        ORDER.to_string()
    } else {
        format!("{ORDER}/{generation}")
    }
}

/// The QuickBooks entity of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DocKind {
    Invoice,
    Payment,
    RefundReceipt,
    CreditMemo,
}

impl DocKind {
    /// The entity name (`Invoice`, `Payment`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Invoice => "Invoice",
            DocKind::Payment => "Payment",
            DocKind::RefundReceipt => "RefundReceipt",
            DocKind::CreditMemo => "CreditMemo",
        }
    }

    /// The URL segment (`invoice`, `refundreceipt`, …).
    pub fn path(self) -> &'static str {
        match self {
            DocKind::Invoice => "invoice",
            DocKind::Payment => "payment",
            DocKind::RefundReceipt => "refundreceipt",
            DocKind::CreditMemo => "creditmemo",
        }
    }
}

/// Where an invoice stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceState {
    /// Posted, with an open balance.
    Open,
    /// Posted, and its payments cover it.
    Paid,
    /// Voided in QuickBooks (amounts zero); never un-voided.
    Voided,
}

/// One document posted for an order, as the sync record lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    #[serde(rename = "type")]
    pub kind: DocKind,
    pub qbo_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_token: Option<String>,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_number: Option<String>,
    /// Invoice total.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::models::money::opt_string"
    )]
    pub total: Option<Money>,
    /// Payment or refund amount.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::models::money::opt_string"
    )]
    pub amount: Option<Money>,
    /// Invoice state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<InvoiceState>,
    /// Invoice: total minus the payments posted for it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::models::money::opt_string"
    )]
    pub balance: Option<Money>,
    /// A note on the document (`cancelled_after_payment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Document {
    /// A document with only its kind, id and source set.
    pub fn new(kind: DocKind, qbo_id: impl Into<String>, source: impl Into<String>) -> Self {
        Document {
            kind,
            qbo_id: qbo_id.into(),
            sync_token: None,
            source: source.into(),
            doc_number: None,
            total: None,
            amount: None,
            state: None,
            balance: None,
            note: None,
        }
    }

    /// Whether this is a payment, refund receipt or credit memo for `source`.
    fn is(&self, kind: DocKind, source: &str) -> bool {
        self.kind == kind && self.source == source
    }
}

/// The invoice documents ever posted for an order, oldest first (a voided one stays listed).
pub fn invoices(docs: &[Document]) -> impl Iterator<Item = &Document> {
    docs.iter().filter(|d| d.kind == DocKind::Invoice)
}

/// The order's current invoice: the newest one.
pub fn current_invoice(docs: &[Document]) -> Option<&Document> {
    invoices(docs).last()
}

/// The document posted for `source`, if any.
pub fn posted<'a>(docs: &'a [Document], source: &str) -> Option<&'a Document> {
    docs.iter().find(|d| d.source == source)
}

/// Sum of the payments posted.
pub fn payments_total(docs: &[Document]) -> Money {
    docs.iter()
        .filter(|d| d.kind == DocKind::Payment)
        .filter_map(|d| d.amount)
        .sum()
}

fn refunds_total(docs: &[Document], kind: DocKind) -> Money {
    docs.iter()
        .filter(|d| d.kind == kind)
        .filter_map(|d| d.amount)
        .sum()
}

/// Whether BigCommerce reports the order as paid (`payment_status` `captured`, `paid`,
/// `partially refunded` or `refunded`); `authorized` is not paid until captured.
pub fn is_paid(payment_status: &str) -> bool {
    matches!(
        payment_status.trim().to_ascii_lowercase().as_str(),
        "captured" | "paid" | "partially refunded" | "refunded"
    )
}

/// Whether the order may have refunds to look up: BigCommerce marks refunded orders with
/// status 4 (Refunded) or 14 (Partially Refunded) and payment status `refunded` /
/// `partially refunded`. `hinted` is a `store/order/refund/created` event or a replay.
pub fn may_have_refunds(order: &Order, hinted: bool) -> bool {
    hinted
        || matches!(order.status_id, 4 | 14)
        || matches!(
            order.payment_status.trim().to_ascii_lowercase().as_str(),
            "refunded" | "partially refunded"
        )
}

/// Which account a payment is booked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentAccount {
    /// `payments.deposit_account`.
    Deposit,
    /// `payments.gift_certificate_account`.
    GiftCertificate,
    /// `payments.store_credit_account`.
    StoreCredit,
}

/// A payment to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPayment {
    pub source: &'static str,
    pub amount: Money,
    pub account: PaymentAccount,
    /// `PaymentRefNum`: the gateway's transaction id, at most 21 characters.
    pub ref_num: Option<String>,
    /// The BigCommerce `payment_method`, looked up in `payments.methods`.
    pub method: Option<String>,
}

/// A refund document to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRefund {
    pub refund_id: u64,
    pub source: String,
    pub kind: DocKind,
    pub amount: Money,
    /// `{invoice DocNumber}-R{n}`, `n` counting the order's refunds in id order.
    pub doc_number: Option<String>,
}

/// What happens to the invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvoiceAction {
    /// Nothing was invoiced and nothing will be (incomplete, cancelled, archived): the reason.
    Skip(String),
    /// Create the invoice of this generation (2 and up: the order was reopened after a void;
    /// its DocNumber is the first one's followed by `-{generation}`).
    Create { generation: u32 },
    /// Keep the current invoice in step with the order (update when its content changed).
    Sync,
    /// Void the current invoice (cancelled or declined, nothing paid).
    Void,
    /// Leave the invoice as it is, with the reason.
    Keep(KeepReason),
}

/// Why an invoice is left as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepReason {
    /// Archived in BigCommerce after it was invoiced.
    Archived,
    /// Cancelled or declined after a payment was posted: the sale stands; a refund, when
    /// BigCommerce issues one, posts its own document.
    CancelledAfterPayment,
    /// Voided, and the order is still cancelled or declined.
    Voided,
}

impl KeepReason {
    /// The note written on the record.
    pub fn as_str(self) -> &'static str {
        match self {
            KeepReason::Archived => "archived",
            KeepReason::CancelledAfterPayment => "cancelled_after_payment",
            KeepReason::Voided => "voided",
        }
    }
}

/// The documents an order still needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentPlan {
    pub invoice: InvoiceAction,
    pub payments: Vec<PlannedPayment>,
    pub refunds: Vec<PlannedRefund>,
}

impl DocumentPlan {
    /// Whether the invoice is (or is about to be) open, so documents can link to it.
    pub fn invoice_stays_open(&self) -> bool {
        matches!(
            self.invoice,
            InvoiceAction::Create { .. }
                | InvoiceAction::Sync
                | InvoiceAction::Keep(KeepReason::CancelledAfterPayment)
        )
    }
}

/// Why an order's documents cannot be planned. Each message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "BigCommerce refund {refund_id} gives back {amount}, but only {available} was paid for \
         order {order_id} and not yet refunded in QuickBooks: check the refund and the order's \
         payments in BigCommerce, then replay the order"
    )]
    RefundExceedsPaid {
        order_id: u64,
        refund_id: u64,
        amount: Money,
        available: Money,
    },
    #[error(
        "refund number '{doc_number}' is {len} characters; QuickBooks allows 21: shorten \
         invoice.doc_number in the mapping, then replay the order"
    )]
    DocNumberTooLong { doc_number: String, len: usize },
}

/// The figures of an order the plan needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFacts {
    pub order_id: u64,
    pub status_id: u64,
    pub is_deleted: bool,
    pub paid: bool,
    /// What the invoice totals (BigCommerce's total as the mapping books it).
    pub invoice_total: Money,
    pub gift_certificate: Money,
    pub store_credit: Money,
    pub payment_provider_id: String,
    pub payment_method: String,
}

impl OrderFacts {
    /// The facts of `order`, whose invoice totals `invoice_total`.
    pub fn new(order: &Order, invoice_total: Money) -> Self {
        OrderFacts {
            order_id: order.id.0,
            status_id: order.status_id,
            is_deleted: order.is_deleted,
            paid: is_paid(&order.payment_status),
            invoice_total: invoice_total.round_cents(),
            gift_certificate: order.gift_certificate_amount.round_cents(),
            store_credit: order.store_credit_amount.round_cents(),
            payment_provider_id: order.payment_provider_id.trim().to_string(),
            payment_method: order.payment_method.trim().to_string(),
        }
    }

    fn cancelled(&self) -> bool {
        matches!(self.status_id, 5 | 6)
    }
}

/// The payments an order's figures call for: gift certificates first, then store credit,
/// then the gateway (`total − gift certificates − store credit`), each capped at what is
/// left of the invoice so the payments never exceed it. Zero amounts are left out.
pub fn payments_due(facts: &OrderFacts) -> Vec<PlannedPayment> {
    if !facts.paid {
        return Vec::new();
    }
    let mut left = facts.invoice_total.max(Money::ZERO);
    let mut take = |want: Money| {
        let amount = want.max(Money::ZERO).min(left);
        left -= amount;
        amount
    };
    let gift = take(facts.gift_certificate);
    let credit = take(facts.store_credit);
    let gateway = take(facts.invoice_total - facts.gift_certificate - facts.store_credit);
    let ref_num = (!facts.payment_provider_id.is_empty()).then(|| {
        facts
            .payment_provider_id
            .chars()
            .take(21)
            .collect::<String>()
    });
    let method = (!facts.payment_method.is_empty()).then(|| facts.payment_method.clone());
    [
        (
            GIFT_CERTIFICATE,
            gift,
            PaymentAccount::GiftCertificate,
            None,
            None,
        ),
        (
            STORE_CREDIT,
            credit,
            PaymentAccount::StoreCredit,
            None,
            None,
        ),
        (GATEWAY, gateway, PaymentAccount::Deposit, ref_num, method),
    ]
    .into_iter()
    .filter(|(_, amount, ..)| !amount.is_zero())
    .map(
        |(source, amount, account, ref_num, method)| PlannedPayment {
            source,
            amount,
            account,
            ref_num,
            method,
        },
    )
    .collect()
}

/// What to do with the invoice, from the order's state and the documents posted.
pub fn invoice_action(facts: &OrderFacts, docs: &[Document]) -> InvoiceAction {
    let Some(current) = current_invoice(docs) else {
        return if facts.status_id == 0 {
            InvoiceAction::Skip(
                "incomplete order (status 0): it is invoiced once checkout completes".into(),
            )
        } else if facts.is_deleted {
            InvoiceAction::Skip(
                "the order was archived in BigCommerce before it was invoiced".into(),
            )
        } else if facts.cancelled() {
            InvoiceAction::Skip(format!(
                "the order is cancelled or declined (status {}): nothing to invoice",
                facts.status_id
            ))
        } else {
            InvoiceAction::Create { generation: 1 }
        };
    };
    let voided = current.state == Some(InvoiceState::Voided);
    if facts.is_deleted {
        return InvoiceAction::Keep(if voided {
            KeepReason::Voided
        } else {
            KeepReason::Archived
        });
    }
    if voided {
        if facts.cancelled() || facts.status_id == 0 {
            return InvoiceAction::Keep(KeepReason::Voided);
        }
        // Reopened after the void: a voided invoice is never un-voided.
        let generation = u32::try_from(invoices(docs).count())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        return InvoiceAction::Create { generation };
    }
    if facts.cancelled() {
        let paid_in_books = docs.iter().any(|d| d.kind == DocKind::Payment);
        return if paid_in_books || !payments_due(facts).is_empty() {
            InvoiceAction::Keep(KeepReason::CancelledAfterPayment)
        } else {
            InvoiceAction::Void
        };
    }
    InvoiceAction::Sync
}

/// The full plan: the invoice action, the payments not yet posted and the refunds not yet
/// posted (`refunds`: the order's BigCommerce refunds when they were looked up, in id order).
/// `invoice_doc_number` is the DocNumber refunds are numbered after.
pub fn plan(
    facts: &OrderFacts,
    docs: &[Document],
    refunds: Option<&[Refund]>,
    invoice_doc_number: Option<&str>,
) -> Result<DocumentPlan, PlanError> {
    let invoice = invoice_action(facts, docs);
    let mut out = DocumentPlan {
        invoice,
        payments: Vec::new(),
        refunds: Vec::new(),
    };
    if !out.invoice_stays_open() {
        return Ok(out);
    }
    let due = payments_due(facts);
    out.payments = due
        .iter()
        .filter(|p| !docs.iter().any(|d| d.is(DocKind::Payment, p.source)))
        .cloned()
        .collect();
    let Some(refunds) = refunds else {
        return Ok(out);
    };
    // Money received: what is posted, plus what this run posts.
    let paid = payments_total(docs) + out.payments.iter().map(|p| p.amount).sum::<Money>();
    let mut refunded = refunds_total(docs, DocKind::RefundReceipt);
    let mut credited = refunds_total(docs, DocKind::CreditMemo);
    let mut sorted: Vec<&Refund> = refunds.iter().collect();
    sorted.sort_by_key(|r| r.id);
    for (i, refund) in sorted.iter().enumerate() {
        let source = refund_source(refund.id);
        if posted(docs, &source).is_some() {
            continue;
        }
        let amount = refund.total_amount.round_cents();
        let kind = if paid.is_zero() {
            DocKind::CreditMemo
        } else {
            DocKind::RefundReceipt
        };
        let (used, limit) = match kind {
            DocKind::CreditMemo => (&mut credited, facts.invoice_total),
            _ => (&mut refunded, paid),
        };
        let available = limit - *used;
        if amount > available {
            return Err(PlanError::RefundExceedsPaid {
                order_id: facts.order_id,
                refund_id: refund.id,
                amount,
                available,
            });
        }
        *used += amount;
        let doc_number = match invoice_doc_number {
            None => None,
            Some(base) => {
                let d = format!("{base}-R{}", i + 1);
                let len = d.chars().count();
                if len > DOC_NUMBER_MAX {
                    return Err(PlanError::DocNumberTooLong { doc_number: d, len });
                }
                Some(d)
            }
        };
        out.refunds.push(PlannedRefund {
            refund_id: refund.id,
            source,
            kind,
            amount,
            doc_number,
        });
    }
    Ok(out)
}

/// The DocNumber of the invoice of `generation`, from the first invoice's `base`.
pub fn invoice_doc_number(base: &str, generation: u32) -> Result<String, PlanError> {
    let d = if generation <= 1 {
        base.to_string()
    } else {
        format!("{base}-{generation}")
    };
    let len = d.chars().count();
    if len > DOC_NUMBER_MAX {
        return Err(PlanError::DocNumberTooLong { doc_number: d, len });
    }
    Ok(d)
}

/// The invoice's state and balance once `docs` hold its payments.
pub fn invoice_standing(total: Money, docs: &[Document]) -> (InvoiceState, Money) {
    let balance = total - payments_total(docs);
    let state = if balance <= Money::ZERO && !total.is_zero() {
        InvoiceState::Paid
    } else {
        InvoiceState::Open
    };
    (state, balance)
}

/// The `PrivateNote` marker of one document of an order (the invoice keeps
/// [`crate::books::mapping::note_marker`]).
pub fn document_marker(order_id: u64, source: &str) -> String {
    format!("{}/{source}", crate::books::mapping::note_marker(order_id))
}

/// Whether a `PrivateNote` carries this document's marker.
pub fn note_has_document_marker(note: &str, order_id: u64, source: &str) -> bool {
    let m = document_marker(order_id, source);
    note.match_indices(&m).any(|(i, _)| {
        !note[i + m.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '/')
    })
}

#[cfg(test)]
mod tests {
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
}
