//! Transactions: a builder for compares and operation lists, and the result object.

use super::kv::{delete_request, key_range, put_request, qkv_header, qkv_kvs, range_request};
use super::node::{qkv_node, with_node};
use super::{boundary, bytes_arg, infallible, options_arg, out_arg, ref_arg, Failure, FfiResult};
use crate::ffi::{qkv_delete_options, qkv_put_options, qkv_range_options, qkv_result};
use crate::mvcc::{
    Compare, CompareResult, CompareTarget, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};

/// A transaction under construction (opaque; etcd's `TxnRequest`): compares, then the
/// operations run when all of them hold (`QKV_TXN_SUCCESS`) or otherwise
/// (`QKV_TXN_FAILURE`). Build it with `qkv_txn_new` and the `qkv_txn_*` adders, run it
/// with `qkv_txn_commit` (as often as wanted), free it with `qkv_txn_free`. The adders
/// copy their arguments.
///
/// Thread-safety: not for two threads at once while being built; `qkv_txn_commit` only
/// reads it.
#[derive(Default)]
pub struct qkv_txn {
    req: TxnRequest,
}

/// Which branch of a transaction an operation goes to.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub enum qkv_txn_branch {
    /// Run when every compare holds.
    QKV_TXN_SUCCESS = 0,
    /// Run otherwise.
    QKV_TXN_FAILURE = 1,
}

/// What a compare looks at.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub enum qkv_compare_target {
    /// The key's version (0 when absent); compared with `number`.
    QKV_COMPARE_VERSION = 0,
    /// The key's create revision (0 when absent); compared with `number`.
    QKV_COMPARE_CREATE = 1,
    /// The key's mod revision (0 when absent); compared with `number`.
    QKV_COMPARE_MOD = 2,
    /// The key's value (a compare on an absent key is false); compared with `value`.
    QKV_COMPARE_VALUE = 3,
    /// The key's lease (0 when none); compared with `number`.
    QKV_COMPARE_LEASE = 4,
}

/// How a compare compares.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub enum qkv_compare_op {
    /// `==`
    QKV_EQUAL = 0,
    /// `!=`
    QKV_NOT_EQUAL = 1,
    /// `<`
    QKV_LESS = 2,
    /// `>`
    QKV_GREATER = 3,
}

/// Which kind of operation a `qkv_txn_op` is the result of.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum qkv_op_type {
    /// A range: `kvs` holds its keys.
    QKV_OP_RANGE = 0,
    /// A put: `kvs` holds the previous key-value when asked for (else empty).
    QKV_OP_PUT = 1,
    /// A delete: `deleted` counts the keys, `kvs` holds them when asked for.
    QKV_OP_DELETE_RANGE = 2,
    /// A nested transaction: `txn` is its result.
    QKV_OP_TXN = 3,
}

/// Creates an empty transaction. On success `*out` owns it (free with `qkv_txn_free`).
///
/// Errors: `QKV_NULL_PARAMETER`.
#[no_mangle]
pub unsafe extern "C" fn qkv_txn_new(out: *mut *mut qkv_txn) -> qkv_result {
    boundary(None, || {
        // SAFETY: a writable out-pointer.
        *unsafe { out_arg(out, "out") }? = Box::into_raw(Box::default());
        Ok(())
    })
}

/// Frees a transaction. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn qkv_txn_free(txn: *mut qkv_txn) {
    // SAFETY: NULL or an object of this type from this library, freed once.
    unsafe { super::free_boxed(txn) }
}

fn branch(txn: &mut qkv_txn, which: i32) -> FfiResult<&mut Vec<RequestOp>> {
    match which {
        0 => Ok(&mut txn.req.success),
        1 => Ok(&mut txn.req.failure),
        _ => Err(Failure::invalid(format!("branch {which} is not a qkv_txn_branch"))),
    }
}

/// Adds a compare: `key`'s `target` (a `qkv_compare_target`) compared by `op` (a
/// `qkv_compare_op`) with `number` (version, revisions, lease) or with the bytes `value`
/// (`QKV_COMPARE_VALUE`). With a non-empty `range_end` (as in `qkv_range`) every key in
/// `[key, range_end)` must satisfy it.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT` (unknown target or op).
#[no_mangle]
pub unsafe extern "C" fn qkv_txn_compare(
    txn: *mut qkv_txn,
    key: *const u8,
    key_len: usize,
    range_end: *const u8,
    range_end_len: usize,
    target: i32,
    op: i32,
    number: i64,
    value: *const u8,
    value_len: usize,
) -> qkv_result {
    boundary(None, || {
        // SAFETY: a live txn; buffers of the given lengths.
        let (txn, key, end, value) = unsafe {
            (
                out_arg(txn, "txn")?,
                bytes_arg(key, key_len, "key")?,
                bytes_arg(range_end, range_end_len, "range_end")?,
                bytes_arg(value, value_len, "value")?,
            )
        };
        let target = match target {
            0 => CompareTarget::Version(number),
            1 => CompareTarget::Create(number),
            2 => CompareTarget::Mod(number),
            3 => CompareTarget::Value(value.to_vec()),
            4 => CompareTarget::Lease(number),
            _ => return Err(Failure::invalid(format!("target {target} is not a qkv_compare_target"))),
        };
        let result = match op {
            0 => CompareResult::Equal,
            1 => CompareResult::NotEqual,
            2 => CompareResult::Less,
            3 => CompareResult::Greater,
            _ => return Err(Failure::invalid(format!("op {op} is not a qkv_compare_op"))),
        };
        let (key, range_end) = key_range(key, end, false);
        txn.req.compare.push(Compare { result, target, key, range_end });
        Ok(())
    })
}

/// Adds a put to `branch` (a `qkv_txn_branch`), with options as in `qkv_put`.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn qkv_txn_put(
    txn: *mut qkv_txn,
    branch_: i32,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    options: *const qkv_put_options,
) -> qkv_result {
    boundary(None, || {
        // SAFETY: a live txn; buffers of the given lengths; NULL or valid options.
        let (txn, key, value, o) = unsafe {
            (
                out_arg(txn, "txn")?,
                bytes_arg(key, key_len, "key")?,
                bytes_arg(value, value_len, "value")?,
                options_arg(options, "qkv_put_options")?,
            )
        };
        branch(txn, branch_)?.push(RequestOp::Put(put_request(key, value, &o)));
        Ok(())
    })
}

/// Adds a range to `branch`, with key range and options as in `qkv_range`.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn qkv_txn_range(
    txn: *mut qkv_txn,
    branch_: i32,
    key: *const u8,
    key_len: usize,
    range_end: *const u8,
    range_end_len: usize,
    options: *const qkv_range_options,
) -> qkv_result {
    boundary(None, || {
        // SAFETY: a live txn; buffers of the given lengths; NULL or valid options.
        let (txn, key, end, o) = unsafe {
            (
                out_arg(txn, "txn")?,
                bytes_arg(key, key_len, "key")?,
                bytes_arg(range_end, range_end_len, "range_end")?,
                options_arg(options, "qkv_range_options")?,
            )
        };
        let req = range_request(key, end, &o, true)?;
        branch(txn, branch_)?.push(RequestOp::Range(req));
        Ok(())
    })
}

/// Adds a delete to `branch`, with key range and options as in `qkv_delete_range`.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn qkv_txn_delete_range(
    txn: *mut qkv_txn,
    branch_: i32,
    key: *const u8,
    key_len: usize,
    range_end: *const u8,
    range_end_len: usize,
    options: *const qkv_delete_options,
) -> qkv_result {
    boundary(None, || {
        // SAFETY: a live txn; buffers of the given lengths; NULL or valid options.
        let (txn, key, end, o) = unsafe {
            (
                out_arg(txn, "txn")?,
                bytes_arg(key, key_len, "key")?,
                bytes_arg(range_end, range_end_len, "range_end")?,
                options_arg(options, "qkv_delete_options")?,
            )
        };
        branch(txn, branch_)?.push(RequestOp::DeleteRange(delete_request(key, end, &o)));
        Ok(())
    })
}

/// Adds a copy of transaction `inner` as a nested transaction to `branch` (`inner` stays
/// the caller's; it may be freed or changed afterwards without effect on `txn`).
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT` (`inner` is `txn`, or unknown branch).
#[no_mangle]
pub unsafe extern "C" fn qkv_txn_nest(txn: *mut qkv_txn, branch_: i32, inner: *const qkv_txn) -> qkv_result {
    boundary(None, || {
        if std::ptr::eq(txn, inner) {
            return Err(Failure::invalid("a transaction cannot nest itself"));
        }
        // SAFETY: two distinct live transactions.
        let (txn, inner) = unsafe { (out_arg(txn, "txn")?, ref_arg(inner, "inner")?) };
        let nested = RequestOp::Txn(inner.req.clone());
        branch(txn, branch_)?.push(nested);
        Ok(())
    })
}

enum OpOut {
    Range(qkv_kvs),
    Put(qkv_kvs),
    Delete(i64, qkv_kvs),
    Txn(Box<qkv_txn_result>),
}

/// The result of a transaction (opaque), owned by the caller, freed with
/// `qkv_txn_result_free`; nested results are part of it. Immutable: safe to read from
/// several threads.
pub struct qkv_txn_result {
    header: ResponseHeader,
    succeeded: bool,
    ops: Vec<(ResponseHeader, OpOut)>,
}

impl qkv_txn_result {
    fn of(resp: TxnResponse) -> qkv_txn_result {
        let ops = resp
            .responses
            .into_iter()
            .map(|op| match op {
                ResponseOp::Range(r) => (r.header, OpOut::Range(qkv_kvs::of_range(r))),
                ResponseOp::Put(p) => {
                    (p.header, OpOut::Put(qkv_kvs::of_list(p.header, p.prev_kv.into_iter().collect())))
                }
                ResponseOp::DeleteRange(d) => {
                    (d.header, OpOut::Delete(d.deleted, qkv_kvs::of_list(d.header, d.prev_kvs)))
                }
                ResponseOp::Txn(t) => (t.header, OpOut::Txn(Box::new(qkv_txn_result::of(t)))),
            })
            .collect();
        qkv_txn_result { header: resp.header, succeeded: resp.succeeded, ops }
    }
}

/// One operation's result, borrowed from its `qkv_txn_result` (valid until that is freed).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct qkv_txn_op {
    /// A `qkv_op_type` value.
    pub kind: i32,
    /// The operation's header.
    pub header: qkv_header,
    /// Keys deleted (`QKV_OP_DELETE_RANGE`), else 0.
    pub deleted: i64,
    /// The key-values of a range, put or delete (see `qkv_op_type`); NULL for a nested
    /// transaction.
    pub kvs: *const qkv_kvs,
    /// The nested transaction's result (`QKV_OP_TXN`), else NULL.
    pub txn: *const qkv_txn_result,
}

/// Runs the transaction on `node` (etcd `Txn`): compares and the branch that runs make
/// one atomic step and at most one revision. A transaction that only reads, with every
/// range serializable, is served locally. `*out` receives the result, owned by the
/// caller. Blocking; thread-safe.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_EMPTY_KEY`, `QKV_TOO_MANY_OPS`, `QKV_DUPLICATE_KEY`,
/// `QKV_REQUEST_TOO_LARGE`, `QKV_COMPACTED`, `QKV_FUTURE_REVISION`, `QKV_LEASE_NOT_FOUND`,
/// `QKV_NO_LEADER`, `QKV_TIMEOUT`, `QKV_STOPPED`.
#[no_mangle]
pub unsafe extern "C" fn qkv_txn_commit(
    node: *const qkv_node,
    txn: *const qkv_txn,
    out: *mut *mut qkv_txn_result,
) -> qkv_result {
    with_node(node, |h| {
        // SAFETY: a live txn and a writable out-pointer.
        let (txn, out) = unsafe { (ref_arg(txn, "txn")?, out_arg(out, "out")?) };
        let resp = h.node.txn_blocking(txn.req.clone())?;
        *out = Box::into_raw(Box::new(qkv_txn_result::of(resp)));
        Ok(())
    })
}

/// Whether the compares held (and the success branch ran); false for NULL.
#[no_mangle]
pub unsafe extern "C" fn qkv_txn_result_succeeded(result: *const qkv_txn_result) -> bool {
    // SAFETY: NULL or a live result.
    infallible(false, || unsafe { result.as_ref() }.is_some_and(|r| r.succeeded))
}

/// The transaction's header (its `revision` is the transaction's; zeroes for NULL).
#[no_mangle]
pub unsafe extern "C" fn qkv_txn_result_header(result: *const qkv_txn_result) -> qkv_header {
    // SAFETY: NULL or a live result.
    infallible(qkv_header::default(), || {
        unsafe { result.as_ref() }.map_or_else(qkv_header::default, |r| r.header.into())
    })
}

/// Number of operation results (of the branch that ran); 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn qkv_txn_result_len(result: *const qkv_txn_result) -> usize {
    // SAFETY: NULL or a live result.
    infallible(0, || unsafe { result.as_ref() }.map_or(0, |r| r.ops.len()))
}

/// Operation result `index` (borrowed; see `qkv_txn_op`).
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT` (index out of range).
#[no_mangle]
pub unsafe extern "C" fn qkv_txn_result_op(
    result: *const qkv_txn_result,
    index: usize,
    out: *mut qkv_txn_op,
) -> qkv_result {
    boundary(None, || {
        // SAFETY: a live result and a writable out-pointer.
        let (result, out) = unsafe { (ref_arg(result, "result")?, out_arg(out, "out")?) };
        let (header, op) =
            result.ops.get(index).ok_or_else(|| Failure::invalid(format!("index {index} out of range")))?;
        let none = std::ptr::null();
        let (kind, deleted, kvs, txn): (qkv_op_type, i64, *const qkv_kvs, *const qkv_txn_result) = match op {
            OpOut::Range(k) => (qkv_op_type::QKV_OP_RANGE, 0, k, none),
            OpOut::Put(k) => (qkv_op_type::QKV_OP_PUT, 0, k, none),
            OpOut::Delete(n, k) => (qkv_op_type::QKV_OP_DELETE_RANGE, *n, k, none),
            OpOut::Txn(t) => (qkv_op_type::QKV_OP_TXN, 0, std::ptr::null(), &**t),
        };
        *out = qkv_txn_op { kind: kind as i32, header: (*header).into(), deleted, kvs, txn };
        Ok(())
    })
}

/// Frees a transaction result (and its nested results). NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn qkv_txn_result_free(result: *mut qkv_txn_result) {
    // SAFETY: NULL or an object of this type from this library, freed once.
    unsafe { super::free_boxed(result) }
}
