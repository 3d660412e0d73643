//! Keys and values: put, get, range, delete, compact, and the result objects they hand out.

use super::node::{qkv_node, with_node};
use super::{bytes_arg, infallible, options_arg, out_arg, qkv_bytes, Failure, FfiResult, SizedOptions};
use crate::ffi::qkv_result;
use crate::mvcc::{
    prefix_end, CompactionRequest, DeleteRangeRequest, KeyValue, PutRequest, RangeRequest, RangeResponse,
    ResponseHeader, SortOrder, SortTarget,
};

/// Returned with every response (etcd's `ResponseHeader`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct qkv_header {
    /// Stable id of the cluster.
    pub cluster_id: u64,
    /// Stable id of the member that served the request.
    pub member_id: u64,
    /// Store revision when the request was served (after it, for writes).
    pub revision: i64,
    /// Raft term when the request was served.
    pub raft_term: u64,
}

impl From<ResponseHeader> for qkv_header {
    fn from(h: ResponseHeader) -> Self {
        qkv_header { cluster_id: h.cluster_id, member_id: h.member_id, revision: h.revision, raft_term: h.raft_term }
    }
}

/// Writes a header to an optional out-pointer.
pub(crate) unsafe fn put_header(out: *mut qkv_header, h: ResponseHeader) {
    // SAFETY: NULL or a writable header.
    if let Some(out) = unsafe { out.as_mut() } {
        *out = h.into();
    }
}

/// One key-value, borrowed from the result object it was read from (valid until that
/// object is freed). Keys and values are not NUL-terminated.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct qkv_kv {
    /// The key.
    pub key: *const u8,
    /// Its length.
    pub key_len: usize,
    /// The value (empty with `keys_only`, and in delete events).
    pub value: *const u8,
    /// Its length.
    pub value_len: usize,
    /// Revision of the key's last creation.
    pub create_revision: i64,
    /// Revision of its last modification.
    pub mod_revision: i64,
    /// Modifications since creation (1 after creation).
    pub version: i64,
    /// Attached lease id, 0 for none.
    pub lease: i64,
}

impl qkv_kv {
    /// All zero, pointers NULL.
    pub(crate) const EMPTY: qkv_kv = qkv_kv {
        key: std::ptr::null(),
        key_len: 0,
        value: std::ptr::null(),
        value_len: 0,
        create_revision: 0,
        mod_revision: 0,
        version: 0,
        lease: 0,
    };

    pub(crate) fn of(kv: &KeyValue) -> qkv_kv {
        qkv_kv {
            key: kv.key.as_ptr(),
            key_len: kv.key.len(),
            value: kv.value.as_ptr(),
            value_len: kv.value.len(),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

/// A list of key-values with the header of the response that carried them (opaque):
/// the result of `qkv_get` and `qkv_range`, a put's previous key-value, a delete's
/// deleted key-values. Owned by the caller, freed with `qkv_kvs_free`. Immutable: safe
/// to read from several threads.
pub struct qkv_kvs {
    pub(crate) header: ResponseHeader,
    pub(crate) kvs: Vec<KeyValue>,
    pub(crate) more: bool,
    pub(crate) count: i64,
}

impl qkv_kvs {
    pub(crate) fn of_range(r: RangeResponse) -> qkv_kvs {
        qkv_kvs { header: r.header, kvs: r.kvs, more: r.more, count: r.count }
    }

    pub(crate) fn of_list(header: ResponseHeader, kvs: Vec<KeyValue>) -> qkv_kvs {
        let count = kvs.len() as i64;
        qkv_kvs { header, kvs, more: false, count }
    }

    pub(crate) fn boxed(self) -> *mut qkv_kvs {
        Box::into_raw(Box::new(self))
    }
}

/// Number of key-values in the list; 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn qkv_kvs_len(kvs: *const qkv_kvs) -> usize {
    // SAFETY: NULL or a live list.
    infallible(0, || unsafe { kvs.as_ref() }.map_or(0, |k| k.kvs.len()))
}

/// Key-value `index` of the list (borrowed; valid until the list is freed).
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT` (index out of range).
#[no_mangle]
pub unsafe extern "C" fn qkv_kvs_get(kvs: *const qkv_kvs, index: usize, out: *mut qkv_kv) -> qkv_result {
    super::boundary(None, || {
        // SAFETY: a live list and a writable out-pointer.
        let (kvs, out) = unsafe { (super::ref_arg(kvs, "kvs")?, out_arg(out, "out")?) };
        let kv = kvs.kvs.get(index).ok_or_else(|| Failure::invalid(format!("index {index} out of range")))?;
        *out = qkv_kv::of(kv);
        Ok(())
    })
}

/// The header of the response the list came with (zeroes for NULL).
#[no_mangle]
pub unsafe extern "C" fn qkv_kvs_header(kvs: *const qkv_kvs) -> qkv_header {
    // SAFETY: NULL or a live list.
    infallible(qkv_header::default(), || unsafe { kvs.as_ref() }.map_or_else(qkv_header::default, |k| k.header.into()))
}

/// For a range: the number of keys in the range at the read revision, before `limit`
/// (etcd's `count`); for other lists, their length. 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn qkv_kvs_count(kvs: *const qkv_kvs) -> i64 {
    // SAFETY: NULL or a live list.
    infallible(0, || unsafe { kvs.as_ref() }.map_or(0, |k| k.count))
}

/// For a range: whether more keys matched than `limit` allowed (etcd's `more`).
#[no_mangle]
pub unsafe extern "C" fn qkv_kvs_more(kvs: *const qkv_kvs) -> bool {
    // SAFETY: NULL or a live list.
    infallible(false, || unsafe { kvs.as_ref() }.is_some_and(|k| k.more))
}

/// Frees a list. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn qkv_kvs_free(kvs: *mut qkv_kvs) {
    // SAFETY: NULL or an object of this type from this library, freed once.
    unsafe { super::free_boxed(kvs) }
}

/// Sort order of a range (`qkv_range_options.sort_order`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub enum qkv_sort_order {
    /// Key order (or ascending by a non-key target).
    QKV_SORT_NONE = 0,
    /// Ascending by the target.
    QKV_SORT_ASCEND = 1,
    /// Descending by the target.
    QKV_SORT_DESCEND = 2,
}

/// What a range is sorted by (`qkv_range_options.sort_target`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub enum qkv_sort_target {
    /// The key.
    QKV_SORT_BY_KEY = 0,
    /// The version.
    QKV_SORT_BY_VERSION = 1,
    /// The create revision.
    QKV_SORT_BY_CREATE = 2,
    /// The mod revision.
    QKV_SORT_BY_MOD = 3,
    /// The value.
    QKV_SORT_BY_VALUE = 4,
}

/// Options of `qkv_get` and `qkv_range` (etcd's `RangeRequest`). Zero everywhere is
/// the default: a linearizable read of the current revision. NULL options mean the
/// default; otherwise set `size = sizeof(qkv_range_options)` first.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct qkv_range_options {
    /// `sizeof(qkv_range_options)`.
    pub size: usize,
    /// Most keys returned; 0: no limit (`qkv_kvs_more` tells whether keys were cut).
    pub limit: i64,
    /// Read at this past revision; 0: the current one.
    pub revision: i64,
    /// A `qkv_sort_order` value.
    pub sort_order: i32,
    /// A `qkv_sort_target` value.
    pub sort_target: i32,
    /// Only keys with `mod_revision >=` this (0: no bound).
    pub min_mod_revision: i64,
    /// Only keys with `mod_revision <=` this (0: no bound).
    pub max_mod_revision: i64,
    /// Only keys with `create_revision >=` this (0: no bound).
    pub min_create_revision: i64,
    /// Only keys with `create_revision <=` this (0: no bound).
    pub max_create_revision: i64,
    /// Serve from this node's state without a Raft round (may be stale, never leaves
    /// the node); otherwise linearizable.
    pub serializable: bool,
    /// Return keys without values.
    pub keys_only: bool,
    /// Return only the count (`qkv_kvs_count`).
    pub count_only: bool,
    /// `qkv_range` only: read every key starting with `key` (`range_end` is ignored).
    pub prefix: bool,
}

// SAFETY: integers and bools only.
unsafe impl SizedOptions for qkv_range_options {
    fn zeroed() -> Self {
        qkv_range_options {
            size: std::mem::size_of::<Self>(),
            limit: 0,
            revision: 0,
            sort_order: 0,
            sort_target: 0,
            min_mod_revision: 0,
            max_mod_revision: 0,
            min_create_revision: 0,
            max_create_revision: 0,
            serializable: false,
            keys_only: false,
            count_only: false,
            prefix: false,
        }
    }
}

/// Options of `qkv_put` (etcd's `PutRequest`); NULL means all zero. Set
/// `size = sizeof(qkv_put_options)` first.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct qkv_put_options {
    /// `sizeof(qkv_put_options)`.
    pub size: usize,
    /// Lease to attach, 0 for none.
    pub lease: i64,
    /// Return the previous key-value (`prev_kv` out-pointer of `qkv_put`).
    pub prev_kv: bool,
    /// Keep the current value (the key must exist; pass an empty value).
    pub ignore_value: bool,
    /// Keep the current lease (the key must exist; `lease` must be 0).
    pub ignore_lease: bool,
}

// SAFETY: integers and bools only.
unsafe impl SizedOptions for qkv_put_options {
    fn zeroed() -> Self {
        qkv_put_options {
            size: std::mem::size_of::<Self>(),
            lease: 0,
            prev_kv: false,
            ignore_value: false,
            ignore_lease: false,
        }
    }
}

/// Options of `qkv_delete_range`; NULL means all zero. Set
/// `size = sizeof(qkv_delete_options)` first.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct qkv_delete_options {
    /// `sizeof(qkv_delete_options)`.
    pub size: usize,
    /// Delete every key starting with `key` (`range_end` is ignored).
    pub prefix: bool,
    /// Return the deleted key-values.
    pub prev_kv: bool,
}

// SAFETY: integers and bools only.
unsafe impl SizedOptions for qkv_delete_options {
    fn zeroed() -> Self {
        qkv_delete_options { size: std::mem::size_of::<Self>(), prefix: false, prev_kv: false }
    }
}

fn sort_order(v: i32) -> FfiResult<SortOrder> {
    Ok(match v {
        0 => SortOrder::None,
        1 => SortOrder::Ascend,
        2 => SortOrder::Descend,
        _ => return Err(Failure::invalid(format!("sort_order {v} is not a qkv_sort_order"))),
    })
}

fn sort_target(v: i32) -> FfiResult<SortTarget> {
    Ok(match v {
        0 => SortTarget::Key,
        1 => SortTarget::Version,
        2 => SortTarget::Create,
        3 => SortTarget::Mod,
        4 => SortTarget::Value,
        _ => return Err(Failure::invalid(format!("sort_target {v} is not a qkv_sort_target"))),
    })
}

/// The key range `[key, range_end)` of a request: empty `range_end` is `key` alone,
/// `"\0"` every key from `key` on; `prefix` overrides `range_end`.
pub(crate) fn key_range(key: &[u8], range_end: &[u8], prefix: bool) -> (Vec<u8>, Vec<u8>) {
    if !prefix {
        return (key.to_vec(), range_end.to_vec());
    }
    if key.is_empty() {
        return (vec![0], vec![0]);
    }
    (key.to_vec(), prefix_end(key))
}

pub(crate) fn range_request(
    key: &[u8],
    range_end: &[u8],
    o: &qkv_range_options,
    allow_prefix: bool,
) -> FfiResult<RangeRequest> {
    let (key, range_end) = key_range(key, range_end, allow_prefix && o.prefix);
    Ok(RangeRequest {
        key,
        range_end,
        limit: o.limit,
        revision: o.revision,
        sort_order: sort_order(o.sort_order)?,
        sort_target: sort_target(o.sort_target)?,
        serializable: o.serializable,
        keys_only: o.keys_only,
        count_only: o.count_only,
        min_mod_revision: o.min_mod_revision,
        max_mod_revision: o.max_mod_revision,
        min_create_revision: o.min_create_revision,
        max_create_revision: o.max_create_revision,
    })
}

pub(crate) fn put_request(key: &[u8], value: &[u8], o: &qkv_put_options) -> PutRequest {
    PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        lease: o.lease,
        prev_kv: o.prev_kv,
        ignore_value: o.ignore_value,
        ignore_lease: o.ignore_lease,
    }
}

pub(crate) fn delete_request(key: &[u8], range_end: &[u8], o: &qkv_delete_options) -> DeleteRangeRequest {
    let (key, range_end) = key_range(key, range_end, o.prefix);
    DeleteRangeRequest { key, range_end, prev_kv: o.prev_kv }
}

/// Writes `value` at `key` (etcd `Put`): committed through Raft (forwarded to the leader
/// by a follower) before it returns. `header` (may be NULL) receives the header, whose
/// `revision` is the put's. With `options->prev_kv` and a non-NULL `prev_kv`, `*prev_kv`
/// receives a list holding the previous key-value (empty if the key was new), owned by
/// the caller. Blocking; thread-safe. Key and value are copied.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT`, `QKV_EMPTY_KEY`,
/// `QKV_REQUEST_TOO_LARGE`, `QKV_LEASE_NOT_FOUND`, `QKV_KEY_NOT_FOUND`,
/// `QKV_VALUE_PROVIDED`, `QKV_LEASE_PROVIDED`, `QKV_NO_LEADER`, `QKV_TIMEOUT`,
/// `QKV_STOPPED`, `QKV_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn qkv_put(
    node: *const qkv_node,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    options: *const qkv_put_options,
    header: *mut qkv_header,
    prev_kv: *mut *mut qkv_kvs,
) -> qkv_result {
    with_node(node, |h| {
        // SAFETY: buffers of the given lengths; NULL or valid options.
        let (key, value, o) = unsafe {
            (
                bytes_arg(key, key_len, "key")?,
                bytes_arg(value, value_len, "value")?,
                options_arg(options, "qkv_put_options")?,
            )
        };
        let resp = h.node.put_blocking(put_request(key, value, &o))?;
        // SAFETY: NULL or writable out-pointers.
        unsafe {
            put_header(header, resp.header);
            if let (true, Some(out)) = (o.prev_kv, prev_kv.as_mut()) {
                *out = qkv_kvs::of_list(resp.header, resp.prev_kv.into_iter().collect()).boxed();
            }
        }
        Ok(())
    })
}

/// Reads one key (etcd `Range` of one key) with `options` (NULL: linearizable, current
/// revision; `prefix` and `limit` do not apply). `*out` receives a list holding the
/// key-value, or empty when the key does not exist, owned by the caller. Blocking;
/// thread-safe.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT`, `QKV_EMPTY_KEY`,
/// `QKV_COMPACTED`, `QKV_FUTURE_REVISION`, `QKV_NO_LEADER`, `QKV_TIMEOUT`, `QKV_STOPPED`.
#[no_mangle]
pub unsafe extern "C" fn qkv_get(
    node: *const qkv_node,
    key: *const u8,
    key_len: usize,
    options: *const qkv_range_options,
    out: *mut *mut qkv_kvs,
) -> qkv_result {
    with_node(node, |h| {
        // SAFETY: a buffer of the given length; NULL or valid options; an out-pointer.
        let (key, o, out) = unsafe {
            (bytes_arg(key, key_len, "key")?, options_arg(options, "qkv_range_options")?, out_arg(out, "out")?)
        };
        let mut req = range_request(key, &[], &o, false)?;
        req.limit = 0;
        *out = qkv_kvs::of_range(h.node.range_blocking(req)?).boxed();
        Ok(())
    })
}

/// The value of one key, as a buffer the caller owns (free it with `qkv_bytes_free`):
/// the short way to read a value. `serializable` as in `qkv_range_options`. Blocking;
/// thread-safe.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT`, `QKV_EMPTY_KEY`,
/// `QKV_KEY_NOT_FOUND` (the key does not exist; `*value` untouched), `QKV_NO_LEADER`,
/// `QKV_TIMEOUT`, `QKV_STOPPED`.
#[no_mangle]
pub unsafe extern "C" fn qkv_get_value(
    node: *const qkv_node,
    key: *const u8,
    key_len: usize,
    serializable: bool,
    value: *mut qkv_bytes,
) -> qkv_result {
    with_node(node, |h| {
        // SAFETY: a buffer of the given length and an out-pointer.
        let (key, out) = unsafe { (bytes_arg(key, key_len, "key")?, out_arg(value, "value")?) };
        let req = RangeRequest { serializable, ..RangeRequest::key(key) };
        let kv = h.node.range_blocking(req)?.kvs.pop().ok_or(crate::Error::KeyNotFound)?;
        *out = qkv_bytes::from_vec(kv.value);
        Ok(())
    })
}

/// Reads the keys in `[key, range_end)` (etcd `Range`): an empty `range_end` reads `key`
/// alone, `range_end` `"\0"` (length 1) every key `>= key`, `options->prefix` every key
/// starting with `key` (an empty key with `prefix`: every key). `*out` receives the
/// result, owned by the caller. Blocking; thread-safe.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT`, `QKV_EMPTY_KEY`,
/// `QKV_COMPACTED`, `QKV_FUTURE_REVISION`, `QKV_NO_LEADER`, `QKV_TIMEOUT`, `QKV_STOPPED`.
#[no_mangle]
pub unsafe extern "C" fn qkv_range(
    node: *const qkv_node,
    key: *const u8,
    key_len: usize,
    range_end: *const u8,
    range_end_len: usize,
    options: *const qkv_range_options,
    out: *mut *mut qkv_kvs,
) -> qkv_result {
    with_node(node, |h| {
        // SAFETY: buffers of the given lengths; NULL or valid options; an out-pointer.
        let (key, end, o, out) = unsafe {
            (
                bytes_arg(key, key_len, "key")?,
                bytes_arg(range_end, range_end_len, "range_end")?,
                options_arg(options, "qkv_range_options")?,
                out_arg(out, "out")?,
            )
        };
        *out = qkv_kvs::of_range(h.node.range_blocking(range_request(key, end, &o, true)?)?).boxed();
        Ok(())
    })
}

/// Deletes the keys in `[key, range_end)` (as in `qkv_range`; `options->prefix` deletes
/// every key starting with `key`) in one revision (etcd `DeleteRange`). `deleted` (may
/// be NULL) receives how many; `header` (may be NULL) the header. With
/// `options->prev_kv` and a non-NULL `prev_kvs`, `*prev_kvs` receives the deleted
/// key-values, owned by the caller. Blocking; thread-safe.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT`, `QKV_EMPTY_KEY`,
/// `QKV_REQUEST_TOO_LARGE`, `QKV_NO_LEADER`, `QKV_TIMEOUT`, `QKV_STOPPED`, `QKV_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn qkv_delete_range(
    node: *const qkv_node,
    key: *const u8,
    key_len: usize,
    range_end: *const u8,
    range_end_len: usize,
    options: *const qkv_delete_options,
    deleted: *mut i64,
    header: *mut qkv_header,
    prev_kvs: *mut *mut qkv_kvs,
) -> qkv_result {
    with_node(node, |h| {
        // SAFETY: buffers of the given lengths; NULL or valid options.
        let (key, end, o) = unsafe {
            (
                bytes_arg(key, key_len, "key")?,
                bytes_arg(range_end, range_end_len, "range_end")?,
                options_arg(options, "qkv_delete_options")?,
            )
        };
        let resp = h.node.delete_range_blocking(delete_request(key, end, &o))?;
        // SAFETY: NULL or writable out-pointers.
        unsafe {
            if let Some(d) = deleted.as_mut() {
                *d = resp.deleted;
            }
            put_header(header, resp.header);
            if let (true, Some(out)) = (o.prev_kv, prev_kvs.as_mut()) {
                *out = qkv_kvs::of_list(resp.header, resp.prev_kvs).boxed();
            }
        }
        Ok(())
    })
}

/// Compacts the history below `revision` (etcd `Compact`): later reads and watches of
/// older revisions fail with `QKV_COMPACTED`. `header` may be NULL. Blocking.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_COMPACTED` (already compacted past it),
/// `QKV_FUTURE_REVISION`, `QKV_NO_LEADER`, `QKV_TIMEOUT`, `QKV_STOPPED`.
#[no_mangle]
pub unsafe extern "C" fn qkv_compact(node: *const qkv_node, revision: i64, header: *mut qkv_header) -> qkv_result {
    with_node(node, |h| {
        let resp = h.node.compact_blocking(CompactionRequest { revision, physical: false })?;
        // SAFETY: NULL or a writable header.
        unsafe { put_header(header, resp.header) };
        Ok(())
    })
}
