//! Argument conversion (bytes/str in) and the result classes (bytes out).
//!
//! Result objects keep the Rust values and build Python objects when a field is read, so
//! a result whose fields are never read costs one allocation.

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyString};
use pyo3::{Borrowed, IntoPyObjectExt};
use quorumkv as q;

use crate::errors::{invalid, invalid_type};

fn type_name(obj: &Borrowed<'_, '_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// A key or value: `bytes`, `bytearray`, `memoryview`-free; `str` is UTF-8 encoded.
pub struct Bytes(pub Vec<u8>);

impl<'a, 'py> FromPyObject<'a, 'py> for Bytes {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(Bytes(b.as_bytes().to_vec()));
        }
        if let Ok(s) = obj.cast::<PyString>() {
            return match s.to_cow() {
                Ok(s) => Ok(Bytes(s.as_bytes().to_vec())),
                Err(_) => Err(invalid(obj.py(), "str cannot be encoded as UTF-8")),
            };
        }
        if let Ok(b) = obj.cast::<PyByteArray>() {
            return Ok(Bytes(b.to_vec()));
        }
        Err(invalid_type(obj.py(), format!("expected bytes or str, got {}", type_name(&obj))))
    }
}

/// An integer (or anything with `__index__`, such as a `Lease`); not a bool.
pub struct Int(pub i64);

impl<'a, 'py> FromPyObject<'a, 'py> for Int {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if obj.is_instance_of::<pyo3::types::PyBool>() {
            return Err(invalid_type(obj.py(), "expected an int, got bool"));
        }
        if let Ok(v) = obj.extract::<i64>() {
            return Ok(Int(v));
        }
        if obj.is_instance_of::<pyo3::types::PyInt>() {
            return Err(invalid(obj.py(), "integer out of range (64 bits)"));
        }
        if let Ok(lease) = obj.cast::<crate::lease::PyLease>() {
            return Ok(Int(lease.get().id));
        }
        Err(invalid_type(obj.py(), format!("expected an int, got {}", type_name(&obj))))
    }
}

/// An unsigned integer (member ids).
pub struct UInt(pub u64);

impl<'a, 'py> FromPyObject<'a, 'py> for UInt {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if obj.is_instance_of::<pyo3::types::PyBool>() {
            return Err(invalid_type(obj.py(), "expected an int, got bool"));
        }
        if let Ok(v) = obj.extract::<u64>() {
            return Ok(UInt(v));
        }
        if obj.is_instance_of::<pyo3::types::PyInt>() {
            return Err(invalid(obj.py(), "expected an integer in 0..2**64"));
        }
        Err(invalid_type(obj.py(), format!("expected an int, got {}", type_name(&obj))))
    }
}

/// A bool (strictly `True` / `False`).
pub struct Flag(pub bool);

impl<'a, 'py> FromPyObject<'a, 'py> for Flag {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match obj.cast::<pyo3::types::PyBool>() {
            Ok(b) => Ok(Flag(b.is_true())),
            Err(_) => Err(invalid_type(obj.py(), format!("expected a bool, got {}", type_name(&obj)))),
        }
    }
}

/// A str (UTF-8).
pub struct Text(pub String);

impl<'a, 'py> FromPyObject<'a, 'py> for Text {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match obj.cast::<PyString>() {
            Ok(s) => match s.to_cow() {
                Ok(s) => Ok(Text(s.to_string())),
                Err(_) => Err(invalid(obj.py(), "str cannot be encoded as UTF-8")),
            },
            Err(_) => Err(invalid_type(obj.py(), format!("expected a str, got {}", type_name(&obj)))),
        }
    }
}

/// A list of str.
pub fn texts(py: Python<'_>, obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<String>> {
    if obj.is_instance_of::<PyString>() {
        return Err(invalid_type(py, format!("{what} must be a sequence of str, not a str")));
    }
    let iter = obj.try_iter().map_err(|_| invalid_type(py, format!("{what} must be a sequence of str")))?;
    iter.map(|item| item.and_then(|i| i.extract::<Text>().map(|t| t.0))).collect()
}

pub fn header(h: &q::ResponseHeader) -> Header {
    Header { cluster_id: h.cluster_id, member_id: h.member_id, revision: h.revision, raft_term: h.raft_term }
}

/// Returned with every response.
#[pyclass(module = "quorumkv._native", frozen, get_all, eq)]
#[derive(Clone, PartialEq)]
pub struct Header {
    pub cluster_id: u64,
    pub member_id: u64,
    pub revision: i64,
    pub raft_term: u64,
}

#[pymethods]
impl Header {
    fn __repr__(&self) -> String {
        format!(
            "Header(cluster_id={:#x}, member_id={:#x}, revision={}, raft_term={})",
            self.cluster_id, self.member_id, self.revision, self.raft_term
        )
    }
}

/// One key's state at one revision.
#[pyclass(module = "quorumkv._native", frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct KeyValue(pub q::KeyValue);

#[pymethods]
impl KeyValue {
    #[getter]
    fn key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.key)
    }
    #[getter]
    fn value<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.value)
    }
    #[getter]
    fn create_revision(&self) -> i64 {
        self.0.create_revision
    }
    #[getter]
    fn mod_revision(&self) -> i64 {
        self.0.mod_revision
    }
    #[getter]
    fn version(&self) -> i64 {
        self.0.version
    }
    #[getter]
    fn lease(&self) -> i64 {
        self.0.lease
    }
    fn __repr__(&self) -> String {
        format!(
            "KeyValue(key={}, value={}, create_revision={}, mod_revision={}, version={}, lease={})",
            bytes_repr(&self.0.key),
            bytes_repr(&self.0.value),
            self.0.create_revision,
            self.0.mod_revision,
            self.0.version,
            self.0.lease
        )
    }
}

fn bytes_repr(b: &[u8]) -> String {
    let mut s = String::from("b'");
    for &c in b.iter().take(64) {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\'' => s.push_str("\\'"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    if b.len() > 64 {
        s.push_str("...");
    }
    s.push('\'');
    s
}

pub fn kv_opt(py: Python<'_>, kv: &Option<q::KeyValue>) -> PyResult<Py<PyAny>> {
    kv_opt_owned(py, kv.clone())
}

/// [`kv_opt`] for a value the caller gives up (no copy of key and value).
pub fn kv_opt_owned(py: Python<'_>, kv: Option<q::KeyValue>) -> PyResult<Py<PyAny>> {
    match kv {
        Some(kv) => KeyValue(kv).into_py_any(py),
        None => Ok(py.None()),
    }
}

pub fn kv_list<'py>(py: Python<'py>, kvs: &[q::KeyValue]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, kvs.iter().map(|kv| KeyValue(kv.clone())))
}

/// Result of `put`.
#[pyclass(module = "quorumkv._native", frozen)]
pub struct PutResult(pub q::PutResponse);

#[pymethods]
impl PutResult {
    #[getter]
    fn header(&self) -> Header {
        header(&self.0.header)
    }
    #[getter]
    fn revision(&self) -> i64 {
        self.0.header.revision
    }
    #[getter]
    fn prev_kv(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        kv_opt(py, &self.0.prev_kv)
    }
    fn __repr__(&self) -> String {
        format!(
            "PutResult(revision={}, prev_kv={})",
            self.0.header.revision,
            if self.0.prev_kv.is_some() { "..." } else { "None" }
        )
    }
}

/// Result of `range`: iterable over its key-values.
#[pyclass(module = "quorumkv._native", frozen)]
pub struct RangeResult(pub q::RangeResponse);

#[pymethods]
impl RangeResult {
    #[getter]
    fn header(&self) -> Header {
        header(&self.0.header)
    }
    #[getter]
    fn kvs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        kv_list(py, &self.0.kvs)
    }
    #[getter]
    fn more(&self) -> bool {
        self.0.more
    }
    #[getter]
    fn count(&self) -> i64 {
        self.0.count
    }
    fn __len__(&self) -> usize {
        self.0.kvs.len()
    }
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(kv_list(py, &self.0.kvs)?.try_iter()?.into_any())
    }
    fn __repr__(&self) -> String {
        format!(
            "RangeResult(revision={}, kvs=<{} key-values>, more={}, count={})",
            self.0.header.revision,
            self.0.kvs.len(),
            if self.0.more { "True" } else { "False" },
            self.0.count
        )
    }
}

/// Result of `delete`.
#[pyclass(module = "quorumkv._native", frozen)]
pub struct DeleteResult(pub q::DeleteRangeResponse);

#[pymethods]
impl DeleteResult {
    #[getter]
    fn header(&self) -> Header {
        header(&self.0.header)
    }
    #[getter]
    fn deleted(&self) -> i64 {
        self.0.deleted
    }
    #[getter]
    fn prev_kvs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        kv_list(py, &self.0.prev_kvs)
    }
    fn __repr__(&self) -> String {
        format!("DeleteResult(revision={}, deleted={})", self.0.header.revision, self.0.deleted)
    }
}

/// Result of `txn`.
#[pyclass(module = "quorumkv._native", frozen)]
pub struct TxnResult(pub q::TxnResponse);

pub fn response_op(py: Python<'_>, op: &q::ResponseOp) -> PyResult<Py<PyAny>> {
    match op {
        q::ResponseOp::Range(r) => RangeResult(r.clone()).into_py_any(py),
        q::ResponseOp::Put(r) => PutResult(r.clone()).into_py_any(py),
        q::ResponseOp::DeleteRange(r) => DeleteResult(r.clone()).into_py_any(py),
        q::ResponseOp::Txn(r) => TxnResult(r.clone()).into_py_any(py),
    }
}

#[pymethods]
impl TxnResult {
    #[getter]
    fn header(&self) -> Header {
        header(&self.0.header)
    }
    #[getter]
    fn succeeded(&self) -> bool {
        self.0.succeeded
    }
    #[getter]
    fn responses<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self.0.responses.iter().map(|r| response_op(py, r)).collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }
    fn __bool__(&self) -> bool {
        self.0.succeeded
    }
    fn __repr__(&self) -> String {
        format!(
            "TxnResult(revision={}, succeeded={}, responses=<{}>)",
            self.0.header.revision,
            if self.0.succeeded { "True" } else { "False" },
            self.0.responses.len()
        )
    }
}

/// A cluster member.
#[pyclass(module = "quorumkv._native", frozen, get_all, eq)]
#[derive(Clone, PartialEq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_addrs: Vec<String>,
    pub client_addrs: Vec<String>,
    pub is_learner: bool,
}

impl From<q::Member> for Member {
    fn from(m: q::Member) -> Self {
        Member {
            id: m.id,
            name: m.name,
            peer_addrs: m.peer_addrs,
            client_addrs: m.client_addrs,
            is_learner: m.is_learner,
        }
    }
}

#[pymethods]
impl Member {
    fn __repr__(&self) -> String {
        format!(
            "Member(id={:#x}, name={:?}, peer_addrs={:?}, client_addrs={:?}, is_learner={})",
            self.id,
            self.name,
            self.peer_addrs,
            self.client_addrs,
            if self.is_learner { "True" } else { "False" }
        )
    }
}

/// A node's status (local, no network round).
#[pyclass(module = "quorumkv._native", frozen, get_all)]
pub struct Status {
    pub id: u64,
    pub name: String,
    pub cluster_id: u64,
    pub term: u64,
    pub leader: Option<u64>,
    pub is_leader: bool,
    pub is_learner: bool,
    pub has_leader: bool,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    pub revision: i64,
    pub compact_revision: i64,
    pub db_size_bytes: u64,
    pub watch_count: usize,
    pub leader_changes: u64,
    pub fatal_error: Option<String>,
}

impl From<q::NodeStatus> for Status {
    fn from(s: q::NodeStatus) -> Self {
        Status {
            id: s.id,
            name: s.name,
            cluster_id: s.cluster_id,
            term: s.term,
            leader: s.leader,
            is_leader: s.is_leader,
            is_learner: s.is_learner,
            has_leader: s.has_leader,
            commit_index: s.commit_index,
            applied_index: s.applied_index,
            last_log_index: s.last_log_index,
            revision: s.revision,
            compact_revision: s.compact_revision,
            db_size_bytes: s.db_size_bytes,
            watch_count: s.watch_count,
            leader_changes: s.leader_changes,
            fatal_error: s.fatal_error,
        }
    }
}

#[pymethods]
impl Status {
    fn __repr__(&self) -> String {
        format!(
            "Status(name={:?}, id={:#x}, leader={}, is_leader={}, term={}, revision={}, applied_index={})",
            self.name,
            self.id,
            self.leader.map_or("None".to_string(), |l| format!("{l:#x}")),
            if self.is_leader { "True" } else { "False" },
            self.term,
            self.revision,
            self.applied_index
        )
    }
}

/// One change of one key.
#[pyclass(module = "quorumkv._native", frozen)]
pub struct Event(pub q::Event);

#[pymethods]
impl Event {
    /// `"put"` or `"delete"`.
    #[getter]
    fn r#type(&self) -> &'static str {
        match self.0.kind {
            q::EventType::Put => "put",
            q::EventType::Delete => "delete",
        }
    }
    #[getter]
    fn kv(&self) -> KeyValue {
        KeyValue(self.0.kv.clone())
    }
    #[getter]
    fn key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.kv.key)
    }
    #[getter]
    fn value<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.kv.value)
    }
    #[getter]
    fn revision(&self) -> i64 {
        self.0.kv.mod_revision
    }
    #[getter]
    fn prev_kv(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        kv_opt(py, &self.0.prev_kv)
    }
    fn __repr__(&self) -> String {
        format!(
            "Event(type={:?}, key={}, revision={})",
            self.r#type(),
            bytes_repr(&self.0.kv.key),
            self.0.kv.mod_revision
        )
    }
}

/// Result of a lease time-to-live query.
#[pyclass(module = "quorumkv._native", frozen)]
pub struct LeaseTimeToLive(pub q::LeaseTimeToLiveResponse);

#[pymethods]
impl LeaseTimeToLive {
    #[getter]
    fn header(&self) -> Header {
        header(&self.0.header)
    }
    #[getter]
    fn id(&self) -> i64 {
        self.0.id
    }
    /// Seconds left; -1 when the lease does not exist (or expired).
    #[getter]
    fn ttl(&self) -> i64 {
        self.0.ttl
    }
    #[getter]
    fn granted_ttl(&self) -> i64 {
        self.0.granted_ttl
    }
    #[getter]
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.0.keys.iter().map(|k| PyBytes::new(py, k)))
    }
    fn __repr__(&self) -> String {
        format!(
            "LeaseTimeToLive(id={}, ttl={}, granted_ttl={}, keys=<{}>)",
            self.0.id,
            self.0.ttl,
            self.0.granted_ttl,
            self.0.keys.len()
        )
    }
}
