//! The per-instance state every store carries, composed from the capabilities.
//!
//! Each capability (key-value, config, outbound HTTP) owns its context and knows nothing of
//! this type; this module puts them together and hands each its part when linking.

use wasmtime::StoreLimits;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::config::Variables;
use crate::kv::{KvCtx, KvView};
use crate::outbound::OutboundHooks;

/// Host state of one component instance (one incoming request).
pub struct HostState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundHooks,
    kv: KvCtx,
    variables: Variables,
    limits: StoreLimits,
}

impl HostState {
    /// A fresh state for one instance.
    pub(crate) fn new(
        wasi: WasiCtx,
        hooks: OutboundHooks,
        kv: KvCtx,
        variables: Variables,
        limits: StoreLimits,
    ) -> Self {
        HostState {
            table: ResourceTable::new(),
            wasi,
            http: WasiHttpCtx::new(),
            hooks,
            kv,
            variables,
            limits,
        }
    }

    /// The memory limiter wasmtime consults.
    pub(crate) fn limits(&mut self) -> &mut StoreLimits {
        &mut self.limits
    }

    fn kv(&mut self) -> KvView<'_> {
        KvView {
            ctx: &mut self.kv,
            table: &mut self.table,
        }
    }

    fn variables(&mut self) -> &mut Variables {
        &mut self.variables
    }

    /// Links every interface the component may import: WASI (cli, clocks, random, io...),
    /// `wasi:http`, and our key-value and config hosts.
    pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
        wasmtime_wasi::p2::add_to_linker_async(linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
        crate::kv::add_to_linker(linker, HostState::kv)?;
        crate::config::add_to_linker(linker, HostState::variables)?;
        Ok(())
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}
