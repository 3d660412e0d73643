//! Building requests from Python arguments; transaction operations and compares.

use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use quorumkv as q;

use crate::errors::{invalid, invalid_type};
use crate::types::{Bytes, Flag, Int, Text};

/// `[key, range_end)` from the etcd-style options (at most one of them).
pub fn key_range(
    py: Python<'_>,
    key: Vec<u8>,
    range_end: Option<Bytes>,
    prefix: bool,
    from_key: bool,
) -> PyResult<(Vec<u8>, Vec<u8>)> {
    let chosen = range_end.is_some() as u8 + prefix as u8 + from_key as u8;
    if chosen > 1 {
        return Err(invalid(py, "give at most one of range_end, prefix=True and from_key=True"));
    }
    if prefix {
        let r = q::RangeRequest::prefix(key);
        return Ok((r.key, r.range_end));
    }
    if from_key {
        let key = if key.is_empty() { vec![0] } else { key };
        return Ok((key, vec![0]));
    }
    Ok((key, range_end.map(|b| b.0).unwrap_or_default()))
}

fn sort_order(py: Python<'_>, s: Option<Text>) -> PyResult<q::SortOrder> {
    Ok(match s.as_ref().map(|t| t.0.to_ascii_lowercase()).as_deref() {
        None | Some("none") => q::SortOrder::None,
        Some("ascend") | Some("asc") => q::SortOrder::Ascend,
        Some("descend") | Some("desc") => q::SortOrder::Descend,
        Some(other) => {
            return Err(invalid(py, format!("sort_order {other:?}: expected 'none', 'ascend' or 'descend'")))
        }
    })
}

fn sort_target(py: Python<'_>, s: Option<Text>) -> PyResult<q::SortTarget> {
    Ok(match s.as_ref().map(|t| t.0.to_ascii_lowercase()).as_deref() {
        None | Some("key") => q::SortTarget::Key,
        Some("version") => q::SortTarget::Version,
        Some("create") | Some("create_revision") => q::SortTarget::Create,
        Some("mod") | Some("mod_revision") => q::SortTarget::Mod,
        Some("value") => q::SortTarget::Value,
        Some(other) => {
            return Err(invalid(
                py,
                format!("sort_target {other:?}: expected 'key', 'version', 'create', 'mod' or 'value'"),
            ))
        }
    })
}

/// The options of a range, as Python passes them.
pub struct RangeArgs {
    pub key: Bytes,
    pub range_end: Option<Bytes>,
    pub prefix: Flag,
    pub from_key: Flag,
    pub limit: Int,
    pub revision: Int,
    pub sort_order: Option<Text>,
    pub sort_target: Option<Text>,
    pub serializable: Flag,
    pub keys_only: Flag,
    pub count_only: Flag,
    pub min_mod_revision: Int,
    pub max_mod_revision: Int,
    pub min_create_revision: Int,
    pub max_create_revision: Int,
}

impl RangeArgs {
    pub fn build(self, py: Python<'_>) -> PyResult<q::RangeRequest> {
        let (key, range_end) = key_range(py, self.key.0, self.range_end, self.prefix.0, self.from_key.0)?;
        Ok(q::RangeRequest {
            key,
            range_end,
            limit: self.limit.0,
            revision: self.revision.0,
            sort_order: sort_order(py, self.sort_order)?,
            sort_target: sort_target(py, self.sort_target)?,
            serializable: self.serializable.0,
            keys_only: self.keys_only.0,
            count_only: self.count_only.0,
            min_mod_revision: self.min_mod_revision.0,
            max_mod_revision: self.max_mod_revision.0,
            min_create_revision: self.min_create_revision.0,
            max_create_revision: self.max_create_revision.0,
        })
    }
}

pub fn get_request(key: Bytes, serializable: Flag, revision: Int) -> q::RangeRequest {
    q::RangeRequest { serializable: serializable.0, revision: revision.0, ..q::RangeRequest::key(key.0) }
}

pub fn put_request(
    key: Bytes,
    value: Bytes,
    lease: Option<Int>,
    prev_kv: Flag,
    ignore_value: Flag,
    ignore_lease: Flag,
) -> q::PutRequest {
    q::PutRequest {
        key: key.0,
        value: value.0,
        lease: lease.map_or(0, |l| l.0),
        prev_kv: prev_kv.0,
        ignore_value: ignore_value.0,
        ignore_lease: ignore_lease.0,
    }
}

pub fn delete_request(
    py: Python<'_>,
    key: Bytes,
    range_end: Option<Bytes>,
    prefix: Flag,
    from_key: Flag,
    prev_kv: Flag,
) -> PyResult<q::DeleteRangeRequest> {
    let (key, range_end) = key_range(py, key.0, range_end, prefix.0, from_key.0)?;
    Ok(q::DeleteRangeRequest { key, range_end, prev_kv: prev_kv.0 })
}

/// A request the async entry point runs (and, for some kinds, a transaction operation).
#[derive(Clone)]
pub enum Request {
    Put(q::PutRequest),
    Range(q::RangeRequest),
    /// A range of one key, answered with the key-value or `None` when run alone.
    Get(q::RangeRequest),
    Delete(q::DeleteRangeRequest),
    Txn(q::TxnRequest),
    Compact(q::CompactionRequest),
    Grant(q::LeaseGrantRequest),
}

/// One operation: of a transaction (`Op.put`, `Op.get`, `Op.range`, `Op.delete`, `Op.txn`).
#[pyclass(module = "quorumkv._native", frozen)]
pub struct Op(pub Request);

impl Op {
    pub fn request_op(&self, py: Python<'_>) -> PyResult<q::RequestOp> {
        Ok(match &self.0 {
            Request::Put(r) => q::RequestOp::Put(r.clone()),
            Request::Range(r) | Request::Get(r) => q::RequestOp::Range(r.clone()),
            Request::Delete(r) => q::RequestOp::DeleteRange(r.clone()),
            Request::Txn(r) => q::RequestOp::Txn(r.clone()),
            Request::Compact(_) | Request::Grant(_) => {
                return Err(invalid(py, "compactions and lease grants cannot be part of a transaction"))
            }
        })
    }
}

/// A transaction request from Python sequences of `Compare` and `Op`.
pub fn txn_request(
    py: Python<'_>,
    compare: Option<&Bound<'_, PyAny>>,
    success: Option<&Bound<'_, PyAny>>,
    failure: Option<&Bound<'_, PyAny>>,
) -> PyResult<q::TxnRequest> {
    fn items<'py>(py: Python<'py>, seq: Option<&Bound<'py, PyAny>>, what: &str) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let Some(seq) = seq else { return Ok(Vec::new()) };
        if seq.is_none() {
            return Ok(Vec::new());
        }
        let iter = seq.try_iter().map_err(|_| invalid_type(py, format!("{what} must be a sequence")))?;
        iter.collect()
    }
    let compare = items(py, compare, "compare")?
        .iter()
        .map(|c| match c.cast::<Compare>() {
            Ok(c) => Ok(c.get().0.clone()),
            Err(_) => Err(invalid_type(py, "compare items must be Compare objects (Compare.value(key) == b'v', ...)")),
        })
        .collect::<PyResult<Vec<_>>>()?;
    let ops = |seq, what: &str| -> PyResult<Vec<q::RequestOp>> {
        items(py, seq, what)?
            .iter()
            .map(|o| match o.cast::<Op>() {
                Ok(o) => o.get().request_op(py),
                Err(_) => {
                    Err(invalid_type(py, format!("{what} items must be Op objects (Op.put(...), Op.get(...), ...)")))
                }
            })
            .collect()
    };
    Ok(q::TxnRequest { compare, success: ops(success, "success")?, failure: ops(failure, "failure")? })
}

#[pymethods]
impl Op {
    #[staticmethod]
    #[pyo3(signature = (key, value, *, lease=None, prev_kv=Flag(false), ignore_value=Flag(false), ignore_lease=Flag(false)))]
    fn put(key: Bytes, value: Bytes, lease: Option<Int>, prev_kv: Flag, ignore_value: Flag, ignore_lease: Flag) -> Op {
        Op(Request::Put(put_request(key, value, lease, prev_kv, ignore_value, ignore_lease)))
    }

    #[staticmethod]
    #[pyo3(signature = (key, *, serializable=Flag(false), revision=Int(0)))]
    fn get(key: Bytes, serializable: Flag, revision: Int) -> Op {
        Op(Request::Get(get_request(key, serializable, revision)))
    }

    #[staticmethod]
    #[pyo3(signature = (key=Bytes(Vec::new()), range_end=None, *, prefix=Flag(false), from_key=Flag(false),
        limit=Int(0), revision=Int(0), sort_order=None, sort_target=None, serializable=Flag(false),
        keys_only=Flag(false), count_only=Flag(false), min_mod_revision=Int(0), max_mod_revision=Int(0),
        min_create_revision=Int(0), max_create_revision=Int(0)))]
    #[allow(clippy::too_many_arguments)]
    fn range(
        py: Python<'_>,
        key: Bytes,
        range_end: Option<Bytes>,
        prefix: Flag,
        from_key: Flag,
        limit: Int,
        revision: Int,
        sort_order: Option<Text>,
        sort_target: Option<Text>,
        serializable: Flag,
        keys_only: Flag,
        count_only: Flag,
        min_mod_revision: Int,
        max_mod_revision: Int,
        min_create_revision: Int,
        max_create_revision: Int,
    ) -> PyResult<Op> {
        let args = RangeArgs {
            key,
            range_end,
            prefix,
            from_key,
            limit,
            revision,
            sort_order,
            sort_target,
            serializable,
            keys_only,
            count_only,
            min_mod_revision,
            max_mod_revision,
            min_create_revision,
            max_create_revision,
        };
        Ok(Op(Request::Range(args.build(py)?)))
    }

    #[staticmethod]
    #[pyo3(signature = (key, range_end=None, *, prefix=Flag(false), from_key=Flag(false), prev_kv=Flag(false)))]
    fn delete(
        py: Python<'_>,
        key: Bytes,
        range_end: Option<Bytes>,
        prefix: Flag,
        from_key: Flag,
        prev_kv: Flag,
    ) -> PyResult<Op> {
        Ok(Op(Request::Delete(delete_request(py, key, range_end, prefix, from_key, prev_kv)?)))
    }

    #[staticmethod]
    #[pyo3(signature = (compare=None, success=None, failure=None))]
    fn txn(
        py: Python<'_>,
        compare: Option<&Bound<'_, PyAny>>,
        success: Option<&Bound<'_, PyAny>>,
        failure: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Op> {
        Ok(Op(Request::Txn(txn_request(py, compare, success, failure)?)))
    }

    /// Private: a compaction for the async entry point.
    #[staticmethod]
    #[pyo3(signature = (revision, physical=Flag(false)))]
    fn _compact(revision: Int, physical: Flag) -> Op {
        Op(Request::Compact(q::CompactionRequest { revision: revision.0, physical: physical.0 }))
    }

    /// Private: a lease grant for the async entry point.
    #[staticmethod]
    #[pyo3(signature = (ttl, id=Int(0)))]
    fn _grant(ttl: Int, id: Int) -> Op {
        Op(Request::Grant(q::LeaseGrantRequest { ttl: ttl.0, id: id.0 }))
    }

    fn __repr__(&self) -> String {
        match &self.0 {
            Request::Put(r) => format!("Op.put({:?})", String::from_utf8_lossy(&r.key)),
            Request::Range(r) => format!("Op.range({:?})", String::from_utf8_lossy(&r.key)),
            Request::Get(r) => format!("Op.get({:?})", String::from_utf8_lossy(&r.key)),
            Request::Delete(r) => format!("Op.delete({:?})", String::from_utf8_lossy(&r.key)),
            Request::Txn(t) => format!("Op.txn(<{} compares>)", t.compare.len()),
            Request::Compact(c) => format!("Op._compact({})", c.revision),
            Request::Grant(g) => format!("Op._grant({})", g.ttl),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Value,
    Version,
    Create,
    Mod,
    Lease,
}

/// A transaction guard: `Compare.value(b"k") == b"v"`, `Compare.version(b"k") > 2`, ...
#[pyclass(module = "quorumkv._native", frozen)]
pub struct Compare(pub q::Compare);

/// The left side of a compare; compare it with `==`, `!=`, `<` or `>` to get a `Compare`.
#[pyclass(module = "quorumkv._native", frozen)]
pub struct CompareOperand {
    target: Target,
    key: Vec<u8>,
    range_end: Vec<u8>,
}

fn operand(
    py: Python<'_>,
    target: Target,
    key: Bytes,
    range_end: Option<Bytes>,
    prefix: Flag,
    from_key: Flag,
) -> PyResult<CompareOperand> {
    let (key, range_end) = key_range(py, key.0, range_end, prefix.0, from_key.0)?;
    Ok(CompareOperand { target, key, range_end })
}

/// `#[pymethods] impl Compare`: one constructor per compare target (`Compare.value(...)`,
/// `.version(...)`, ...), all taking a key or a range the same way, then `$rest`.
macro_rules! compare_methods {
    ($($name:ident => $target:ident),* ; $($rest:tt)*) => {
        #[pymethods]
        impl Compare {
            $(
                #[staticmethod]
                #[pyo3(signature = (key, range_end=None, *, prefix=Flag(false), from_key=Flag(false)))]
                fn $name(
                    py: Python<'_>,
                    key: Bytes,
                    range_end: Option<Bytes>,
                    prefix: Flag,
                    from_key: Flag,
                ) -> PyResult<CompareOperand> {
                    operand(py, Target::$target, key, range_end, prefix, from_key)
                }
            )*
            $($rest)*
        }
    };
}

compare_methods! {
    value => Value, version => Version, create_revision => Create, mod_revision => Mod, lease => Lease;

    fn __repr__(&self) -> String {
        let c = &self.0;
        let (name, operand) = match &c.target {
            q::CompareTarget::Value(v) => ("value", format!("{:?}", String::from_utf8_lossy(v))),
            q::CompareTarget::Version(v) => ("version", v.to_string()),
            q::CompareTarget::Create(v) => ("create_revision", v.to_string()),
            q::CompareTarget::Mod(v) => ("mod_revision", v.to_string()),
            q::CompareTarget::Lease(v) => ("lease", v.to_string()),
        };
        let op = match c.result {
            q::CompareResult::Equal => "==",
            q::CompareResult::NotEqual => "!=",
            q::CompareResult::Less => "<",
            q::CompareResult::Greater => ">",
        };
        format!("Compare.{name}({:?}) {op} {operand}", String::from_utf8_lossy(&c.key))
    }
}

#[pymethods]
impl CompareOperand {
    fn __richcmp__(&self, py: Python<'_>, other: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<Compare> {
        let result = match op {
            CompareOp::Eq => q::CompareResult::Equal,
            CompareOp::Ne => q::CompareResult::NotEqual,
            CompareOp::Lt => q::CompareResult::Less,
            CompareOp::Gt => q::CompareResult::Greater,
            CompareOp::Le | CompareOp::Ge => {
                return Err(invalid(py, "etcd compares support ==, !=, < and > only"));
            }
        };
        let target = match self.target {
            Target::Value => q::CompareTarget::Value(other.extract::<Bytes>()?.0),
            Target::Version => q::CompareTarget::Version(other.extract::<Int>()?.0),
            Target::Create => q::CompareTarget::Create(other.extract::<Int>()?.0),
            Target::Mod => q::CompareTarget::Mod(other.extract::<Int>()?.0),
            Target::Lease => q::CompareTarget::Lease(other.extract::<Int>()?.0),
        };
        Ok(Compare(q::Compare { result, target, key: self.key.clone(), range_end: self.range_end.clone() }))
    }
}
