//! Jobs: what happens to one entity under its lease, from webhook to posted QuickBooks
//! document (order, customer; later payment, refund), the scheduler entry points that run them
//! (`run`), and bulk work: the backfill, the sweep and the paced queue they fill (`bulk`),
//! plus webhook registration (`hooks`).
//!
//! May import: `sync`, `books`, `models` and the base modules.

use crate::host::{Host, KvError};
use crate::sync::record::{State, SyncRecord};
use crate::sync::store;

pub mod backfill;
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

/// A job's record and the state last saved, so a save files it under the right counts.
pub(crate) struct Job {
    pub(crate) rec: SyncRecord,
    pub(crate) saved_state: Option<State>,
}

impl Job {
    pub(crate) fn save(&mut self, host: &mut dyn Host) -> Result<(), KvError> {
        store::save_record(host, &self.rec, self.saved_state)?;
        self.saved_state = Some(self.rec.state);
        Ok(())
    }
}
