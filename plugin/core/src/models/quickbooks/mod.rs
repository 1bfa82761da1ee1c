//! QuickBooks Online API models, request builders and fault parsing.
//!
//! Field names are the exact PascalCase names of Intuit's XSDs (`Finance.xsd`), and the models
//! carry only fields QuickBooks accepts on writes: an unknown property is fault 2010, so
//! read-only fields (`TotalAmt`, `Balance`, `MetaData`…) are read but never sent.
//!
//! Files: [`entities`] (the models), [`response`] (faults and decoding), [`query`](mod@query) (query
//! statements), [`request`] (request builders and request ids).

pub mod batch;
pub mod entities;
pub mod query;
pub mod request;
pub mod response;

pub use batch::*;
pub use entities::*;
pub use query::*;
pub use request::*;
pub use response::*;

#[cfg(test)]
mod tests;
