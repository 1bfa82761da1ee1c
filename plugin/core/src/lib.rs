//! ml-core: everything in ml-connector that decides, and nothing that performs I/O.
#![allow(clippy::result_large_err)] // `Failure` carries explanations; errors are rare, so their size does not matter.
//!
//! No WASI bindings, no sockets, no files and no clock reads live here: modules take their
//! inputs — including the current time — as arguments, and the jobs that sequence them talk
//! to the outside world only through the [`host::Host`] port, which the component implements
//! with WASI calls and unit tests implement with an in-memory fake on a simulated clock.
//!
//! The crate is layered; imports point down only (checked by `tests/layers.rs`):
//!
//! - [`routes`]: the HTTP surface (webhooks, admin, OAuth, status).
//! - [`jobs`]: what happens to one entity (order, customer) and the scheduler.
//! - [`sync`]: records and their state machine, failures, retries, KV layout, leases, the
//!   QuickBooks connection, upstream calls, name resolution.
//! - [`books`]: pure bookkeeping decisions (mapping rules, invoice layout, tie-out, customer
//!   naming).
//! - [`models`]: wire formats (BigCommerce, QuickBooks, webhook envelope, OAuth tokens, money).
//! - base, at the crate root: [`host`] (the port), [`http`] (request/response values),
//!   [`secret`], [`crypto`], [`settings`] and, for tests, `testing`.
//!
//! See `ARCHITECTURE.md` at the repository root for the map.

pub mod books;
pub mod jobs;
pub mod models;
pub mod routes;
pub mod sync;

pub mod crypto;
pub mod host;
pub mod http;
pub mod secret;
pub mod settings;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
