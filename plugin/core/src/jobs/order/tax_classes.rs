//! The BigCommerce tax class of an order's lines, for a VAT/GST company's per-line
//! `TaxCodeRef` (CONTRACT §11, `invoice.tax.codes`).
//!
//! BigCommerce names no tax class on an order's products; its tax rows do
//! (`GET /v2/orders/{id}/taxes?details=true`: `class`, with `order_product_id` and
//! `line_item_type`). They are read only when the company books VAT/GST — one extra call per
//! order run (more only past 250 rows) — and never for a US company.

use crate::books::mapping::{MappingConfig, TaxMode};
use crate::host::Host;
use crate::models::bigcommerce::{self, Order, OrderId, TaxClasses};
use crate::sync::failure::{Failure, Service};
use crate::sync::upstream::Upstreams;

/// Pages of tax rows read at most (250 rows each).
const MAX_TAX_PAGES: u32 = 20;

/// Fills `order.tax_classes` when `config` (already decided for the company) books VAT/GST.
pub fn attach_tax_classes(
    host: &mut dyn Host,
    up: &Upstreams,
    config: &MappingConfig,
    order: &mut Order,
) -> Result<(), Failure> {
    if config.invoice.tax.mode != TaxMode::Vat || order.tax_classes.is_some() {
        return Ok(());
    }
    let bc = &up.bc;
    let mut rows = Vec::new();
    for page in 1..=MAX_TAX_PAGES {
        let resp = up.bc_send(
            host,
            &bigcommerce::order_taxes(
                &bc.api_base,
                &bc.store_hash,
                &bc.access_token,
                OrderId(order.id.0),
                page,
            ),
        )?;
        let batch = bigcommerce::parse_order_taxes(&resp).map_err(|e| {
            Failure::unreadable(
                Service::BigCommerce,
                &format!("order {} tax rows ({e})", order.id),
            )
        })?;
        let full = batch.len() >= 250;
        rows.extend(batch);
        if !full {
            break;
        }
    }
    order.tax_classes = Some(TaxClasses::from_rows(&rows));
    Ok(())
}
