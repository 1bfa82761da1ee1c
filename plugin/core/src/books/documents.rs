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
mod tests;
