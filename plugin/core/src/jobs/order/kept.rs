//! The order a run read before it failed retryably, kept for its retry (`keep/order/{id}`),
//! so the retry costs no second read; the sweep's note that BigCommerce changed it since
//! (`keep/order/{id}/changed`) makes the retry read it again.

use super::*;

/// Kept for this run's own retry when it fails after the read (a throttled or failed
/// QuickBooks call): the retry then costs no second read of the order.
pub(super) fn keepable_raw(fetched: &FetchedOrder) -> Option<Value> {
    fetched
        .order
        .consignments
        .is_some()
        .then(|| fetched.raw.clone())
}

pub(super) fn settle_kept(
    host: &mut dyn Host,
    job: &Job,
    id: u64,
    raw: Option<Value>,
    replay: bool,
    result: &Result<Done, Failure>,
) {
    match (result, raw) {
        (Err(f), Some(raw)) if f.is_retryable() => keep_order(host, &job.rec, id, raw),
        // A retry or replay that ends for good: what an earlier run kept is done with.
        (Err(f), _) if f.is_retryable() => {}
        _ if job.due || replay => forget_kept_order(host, id),
        _ => {}
    }
}

/// Where a run that failed after reading its order keeps it for its retry.
pub fn kept_order_key(id: u64) -> String {
    format!("keep/order/{id}")
}

/// Most bytes of an order kept for a retry; a larger one is read again.
pub(super) const MAX_KEPT_ORDER_BYTES: usize = 64 * 1024;

/// An order as a failed run read it, with the newest event its record had then.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct KeptOrder {
    event: Option<String>,
    raw: Value,
}

pub(super) fn keep_order(
    host: &mut dyn Host,
    rec: &crate::sync::record::SyncRecord,
    id: u64,
    raw: Value,
) {
    let kept = KeptOrder {
        event: rec.recent_hashes.last().cloned(),
        raw,
    };
    let Ok(bytes) = serde_json::to_vec(&kept) else {
        return;
    };
    if bytes.len() <= MAX_KEPT_ORDER_BYTES {
        // Not kept only costs the retry a read.
        let _ = host.kv_set(&kept_order_key(id), &bytes);
    }
}

/// Where the sweep notes that BigCommerce changed an order whose record waits for a retry.
pub(super) fn changed_key(id: u64) -> String {
    format!("keep/order/{id}/changed")
}

/// Drops a kept order once its retry no longer needs it.
pub(super) fn forget_kept_order(host: &mut dyn Host, id: u64) {
    let _ = host.kv_delete_many(&[&kept_order_key(id), &changed_key(id)]);
}

/// The sweep saw order `id` changed at `modified` while its record waits for a retry (or
/// runs): a kept copy older than that is never reused, whenever it was kept, so the retry
/// reads the change. Without a date, the kept copy is dropped.
pub fn note_changed(host: &mut dyn Host, id: u64, modified: Option<DateTime<Utc>>) {
    match modified {
        Some(m) => {
            let _ = host.kv_set(&changed_key(id), m.to_rfc3339().as_bytes());
        }
        None => forget_kept_order(host, id),
    }
}

/// The order kept by the failed run this retry follows — only while no event arrived since
/// (a webhook, or the sweep queueing a change, makes the retry read the order again).
pub(super) fn kept_order(
    host: &mut dyn Host,
    rec: &crate::sync::record::SyncRecord,
    id: u64,
) -> Option<FetchedOrder> {
    let bytes = host.kv_get(&kept_order_key(id)).ok().flatten()?;
    let kept: KeptOrder = serde_json::from_slice(&bytes).ok()?;
    if kept.event != rec.recent_hashes.last().cloned() {
        return None;
    }
    let order: Order = serde_json::from_value(kept.raw.clone()).ok()?;
    order.consignments.as_ref()?;
    if let Some(changed) = host.kv_get(&changed_key(id)).ok().flatten() {
        let changed = std::str::from_utf8(&changed)
            .ok()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        match (changed, order.date_modified) {
            (Some(c), Some(m)) if m >= c => {}
            _ => return None,
        }
    }
    let lines = bigcommerce::line_items(&order);
    Some(FetchedOrder {
        raw: kept.raw,
        order,
        lines,
    })
}
