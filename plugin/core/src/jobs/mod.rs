//! Jobs: what happens to one entity under its lease, from webhook to posted QuickBooks
//! document (order, customer; later payment, refund, backfill, sweep), and the scheduler
//! entry points that run them (`run`).
//!
//! May import: `sync`, `books`, `models` and the base modules.

pub mod customer;
pub mod run;
