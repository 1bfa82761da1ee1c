//! End-to-end test support for ml-connector.
//!
//! - [`env`]: the real component (built by `build.rs`) in the real harness, in-process, against
//!   the BigCommerce and QuickBooks simulators ([`env::TestEnv`]), and polling helpers.
//! - [`process`]: the real `ml-harness` binary as a subprocess, configured with `SPIN_VARIABLE_*`.
//! - [`wit_check`]: checks of the built component's imports and signatures against `wit/`.
//! - [`faulty_kv`]: a KV backend that "dies" at a chosen write (crash-after-create tests).
//! - [`redis`]: a real `redis-server` on a free loopback port, for the Redis backend and the
//!   scale-out tests (and every e2e test with `ML_E2E_KV=redis`).

pub mod env;
pub mod faulty_kv;
pub mod process;
pub mod redis;
pub mod wit_check;
