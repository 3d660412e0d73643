//! The C ABI: `libquorumkv` as `include/quorumkv.h` declares it (generated from this
//! module by cbindgen).
//!
//! Conventions (see docs/c-api.md):
//! - every symbol starts with `qkv_`; handles are opaque (`qkv_node *`, `qkv_watch *`,
//!   result objects), created by `qkv_<type>_new`/`_start` and released by `_free`, which
//!   accepts NULL;
//! - fallible functions return [`qkv_result`] (stable numbers, never reused) and write
//!   outputs through out-pointers, which are left untouched on failure;
//! - keys and values are `(const uint8_t *, size_t)` pairs (a NULL pointer is allowed
//!   with length 0); names and addresses are NUL-terminated UTF-8 strings;
//! - inputs are never retained past the call; what the library hands out is owned by the
//!   caller until its `_free`;
//! - every exported body runs inside a panic boundary: a panic becomes `QKV_PANIC`,
//!   never an unwind into C.
//!
//! This module calls the Rust API ([`crate::Node`] and friends) only.

#![allow(non_camel_case_types)]
// Every exported function documents its pointer contract in its own doc comment (the
// header carries those comments), so a separate `# Safety` section would repeat it.
#![allow(clippy::missing_safety_doc)]

mod config;
mod kv;
mod lease;
mod node;
mod txn;
mod watch;

pub use config::*;
pub use kv::*;
pub use lease::*;
pub use node::*;
pub use txn::*;
pub use watch::*;

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::Error;

/// The ABI version of `include/quorumkv.h`: raised whenever a symbol is removed or
/// changes its signature or meaning (adding symbols keeps it). `libquorumkv.so.N` carries
/// it as its soname.
pub const QKV_ABI_VERSION: u32 = 1;

/// The outcome of a call. The numbers are stable: a code is never reused for another
/// meaning, new codes get new numbers.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum qkv_result {
    /// Success.
    QKV_OK = 0,
    /// A required pointer argument was NULL.
    QKV_NULL_PARAMETER = 1,
    /// An argument is invalid: bad length, not UTF-8 where text is required, an unknown
    /// enum value, an options struct whose `size` is 0 or larger than this library knows.
    QKV_INVALID_ARGUMENT = 2,
    /// A panic inside the library was caught at the boundary (a bug; the node may still work).
    QKV_PANIC = 3,
    /// An internal invariant was broken (a bug).
    QKV_INTERNAL = 4,
    /// The node configuration is invalid.
    QKV_INVALID_CONFIG = 5,
    /// The request (or the wait of `qkv_watch_next`) did not complete in time.
    QKV_TIMEOUT = 10,
    /// No leader was known within the request timeout.
    QKV_NO_LEADER = 11,
    /// The node asked is not the leader.
    QKV_NOT_LEADER = 12,
    /// The node (or the watch's node) is stopped.
    QKV_STOPPED = 13,
    /// Talking to a peer failed, or a port could not be bound.
    QKV_TRANSPORT = 14,
    /// The watch was cancelled and every response before the cancel was delivered.
    QKV_WATCH_CANCELED = 15,
    /// The key is empty (`etcdserver: key is not provided`).
    QKV_EMPTY_KEY = 20,
    /// The key does not exist (`ignore_value`/`ignore_lease` on an absent key;
    /// `qkv_get_value` of an absent key).
    QKV_KEY_NOT_FOUND = 21,
    /// `ignore_value` together with a value.
    QKV_VALUE_PROVIDED = 22,
    /// `ignore_lease` together with a lease.
    QKV_LEASE_PROVIDED = 23,
    /// A transaction has more operations at one level than allowed.
    QKV_TOO_MANY_OPS = 24,
    /// A transaction writes one key twice.
    QKV_DUPLICATE_KEY = 25,
    /// The revision asked for has been compacted.
    QKV_COMPACTED = 26,
    /// The revision asked for is newer than the store's.
    QKV_FUTURE_REVISION = 27,
    /// The request is larger than the node's `max_request_bytes`.
    QKV_REQUEST_TOO_LARGE = 28,
    /// No such lease (never granted, revoked or expired).
    QKV_LEASE_NOT_FOUND = 30,
    /// A lease with this id exists already.
    QKV_LEASE_EXISTS = 31,
    /// The TTL is larger than etcd allows.
    QKV_LEASE_TTL_TOO_LARGE = 32,
    /// No member with this id.
    QKV_MEMBER_NOT_FOUND = 40,
    /// A member with this peer address exists already.
    QKV_PEER_ADDR_EXISTS = 41,
    /// Only a learner can be promoted.
    QKV_MEMBER_NOT_LEARNER = 42,
    /// Leadership can only move to a voter.
    QKV_BAD_LEADER_TRANSFEREE = 43,
    /// The data dir or a peer belongs to another cluster (data untouched).
    QKV_CLUSTER_MISMATCH = 44,
    /// A membership change is not possible now.
    QKV_MEMBERSHIP_CHANGE = 45,
    /// The data dir is used by another node (in this process or another).
    QKV_DATA_DIR_LOCKED = 50,
    /// The data dir was written by an incompatible version.
    QKV_DATA_DIR_INCOMPATIBLE = 51,
    /// The data dir is damaged; nothing was read from it.
    QKV_DATA_DIR_CORRUPTED = 52,
    /// A storage operation failed (I/O error, full disk, failed fsync); the node takes no
    /// more writes.
    QKV_STORAGE = 53,
    /// Raft stopped on an unrecoverable error.
    QKV_FATAL = 54,
}

use qkv_result::*;

impl qkv_result {
    /// The code of a core error (the one mapping of [`Error`] to the C ABI).
    pub fn of_error(e: &Error) -> qkv_result {
        match e {
            Error::EmptyKey => QKV_EMPTY_KEY,
            Error::KeyNotFound => QKV_KEY_NOT_FOUND,
            Error::ValueProvided => QKV_VALUE_PROVIDED,
            Error::LeaseProvided => QKV_LEASE_PROVIDED,
            Error::TooManyOps { .. } => QKV_TOO_MANY_OPS,
            Error::DuplicateKey => QKV_DUPLICATE_KEY,
            Error::Compacted { .. } => QKV_COMPACTED,
            Error::FutureRevision => QKV_FUTURE_REVISION,
            Error::RequestTooLarge { .. } => QKV_REQUEST_TOO_LARGE,
            Error::LeaseNotFound => QKV_LEASE_NOT_FOUND,
            Error::LeaseExists => QKV_LEASE_EXISTS,
            Error::LeaseTtlTooLarge => QKV_LEASE_TTL_TOO_LARGE,
            Error::NotLeader { .. } => QKV_NOT_LEADER,
            Error::NoLeader => QKV_NO_LEADER,
            Error::Timeout => QKV_TIMEOUT,
            Error::MemberNotFound => QKV_MEMBER_NOT_FOUND,
            Error::PeerAddrExists => QKV_PEER_ADDR_EXISTS,
            Error::MemberNotLearner => QKV_MEMBER_NOT_LEARNER,
            Error::BadLeaderTransferee => QKV_BAD_LEADER_TRANSFEREE,
            Error::ClusterMismatch { .. } => QKV_CLUSTER_MISMATCH,
            Error::MembershipChange(_) => QKV_MEMBERSHIP_CHANGE,
            Error::Stopped => QKV_STOPPED,
            Error::DataDirLocked { .. } => QKV_DATA_DIR_LOCKED,
            Error::DataDirIncompatible { .. } => QKV_DATA_DIR_INCOMPATIBLE,
            Error::DataDirCorrupted { .. } => QKV_DATA_DIR_CORRUPTED,
            Error::Storage(_) => QKV_STORAGE,
            Error::Fatal(_) => QKV_FATAL,
            Error::InvalidArgument(_) => QKV_INVALID_ARGUMENT,
            Error::InvalidConfig(_) => QKV_INVALID_CONFIG,
            Error::Transport(_) => QKV_TRANSPORT,
            Error::Internal(_) => QKV_INTERNAL,
        }
    }

    fn message(self) -> &'static CStr {
        match self {
            QKV_OK => c"ok",
            QKV_NULL_PARAMETER => c"a required pointer argument is NULL",
            QKV_INVALID_ARGUMENT => c"invalid argument",
            QKV_PANIC => c"a panic inside quorumkv was caught (a bug)",
            QKV_INTERNAL => c"internal error (a bug)",
            QKV_INVALID_CONFIG => c"invalid node configuration",
            QKV_TIMEOUT => c"etcdserver: request timed out",
            QKV_NO_LEADER => c"etcdserver: no leader",
            QKV_NOT_LEADER => c"etcdserver: not leader",
            QKV_STOPPED => c"node is stopped",
            QKV_TRANSPORT => c"peer transport error",
            QKV_WATCH_CANCELED => c"the watch was cancelled",
            QKV_EMPTY_KEY => c"etcdserver: key is not provided",
            QKV_KEY_NOT_FOUND => c"etcdserver: key not found",
            QKV_VALUE_PROVIDED => c"etcdserver: value is provided",
            QKV_LEASE_PROVIDED => c"etcdserver: lease is provided",
            QKV_TOO_MANY_OPS => c"etcdserver: too many operations in txn request",
            QKV_DUPLICATE_KEY => c"etcdserver: duplicate key given in txn request",
            QKV_COMPACTED => c"etcdserver: mvcc: required revision has been compacted",
            QKV_FUTURE_REVISION => c"etcdserver: mvcc: required revision is a future revision",
            QKV_REQUEST_TOO_LARGE => c"etcdserver: request is too large",
            QKV_LEASE_NOT_FOUND => c"etcdserver: requested lease not found",
            QKV_LEASE_EXISTS => c"etcdserver: lease already exists",
            QKV_LEASE_TTL_TOO_LARGE => c"etcdserver: too large lease TTL",
            QKV_MEMBER_NOT_FOUND => c"etcdserver: member not found",
            QKV_PEER_ADDR_EXISTS => c"etcdserver: Peer URLs already exists",
            QKV_MEMBER_NOT_LEARNER => c"etcdserver: can only promote a learner member",
            QKV_BAD_LEADER_TRANSFEREE => c"etcdserver: bad leader transferee",
            QKV_CLUSTER_MISMATCH => c"cluster id mismatch",
            QKV_MEMBERSHIP_CHANGE => c"membership change rejected",
            QKV_DATA_DIR_LOCKED => c"data dir is locked by another quorumkv node",
            QKV_DATA_DIR_INCOMPATIBLE => c"data dir was written by an incompatible version",
            QKV_DATA_DIR_CORRUPTED => c"data dir is damaged",
            QKV_STORAGE => c"fatal storage error",
            QKV_FATAL => c"fatal raft error",
        }
    }

    fn from_code(code: i32) -> Option<qkv_result> {
        const ALL: [qkv_result; 35] = [
            QKV_OK,
            QKV_NULL_PARAMETER,
            QKV_INVALID_ARGUMENT,
            QKV_PANIC,
            QKV_INTERNAL,
            QKV_INVALID_CONFIG,
            QKV_TIMEOUT,
            QKV_NO_LEADER,
            QKV_NOT_LEADER,
            QKV_STOPPED,
            QKV_TRANSPORT,
            QKV_WATCH_CANCELED,
            QKV_EMPTY_KEY,
            QKV_KEY_NOT_FOUND,
            QKV_VALUE_PROVIDED,
            QKV_LEASE_PROVIDED,
            QKV_TOO_MANY_OPS,
            QKV_DUPLICATE_KEY,
            QKV_COMPACTED,
            QKV_FUTURE_REVISION,
            QKV_REQUEST_TOO_LARGE,
            QKV_LEASE_NOT_FOUND,
            QKV_LEASE_EXISTS,
            QKV_LEASE_TTL_TOO_LARGE,
            QKV_MEMBER_NOT_FOUND,
            QKV_PEER_ADDR_EXISTS,
            QKV_MEMBER_NOT_LEARNER,
            QKV_BAD_LEADER_TRANSFEREE,
            QKV_CLUSTER_MISMATCH,
            QKV_MEMBERSHIP_CHANGE,
            QKV_DATA_DIR_LOCKED,
            QKV_DATA_DIR_INCOMPATIBLE,
            QKV_DATA_DIR_CORRUPTED,
            QKV_STORAGE,
            QKV_FATAL,
        ];
        ALL.into_iter().find(|r| *r as i32 == code)
    }
}

/// A failure on its way out of an exported function: the code and the detail text.
pub(crate) struct Failure {
    code: qkv_result,
    detail: String,
}

impl Failure {
    pub(crate) fn null(what: &str) -> Failure {
        Failure { code: QKV_NULL_PARAMETER, detail: format!("{what} is NULL") }
    }

    pub(crate) fn invalid(detail: impl Into<String>) -> Failure {
        Failure { code: QKV_INVALID_ARGUMENT, detail: detail.into() }
    }

    pub(crate) fn with_code(code: qkv_result, detail: impl Into<String>) -> Failure {
        Failure { code, detail: detail.into() }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure { code: qkv_result::of_error(&e), detail: e.to_string() }
    }
}

pub(crate) type FfiResult<T = ()> = std::result::Result<T, Failure>;

thread_local! {
    /// The detail of the last failed call on this thread.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Runs an exported function's body inside the panic boundary, records a failure's
/// detail (on this thread, and on `errors` when given) and returns its code.
pub(crate) fn boundary(errors: Option<&LastError>, body: impl FnOnce() -> FfiResult) -> qkv_result {
    let failure = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return QKV_OK,
        Ok(Err(f)) => f,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Failure::with_code(QKV_PANIC, format!("panic inside quorumkv: {what}"))
        }
    };
    let text = to_cstring(&failure.detail);
    if let Some(errors) = errors {
        errors.set(text.clone());
    }
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
    failure.code
}

/// Runs a body that cannot fail inside the panic boundary; `fallback` on a panic.
pub(crate) fn infallible<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// Drops an object the library handed out as `Box::into_raw`; NULL is a no-op. The body
/// of every plain `qkv_<type>_free`.
pub(crate) unsafe fn free_boxed<T>(ptr: *mut T) {
    infallible((), || {
        if !ptr.is_null() {
            // SAFETY: made by `Box::into_raw` in this library and freed once, per the
            // contract of the `_free` function calling this.
            drop(unsafe { Box::from_raw(ptr) });
        }
    })
}

/// A handle's last error detail.
#[derive(Default)]
pub(crate) struct LastError(std::sync::Mutex<CString>);

impl LastError {
    fn set(&self, text: CString) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = text;
    }

    fn copy_to(&self, buf: *mut c_char, len: usize) -> usize {
        copy_text(&self.0.lock().unwrap_or_else(|p| p.into_inner()), buf, len)
    }
}

fn to_cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

/// Copies `text` with its NUL into `buf` (truncated to `len` bytes, always
/// NUL-terminated when `len > 0`); returns the full length without the NUL.
fn copy_text(text: &CStr, buf: *mut c_char, len: usize) -> usize {
    let bytes = text.to_bytes();
    if !buf.is_null() && len > 0 {
        let n = bytes.len().min(len - 1);
        // SAFETY: the caller gives `len` writable bytes at `buf`.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
        }
    }
    bytes.len()
}

// ----- argument helpers -----

/// `(ptr, len)` as a byte slice; NULL is allowed with length 0.
pub(crate) unsafe fn bytes_arg<'a>(ptr: *const u8, len: usize, what: &str) -> FfiResult<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    if len > isize::MAX as usize {
        return Err(Failure::invalid(format!("{what}: length {len} is not a valid length")));
    }
    // SAFETY: the caller gives `len` readable bytes at `ptr`.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A required NUL-terminated UTF-8 string.
pub(crate) unsafe fn text_arg<'a>(ptr: *const c_char, what: &str) -> FfiResult<&'a str> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: the caller gives a NUL-terminated string.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str().map_err(|_| Failure::invalid(format!("{what} is not valid UTF-8")))
}

/// A required pointer, as a reference.
pub(crate) unsafe fn ref_arg<'a, T>(ptr: *const T, what: &str) -> FfiResult<&'a T> {
    // SAFETY: the caller gives NULL or a valid pointer.
    unsafe { ptr.as_ref() }.ok_or_else(|| Failure::null(what))
}

/// A required out-pointer.
pub(crate) unsafe fn out_arg<'a, T>(ptr: *mut T, what: &str) -> FfiResult<&'a mut T> {
    // SAFETY: the caller gives NULL or a valid, writable pointer.
    unsafe { ptr.as_mut() }.ok_or_else(|| Failure::null(what))
}

/// Options structs that start with `size_t size` (dqlite's extensible-struct pattern):
/// a caller built against an older header passes a smaller size; the fields it does not
/// know read as zero.
pub(crate) unsafe trait SizedOptions: Copy {
    /// All fields zero (also every `bool` false), with `size` set.
    fn zeroed() -> Self;
}

/// The `size` a caller set in a struct of type `T` that starts with `size_t size`,
/// checked to cover the size field and not exceed `T`.
pub(crate) unsafe fn struct_size<T>(ptr: *const T, what: &str) -> FfiResult<usize> {
    // SAFETY: non-NULL, and the struct starts with its size.
    let size = unsafe { ptr.cast::<usize>().read_unaligned() };
    if size < std::mem::size_of::<usize>() || size > std::mem::size_of::<T>() {
        return Err(Failure::invalid(format!(
            "{what}.size is {size}: set it to sizeof({what}) ({} in this library)",
            std::mem::size_of::<T>()
        )));
    }
    Ok(size)
}

/// Reads an options struct: NULL gives the defaults (all zero).
pub(crate) unsafe fn options_arg<T: SizedOptions>(ptr: *const T, what: &str) -> FfiResult<T> {
    let mut out = T::zeroed();
    if ptr.is_null() {
        return Ok(out);
    }
    // SAFETY: the struct starts with its size.
    let size = unsafe { struct_size(ptr, what) }?;
    // SAFETY: `size` readable bytes at `ptr`; `out` has room for them; every field is
    // plain integers or bools, and the caller wrote valid values.
    unsafe { std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), (&mut out as *mut T).cast::<u8>(), size) };
    Ok(out)
}

// ----- exported basics -----

/// A byte buffer handed out by the library. The caller owns it and frees it with
/// `qkv_bytes_free` (once). `ptr` is NULL when `len` is 0.
#[repr(C)]
#[derive(Debug)]
pub struct qkv_bytes {
    /// The bytes.
    pub ptr: *mut u8,
    /// How many.
    pub len: usize,
}

impl qkv_bytes {
    pub(crate) fn from_vec(v: Vec<u8>) -> qkv_bytes {
        if v.is_empty() {
            return qkv_bytes { ptr: std::ptr::null_mut(), len: 0 };
        }
        let boxed = v.into_boxed_slice();
        let len = boxed.len();
        qkv_bytes { ptr: Box::into_raw(boxed).cast::<u8>(), len }
    }
}

/// Frees a buffer the library handed out and sets it to `{NULL, 0}`. NULL, or a buffer
/// already freed this way, is a no-op. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn qkv_bytes_free(bytes: *mut qkv_bytes) {
    infallible((), || {
        // SAFETY: NULL or a valid qkv_bytes the library filled.
        let Some(b) = (unsafe { bytes.as_mut() }) else { return };
        if !b.ptr.is_null() && b.len > 0 {
            // SAFETY: made by `qkv_bytes::from_vec` from a boxed slice of this length.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(b.ptr, b.len)) });
        }
        b.ptr = std::ptr::null_mut();
        b.len = 0;
    })
}

/// The library version, as a static NUL-terminated string ("0.1.0"). Never fails; the
/// string is never freed. Thread-safe.
#[no_mangle]
pub extern "C" fn qkv_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The ABI version this library implements (`QKV_ABI_VERSION` of its header). A program
/// can compare it with the `QKV_ABI_VERSION` it was compiled with. Thread-safe.
#[no_mangle]
pub extern "C" fn qkv_abi_version() -> u32 {
    QKV_ABI_VERSION
}

/// A static, NUL-terminated text for a result code (for an unknown code: "unknown
/// qkv_result"). Never NULL, never freed. Thread-safe. The detail of a particular
/// failure is in `qkv_last_error` and `qkv_node_last_error`.
#[no_mangle]
pub extern "C" fn qkv_result_message(result: i32) -> *const c_char {
    infallible(c"unknown qkv_result".as_ptr(), || {
        qkv_result::from_code(result).map_or(c"unknown qkv_result", qkv_result::message).as_ptr()
    })
}

/// Copies the detail text of the last failed call made *on this thread* (any function)
/// into `buf`, truncated to `len` bytes and NUL-terminated (when `len > 0`); returns the
/// full length without the NUL, so a caller may size a buffer and call again. `buf` may
/// be NULL with `len` 0. The text is "" before the first failure; a successful call does
/// not clear it. Thread-safe (the text is per thread).
#[no_mangle]
pub unsafe extern "C" fn qkv_last_error(buf: *mut c_char, len: usize) -> usize {
    infallible(0, || LAST_ERROR.with(|e| copy_text(&e.borrow(), buf, len)))
}
