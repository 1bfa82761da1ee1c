//! Models: the wire formats the connector reads and writes — BigCommerce and QuickBooks API
//! models with their request builders, the webhook envelope and its authentication, OAuth
//! token sets, and the exact [`money::Money`] type every amount on the wire is read into.
//!
//! May import: the base modules only (`http`, `secret`, `crypto`, `host`, `settings`).
//! Holds no business decisions beyond reading and writing the formats faithfully.

pub mod bigcommerce;
pub mod money;
pub mod quickbooks;
pub mod token;
pub mod webhook;
