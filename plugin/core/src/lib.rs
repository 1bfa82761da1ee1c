//! ml-core: everything in ml-connector that decides, and nothing that performs I/O.
#![allow(clippy::result_large_err)] // `Failure` carries explanations; errors are rare, so their size does not matter.
//!
//! No WASI bindings, no sockets, no files and no clock reads live here. Pure modules
//! (`webhook`, `mapping`, `money`, `token`, `record`, `crypto`, the API models) take their
//! inputs — including the current time — as arguments. The jobs that sequence them (`job`)
//! talk to the outside world only through the [`host::Host`] port, which the component
//! implements with WASI calls and unit tests implement with an in-memory fake on a
//! simulated clock.

pub mod app;
pub mod bigcommerce;
pub mod connection;
pub mod console;
pub mod crypto;
pub mod customer;
pub mod customer_job;
pub mod host;
pub mod http;
pub mod job;
pub mod mapping;
pub mod money;
pub mod oauth;
pub mod quickbooks;
pub mod record;
pub mod resolve;
pub mod secret;
pub mod settings;
pub mod status;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod token;
pub mod upstream;
pub mod webhook;
