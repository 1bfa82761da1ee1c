//! ml-harness: a wasmtime host for the ml-connector component.
//!
//! It runs the same `.wasm` that Spin runs, from the same `spin.toml`: HTTP in and out
//! (`wasi:http`, outbound limited to the manifest's `allowed_outbound_hosts`), key-value
//! storage (`wasi:keyvalue` store + atomics + batch over an embedded SQLite file, or a shared
//! Redis named in a Spin runtime config file) and configuration
//! (`wasi:config` from the manifest's variables and `SPIN_VARIABLE_*`). It binds only the
//! standard interfaces Spin ships, so nothing here is something the component could come to
//! depend on by accident.

pub mod cli;
pub mod config;
pub mod deadline;
pub mod demo;
pub mod kv;
pub mod manifest;
pub mod outbound;
pub mod runtime_config;
pub mod server;
mod state;
pub mod wasm_target;

pub use state::HostState;

/// Host bindings generated from `wit/world.wit` (world `host-services`).
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "ml:connector/host-services",
        imports: {
            // Storage may wait on disk or network: those host functions are async, so a
            // backend never blocks the workers that run instances.
            "wasi:keyvalue/store": async | trappable,
            "wasi:keyvalue/atomics": async | trappable,
            "wasi:keyvalue/batch": async | trappable,
            default: trappable,
        },
        with: {
            "wasi:keyvalue/store.bucket": crate::kv::Bucket,
            "wasi:keyvalue/atomics.cas": crate::kv::Cas,
        },
    });
}
