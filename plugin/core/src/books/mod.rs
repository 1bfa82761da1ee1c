//! Books: pure bookkeeping decisions — mapping rules, the invoice/document layout, totals
//! tie-out, tax choices and customer naming. No host, no KV, no clock: data in, data out.
//!
//! May import: `models` and the base modules.

pub mod customer;
pub mod documents;
pub mod mapping;
pub mod tax;
