//! Routes: the connector's HTTP surface (CONTRACT §3) — the router with webhook intake and
//! the admin API (`router`), the QuickBooks OAuth flow (`oauth`), `GET /admin/status`
//! (`status`), the backfill and webhook-registration routes (`bulk`) and the ops console's
//! embedded files (`console`, CONTRACT §10).
//!
//! May import: every lower layer (`jobs`, `sync`, `books`, `models`, base). Routes decide what
//! a request answers and what work it leaves behind; the work itself is a job.

pub mod bulk;
pub mod console;
pub mod oauth;
pub mod router;
pub mod status;
