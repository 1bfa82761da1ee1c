//! Strict simulators of BigCommerce and QuickBooks Online for tests and the demo.
//!
//! Each simulator is a real HTTP server on `127.0.0.1:0`. Both share [`control`]: fault
//! injection (fail the next N calls to a path, add latency, hang until the client gives up)
//! and a request log, usable in-process and over a small `/_sim/*` control API.
//! Anything a simulator does not recognise is answered with a loud error naming the request,
//! so a wrong URL fails a test instead of hanging it.

pub mod bigcommerce;
pub mod control;
pub mod quickbooks;
