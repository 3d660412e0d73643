//! Leases: grant, revoke, keep-alive (once, or in the background), time-to-live, list.

use super::kv::{put_header, qkv_header};
use super::node::{qkv_node, with_node};
use super::{boundary, infallible, out_arg, ref_arg, Failure};
use crate::ffi::qkv_result;
use crate::mvcc::LeaseGrantRequest;
use crate::node::KeepAlive;

/// Grants a lease of `ttl_secs` seconds (raised to the cluster's minimum, 1.5 election
/// timeouts, as etcd does), with id `id` (0: the leader picks one). `out_id` and
/// `out_ttl` (granted TTL) and `header` may be NULL. Blocking; goes through Raft.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_LEASE_EXISTS`, `QKV_LEASE_TTL_TOO_LARGE`,
/// `QKV_INVALID_ARGUMENT`, `QKV_NO_LEADER`, `QKV_TIMEOUT`, `QKV_STOPPED`.
#[no_mangle]
pub unsafe extern "C" fn qkv_lease_grant(
    node: *const qkv_node,
    ttl_secs: i64,
    id: i64,
    out_id: *mut i64,
    out_ttl: *mut i64,
    header: *mut qkv_header,
) -> qkv_result {
    with_node(node, |h| {
        let resp = h.node.lease_grant_blocking(LeaseGrantRequest { ttl: ttl_secs, id })?;
        // SAFETY: NULL or writable out-pointers.
        unsafe {
            if let Some(o) = out_id.as_mut() {
                *o = resp.id;
            }
            if let Some(o) = out_ttl.as_mut() {
                *o = resp.ttl;
            }
            put_header(header, resp.header);
        }
        Ok(())
    })
}

/// Revokes lease `id`: every key attached to it is deleted in one revision. `header`
/// may be NULL. Blocking; goes through Raft.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_LEASE_NOT_FOUND`, `QKV_NO_LEADER`, `QKV_TIMEOUT`,
/// `QKV_STOPPED`.
#[no_mangle]
pub unsafe extern "C" fn qkv_lease_revoke(node: *const qkv_node, id: i64, header: *mut qkv_header) -> qkv_result {
    with_node(node, |h| {
        let resp = h.node.lease_revoke_blocking(id)?;
        // SAFETY: NULL or a writable header.
        unsafe { put_header(header, resp.header) };
        Ok(())
    })
}

/// Renews lease `id` once (one etcd keep-alive message); `out_ttl` (may be NULL)
/// receives the renewed TTL. Blocking; forwarded to the leader.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_LEASE_NOT_FOUND`, `QKV_NO_LEADER`, `QKV_TIMEOUT`,
/// `QKV_STOPPED`.
#[no_mangle]
pub unsafe extern "C" fn qkv_lease_keep_alive_once(node: *const qkv_node, id: i64, out_ttl: *mut i64) -> qkv_result {
    with_node(node, |h| {
        let resp = h.node.lease_keep_alive_blocking(id)?;
        // SAFETY: NULL or a writable out-pointer.
        if let Some(o) = unsafe { out_ttl.as_mut() } {
            *o = resp.ttl;
        }
        Ok(())
    })
}

/// A background keep-alive (opaque): made by `qkv_lease_keep_alive_start`, stopped and
/// released by `qkv_keepalive_free`. Thread-safe.
pub struct qkv_keepalive {
    /// Held for its `Drop`, which stops the renewals.
    _keep_alive: KeepAlive,
}

/// Keeps lease `id` alive in the background (a renewal every third of its TTL, on the
/// library's threads) until `qkv_keepalive_free`, the lease's revocation, or the node's
/// stop. On success `*out` owns the keep-alive.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_LEASE_NOT_FOUND` (at once), `QKV_NO_LEADER`,
/// `QKV_TIMEOUT`, `QKV_STOPPED`.
#[no_mangle]
pub unsafe extern "C" fn qkv_lease_keep_alive_start(
    node: *const qkv_node,
    id: i64,
    out: *mut *mut qkv_keepalive,
) -> qkv_result {
    with_node(node, |h| {
        // SAFETY: a writable out-pointer.
        let out = unsafe { out_arg(out, "out") }?;
        let keep_alive = h.node.lease_keep_alive_stream_blocking(id)?;
        *out = Box::into_raw(Box::new(qkv_keepalive { _keep_alive: keep_alive }));
        Ok(())
    })
}

/// Stops a background keep-alive and releases it (the lease then expires after its
/// TTL unless renewed or revoked). NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn qkv_keepalive_free(keepalive: *mut qkv_keepalive) {
    // SAFETY: NULL or an object of this type from this library, freed once.
    unsafe { super::free_boxed(keepalive) }
}

/// A lease's time to live (etcd `LeaseTimeToLive`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct qkv_lease_info {
    /// The lease id.
    pub id: i64,
    /// Seconds left by the leader's clock; -1 when the lease does not exist or expired.
    pub ttl: i64,
    /// The TTL it was granted with.
    pub granted_ttl: i64,
    /// The response header.
    pub header: qkv_header,
}

/// A list of keys (opaque; the keys attached to a lease), owned by the caller, freed
/// with `qkv_keys_free`. Immutable.
pub struct qkv_keys {
    keys: Vec<Vec<u8>>,
}

/// Lease `id`'s remaining and granted TTL into `*out`; with a non-NULL `keys`, `*keys`
/// receives the attached keys (owned by the caller). A lease that does not exist gives
/// `QKV_OK` with `ttl` -1, as etcd answers. Blocking; forwarded to the leader.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_NO_LEADER`, `QKV_TIMEOUT`, `QKV_STOPPED`.
#[no_mangle]
pub unsafe extern "C" fn qkv_lease_time_to_live(
    node: *const qkv_node,
    id: i64,
    out: *mut qkv_lease_info,
    keys: *mut *mut qkv_keys,
) -> qkv_result {
    with_node(node, |h| {
        // SAFETY: a writable out-pointer.
        let out = unsafe { out_arg(out, "out") }?;
        let resp = h.node.lease_time_to_live_blocking(id, !keys.is_null())?;
        *out = qkv_lease_info { id: resp.id, ttl: resp.ttl, granted_ttl: resp.granted_ttl, header: resp.header.into() };
        // SAFETY: NULL or a writable out-pointer.
        if let Some(k) = unsafe { keys.as_mut() } {
            *k = Box::into_raw(Box::new(qkv_keys { keys: resp.keys }));
        }
        Ok(())
    })
}

/// Number of keys in the list; 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn qkv_keys_len(keys: *const qkv_keys) -> usize {
    // SAFETY: NULL or a live list.
    infallible(0, || unsafe { keys.as_ref() }.map_or(0, |k| k.keys.len()))
}

/// Key `index` of the list: `*key` and `*key_len` receive it, borrowed until the list is
/// freed.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT` (index out of range).
#[no_mangle]
pub unsafe extern "C" fn qkv_keys_get(
    keys: *const qkv_keys,
    index: usize,
    key: *mut *const u8,
    key_len: *mut usize,
) -> qkv_result {
    boundary(None, || {
        // SAFETY: a live list and writable out-pointers.
        let (keys, key, key_len) =
            unsafe { (ref_arg(keys, "keys")?, out_arg(key, "key")?, out_arg(key_len, "key_len")?) };
        let k = keys.keys.get(index).ok_or_else(|| Failure::invalid(format!("index {index} out of range")))?;
        *key = k.as_ptr();
        *key_len = k.len();
        Ok(())
    })
}

/// Frees a key list. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn qkv_keys_free(keys: *mut qkv_keys) {
    // SAFETY: NULL or an object of this type from this library, freed once.
    unsafe { super::free_boxed(keys) }
}

/// Lists the ids of every lease, ascending: writes up to `capacity` of them to `ids`
/// (may be NULL with `capacity` 0) and the total number to `*count`, so a caller can size
/// a buffer and call again. Local (no Raft round); thread-safe.
///
/// Errors: `QKV_NULL_PARAMETER` (node, count, or `ids` with a capacity), `QKV_STOPPED`.
#[no_mangle]
pub unsafe extern "C" fn qkv_lease_list(
    node: *const qkv_node,
    ids: *mut i64,
    capacity: usize,
    count: *mut usize,
) -> qkv_result {
    with_node(node, |h| {
        // SAFETY: a writable out-pointer.
        let count = unsafe { out_arg(count, "count") }?;
        if ids.is_null() && capacity > 0 {
            return Err(Failure::null("ids"));
        }
        let leases = h.node.lease_leases_blocking()?.leases;
        for (i, id) in leases.iter().take(capacity).enumerate() {
            // SAFETY: `capacity` writable slots at `ids`.
            unsafe { *ids.add(i) = *id };
        }
        *count = leases.len();
        Ok(())
    })
}
