//! The invoice layout: lines, discounts, charges, tax, addresses, `DocNumber` and the
//! `PrivateNote` marker — and the rounding residue that makes the total tie to the cent.

use rust_decimal::Decimal;

use crate::books::mapping::config::{DOC_NUMBER_MAX, MappingConfig, NOTE_MARKER_PREFIX, TaxMode};
use crate::books::mapping::currency::order_currency;
use crate::books::mapping::dates::{StoreFacts, txn_date};
use crate::books::mapping::error::MappingError;
use crate::books::mapping::lines::{
    discount_account_name, discount_by_class, fit_unit_price, price_parts,
};
use crate::books::mapping::plan::{
    OrderContext, ResolvedRefs, Target, charges, is_gift_certificate, is_skipped, line_target,
    order_discount,
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

/// Builds the invoice for an order dated in UTC with no store facts (see [`build_invoice_for`]).
pub fn build_invoice(
    config: &MappingConfig,
    ctx: &OrderContext,
    refs: &ResolvedRefs,
    customer_ref: &str,
) -> Result<InvoiceDraft, MappingError> {
    build_invoice_for(config, ctx, refs, customer_ref, &StoreFacts::default())
}

/// Builds the invoice for an order of the store described by `store` (its time zone dates
/// the invoice, its default currency decides whether the order is foreign); see the module
/// docs for the money rules.
pub fn build_invoice_for(
    config: &MappingConfig,
    ctx: &OrderContext,
    refs: &ResolvedRefs,
    customer_ref: &str,
    store: &StoreFacts,
) -> Result<InvoiceDraft, MappingError> {
    let order = ctx.order;
    let inv_cfg = &config.invoice;
    let currency = order_currency(order, store)?;
    check_totals(order, ctx.lines)?;
    let doc_number = render_doc_number(&inv_cfg.doc_number, order)?;
    let txn_date = txn_date(
        order.date_created.ok_or(MappingError::MissingOrderDate)?,
        &store.zone,
    );

    let item_ref = |name: &str| refs.item_ref(name);
    let class_ref = |name: &Option<String>| refs.class_ref(name);
    // A VAT/GST company and a tax-inclusive store: each line also states its amount with tax.
    let inclusive = inv_cfg.tax.mode == TaxMode::Vat && order.is_tax_inclusive_pricing;
    let inc = |amount: Money| inclusive.then(|| amount.round_cents().amount().normalize());
    let classes = order.tax_classes.as_ref();

    // Product lines.
    let mut lines: Vec<Line> = Vec::new();
    // The BigCommerce tax class of each line in `lines` (VAT/GST companies: its `TaxCodeRef`).
    let mut line_classes: Vec<Option<String>> = Vec::new();
    let mut rounded_terms = 0usize;
    // Lines of gift certificates sold: a liability, never given a rounding residue.
    let mut liability_lines: Vec<usize> = Vec::new();
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
        let desc = describe(l);
        let class = class_ref(&class)?;
        let parts = price_parts(l.quantity, amount);
        // One part: BigCommerce's own inc-tax amount; a split line leaves it to QuickBooks.
        let inc_amt = if parts.len() == 1 {
            inc(l.total_inc_tax)
        } else {
            None
        };
        let tax_class = classes.and_then(|c| c.products.get(&l.id).cloned());
        for part in parts {
            if is_gift_certificate(l) {
                liability_lines.push(lines.len());
            }
            line_classes.push(tax_class.clone());
            lines.push(Line::sales(
                part.amount,
                Some(desc.clone()),
                SalesItemLineDetail {
                    item_ref: item.clone(),
                    class_ref: class.clone(),
                    unit_price: Some(part.unit_price),
                    qty: Some(part.qty),
                    tax_code_ref: None,
                    service_date: None,
                    tax_inclusive_amt: inc_amt,
                },
            ));
        }
        rounded_terms += 1;
    }
    let product_lines = lines.len();

    // Shipping, handling, wrapping, fees.
    for c in charges(config, order) {
        let amount = c.amount.round_cents();
        line_classes.push(c.tax_class);
        lines.push(Line::sales(
            amount,
            Some(c.description),
            SalesItemLineDetail {
                item_ref: item_ref(&c.item)?,
                class_ref: class_ref(&inv_cfg.default_class)?,
                unit_price: Some(amount.amount().normalize()),
                qty: Some(Decimal::ONE),
                tax_inclusive_amt: inc(c.inc_tax),
                ..Default::default()
            },
        ));
        rounded_terms += 1;
    }

    // One discount line for coupons + manual discount, or one negative line per class when the
    // discounted lines carry several (CONTRACT §11).
    let mut discount = order_discount(order).round_cents();
    let desc = match (
        order.coupon_discount.is_zero(),
        order.discount_amount.is_zero(),
    ) {
        (false, true) => "Coupon discount",
        (true, false) => "Order discount",
        _ => "Coupon and order discounts",
    };
    if let Some(split) = discount_by_class(config, ctx)? {
        let account = discount_account_name(config);
        let item = refs
            .account_items
            .get(&account)
            .map(|id| Ref::id(id.clone()))
            .ok_or_else(|| MappingError::UnknownAccount {
                name: account.clone(),
            })?;
        let discounted_class = common_tax_class(ctx);
        for (class, share) in split {
            let amount = -share;
            line_classes.push(discounted_class.clone());
            lines.push(Line::sales(
                amount,
                Some(match &class {
                    Some(c) => format!("{desc} ({c})"),
                    None => desc.to_string(),
                }),
                SalesItemLineDetail {
                    item_ref: item.clone(),
                    class_ref: class_ref(&class)?,
                    unit_price: Some(amount.amount().normalize()),
                    qty: Some(Decimal::ONE),
                    ..Default::default()
                },
            ));
        }
        // Now among the sales lines.
        discount = Money::ZERO;
        rounded_terms += 1;
    }
    if !discount.is_zero() {
        let account = match &inv_cfg.discount {
            None => None,
            Some(d) => Some(Ref::id(refs.discount_account.clone().ok_or_else(|| {
                MappingError::UnknownDiscountAccount {
                    name: d.account.clone(),
                }
            })?)),
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
        // The largest product line (or largest sales line) whose quantity has a price for its
        // new amount takes the residue; its unit price is recomputed so Qty × UnitPrice still
        // equals Amount and its quantity stays true. Among equal amounts the first line wins.
        let mut order_of: Vec<usize> = (0..product_lines)
            .filter(|i| !liability_lines.contains(i))
            .collect();
        let mut others: Vec<usize> = (product_lines..lines.len())
            .filter(|i| {
                lines[*i].sales_item_line_detail.is_some() && lines[*i].amount > Money::ZERO
            })
            .collect();
        order_of.sort_by(|a, b| lines[*b].amount.cmp(&lines[*a].amount));
        others.sort_by(|a, b| lines[*b].amount.cmp(&lines[*a].amount));
        order_of.extend(others);
        let fitted = order_of.into_iter().find_map(|i| {
            let d = lines[i].sales_item_line_detail.as_ref()?;
            let amount = lines[i].amount + residue;
            fit_unit_price(d.qty.unwrap_or(Decimal::ONE), amount).map(|u| (i, amount, u))
        });
        let Some((i, amount, u)) = fitted else {
            return Err(MappingError::NothingToInvoice);
        };
        let line = &mut lines[i];
        line.amount = amount;
        if let Some(d) = line.sales_item_line_detail.as_mut() {
            d.unit_price = Some(u);
            // No tax was charged, so the amount with tax moves with the amount.
            d.tax_inclusive_amt = d.tax_inclusive_amt.map(|t| t + residue.amount());
        }
    }

    let (tax_line, txn_tax_detail) = book_tax(config, refs, tax, "Sales tax (BigCommerce)")?;
    lines.extend(tax_line);
    let global_tax_calculation = tax_codes(config, refs, &mut lines, &line_classes, inclusive)?;
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
        exchange_rate: currency.as_ref().and_then(|c| c.exchange_rate),
        currency_ref: currency.map(|c| Ref::id(c.code)),
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

/// The tax class every discounted product line shares (the class a discount split by class
/// is taxed under), or `None` when they differ or none is known (the `default` code).
fn common_tax_class(ctx: &OrderContext) -> Option<String> {
    let classes = ctx.order.tax_classes.as_ref()?;
    let mut seen: Option<&String> = None;
    for l in ctx
        .lines
        .iter()
        .filter(|l| !is_skipped(l) && !is_gift_certificate(l))
    {
        let c = classes.products.get(&l.id)?;
        match seen {
            Some(s) if s != c => return None,
            _ => seen = Some(c),
        }
    }
    seen.cloned()
}

/// For a VAT/GST company ([`TaxMode::Vat`]): puts on every sales line the `TaxCodeRef` its
/// BigCommerce tax class maps to (`classes[i]` for `lines[i]`; `tax.codes`, falling back to
/// `default`; a line whose class BigCommerce does not name takes `default`) and answers the
/// document's `GlobalTaxCalculation` (`TaxInclusive` for a tax-inclusive store). Other modes
/// leave the lines alone.
pub(crate) fn tax_codes(
    config: &MappingConfig,
    refs: &ResolvedRefs,
    lines: &mut [Line],
    classes: &[Option<String>],
    inclusive: bool,
) -> Result<Option<String>, MappingError> {
    if config.invoice.tax.mode != TaxMode::Vat {
        return Ok(None);
    }
    let tax = &config.invoice.tax;
    for (i, l) in lines.iter_mut().enumerate() {
        let Some(d) = l.sales_item_line_detail.as_mut() else {
            continue;
        };
        let class = classes.get(i).and_then(Option::as_deref);
        let name = tax
            .code_for(class)
            .ok_or_else(|| MappingError::MissingTaxCode {
                class: match class {
                    Some(c) => format!("the BigCommerce tax class '{c}'"),
                    None => "lines whose BigCommerce tax class is not named".into(),
                },
            })?;
        let id = refs
            .tax_codes
            .get(name)
            .ok_or_else(|| MappingError::UnknownTaxCode {
                name: name.to_string(),
            })?;
        d.tax_code_ref = Some(Ref {
            value: id.clone(),
            name: Some(name.to_string()),
        });
    }
    Ok(crate::books::tax::global_tax_calculation(tax.mode, inclusive).map(str::to_string))
}
