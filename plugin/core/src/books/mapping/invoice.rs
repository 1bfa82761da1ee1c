//! The invoice layout: lines, discounts, charges, tax, addresses, `DocNumber` and the
//! `PrivateNote` marker — and the rounding residue that makes the total tie to the cent.

use rust_decimal::Decimal;

use crate::books::mapping::config::{DOC_NUMBER_MAX, MappingConfig, NOTE_MARKER_PREFIX, TaxMode};
use crate::books::mapping::error::MappingError;
use crate::books::mapping::plan::{
    OrderContext, ResolvedRefs, Target, charges, is_skipped, line_target, order_discount,
};
use crate::books::mapping::totals::{check_totals, minus, sum};
use crate::models::bigcommerce::{Order, OrderProduct};
use crate::models::money::{Money, round2};
use crate::models::quickbooks::{
    EmailAddress, Invoice, Line, PhysicalAddress, Ref, SalesItemLineDetail, TxnTaxDetail,
};

/// An invoice ready to post, with the figures it was checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceDraft {
    pub invoice: Invoice,
    /// What the invoice totals (Σ lines − discount + tax) — equals `target`.
    pub total: Money,
    /// BigCommerce's total rounded to cents (`total_inc_tax`, or `total_ex_tax` for tax mode `none`).
    pub target: Money,
    /// Rounding residue absorbed (see the module docs), for the audit trail.
    pub residue: Money,
}

/// The `PrivateNote` marker for an order (used to find an invoice after a crash).
pub fn note_marker(order_id: u64) -> String {
    format!("{NOTE_MARKER_PREFIX}{order_id}")
}

/// Whether a `PrivateNote` carries this order's marker (not a longer id that starts the same).
pub fn note_has_marker(note: &str, order_id: u64) -> bool {
    let m = note_marker(order_id);
    note.match_indices(&m)
        .any(|(i, _)| !note[i + m.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

/// Renders the `doc_number` template.
pub fn render_doc_number(template: &str, order: &Order) -> Result<String, MappingError> {
    let s = template
        .replace("{order_id}", &order.id.0.to_string())
        .replace("{channel_id}", &order.channel_id.to_string());
    let len = s.chars().count();
    if len > DOC_NUMBER_MAX {
        return Err(MappingError::DocNumberTooLong { doc_number: s, len });
    }
    Ok(s)
}

/// Chooses `(Qty, UnitPrice)` with `round2(Qty × UnitPrice) == amount` exactly.
pub(crate) fn qty_and_price(quantity: Decimal, amount: Money) -> (Decimal, Decimal) {
    let a = amount.amount();
    // Checked: a tiny fractional quantity would make the unit price overflow.
    if quantity > Decimal::ZERO
        && let Some(exact) = a.checked_div(quantity)
    {
        for dp in 2..=7u32 {
            let u = exact
                .round_dp_with_strategy(dp, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
            if u.checked_mul(quantity).map(round2) == Some(a) {
                return (quantity, u.normalize());
            }
        }
    }
    // Huge or fractional quantities where no price of ≤ 7 decimals fits: bill one unit at the
    // line amount (the quantity stays in the description).
    (Decimal::ONE, a.normalize())
}

pub(crate) fn describe(line: &OrderProduct) -> String {
    let name = if line.name.trim().is_empty() {
        &line.name_merchant
    } else {
        &line.name
    };
    let mut s = name.trim().to_string();
    let opts: Vec<String> = line
        .product_options
        .iter()
        .filter(|o| !o.display_name.is_empty() || !o.display_value.is_empty())
        .map(|o| format!("{}: {}", o.display_name, o.display_value))
        .collect();
    if !opts.is_empty() {
        s.push_str(&format!(" ({})", opts.join(", ")));
    }
    if !line.sku.trim().is_empty() {
        s.push_str(&format!(" [SKU {}]", line.sku.trim()));
    }
    s.chars().take(4000).collect()
}

pub(crate) fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn address(a: &crate::models::bigcommerce::Address) -> Option<PhysicalAddress> {
    if !a.has_postal_data() {
        return None;
    }
    Some(PhysicalAddress {
        id: None,
        line1: non_empty(&a.street_1),
        line2: non_empty(&a.street_2),
        line3: None,
        city: non_empty(&a.city),
        country_sub_division_code: non_empty(&a.state),
        postal_code: non_empty(&a.zip),
        country: non_empty(&a.country),
    })
}

/// Builds the invoice for an order (see the module docs for the money rules).
pub fn build_invoice(
    config: &MappingConfig,
    ctx: &OrderContext,
    refs: &ResolvedRefs,
    customer_ref: &str,
) -> Result<InvoiceDraft, MappingError> {
    let order = ctx.order;
    let inv_cfg = &config.invoice;
    check_totals(order, ctx.lines)?;
    let doc_number = render_doc_number(&inv_cfg.doc_number, order)?;
    let txn_date = order
        .date_created
        .ok_or(MappingError::MissingOrderDate)?
        .date_naive();

    let item_ref = |name: &str| refs.item_ref(name);
    let class_ref = |name: &Option<String>| refs.class_ref(name);

    // Product lines.
    let mut lines: Vec<Line> = Vec::new();
    let mut rounded_terms = 0usize;
    for l in ctx.lines.iter().filter(|l| !is_skipped(l)) {
        let (target, class) = line_target(config, l, ctx)?;
        let item = match &target {
            Target::Item(n) => item_ref(n)?,
            Target::Account(a) => refs
                .account_items
                .get(a)
                .map(|id| Ref::id(id.clone()))
                .ok_or_else(|| MappingError::UnknownAccount { name: a.clone() })?,
        };
        let amount = l.total_ex_tax.round_cents();
        let (qty, unit_price) = qty_and_price(l.quantity, amount);
        let mut desc = describe(l);
        if qty != l.quantity {
            desc.push_str(&format!(" × {}", l.quantity.normalize()));
        }
        lines.push(Line::sales(
            amount,
            Some(desc),
            SalesItemLineDetail {
                item_ref: item,
                class_ref: class_ref(&class)?,
                unit_price: Some(unit_price),
                qty: Some(qty),
                tax_code_ref: None,
                service_date: None,
            },
        ));
        rounded_terms += 1;
    }
    let product_lines = lines.len();

    // Shipping, handling, wrapping, fees.
    for (item, desc, amount) in charges(config, order) {
        let amount = amount.round_cents();
        lines.push(Line::sales(
            amount,
            Some(desc),
            SalesItemLineDetail {
                item_ref: item_ref(&item)?,
                class_ref: class_ref(&inv_cfg.default_class)?,
                unit_price: Some(amount.amount().normalize()),
                qty: Some(Decimal::ONE),
                ..Default::default()
            },
        ));
        rounded_terms += 1;
    }

    // One discount line for coupons + manual discount.
    let discount = order_discount(order).round_cents();
    if !discount.is_zero() {
        let account = match &inv_cfg.discount {
            None => None,
            Some(d) => Some(Ref::id(refs.discount_account.clone().ok_or_else(|| {
                MappingError::UnknownDiscountAccount {
                    name: d.account.clone(),
                }
            })?)),
        };
        let desc = match (
            order.coupon_discount.is_zero(),
            order.discount_amount.is_zero(),
        ) {
            (false, true) => "Coupon discount",
            (true, false) => "Order discount",
            _ => "Coupon and order discounts",
        };
        lines.push(Line::discount(discount, Some(desc.into()), account));
        rounded_terms += 1;
    }

    // Every amount was read bounded (`money::MAX_AMOUNT`) and their sums were checked by
    // `check_totals` above; the sums here are checked all the same.
    let sales: Vec<Money> = lines
        .iter()
        .filter(|l| l.sales_item_line_detail.is_some())
        .map(|l| l.amount)
        .collect();
    let before_tax = minus("invoice lines", sum("invoice lines", &sales)?, discount)?;
    let bc_tax = order.total_tax.round_cents();
    let (target, posts_tax) = match inv_cfg.tax.mode {
        TaxMode::None => (order.total_ex_tax.round_cents(), false),
        TaxMode::Auto | TaxMode::Line | TaxMode::TxnDetail | TaxMode::Vat => {
            (order.total_inc_tax.round_cents(), true)
        }
    };
    let tax_amount_target = if posts_tax { bc_tax } else { Money::ZERO };
    let residue = minus(
        "rounding residue",
        minus("rounding residue", target, before_tax)?,
        tax_amount_target,
    )?;
    rounded_terms += 2; // the total itself and the tax are rounded too
    if residue.abs() > Money::from_cents(1) * Decimal::from(rounded_terms as u64) {
        return Err(MappingError::TotalsDoNotTie {
            check: "rounded invoice lines vs BigCommerce total".into(),
            bigcommerce: target,
            computed: before_tax + tax_amount_target,
            difference: residue,
        });
    }
    let absorb_in_tax = posts_tax && !bc_tax.is_zero();
    let tax = if absorb_in_tax {
        tax_amount_target + residue
    } else {
        tax_amount_target
    };
    if !absorb_in_tax && !residue.is_zero() {
        // Largest product line (or largest sales line) takes the residue; its unit price is
        // recomputed so Qty × UnitPrice still equals Amount.
        // `rev()` so that among equal amounts the first line wins.
        let idx = (0..product_lines)
            .rev()
            .max_by_key(|i| lines[*i].amount)
            .or_else(|| {
                (0..lines.len())
                    .rev()
                    .filter(|i| lines[*i].sales_item_line_detail.is_some())
                    .max_by_key(|i| lines[*i].amount)
            });
        let Some(i) = idx else {
            return Err(MappingError::NothingToInvoice);
        };
        let line = &mut lines[i];
        line.amount += residue;
        if let Some(d) = line.sales_item_line_detail.as_mut() {
            let (q, u) = qty_and_price(d.qty.unwrap_or(Decimal::ONE), line.amount);
            d.qty = Some(q);
            d.unit_price = Some(u);
        }
    }

    let (tax_line, txn_tax_detail) = book_tax(config, refs, tax, "Sales tax (BigCommerce)")?;
    lines.extend(tax_line);
    let global_tax_calculation = tax_codes(config, refs, &mut lines)?;
    if lines.is_empty() {
        return Err(MappingError::NothingToInvoice);
    }

    // Final check, on what is actually sent.
    let mut total = Money::ZERO;
    for l in &lines {
        if let Some(d) = &l.sales_item_line_detail {
            let q = d.qty.unwrap_or(Decimal::ONE);
            let u = d.unit_price.unwrap_or_default();
            debug_assert_eq!(q.checked_mul(u).map(round2), Some(l.amount.amount()));
            total = sum("invoice total", &[total, l.amount])?;
        } else if l.discount_line_detail.is_some() {
            total = minus("invoice total", total, l.amount)?;
        }
    }
    if let Some(t) = txn_tax_detail.as_ref().and_then(|t| t.total_tax) {
        total = sum("invoice total", &[total, t])?;
    }
    if total != target {
        return Err(MappingError::TotalsDoNotTie {
            check: "invoice total vs BigCommerce total".into(),
            bigcommerce: target,
            computed: total,
            difference: target - total,
        });
    }

    let currency = if order.default_currency_code.trim().is_empty() {
        non_empty(&order.currency_code)
    } else {
        non_empty(&order.default_currency_code)
    };
    let email = order.billing_address.email.trim();
    let note = format!(
        "BigCommerce order #{} (channel {}). {}",
        order.id,
        order.channel_id,
        note_marker(order.id.0)
    );
    let memo = non_empty(&order.customer_message).map(|m| crate::models::quickbooks::MemoRef {
        value: m.chars().take(1000).collect(),
    });
    let invoice = Invoice {
        doc_number: Some(doc_number),
        txn_date: Some(txn_date),
        currency_ref: currency.map(Ref::id),
        private_note: Some(note),
        line: lines,
        txn_tax_detail,
        global_tax_calculation,
        customer_ref: Ref::id(customer_ref),
        customer_memo: memo,
        bill_addr: address(&order.billing_address),
        ship_addr: order
            .first_shipping_address()
            .and_then(|s| address(&s.address)),
        bill_email: (email.contains('@')).then(|| EmailAddress {
            address: email.to_string(),
        }),
        ..Default::default()
    };
    Ok(InvoiceDraft {
        invoice,
        total,
        target,
        residue,
    })
}

/// How `tax` is booked under the mapping's tax mode: `line`, a line on the tax item named
/// `description` (none for zero tax); `txn_detail`, a transaction-level override; `none`,
/// nothing. The invoice and the refund documents book tax alike.
pub(crate) fn book_tax(
    config: &MappingConfig,
    refs: &ResolvedRefs,
    tax: Money,
    description: &str,
) -> Result<(Option<Line>, Option<TxnTaxDetail>), MappingError> {
    let inv = &config.invoice;
    match inv.tax.mode {
        TaxMode::Line if !tax.is_zero() => {
            let name = inv
                .tax
                .item
                .as_deref()
                .ok_or(MappingError::MissingTaxItem)?;
            let line = Line::sales(
                tax,
                Some(description.into()),
                SalesItemLineDetail {
                    item_ref: refs.item_ref(name)?,
                    class_ref: refs.class_ref(&inv.default_class)?,
                    unit_price: Some(tax.amount().normalize()),
                    qty: Some(Decimal::ONE),
                    ..Default::default()
                },
            );
            Ok((Some(line), None))
        }
        // `auto` is decided per company before a document is laid out (`books::tax`); if it
        // ever reaches here, the override is the side that never lets QuickBooks add tax.
        TaxMode::TxnDetail | TaxMode::Vat | TaxMode::Auto => Ok((
            None,
            Some(TxnTaxDetail {
                txn_tax_code_ref: None,
                total_tax: Some(tax),
            }),
        )),
        _ => Ok((None, None)),
    }
}

/// For a VAT/GST company ([`TaxMode::Vat`]): puts the mapped `TaxCodeRef` on every sales line
/// and answers the document's `GlobalTaxCalculation`; other modes leave the lines alone.
/// BigCommerce order lines carry no tax class name, so every line takes the `default` code.
pub(crate) fn tax_codes(
    config: &MappingConfig,
    refs: &ResolvedRefs,
    lines: &mut [Line],
) -> Result<Option<String>, MappingError> {
    if config.invoice.tax.mode != TaxMode::Vat {
        return Ok(None);
    }
    let tax = &config.invoice.tax;
    let name = tax
        .code_for(None)
        .ok_or_else(|| MappingError::MissingTaxCode {
            class: "the order's lines (BigCommerce names no tax class on them)".into(),
        })?;
    let id = refs
        .tax_codes
        .get(name)
        .ok_or_else(|| MappingError::UnknownTaxCode {
            name: name.to_string(),
        })?;
    for l in lines.iter_mut() {
        if let Some(d) = l.sales_item_line_detail.as_mut() {
            d.tax_code_ref = Some(Ref {
                value: id.clone(),
                name: Some(name.to_string()),
            });
        }
    }
    Ok(crate::books::tax::global_tax_calculation(tax.mode).map(str::to_string))
}
