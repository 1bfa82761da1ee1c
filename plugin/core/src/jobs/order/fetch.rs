//! Reading an order from BigCommerce: the order with its lines, the catalog facts the mapping
//! rules need, and the customer's group (trusted from the cache for a returning customer).

use super::*;

/// An order fetched from BigCommerce with what mapping needs.
pub struct FetchedOrder {
    pub raw: Value,
    pub order: Order,
    pub lines: Vec<OrderProduct>,
}

/// Fetches the order with its line items: one request in the common case.
pub fn fetch_order(host: &mut dyn Host, up: &Upstreams, id: u64) -> Result<FetchedOrder, Failure> {
    let bc = &up.bc;
    let resp = up.bc_send(
        host,
        &bigcommerce::order_with_line_items(
            &bc.api_base,
            &bc.store_hash,
            &bc.access_token,
            OrderId(id),
        ),
    )?;
    let raw: Value = up.bc_decode(&resp, "order")?;
    let order: Order = up.bc_decode(&resp, "order")?;
    let mut lines = bigcommerce::line_items(&order);
    if order.consignments.is_none() {
        // An older store without consignments: the line items are a separate, paged resource.
        lines.clear();
        for page in 1..=MAX_LINE_PAGES + 1 {
            if page > MAX_LINE_PAGES {
                return Err(Failure::unreadable(
                    Service::BigCommerce,
                    &format!(
                        "order {id} has more than {} line items (every page came back full): the \
                         connector reads at most that many; check the order in BigCommerce",
                        MAX_LINE_PAGES * 250
                    ),
                ));
            }
            let resp = up.bc_send(
                host,
                &bigcommerce::order_products(
                    &bc.api_base,
                    &bc.store_hash,
                    &bc.access_token,
                    OrderId(id),
                    page,
                ),
            )?;
            let batch = bigcommerce::parse_order_products(&resp).map_err(|e| {
                Failure::unreadable(Service::BigCommerce, &format!("order lines ({e})"))
            })?;
            let full = batch.len() >= 250;
            lines.extend(batch);
            if !full {
                break;
            }
        }
    }
    Ok(FetchedOrder { raw, order, lines })
}

/// Catalog data for the products a rule needs, cached per product.
pub(super) fn catalog(
    host: &mut dyn Host,
    up: &Upstreams,
    products: &[ProductId],
) -> Result<HashMap<ProductId, CatalogProduct>, Failure> {
    let mut out = HashMap::new();
    for &pid in products {
        let key = format!("cache/bc/product/{}", pid.0);
        if let Ok(Some(p)) = store::cache_get::<CatalogProduct>(host, &key) {
            out.insert(pid, p);
            continue;
        }
        let bc = &up.bc;
        let resp = up.bc_send(
            host,
            &bigcommerce::catalog_product(&bc.api_base, &bc.store_hash, &bc.access_token, pid),
        )?;
        let product = bigcommerce::parse_catalog_product(&resp).map_err(|e| {
            Failure::unreadable(Service::BigCommerce, &format!("product {} ({e})", pid.0))
        })?;
        let _ = store::cache_set(host, &key, &product);
        out.insert(pid, product);
    }
    Ok(out)
}

/// How long a cached customer group is trusted without a customer webhook or the sweep
/// refreshing it: a week (the sweep sees every changed customer within its interval, so this
/// only bounds how long a group changed while both were off can linger).
pub(super) const CUSTOMER_GROUP_MAX_AGE_S: i64 = 7 * 24 * 3600;

/// The customer's group: the one stored by the customer job or an earlier order (kept fresh by
/// customer webhooks and the sweep), else read from BigCommerce once and stored.
pub(super) fn customer_group(
    host: &mut dyn Host,
    up: &Upstreams,
    customer_id: u64,
) -> Result<Option<u64>, Failure> {
    let key = store::customer_group_key(customer_id);
    if let Ok(Some(c)) = store::cache_get::<store::CustomerGroup>(host, &key)
        && (host.now() - c.at).num_seconds() < CUSTOMER_GROUP_MAX_AGE_S
    {
        return Ok(Some(c.group));
    }
    let bc = &up.bc;
    let resp = up.bc_send(
        host,
        &bigcommerce::customers_by_ids(
            &bc.api_base,
            &bc.store_hash,
            &bc.access_token,
            &[bigcommerce::CustomerId(customer_id)],
        ),
    )?;
    let customers = bigcommerce::parse_customers(&resp).map_err(|e| {
        Failure::unreadable(
            Service::BigCommerce,
            &format!("customer {customer_id} ({e})"),
        )
    })?;
    let group = customers.first().map(|c| c.customer_group_id);
    if let Some(group) = group {
        let at = host.now();
        // A cache write that fails only costs a read next time.
        let _ = store::cache_set(host, &key, &store::CustomerGroup { group, at });
    }
    Ok(group)
}
