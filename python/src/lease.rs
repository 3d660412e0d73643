//! `quorumkv._native.Lease`: a granted lease, with background keep-alives.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use quorumkv as q;

use crate::errors::{core_error, wait};
use crate::types::{header, Header, LeaseTimeToLive};

/// A lease. `int(lease)` is its id, and a `Lease` may be passed wherever a lease id is.
/// As a context manager it is revoked on exit.
#[pyclass(module = "quorumkv._native", name = "Lease", frozen)]
pub struct PyLease {
    node: q::Node,
    pub id: i64,
    granted_ttl: i64,
    header: q::ResponseHeader,
    keep_alive: Mutex<Option<q::KeepAlive>>,
}

impl PyLease {
    pub fn new(node: q::Node, id: i64, granted_ttl: i64, header: q::ResponseHeader) -> Self {
        PyLease { node, id, granted_ttl, header, keep_alive: Mutex::new(None) }
    }

    fn stop_keep_alive_inner(&self) {
        if let Some(k) = self.keep_alive.lock().unwrap_or_else(|p| p.into_inner()).take() {
            k.stop();
        }
    }
}

#[pymethods]
impl PyLease {
    #[getter]
    fn id(&self) -> i64 {
        self.id
    }

    /// The TTL granted, seconds.
    #[getter]
    fn ttl(&self) -> i64 {
        self.granted_ttl
    }

    /// The header of the grant.
    #[getter]
    fn header(&self) -> Header {
        header(&self.header)
    }

    /// Whether background keep-alives run.
    #[getter]
    fn keeping_alive(&self) -> bool {
        self.keep_alive.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Starts renewing the lease in the background (every TTL/3) until `revoke()`,
    /// `stop_keep_alive()`, the lease's end, the node's stop, or this object is garbage
    /// collected. Idempotent. Raises `LeaseNotFoundError` if the lease is gone.
    fn keep_alive(&self, py: Python<'_>) -> PyResult<()> {
        if self.keeping_alive() {
            return Ok(());
        }
        let node = self.node.clone();
        let id = self.id;
        let k = wait(py, move || node.lease_keep_alive_stream_blocking(id))?;
        let mut slot = self.keep_alive.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(k);
        }
        Ok(())
    }

    /// Renews the lease once; returns the renewed TTL in seconds.
    fn keep_alive_once(&self, py: Python<'_>) -> PyResult<i64> {
        let node = self.node.clone();
        let id = self.id;
        Ok(wait(py, move || node.lease_keep_alive_blocking(id))?.ttl)
    }

    /// Stops the background keep-alives (the lease then expires after its TTL).
    fn stop_keep_alive(&self) {
        self.stop_keep_alive_inner();
    }

    /// Remaining TTL (-1 once gone), granted TTL and, with `keys=True`, the attached keys.
    #[pyo3(signature = (keys=crate::types::Flag(false)))]
    fn time_to_live(&self, py: Python<'_>, keys: crate::types::Flag) -> PyResult<LeaseTimeToLive> {
        let node = self.node.clone();
        let id = self.id;
        Ok(LeaseTimeToLive(wait(py, move || node.lease_time_to_live_blocking(id, keys.0))?))
    }

    /// Revokes the lease, deleting its keys in one revision; returns the header.
    fn revoke(&self, py: Python<'_>) -> PyResult<Header> {
        self.stop_keep_alive_inner();
        let node = self.node.clone();
        let id = self.id;
        Ok(header(&wait(py, move || node.lease_revoke_blocking(id))?.header))
    }

    fn __index__(&self) -> i64 {
        self.id
    }

    fn __int__(&self) -> i64 {
        self.id
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Revokes the lease unless it is already gone or the node stopped.
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        match self.revoke(py) {
            Ok(_) => Ok(false),
            Err(e) => {
                let gone = [q::Error::LeaseNotFound, q::Error::Stopped]
                    .iter()
                    .any(|g| e.get_type(py).is(core_error(py, g).get_type(py)));
                if gone {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    fn __repr__(&self) -> String {
        format!("Lease(id={}, ttl={})", self.id, self.granted_ttl)
    }
}
