//! Sync: keeping one BigCommerce entity and its QuickBooks counterpart in step — sync records
//! and their state machine, failure classification, the retry schedule, the KV layout and
//! leases, the QuickBooks connection (sealed tokens, refresh), classified upstream calls and
//! name resolution.
//!
//! May import: `books`, `models` and the base modules.

pub mod company;
pub mod connection;
pub mod customers;
pub mod failure;
pub mod lease;
pub mod limiter;
pub mod names;
pub mod pace;
pub mod record;
pub mod resolve;
pub mod retry;
pub mod store;
pub mod upstream;
