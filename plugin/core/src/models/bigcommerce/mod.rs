//! BigCommerce API models and request builders.
//!
//! The models accept what the API really sends (reference §3-4): money as strings or numbers,
//! `""`/`null`/`{}` for "no value", numbers as strings, extra keys. Every field has a default so
//! a missing key never fails a sync; decoding errors name the JSON path that failed.
//!
//! Files: [`entities`] (the models), [`lenient`] (field decoders), [`response`] (errors and
//! decoding), [`request`] (request builders), [`listing`] (order and customer lists by date, webhook
//! subscriptions).

pub mod entities;
pub mod lenient;
pub mod listing;
pub mod request;
pub mod response;

pub use entities::*;
pub use listing::*;
pub use request::*;
pub use response::*;

#[cfg(test)]
mod tests;
