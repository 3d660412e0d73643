//! The one mapping of `quorumkv::Error` (and of Rust panics) to Python exceptions.
//!
//! The exception classes are defined in Python (`quorumkv/_errors.py`, so they can also
//! derive from `ValueError`, `TypeError`, `TimeoutError`); this module looks them up once.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;
use quorumkv::Error;

/// What went wrong inside the binding: an error of the core, or a caught panic.
#[derive(Debug)]
pub enum Failure {
    /// An error returned by the Rust API.
    Core(Error),
    /// A panic caught at the boundary (a bug); raised as `quorumkv.InternalError`.
    Panic(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Core(e)
    }
}

impl Failure {
    pub fn into_pyerr(self, py: Python<'_>) -> PyErr {
        match self {
            Failure::Core(e) => core_error(py, &e),
            Failure::Panic(m) => raise(py, "InternalError", &format!("internal error (a Rust panic): {m}"), &[], None),
        }
    }
}

fn errors_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE.get_or_try_init(py, || py.import("quorumkv._errors").map(Bound::unbind)).map(|m| m.bind(py))
}

/// An attribute value set on an exception instance.
pub enum Attr {
    Int(i64),
    UInt(u64),
    OptUInt(Option<u64>),
}

/// Builds an instance of `quorumkv.<class>` with `message`, the Rust variant name as
/// `code`, `retryable`, and the given attributes.
pub fn raise(py: Python<'_>, class: &str, message: &str, attrs: &[(&str, Attr)], code: Option<(&str, bool)>) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let cls = errors_module(py)?.getattr(class)?;
        let exc = cls.call1((message,))?;
        let (code, retryable) = code.unwrap_or((class, false));
        exc.setattr("code", code)?;
        exc.setattr("retryable", retryable)?;
        for (name, value) in attrs {
            match value {
                Attr::Int(v) => exc.setattr(*name, *v)?,
                Attr::UInt(v) => exc.setattr(*name, *v)?,
                Attr::OptUInt(v) => exc.setattr(*name, *v)?,
            }
        }
        Ok(PyErr::from_value(exc))
    };
    // Failing to build the exception (interpreter shutting down) is reported as is.
    build().unwrap_or_else(|e| e)
}

/// The Python exception of a core error.
pub fn core_error(py: Python<'_>, e: &Error) -> PyErr {
    use Attr::*;
    let msg = e.to_string();
    let (class, attrs): (&str, Vec<(&str, Attr)>) = match e {
        Error::EmptyKey
        | Error::KeyNotFound
        | Error::ValueProvided
        | Error::LeaseProvided
        | Error::DuplicateKey
        | Error::LeaseTtlTooLarge
        | Error::InvalidArgument(_) => ("InvalidArgumentError", vec![]),
        Error::TooManyOps { max } => ("InvalidArgumentError", vec![("max_ops", UInt(*max as u64))]),
        Error::RequestTooLarge { size_bytes, max_bytes } => (
            "RequestTooLargeError",
            vec![("size_bytes", UInt(*size_bytes as u64)), ("max_bytes", UInt(*max_bytes as u64))],
        ),
        Error::InvalidConfig(_) => ("InvalidConfigError", vec![]),
        Error::Compacted { compact_revision } => ("CompactedError", vec![("compact_revision", Int(*compact_revision))]),
        Error::FutureRevision => ("FutureRevisionError", vec![]),
        Error::LeaseNotFound => ("LeaseNotFoundError", vec![]),
        Error::LeaseExists => ("LeaseExistsError", vec![]),
        Error::NotLeader { leader } => ("NoLeaderError", vec![("leader", OptUInt(*leader))]),
        Error::NoLeader => ("NoLeaderError", vec![]),
        Error::Timeout => ("RequestTimeoutError", vec![]),
        Error::MemberNotFound => ("MemberNotFoundError", vec![]),
        Error::PeerAddrExists | Error::MemberNotLearner | Error::BadLeaderTransferee | Error::MembershipChange(_) => {
            ("MembershipError", vec![])
        }
        Error::ClusterMismatch { local, remote } => {
            ("ClusterMismatchError", vec![("local_cluster_id", UInt(*local)), ("remote_cluster_id", UInt(*remote))])
        }
        Error::Stopped => ("NodeStoppedError", vec![]),
        Error::DataDirLocked { .. } | Error::DataDirIncompatible { .. } | Error::DataDirCorrupted { .. } => {
            ("DataDirError", vec![])
        }
        Error::Storage(_) | Error::Fatal(_) => ("StorageError", vec![]),
        Error::Transport(_) => ("TransportError", vec![]),
        Error::Internal(_) => ("InternalError", vec![]),
        // The enum is non-exhaustive: a variant added later is at least a quorumkv.Error.
        _ => ("Error", vec![]),
    };
    let code = variant_name(e);
    raise(py, class, &msg, &attrs, Some((&code, e.is_retryable())))
}

/// `Compacted { .. }` -> `"Compacted"`.
fn variant_name(e: &Error) -> String {
    let debug = format!("{e:?}");
    debug.split(|c: char| !c.is_alphanumeric()).next().unwrap_or("Error").to_string()
}

/// `quorumkv.InvalidArgumentError(message)`.
pub fn invalid(py: Python<'_>, message: impl AsRef<str>) -> PyErr {
    raise(py, "InvalidArgumentError", message.as_ref(), &[], Some(("InvalidArgument", false)))
}

/// `quorumkv.InvalidTypeError(message)` (also a `TypeError`).
pub fn invalid_type(py: Python<'_>, message: impl AsRef<str>) -> PyErr {
    raise(py, "InvalidTypeError", message.as_ref(), &[], Some(("InvalidArgument", false)))
}

pub fn panic_message(p: Box<dyn Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Runs `f` (a call into the core that may wait) with the GIL released and panics caught.
pub fn wait<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> quorumkv::Result<T> + Send,
{
    let out = py.detach(|| catch_unwind(AssertUnwindSafe(f)));
    match out {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(core_error(py, &e)),
        Err(p) => Err(Failure::Panic(panic_message(p)).into_pyerr(py)),
    }
}

/// Runs `f` (a call into the core that never waits) with panics caught, GIL held.
pub fn guard<T>(py: Python<'_>, f: impl FnOnce() -> quorumkv::Result<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(core_error(py, &e)),
        Err(p) => Err(Failure::Panic(panic_message(p)).into_pyerr(py)),
    }
}
