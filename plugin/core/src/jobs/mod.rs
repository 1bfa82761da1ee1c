//! Jobs: what happens to one entity under its lease, from webhook to posted QuickBooks
//! document (order, customer; later payment, refund), the scheduler entry points that run them
//! (`run`), and bulk work: the backfill, the sweep and the paced queue they fill (`bulk`),
//! plus webhook registration (`hooks`).
//!
//! May import: `sync`, `books`, `models` and the base modules.

use crate::host::Host;
use crate::sync::lease::{LeaseError, SharedLease};
use crate::sync::record::{State, SyncRecord};
use crate::sync::store;

pub mod backfill;
pub mod batch;
pub mod bulk;
pub mod customer;
pub mod hooks;
pub mod order;
pub mod run;
pub mod sweep;

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    Posted {
        qbo_id: String,
        sync_token: String,
        requestid: Option<String>,
        digest: String,
    },
    Unchanged,
    Skipped(String),
}

/// A job's record, the state last saved (so a save files it under the right counts), and the
/// entity lease the job runs under.
pub(crate) struct Job {
    pub(crate) rec: SyncRecord,
    pub(crate) saved_state: Option<State>,
    pub(crate) lease: Option<SharedLease>,
    /// The run is the record's own retry (the scheduler found it due), not a new event or a
    /// replay: it may reuse the order kept by the run that failed (`order::kept_order`).
    pub(crate) due: bool,
}

impl Job {
    /// Saves the record — only after renewing the lease proves it is still ours, so a worker
    /// that outlived its lease never overwrites the record of the one that took over.
    pub(crate) fn save(&mut self, host: &mut dyn Host) -> Result<(), LeaseError> {
        let writes = self.save_later(host)?;
        Ok(store::write_together(host, writes)?)
    }

    /// [`Job::save`], except that the record's write is handed back for the caller to make at
    /// once, with the writes that give back what the job held (`store::save_record_later`).
    pub(crate) fn save_later(
        &mut self,
        host: &mut dyn Host,
    ) -> Result<Vec<store::Write>, LeaseError> {
        if let Some(lease) = &self.lease {
            lease.borrow_mut().ensure(host)?;
        }
        let writes = store::save_record_later(host, &self.rec, self.saved_state)?;
        self.saved_state = Some(self.rec.state);
        Ok(writes)
    }
}
