//! The compiled part of the `quorumkv` Python package: `quorumkv._native`.
//!
//! It calls the Rust API (`quorumkv::Node`) directly. Every call that may wait (a Raft
//! commit, an fsync, a linearizable read, a watch) releases the GIL; async calls run on
//! a runtime of this module and resolve asyncio futures through `Completer` (see aio.rs).
//! Errors map to the classes of `quorumkv/_errors.py` in one place (errors.rs), and
//! panics of the core are caught at the boundary and raised as `quorumkv.InternalError`.

mod aio;
mod bench;
mod errors;
mod lease;
mod node;
mod requests;
mod types;
mod watch;

use pyo3::prelude::*;

/// mimalloc for the module's Rust allocations (Python's own objects keep CPython's
/// allocator): results are allocated on the library's runtime threads and freed on
/// Python's, which glibc's malloc serialises on its arena locks.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The version of the quorumkv library this module was built with.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Whether this module was built without optimizations (`maturin develop` without
/// `--release`): its throughput is then several times lower.
#[pyfunction]
fn debug_build() -> bool {
    cfg!(debug_assertions)
}

/// Whether this module was built with `--cfg tokio_unstable` (the repository's
/// .cargo/config.toml), so the library runtime runs without tokio's LIFO slot.
#[pyfunction]
fn runtime_without_lifo_slot() -> bool {
    cfg!(tokio_unstable)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(debug_build, m)?)?;
    m.add_function(wrap_pyfunction!(runtime_without_lifo_slot, m)?)?;
    m.add_function(wrap_pyfunction!(bench::bench_rust, m)?)?;
    m.add_class::<node::PyNode>()?;
    m.add_class::<node::PyLocalNetwork>()?;
    m.add_class::<watch::PyWatch>()?;
    m.add_class::<lease::PyLease>()?;
    m.add_class::<aio::Completer>()?;
    m.add_class::<requests::Op>()?;
    m.add_class::<requests::Compare>()?;
    m.add_class::<requests::CompareOperand>()?;
    m.add_class::<types::Header>()?;
    m.add_class::<types::KeyValue>()?;
    m.add_class::<types::PutResult>()?;
    m.add_class::<types::RangeResult>()?;
    m.add_class::<types::DeleteResult>()?;
    m.add_class::<types::TxnResult>()?;
    m.add_class::<types::Member>()?;
    m.add_class::<types::Status>()?;
    m.add_class::<types::Event>()?;
    m.add_class::<types::LeaseTimeToLive>()?;
    Ok(())
}
