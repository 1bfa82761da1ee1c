//! The customer job: a BigCommerce customer kept in sync with its QuickBooks customer.
//!
//! The job re-reads the customer (the webhook only names it), finds or creates its QuickBooks
//! customer through [`resolve::find_or_create`] — the same matching the order job uses — and
//! writes only when the mapped customer changed since the last write. A deleted BigCommerce
//! customer makes its QuickBooks customer inactive (QuickBooks never deletes customers, and
//! invoices keep pointing at it); the link is kept.

use serde_json::{Value, json};

use crate::books::customer::{self, CustomerSource};
use crate::host::Host;
use crate::jobs::Done;
use crate::models::bigcommerce::{self, CustomerId};
use crate::sync::failure::{Failure, FailureKind};
use crate::sync::record::SyncRecord;
use crate::sync::resolve::{self, CustomerLink, Matched};
use crate::sync::store;
use crate::sync::upstream::{QboFailure, Upstreams, id_and_token};

/// The webhook scope of a deleted customer.
pub const DELETED_SCOPE: &str = "store/customer/deleted";

fn qf(e: QboFailure) -> Failure {
    e.failure
}

/// Runs the customer job for `rec`.
pub fn run(
    host: &mut dyn Host,
    up: &Upstreams,
    rec: &mut SyncRecord,
    replay: bool,
) -> Result<Done, Failure> {
    let id: u64 = rec.id.parse().ok().filter(|id| *id > 0).ok_or_else(|| {
        Failure::mapping(&format!("'{}' is not a BigCommerce customer id", rec.id))
    })?;
    let key = resolve::link_key(&CustomerSource {
        bc_customer_id: Some(id),
        ..CustomerSource::default()
    });
    // Whatever the event says, BigCommerce decides: a `deleted` webhook is only believed once
    // the customer is gone there too (anyone holding the webhook secret could send one).
    let fetched = fetch(host, up, id)?;
    let now = host.now();
    let Some(raw) = fetched else {
        rec.note(
            "fetched",
            json!({"found": false, "note": "deleted in BigCommerce"}),
            now,
        );
        return deactivate(host, up, rec, &key, replay);
    };
    if rec.last_scope.as_deref() == Some(DELETED_SCOPE) {
        rec.note(
            "not_deleted",
            json!({"note": "a customer/deleted event arrived, but BigCommerce still has the customer: it is synced as it is, not deactivated"}),
            now,
        );
    }
    if let Some(group) = raw.get("customer_group_id").and_then(Value::as_u64) {
        // Orders of this customer read their group from here (see `store::CustomerGroup`);
        // a failed write only costs such an order a read of the customer.
        let at = host.now();
        let _ = store::cache_set(
            host,
            &store::customer_group_key(id),
            &store::CustomerGroup { group, at },
        );
    }
    let source = CustomerSource::from_v3_customer(&raw);
    let digest = customer::source_digest(&source);
    rec.note(
        "fetched",
        json!({"found": true, "digest": digest, "addresses": address_count(&raw)}),
        now,
    );

    let (link, matched) = resolve::find_or_create(host, up, &source, false).map_err(qf)?;
    let now = host.now();
    rec.note(
        "matched",
        json!({"qbo_id": link.qbo_id, "matched_by": matched.as_str(), "display_name": link.display_name, "inactive": link.inactive}),
        now,
    );
    if matched == Matched::Created {
        let requestid = resolve::create_request_id(&source, &link.display_name);
        return Ok(Done::Posted {
            qbo_id: link.qbo_id,
            sync_token: link.sync_token,
            requestid: Some(requestid),
            digest,
        });
    }
    if !replay && !link.inactive && link.digest == digest {
        let done = unchanged(rec, &link, digest.clone());
        if done != Done::Unchanged {
            // `jobs::run::finish` marks a plain `Unchanged`; this one also records the link.
            rec.note(
                "unchanged",
                json!({"digest": digest, "note": "nothing relevant changed; no QuickBooks call"}),
                now,
            );
        }
        return Ok(done);
    }
    update(host, up, rec, &key, &source, &link, digest)
}

fn address_count(raw: &Value) -> usize {
    raw.get("addresses")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

/// The customer with its addresses, or `None` when BigCommerce no longer has it (absent from
/// the list, or a 404).
fn fetch(host: &mut dyn Host, up: &Upstreams, id: u64) -> Result<Option<Value>, Failure> {
    let bc = &up.bc;
    let resp = match up.bc_send(
        host,
        &bigcommerce::customers_by_ids(
            &bc.api_base,
            &bc.store_hash,
            &bc.access_token,
            &[CustomerId(id)],
        ),
    ) {
        Ok(resp) => resp,
        Err(f) if f.kind == FailureKind::NotFound => return Ok(None),
        Err(f) => return Err(f),
    };
    // Parsed twice: the typed form checks the shape, the raw form feeds the mapping.
    bigcommerce::parse_customers(&resp).map_err(|e| {
        Failure::mapping(&format!(
            "BigCommerce customer {id} is unreadable ({e}); replay it once fixed"
        ))
    })?;
    let body: Value = up.bc_decode(&resp, "customer list")?;
    Ok(body
        .get("data")
        .and_then(Value::as_array)
        .and_then(|list| {
            list.iter()
                .find(|c| c.get("id").and_then(Value::as_u64) == Some(id))
        })
        .cloned())
}

/// Nothing to write. The record still learns the link when it did not carry it yet (the
/// customer was created for an order first).
fn unchanged(rec: &SyncRecord, link: &CustomerLink, digest: String) -> Done {
    if rec.qbo_id.as_deref() == Some(link.qbo_id.as_str())
        && rec.qbo_sync_token.as_deref() == Some(link.sync_token.as_str())
    {
        Done::Unchanged
    } else {
        Done::Posted {
            qbo_id: link.qbo_id.clone(),
            sync_token: link.sync_token.clone(),
            requestid: None,
            digest,
        }
    }
}

/// Sparse-updates the linked customer to `source`. Its DisplayName stays unless the name
/// itself changed; then the contract's candidates are tried again, past any 6240.
fn update(
    host: &mut dyn Host,
    up: &Upstreams,
    rec: &mut SyncRecord,
    key: &str,
    source: &CustomerSource,
    link: &CustomerLink,
    digest: String,
) -> Result<Done, Failure> {
    let candidates = source.display_name_candidates();
    // A customer adopted by a match (empty digest) keeps the name its owner gave it.
    let renamed = !link.digest.is_empty() && !candidates.contains(&link.display_name);
    let names: Vec<Option<String>> = if renamed {
        resolve::display_names_to_try(source)
            .into_iter()
            .map(Some)
            .collect()
    } else {
        vec![None]
    };
    let mut last = None;
    for name in names {
        let mut fields =
            customer::customer_payload_named(source, name.as_deref().unwrap_or_default());
        if let (None, Some(m)) = (&name, fields.as_object_mut()) {
            m.remove("DisplayName");
        }
        if link.inactive {
            fields["Active"] = json!(true);
        }
        let label = name.clone().unwrap_or_default();
        match resolve::sparse_update(
            host,
            up,
            &link.qbo_id,
            &link.sync_token,
            &fields,
            &[&digest, &label],
        ) {
            Ok((updated, rid)) => {
                let (qbo_id, sync_token) = id_and_token(&updated);
                let display_name = updated
                    .get("DisplayName")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or(name)
                    .unwrap_or_else(|| link.display_name.clone());
                let fresh = CustomerLink {
                    qbo_id: qbo_id.clone(),
                    sync_token: sync_token.clone(),
                    display_name,
                    digest: digest.clone(),
                    inactive: false,
                };
                resolve::save_link(host, key, &fresh).map_err(qf)?;
                let now = host.now();
                rec.note(
                    "updated",
                    json!({"qbo_id": qbo_id, "display_name": fresh.display_name, "renamed": renamed, "reactivated": link.inactive}),
                    now,
                );
                return Ok(Done::Posted {
                    qbo_id,
                    sync_token,
                    requestid: Some(rid),
                    digest,
                });
            }
            Err(e) if e.has_code("6240") && renamed => last = Some(e),
            Err(e) => return Err(e.failure),
        }
    }
    Err(last.map(qf).unwrap_or_else(|| {
        Failure::mapping("no DisplayName could be chosen for the renamed customer")
    }))
}

/// The BigCommerce customer is gone: its QuickBooks customer becomes inactive, the link stays.
fn deactivate(
    host: &mut dyn Host,
    up: &Upstreams,
    rec: &mut SyncRecord,
    key: &str,
    replay: bool,
) -> Result<Done, Failure> {
    let Some(link) = resolve::load_link(host, key) else {
        return Ok(Done::Skipped(
            "customer deleted before it was synced".into(),
        ));
    };
    let digest = customer::content_digest(&json!({"Id": link.qbo_id, "Active": false}));
    let now = host.now();
    if link.inactive && !replay {
        rec.note(
            "deactivated",
            json!({"qbo_id": link.qbo_id, "note": "already inactive; no QuickBooks call"}),
            now,
        );
        return Ok(unchanged(rec, &link, digest));
    }
    let (updated, rid) = resolve::sparse_update(
        host,
        up,
        &link.qbo_id,
        &link.sync_token,
        &json!({"Active": false}),
        &["deactivate"],
    )
    .map_err(qf)?;
    let (qbo_id, sync_token) = id_and_token(&updated);
    let fresh = CustomerLink {
        sync_token: sync_token.clone(),
        inactive: true,
        ..link
    };
    resolve::save_link(host, key, &fresh).map_err(qf)?;
    let now = host.now();
    rec.note(
        "deactivated",
        json!({"qbo_id": qbo_id, "note": "deleted in BigCommerce: the QuickBooks customer is now inactive (kept, with its link)"}),
        now,
    );
    Ok(Done::Posted {
        qbo_id,
        sync_token,
        requestid: Some(rid),
        digest,
    })
}
