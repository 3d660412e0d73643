//! `qkv_node`: start, stop, status and membership of a node hosted in this process.

use std::ffi::{c_char, CString};
use std::sync::Mutex;

use super::{boundary, infallible, out_arg, text_arg, Failure, FfiResult, LastError};
use crate::ffi::{qkv_config, qkv_result};
use crate::node::{Member, Node};
use crate::server::{ClientServer, ServeOptions};

/// A node running in this process (opaque). Made by `qkv_node_start`, released by
/// `qkv_node_free`.
///
/// Thread-safety: every function taking a `qkv_node *` may be called from any thread,
/// concurrently, except `qkv_node_free`, which must be the last call on the handle.
/// Blocking calls wait on the calling thread while the library's own threads do the
/// work; they may also be called from a watch callback.
pub struct qkv_node {
    pub(crate) node: Node,
    server: Mutex<Option<ClientServer>>,
    pub(crate) errors: LastError,
    name: CString,
}

/// Runs `body` on a node handle inside the panic boundary; failures are recorded on the
/// handle too.
pub(crate) fn with_node(node: *const qkv_node, body: impl FnOnce(&qkv_node) -> FfiResult) -> qkv_result {
    // SAFETY: NULL or a handle from `qkv_node_start` that is not freed yet.
    let handle = unsafe { node.as_ref() };
    boundary(handle.map(|h| &h.errors), || body(handle.ok_or_else(|| Failure::null("node"))?))
}

/// Writes `value` into a caller's out-struct that starts with `size_t size`, only as far
/// as the caller's `size` says (a caller built against an older header gets the fields it
/// knows).
pub(crate) unsafe fn write_sized<T: Copy>(out: *mut T, value: T, what: &str) -> FfiResult {
    if out.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: the caller's struct starts with its size.
    let size = unsafe { super::struct_size(out, what) }?;
    let src = (&value as *const T).cast::<u8>();
    // SAFETY: `size` bytes fit both; the size field itself is rewritten with the same value.
    unsafe {
        std::ptr::copy_nonoverlapping(
            src.add(std::mem::size_of::<usize>()),
            out.cast::<u8>().add(std::mem::size_of::<usize>()),
            size - std::mem::size_of::<usize>(),
        )
    };
    Ok(())
}

/// Starts a node from `config` (copied; free it whenever): locks and opens the data dir,
/// starts Raft and the peer port, bootstraps or joins as the config says (a data dir that
/// already holds a node rejoins with its identity), and serves the client port if one is
/// set. Blocks until the node serves requests (a joining node: until it is a member).
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_CONFIG`, `QKV_DATA_DIR_LOCKED`,
/// `QKV_DATA_DIR_INCOMPATIBLE`, `QKV_DATA_DIR_CORRUPTED`, `QKV_CLUSTER_MISMATCH` (data
/// untouched), `QKV_TRANSPORT` (a port in use, no member reachable to join), `QKV_STORAGE`.
/// The detail is in `qkv_last_error`. On success `*out` owns the node: release it with
/// `qkv_node_free`. Thread-safe; several nodes may run in one process.
#[no_mangle]
pub unsafe extern "C" fn qkv_node_start(config: *const qkv_config, out: *mut *mut qkv_node) -> qkv_result {
    boundary(None, || {
        // SAFETY: NULL or a live config; a writable out-pointer.
        let (config, out) = unsafe { (super::ref_arg(config, "config")?, out_arg(out, "out")?) };
        let node = Node::start_blocking(config.node_config())?;
        let server = match serve_client_port(&node, config) {
            Ok(server) => server,
            Err(e) => {
                let _ = node.stop_blocking();
                return Err(e);
            }
        };
        let name = CString::new(node.name()).map_err(|_| Failure::invalid("name contains NUL"))?;
        let handle = qkv_node { node, server: Mutex::new(server), errors: LastError::default(), name };
        *out = Box::into_raw(Box::new(handle));
        Ok(())
    })
}

fn serve_client_port(node: &Node, config: &qkv_config) -> FfiResult<Option<ClientServer>> {
    let Some(addr) = &config.client_addr else { return Ok(None) };
    let tls = config.client_tls.as_ref().map(|t| t.server_tls()).transpose()?;
    let options = ServeOptions { tls, metrics: None };
    Ok(Some(node.block_on(ClientServer::serve(node.clone(), addr, options))?))
}

fn stop(handle: &qkv_node) -> FfiResult {
    let server = handle.server.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(server) = server {
        handle.node.block_on(async move {
            server.stop().await;
            Ok(())
        })?;
    }
    handle.node.stop_blocking()?;
    Ok(())
}

/// Stops the node: a leader first hands leadership to the most up-to-date voter, then
/// the client port, Raft and the peer port stop and the data dir is unlocked, so the same
/// config may be started again (in this process or another). Idempotent. Watches of the
/// node end with `QKV_STOPPED`; other calls on the handle then fail with `QKV_STOPPED`.
/// The handle stays valid until `qkv_node_free`. Blocking; thread-safe.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT` (called from inside an async
/// runtime).
#[no_mangle]
pub unsafe extern "C" fn qkv_node_stop(node: *const qkv_node) -> qkv_result {
    with_node(node, stop)
}

/// Stops the node if it runs (as `qkv_node_stop`) and releases the handle. NULL is a
/// no-op. Must be the last call on the handle; watches and keep-alives made from it stay
/// valid (they report `QKV_STOPPED`) until freed themselves.
#[no_mangle]
pub unsafe extern "C" fn qkv_node_free(node: *mut qkv_node) {
    infallible((), || {
        if node.is_null() {
            return;
        }
        // SAFETY: made by `qkv_node_start`, freed once, no other call in flight.
        let handle = unsafe { Box::from_raw(node) };
        if let Err(f) = stop(&handle) {
            tracing::warn!(error = %f.detail, "stopping a node on qkv_node_free failed");
        }
    })
}

/// Copies the detail text of the last failed call on this node handle (from any thread)
/// into `buf` like `qkv_last_error` does; returns the full length. NULL node: 0.
#[no_mangle]
pub unsafe extern "C" fn qkv_node_last_error(node: *const qkv_node, buf: *mut c_char, len: usize) -> usize {
    infallible(0, || {
        // SAFETY: NULL or a live handle.
        unsafe { node.as_ref() }.map_or(0, |h| h.errors.copy_to(buf, len))
    })
}

/// This node's member id (stable across restarts); 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn qkv_node_id(node: *const qkv_node) -> u64 {
    // SAFETY: NULL or a live handle.
    infallible(0, || unsafe { node.as_ref() }.map_or(0, |h| h.node.id()))
}

/// This node's name, NUL-terminated, owned by the handle (valid until `qkv_node_free`);
/// NULL for NULL.
#[no_mangle]
pub unsafe extern "C" fn qkv_node_name(node: *const qkv_node) -> *const c_char {
    // SAFETY: NULL or a live handle.
    infallible(std::ptr::null(), || unsafe { node.as_ref() }.map_or(std::ptr::null(), |h| h.name.as_ptr()))
}

/// Copies the address the client port is bound to (`host:port`; useful with port 0)
/// into `buf` like `qkv_last_error` does; returns the full length, 0 when the node
/// serves no client port (or for NULL).
#[no_mangle]
pub unsafe extern "C" fn qkv_node_client_addr(node: *const qkv_node, buf: *mut c_char, len: usize) -> usize {
    infallible(0, || {
        // SAFETY: NULL or a live handle.
        let Some(h) = (unsafe { node.as_ref() }) else { return 0 };
        let server = h.server.lock().unwrap_or_else(|p| p.into_inner());
        let Some(addr) = server.as_ref().map(|s| s.local_addr().to_string()) else { return 0 };
        super::copy_text(&super::to_cstring(&addr), buf, len)
    })
}

/// One node's state (etcd's endpoint status, and more). Set `size` to
/// `sizeof(qkv_status)` before passing it to `qkv_node_status`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct qkv_status {
    /// `sizeof(qkv_status)`, set by the caller.
    pub size: usize,
    /// This member's id.
    pub id: u64,
    /// The cluster id (0 while a joining node is not accepted yet).
    pub cluster_id: u64,
    /// Current Raft term.
    pub term: u64,
    /// The leader this node knows of; 0 for none.
    pub leader: u64,
    /// Highest log index known committed.
    pub commit_index: u64,
    /// Highest log index applied to the state machine.
    pub applied_index: u64,
    /// Highest log index in the local log.
    pub last_log_index: u64,
    /// Current MVCC revision.
    pub revision: i64,
    /// MVCC compaction point.
    pub compact_revision: i64,
    /// Size of the data dir on disk, bytes.
    pub db_size_bytes: u64,
    /// fsyncs of the Raft log so far.
    pub fsync_count: u64,
    /// Watches open on this node.
    pub watch_count: u64,
    /// Leader changes seen since start.
    pub leader_changes: u64,
    /// Whether this node is the leader.
    pub is_leader: bool,
    /// Whether this node is a non-voting learner.
    pub is_learner: bool,
    /// Whether the node has a live leader (it heard from one recently).
    pub has_leader: bool,
    /// Whether Raft stopped on an unrecoverable error (full disk, failed fsync); the
    /// text is in `qkv_node_last_error` after this call.
    pub fatal: bool,
}

/// Fills `*out` (whose `size` the caller set) with the node's status. Local, no network
/// round; thread-safe.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT` (bad `size`), `QKV_STOPPED`.
#[no_mangle]
pub unsafe extern "C" fn qkv_node_status(node: *const qkv_node, out: *mut qkv_status) -> qkv_result {
    with_node(node, |h| {
        let s = h.node.status()?;
        if let Some(fatal) = &s.fatal_error {
            h.errors.set(super::to_cstring(fatal));
        }
        let status = qkv_status {
            size: std::mem::size_of::<qkv_status>(),
            id: s.id,
            cluster_id: s.cluster_id,
            term: s.term,
            leader: s.leader.unwrap_or(0),
            commit_index: s.commit_index,
            applied_index: s.applied_index,
            last_log_index: s.last_log_index,
            revision: s.revision,
            compact_revision: s.compact_revision,
            db_size_bytes: s.db_size_bytes,
            fsync_count: s.fsync_count,
            watch_count: s.watch_count as u64,
            leader_changes: s.leader_changes,
            is_leader: s.is_leader,
            is_learner: s.is_learner,
            has_leader: s.has_leader,
            fatal: s.fatal_error.is_some(),
        };
        // SAFETY: a writable qkv_status whose size the caller set.
        unsafe { write_sized(out, status, "qkv_status") }
    })
}

/// Writes the id of the leader this node knows of into `*out` (local, no network round).
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_NO_LEADER` (none known), `QKV_STOPPED`.
#[no_mangle]
pub unsafe extern "C" fn qkv_node_leader(node: *const qkv_node, out: *mut u64) -> qkv_result {
    with_node(node, |h| {
        // SAFETY: a writable out-pointer.
        let out = unsafe { out_arg(out, "out") }?;
        if !h.node.is_running() {
            return Err(crate::Error::Stopped.into());
        }
        *out = h.node.leader().ok_or(crate::Error::NoLeader)?;
        Ok(())
    })
}

struct MemberC {
    id: u64,
    name: CString,
    peer_addr: CString,
    client_addr: CString,
    is_learner: bool,
}

/// A member list (opaque), owned by the caller: read it with `qkv_members_len` and
/// `qkv_members_get`, free it with `qkv_members_free`. Immutable: safe to read from
/// several threads.
pub struct qkv_members {
    list: Vec<MemberC>,
}

/// One member, borrowed from its `qkv_members` (the strings are valid until that list
/// is freed).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct qkv_member {
    /// Member id.
    pub id: u64,
    /// Member name (NUL-terminated; "" for a member added but not started yet).
    pub name: *const c_char,
    /// Its (first) peer address, `host:port`.
    pub peer_addr: *const c_char,
    /// Its (first) client address, "" when it serves none.
    pub client_addr: *const c_char,
    /// Whether it is a non-voting learner.
    pub is_learner: bool,
}

fn member_c(m: Member) -> MemberC {
    let first = |v: &[String]| super::to_cstring(v.first().map_or("", String::as_str));
    MemberC {
        id: m.id,
        name: super::to_cstring(&m.name),
        peer_addr: first(&m.peer_addrs),
        client_addr: first(&m.client_addrs),
        is_learner: m.is_learner,
    }
}

/// The members as this node knows them (local, no network round), ordered by id. On
/// success `*out` owns a new list (free it with `qkv_members_free`).
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_STOPPED`.
#[no_mangle]
pub unsafe extern "C" fn qkv_node_members(node: *const qkv_node, out: *mut *mut qkv_members) -> qkv_result {
    with_node(node, |h| {
        // SAFETY: a writable out-pointer.
        let out = unsafe { out_arg(out, "out") }?;
        let list = h.node.members()?.into_iter().map(member_c).collect();
        *out = Box::into_raw(Box::new(qkv_members { list }));
        Ok(())
    })
}

/// Number of members in the list; 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn qkv_members_len(members: *const qkv_members) -> usize {
    // SAFETY: NULL or a live list.
    infallible(0, || unsafe { members.as_ref() }.map_or(0, |m| m.list.len()))
}

/// Member `index` of the list (borrowed; see `qkv_member`).
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT` (index out of range).
#[no_mangle]
pub unsafe extern "C" fn qkv_members_get(
    members: *const qkv_members,
    index: usize,
    out: *mut qkv_member,
) -> qkv_result {
    boundary(None, || {
        // SAFETY: a live list and a writable out-pointer.
        let (members, out) = unsafe { (super::ref_arg(members, "members")?, out_arg(out, "out")?) };
        let m =
            members.list.get(index).ok_or_else(|| Failure::invalid(format!("member index {index} out of range")))?;
        *out = qkv_member {
            id: m.id,
            name: m.name.as_ptr(),
            peer_addr: m.peer_addr.as_ptr(),
            client_addr: m.client_addr.as_ptr(),
            is_learner: m.is_learner,
        };
        Ok(())
    })
}

/// Frees a member list. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn qkv_members_free(members: *mut qkv_members) {
    // SAFETY: NULL or an object of this type from this library, freed once.
    unsafe { super::free_boxed(members) }
}

/// Adds a member (etcd `MemberAdd`): `peer_addr` is where the new node will listen;
/// start it afterwards with a config that joins through any member. With `learner` it
/// stays a non-voting learner until promoted. `name` may be "" (the started node brings
/// its own). Its id goes to `*out_id` (may be NULL). Blocking; forwarded to the leader.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_INVALID_ARGUMENT`, `QKV_PEER_ADDR_EXISTS`,
/// `QKV_MEMBERSHIP_CHANGE`, `QKV_NO_LEADER`, `QKV_TIMEOUT`, `QKV_STOPPED`.
#[no_mangle]
pub unsafe extern "C" fn qkv_node_add_member(
    node: *const qkv_node,
    name: *const c_char,
    peer_addr: *const c_char,
    learner: bool,
    out_id: *mut u64,
) -> qkv_result {
    with_node(node, |h| {
        // SAFETY: NUL-terminated strings.
        let (name, addr) = unsafe { (text_arg(name, "name")?, text_arg(peer_addr, "peer_addr")?) };
        let member = h.node.add_member_blocking(name, addr, learner)?;
        // SAFETY: NULL or a writable out-pointer.
        if let Some(out) = unsafe { out_id.as_mut() } {
            *out = member.id;
        }
        Ok(())
    })
}

/// Removes member `id` from the cluster (it may be this node). Blocking; forwarded to
/// the leader.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_MEMBER_NOT_FOUND`, `QKV_MEMBERSHIP_CHANGE`,
/// `QKV_NO_LEADER`, `QKV_TIMEOUT`, `QKV_STOPPED`.
#[no_mangle]
pub unsafe extern "C" fn qkv_node_remove_member(node: *const qkv_node, id: u64) -> qkv_result {
    with_node(node, |h| Ok(h.node.remove_member_blocking(id)?))
}

/// Promotes learner `id` to a voter. Blocking; forwarded to the leader.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_MEMBER_NOT_FOUND`, `QKV_MEMBER_NOT_LEARNER`,
/// `QKV_MEMBERSHIP_CHANGE`, `QKV_NO_LEADER`, `QKV_TIMEOUT`, `QKV_STOPPED`.
#[no_mangle]
pub unsafe extern "C" fn qkv_node_promote_member(node: *const qkv_node, id: u64) -> qkv_result {
    with_node(node, |h| Ok(h.node.promote_member_blocking(id)?))
}

/// Hands leadership to voter `target` (etcd `MoveLeader`). Blocking.
///
/// Errors: `QKV_NULL_PARAMETER`, `QKV_BAD_LEADER_TRANSFEREE`, `QKV_MEMBER_NOT_FOUND`,
/// `QKV_NO_LEADER`, `QKV_TIMEOUT`, `QKV_STOPPED`.
#[no_mangle]
pub unsafe extern "C" fn qkv_node_move_leader(node: *const qkv_node, target: u64) -> qkv_result {
    with_node(node, |h| Ok(h.node.move_leader_blocking(target)?))
}
