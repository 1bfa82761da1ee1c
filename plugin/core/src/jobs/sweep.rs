//! The sweep (CONTRACT §8): finding orders and customers that changed in BigCommerce while no
//! webhook reached the connector (a hook BigCommerce deactivated, a delivery lost) and queueing
//! them for the same job a webhook would have run.
//!
//! Every `sweep_interval_seconds` (default 300, `0` = off) a slice lists
//! `/v2/orders?min_date_modified=…&sort=date_modified:asc` and
//! `/v3/customers?date_modified:min=…&sort=date_modified:asc` from the checkpoint minus
//! [`OVERLAP`], page by page, and queues each entity whose record is missing or finished before
//! its `date_modified` ([`crate::jobs::bulk::freshness`]). Unchanged entities cost nothing but
//! their share of a list page (250 per call).
//!
//! Paging is by date (keyset): the next page starts at the last page's newest date (less a
//! second, in case BigCommerce's minimum is exclusive), skipping what was already seen at that
//! date, so an order modified during the sweep cannot shift a page and hide another. A run is
//! saved after every page and resumes after a restart; the checkpoint moves only past pages
//! fully queued, and to the run's start once both lists are done.
//!
//! The first checkpoint is the moment the connector first runs a slice (history is the
//! backfill's job). KV: `sweep/state`, written by the slice holding `lease/bulk`.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::host::{Host, KvError, LogLevel};
use crate::jobs::bulk::{self, Batch, Freshness, Item, Listing, Source};
use crate::jobs::{backfill, order};
use crate::models::bigcommerce::{self, OrderListQuery, OrderSort, PAGE_LIMIT};
use crate::settings;
use crate::sync::failure::{self, Failure, Retryability, Service};
use crate::sync::pace;
use crate::sync::record::Entity;
use crate::sync::store;
use crate::sync::upstream;

const STATE_KEY: &str = "sweep/state";
/// How far before the checkpoint each sweep starts listing (changes recorded late, clocks).
pub const OVERLAP: Duration = Duration::seconds(120);

/// Where one list (orders or customers) of a sweep run is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListCursor {
    /// The `min` date filter of the next page.
    pub min: DateTime<Utc>,
    /// The page at that minimum (more than one only when a whole page shares one date).
    pub page: u32,
    /// `(id, date_modified)` already handled at or after `min`.
    #[serde(default)]
    pub seen: Vec<(u64, i64)>,
    #[serde(default)]
    pub done: bool,
}

impl ListCursor {
    fn new(min: DateTime<Utc>) -> ListCursor {
        ListCursor {
            min,
            page: 1,
            seen: Vec::new(),
            done: false,
        }
    }

    /// Whether a listed row was handled already in this run.
    pub fn has_seen(&self, id: u64, modified: Option<DateTime<Utc>>) -> bool {
        let ts = modified.map_or(0, |m| m.timestamp());
        self.seen.contains(&(id, ts))
    }

    /// Moves past a listed page of `(id, date_modified)` rows; `full` says whether more may follow.
    pub fn advance(&mut self, rows: &[(u64, Option<DateTime<Utc>>)], full: bool) {
        if !full {
            self.done = true;
            return;
        }
        let newest = rows.iter().filter_map(|(_, m)| *m).max();
        let next_min = newest.map(|n| n - Duration::seconds(1));
        match next_min {
            Some(min) if min > self.min => {
                self.min = min;
                self.page = 1;
                self.seen = rows
                    .iter()
                    .filter(|(_, m)| m.is_some_and(|m| m >= min))
                    .map(|(id, m)| (*id, m.map_or(0, |m| m.timestamp())))
                    .collect();
            }
            // The whole page sits at the minimum: take the next page at the same minimum.
            _ => {
                self.page += 1;
                for (id, m) in rows {
                    let key = (*id, m.map_or(0, |m| m.timestamp()));
                    if !self.seen.contains(&key) {
                        self.seen.push(key);
                    }
                }
            }
        }
    }
}

/// A sweep in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepRun {
    pub id: String,
    pub started_at: DateTime<Utc>,
    pub queued: u64,
    pub orders: ListCursor,
    pub customers: ListCursor,
}

/// The sweep's durable state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepState {
    /// Changes up to here are queued (each run lists from here minus [`OVERLAP`]).
    pub checkpoint: DateTime<Utc>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub queued_last_run: u64,
    /// Orders and customers the sweep queued since the connector first ran: changes no
    /// webhook announced.
    pub missed_total: u64,
    #[serde(default)]
    pub run: Option<SweepRun>,
    #[serde(default)]
    pub error: Option<String>,
}

fn load(host: &mut dyn Host) -> Result<Option<SweepState>, KvError> {
    store::cache_get(host, STATE_KEY)
}

fn save(host: &mut dyn Host, s: &SweepState) -> Result<(), KvError> {
    store::cache_set(host, STATE_KEY, s)
}

fn interval(host: &mut dyn Host) -> Option<Duration> {
    match settings::sweep_interval(host) {
        Ok(secs) => secs.map(|s| Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 2000))),
        Err(e) => {
            host.log(
                LogLevel::Warn,
                &format!("{e}; the sweep uses the default of 300 s"),
            );
            Some(Duration::seconds(
                settings::DEFAULT_SWEEP_INTERVAL_SECONDS as i64,
            ))
        }
    }
}

/// Sets the first checkpoint (now) if the connector never ran a slice before.
pub fn initialize(host: &mut dyn Host) -> Result<(), KvError> {
    if load(host)?.is_none() {
        let now = host.now();
        save(
            host,
            &SweepState {
                checkpoint: now,
                last_run_at: None,
                queued_last_run: 0,
                missed_total: 0,
                run: None,
                error: None,
            },
        )?;
    }
    Ok(())
}

/// Whether a slice should run for the sweep (first run, a run in progress, or one due).
pub fn is_due(host: &mut dyn Host, now: DateTime<Utc>) -> Result<bool, KvError> {
    let Some(every) = interval(host) else {
        return Ok(false);
    };
    Ok(match load(host)? {
        None => true,
        Some(s) => s.run.is_some() || now - s.last_run_at.unwrap_or(s.checkpoint) >= every,
    })
}

/// Lists one page of the sweep (starting a run when one is due), or finishes the run.
pub fn step(host: &mut dyn Host) -> Result<Listing, KvError> {
    let Some(every) = interval(host) else {
        return Ok(Listing::Nothing);
    };
    let now = host.now();
    initialize(host)?;
    let Some(mut state) = load(host)? else {
        return Ok(Listing::Nothing);
    };
    let mut run = match state.run.take() {
        Some(run) => run,
        None if now - state.last_run_at.unwrap_or(state.checkpoint) >= every => {
            let from = state.checkpoint - OVERLAP;
            SweepRun {
                id: format!("sw-{}", now.timestamp_millis()),
                started_at: now,
                queued: 0,
                orders: ListCursor::new(from),
                customers: ListCursor::new(from),
            }
        }
        None => return Ok(Listing::Nothing),
    };
    let listed = if !run.orders.done {
        Some(orders_page(host, &mut run))
    } else if !run.customers.done {
        Some(customers_page(host, &mut run))
    } else {
        None
    };
    match listed {
        Some(Ok(())) => {
            // Only pages fully queued move the checkpoint.
            let position = match (run.orders.done, run.customers.done) {
                (false, _) => run.orders.min,
                (true, false) => run.customers.min.min(run.started_at),
                (true, true) => run.started_at,
            };
            state.checkpoint = state.checkpoint.max(position);
            state.error = None;
            state.run = Some(run);
            save(host, &state)?;
            Ok(Listing::Listed)
        }
        Some(Err(f)) => {
            if let Retryability::Retryable { min_delay } = f.retryable {
                let wait = min_delay
                    .and_then(|d| Duration::from_std(d).ok())
                    .unwrap_or(Duration::seconds(30));
                pace::pause_bigcommerce(host, now + wait)?;
            }
            state.error = Some(format!(
                "the sweep could not list changes (it tries again on the next retry-due): {}",
                failure::explain(&f)
            ));
            state.run = Some(run);
            save(host, &state)?;
            Ok(Listing::Nothing)
        }
        None => {
            state.checkpoint = state.checkpoint.max(run.started_at);
            state.last_run_at = Some(now);
            state.queued_last_run = run.queued;
            state.missed_total += run.queued;
            state.run = None;
            save(host, &state)?;
            Ok(Listing::Nothing)
        }
    }
}

fn orders_page(host: &mut dyn Host, run: &mut SweepRun) -> Result<(), Failure> {
    let storage = |e: KvError| Failure::storage(&e.to_string());
    let up = upstream::upstreams(host)?;
    let query = OrderListQuery {
        min_date_modified: Some(run.orders.min),
        sort: OrderSort::ModifiedAsc,
        page: run.orders.page,
        ..OrderListQuery::default()
    };
    let request = bigcommerce::orders_page(
        &up.bc.api_base,
        &up.bc.store_hash,
        &up.bc.access_token,
        &query,
    );
    let resp = up.bc_send(host, &request)?;
    let rows = bigcommerce::parse_order_list(&resp)
        .map_err(|e| Failure::unreadable(Service::BigCommerce, &format!("an order list ({e})")))?;
    let mut items = Vec::new();
    for row in &rows {
        if run.orders.has_seen(row.id.0, row.date_modified) {
            continue;
        }
        let record =
            store::load_record(host, Entity::Order, &row.id.to_string()).map_err(storage)?;
        let posted = record.as_ref().is_some_and(|r| r.qbo_id.is_some());
        let freshness = bulk::freshness(record.as_ref(), row.date_modified);
        if freshness == Freshness::InProgress {
            // Changed while its record waits for a retry: the retry must read the change,
            // not reuse the order its failed run kept.
            order::note_changed(host, row.id.0, row.date_modified);
        }
        if backfill::eligibility(row, posted) && freshness == Freshness::Stale {
            items.push(Item {
                id: row.id.0,
                modified: row.date_modified.map(|m| m.timestamp()),
            });
        }
    }
    queue(host, run, Entity::Order, &items).map_err(storage)?;
    let keys: Vec<(u64, Option<DateTime<Utc>>)> =
        rows.iter().map(|r| (r.id.0, r.date_modified)).collect();
    run.orders.advance(&keys, rows.len() >= PAGE_LIMIT as usize);
    Ok(())
}

fn customers_page(host: &mut dyn Host, run: &mut SweepRun) -> Result<(), Failure> {
    let storage = |e: KvError| Failure::storage(&e.to_string());
    let up = upstream::upstreams(host)?;
    let request = bigcommerce::customers_modified_page(
        &up.bc.api_base,
        &up.bc.store_hash,
        &up.bc.access_token,
        run.customers.min,
        run.customers.page,
    );
    let resp = up.bc_send(host, &request)?;
    let page = bigcommerce::parse_customer_list(&resp).map_err(|e| {
        Failure::unreadable(Service::BigCommerce, &format!("a customer list ({e})"))
    })?;
    let mut items = Vec::new();
    for row in &page.rows {
        if row.id.0 == 0 || run.customers.has_seen(row.id.0, row.date_modified) {
            continue;
        }
        let record =
            store::load_record(host, Entity::Customer, &row.id.to_string()).map_err(storage)?;
        if bulk::freshness(record.as_ref(), row.date_modified) == Freshness::Stale {
            items.push(Item {
                id: row.id.0,
                modified: row.date_modified.map(|m| m.timestamp()),
            });
        }
    }
    queue(host, run, Entity::Customer, &items).map_err(storage)?;
    let keys: Vec<(u64, Option<DateTime<Utc>>)> = page
        .rows
        .iter()
        .map(|r| (r.id.0, r.date_modified))
        .collect();
    run.customers.advance(&keys, page.has_more(PAGE_LIMIT));
    Ok(())
}

fn queue(
    host: &mut dyn Host,
    run: &mut SweepRun,
    entity: Entity,
    items: &[Item],
) -> Result<(), KvError> {
    if items.is_empty() {
        return Ok(());
    }
    let cursor = match entity {
        Entity::Order => &run.orders,
        Entity::Customer => &run.customers,
    };
    bulk::enqueue(
        host,
        &Batch {
            source: Source::Sweep,
            run: run.id.clone(),
            entity,
            page: format!("{entity}/{}/{}", cursor.min.timestamp(), cursor.page),
            items: items.to_vec(),
        },
    )?;
    run.queued += items.len() as u64;
    Ok(())
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The `sweep` section of `GET /admin/status`.
pub fn status(host: &mut dyn Host) -> Value {
    let every = interval(host);
    match load(host) {
        Ok(state) => {
            let s = state.as_ref();
            json!({
                "enabled": every.is_some(),
                "interval_seconds": every.map(|d| d.num_seconds()),
                "last_run_at": s.and_then(|s| s.last_run_at).map(rfc3339),
                "checkpoint": s.map(|s| rfc3339(s.checkpoint)),
                "queued_last_run": s.map_or(0, |s| s.queued_last_run),
                "missed_total": s.map_or(0, |s| s.missed_total),
                "running": s.is_some_and(|s| s.run.is_some()),
                "error": s.and_then(|s| s.error.clone()),
            })
        }
        Err(e) => json!({"enabled": every.is_some(), "error": format!("{e}; look again shortly")}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_cursor_moves_to_the_newest_date_less_a_second_and_remembers_what_it_saw_there() {
        let mut c = ListCursor::new(t("2026-03-01T00:00:00Z"));
        let rows = vec![
            (1, Some(t("2026-03-01T00:00:10Z"))),
            (2, Some(t("2026-03-01T00:00:19Z"))),
            (3, Some(t("2026-03-01T00:00:20Z"))),
        ];
        c.advance(&rows, true);
        assert_eq!(c.min, t("2026-03-01T00:00:19Z"));
        assert_eq!(c.page, 1);
        assert!(c.has_seen(2, Some(t("2026-03-01T00:00:19Z"))));
        assert!(c.has_seen(3, Some(t("2026-03-01T00:00:20Z"))));
        assert!(!c.has_seen(1, Some(t("2026-03-01T00:00:10Z"))));
        // Modified again since: a new change, not a repeat.
        assert!(!c.has_seen(3, Some(t("2026-03-01T00:05:00Z"))));
        c.advance(&[], false);
        assert!(c.done);
    }

    #[test]
    fn a_full_page_at_one_date_moves_to_the_next_page_at_that_date() {
        let at = t("2026-03-01T00:00:00Z");
        let mut c = ListCursor::new(at - Duration::seconds(1));
        let rows: Vec<_> = (1..=3).map(|id| (id, Some(at))).collect();
        c.advance(&rows, true);
        assert_eq!((c.min, c.page), (at - Duration::seconds(1), 2));
        let more: Vec<_> = (4..=6).map(|id| (id, Some(at))).collect();
        c.advance(&more, true);
        assert_eq!(c.page, 3);
        assert_eq!(c.seen.len(), 6);
    }
}
