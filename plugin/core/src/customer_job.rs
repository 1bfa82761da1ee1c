//! The customer job: a BigCommerce customer kept in sync with its QuickBooks customer.

use crate::host::Host;
use crate::job::Done;
use crate::record::{Failure, SyncRecord};
use crate::upstream::Upstreams;

/// Runs the customer job for `rec`.
pub fn run(_host: &mut dyn Host, _up: &Upstreams, _rec: &mut SyncRecord, _replay: bool) -> Result<Done, Failure> {
    Err(Failure::mapping("customer sync is being built"))
}
