//! QuickBooks Online entities as the API reads and writes them: references, invoice lines,
//! invoices, customers, items, accounts, classes and the company profile.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::models::money::Money;

/// A reference to another entity: `{"value": "12", "name": "Services"}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ref {
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Ref {
    /// A reference by id only.
    pub fn id(value: impl Into<String>) -> Self {
        Ref {
            value: value.into(),
            name: None,
        }
    }
}

/// `PhysicalAddress`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PhysicalAddress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line3: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_sub_division_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// `EmailAddress`: `{"Address": "ana@example.com"}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EmailAddress {
    pub address: String,
}

/// `TelephoneNumber`: `{"FreeFormNumber": "555-0100"}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TelephoneNumber {
    pub free_form_number: String,
}

/// `MemoRef`: `{"value": "…"}` (CustomerMemo).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemoRef {
    pub value: String,
}

/// The `DetailType` of an invoice line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DetailType {
    SalesItemLineDetail,
    DiscountLineDetail,
    /// Added by QuickBooks in responses; never sent.
    SubTotalLineDetail,
    DescriptionOnly,
    /// Any other type QuickBooks may return (group lines, …).
    #[serde(other)]
    Other,
}

/// `SalesItemLineDetail`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SalesItemLineDetail {
    pub item_ref: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_ref: Option<Ref>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::models::money::decimal_number::option"
    )]
    pub unit_price: Option<Decimal>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::models::money::decimal_number::option"
    )]
    pub qty: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_code_ref: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_date: Option<NaiveDate>,
    /// The line's amount including tax (`GlobalTaxCalculation` `TaxInclusive`); `Amount` stays
    /// the net amount.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::models::money::decimal_number::option"
    )]
    pub tax_inclusive_amt: Option<Decimal>,
}

/// `DiscountLineDetail`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiscountLineDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent_based: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::models::money::decimal_number::option"
    )]
    pub discount_percent: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_account_ref: Option<Ref>,
}

/// `DescriptionLineDetail` (for `DescriptionOnly` lines).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescriptionLineDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_date: Option<NaiveDate>,
}

/// `SubTotalLineDetail` (response only; empty object).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SubTotalLineDetail {}

/// An invoice line. Exactly one detail is set, matching `detail_type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Line {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_num: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub amount: Money,
    pub detail_type: DetailType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sales_item_line_detail: Option<SalesItemLineDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_line_detail: Option<DiscountLineDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_total_line_detail: Option<SubTotalLineDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description_line_detail: Option<DescriptionLineDetail>,
}

impl Line {
    /// A sales line.
    pub fn sales(amount: Money, description: Option<String>, detail: SalesItemLineDetail) -> Self {
        Line {
            id: None,
            line_num: None,
            description,
            amount,
            detail_type: DetailType::SalesItemLineDetail,
            sales_item_line_detail: Some(detail),
            discount_line_detail: None,
            sub_total_line_detail: None,
            description_line_detail: None,
        }
    }

    /// A fixed-amount discount line booked to `account` (QuickBooks' default discount account
    /// when `None`).
    pub fn discount(amount: Money, description: Option<String>, account: Option<Ref>) -> Self {
        Line {
            id: None,
            line_num: None,
            description,
            amount,
            detail_type: DetailType::DiscountLineDetail,
            sales_item_line_detail: None,
            discount_line_detail: Some(DiscountLineDetail {
                percent_based: Some(false),
                discount_percent: None,
                discount_account_ref: account,
            }),
            sub_total_line_detail: None,
            description_line_detail: None,
        }
    }

    /// A free-text line.
    pub fn description_only(text: impl Into<String>) -> Self {
        Line {
            id: None,
            line_num: None,
            description: Some(text.into()),
            amount: Money::ZERO,
            detail_type: DetailType::DescriptionOnly,
            sales_item_line_detail: None,
            discount_line_detail: None,
            sub_total_line_detail: None,
            description_line_detail: Some(DescriptionLineDetail::default()),
        }
    }
}

/// `TxnTaxDetail` (only the writable parts; `TaxLine` from responses is ignored).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnTaxDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_tax_code_ref: Option<Ref>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::models::money::opt"
    )]
    pub total_tax: Option<Money>,
}

/// An `Invoice`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Invoice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_token: Option<String>,
    #[serde(rename = "sparse", default, skip_serializing_if = "Option::is_none")]
    pub sparse: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency_ref: Option<Ref>,
    /// Home-currency units per unit of `currency_ref` (foreign-currency invoices only).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::models::money::decimal_number::option"
    )]
    pub exchange_rate: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_note: Option<String>,
    #[serde(default)]
    pub line: Vec<Line>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_tax_detail: Option<TxnTaxDetail>,
    pub customer_ref: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_memo: Option<MemoRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill_addr: Option<PhysicalAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship_addr: Option<PhysicalAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_ref: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_tax_calculation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill_email: Option<EmailAddress>,
    /// Read-only: never sent.
    #[serde(default, skip_serializing, with = "crate::models::money::opt")]
    pub total_amt: Option<Money>,
    /// Read-only: never sent.
    #[serde(default, skip_serializing, with = "crate::models::money::opt")]
    pub balance: Option<Money>,
}

impl Invoice {
    /// The lines a sender controls: QuickBooks' own `SubTotalLineDetail` lines removed.
    pub fn lines_without_subtotals(&self) -> impl Iterator<Item = &Line> {
        self.line
            .iter()
            .filter(|l| l.detail_type != DetailType::SubTotalLineDetail)
    }
}

/// A link from one transaction to another (`{"TxnId": "266", "TxnType": "Invoice"}`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LinkedTxn {
    pub txn_id: String,
    pub txn_type: String,
}

/// A `Payment` line: the amount applied to the linked invoice.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PaymentLine {
    pub amount: Money,
    pub linked_txn: Vec<LinkedTxn>,
}

/// A `Payment` (received from the customer, applied to invoices).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Payment {
    pub customer_ref: Ref,
    /// Writable (and required) on a payment, unlike on an invoice.
    pub total_amt: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency_ref: Option<Ref>,
    /// Home-currency units per unit of `currency_ref` (a foreign-currency order's documents,
    /// at its invoice's rate).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::models::money::decimal_number::option"
    )]
    pub exchange_rate: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deposit_to_account_ref: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method_ref: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_ref_num: Option<String>,
    #[serde(default)]
    pub line: Vec<PaymentLine>,
}

/// A `RefundReceipt` or `CreditMemo`: a sales form whose lines are laid out like an
/// invoice's. `DepositToAccountRef` is the account the money leaves (refund receipts only).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SalesReturn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency_ref: Option<Ref>,
    /// Home-currency units per unit of `currency_ref` (a foreign-currency order's documents,
    /// at its invoice's rate).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::models::money::decimal_number::option"
    )]
    pub exchange_rate: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_note: Option<String>,
    #[serde(default)]
    pub line: Vec<Line>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_tax_detail: Option<TxnTaxDetail>,
    /// `TaxExcluded` for VAT/GST companies; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_tax_calculation: Option<String>,
    pub customer_ref: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_memo: Option<MemoRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deposit_to_account_ref: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method_ref: Option<Ref>,
}

/// A `Customer`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Customer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_token: Option<String>,
    #[serde(rename = "sparse", default, skip_serializing_if = "Option::is_none")]
    pub sparse: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_email_addr: Option<EmailAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_phone: Option<TelephoneNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill_addr: Option<PhysicalAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship_addr: Option<PhysicalAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency_ref: Option<Ref>,
}

/// An `Item`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Item {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_token: Option<String>,
    pub name: String,
    /// `Service`, `NonInventory`, `Inventory`, …
    #[serde(rename = "Type", default, skip_serializing_if = "Option::is_none")]
    pub item_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub income_account_ref: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taxable: Option<bool>,
}

/// An `Account`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Account {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_token: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_sub_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Read-only.
    #[serde(default, skip_serializing)]
    pub fully_qualified_name: Option<String>,
}

/// A `Class`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Class {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_token: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Read-only.
    #[serde(default, skip_serializing)]
    pub fully_qualified_name: Option<String>,
}

/// `CompanyInfo` (read only), for the status page.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CompanyInfo {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub company_name: String,
    #[serde(default)]
    pub legal_name: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
}
