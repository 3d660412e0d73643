//! etcd's data model: requests, responses and key-values, as plain Rust types.
//!
//! Field names and meanings follow etcd's `rpc.proto` and `kv.proto`, so the gRPC layer maps
//! them one to one. Revisions are `i64` as in etcd.

use serde::{Deserialize, Serialize};

/// One key's state at one revision (etcd `mvccpb.KeyValue`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key; never empty.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// Revision of the last creation of this key.
    pub create_revision: i64,
    /// Revision of the last modification of this key.
    pub mod_revision: i64,
    /// Number of modifications since creation (1 after creation; reset on delete).
    pub version: i64,
    /// The value (empty with `keys_only`).
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Attached lease id, 0 for none.
    pub lease: i64,
}

/// Returned with every response (etcd `ResponseHeader`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseHeader {
    /// Stable id of the cluster.
    pub cluster_id: u64,
    /// Stable id of the member that served the request.
    pub member_id: u64,
    /// Store revision when the request was served (after it, for writes).
    pub revision: i64,
    /// Raft term when the request was served.
    pub raft_term: u64,
}

/// Sort order of a range (etcd `RangeRequest.SortOrder`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortOrder {
    /// Key order, ascending (unless a non-key target is given: then ascending by target).
    #[default]
    None,
    /// Ascending by the sort target.
    Ascend,
    /// Descending by the sort target.
    Descend,
}

/// What a range is sorted by (etcd `RangeRequest.SortTarget`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortTarget {
    /// The key.
    #[default]
    Key,
    /// The version.
    Version,
    /// The create revision.
    Create,
    /// The mod revision.
    Mod,
    /// The value.
    Value,
}

/// Read keys (etcd `RangeRequest`).
///
/// `range_end` empty reads `key` alone; `range_end == [0]` reads every key `>= key`;
/// otherwise the half-open range `[key, range_end)`. [`RangeRequest::prefix`] builds a
/// prefix range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRequest {
    /// First key (inclusive).
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// End of the range (exclusive); see the type docs.
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
    /// Maximum number of keys returned; 0 is no limit. `more` tells whether keys were cut.
    pub limit: i64,
    /// Read at this revision; 0 (or less) reads the current one.
    pub revision: i64,
    /// Sort order.
    pub sort_order: SortOrder,
    /// Sort target.
    pub sort_target: SortTarget,
    /// Serve from the local state machine without a Raft round (may be stale).
    pub serializable: bool,
    /// Return keys without values.
    pub keys_only: bool,
    /// Return only the count.
    pub count_only: bool,
    /// Only keys with `mod_revision >=` this (0: no bound).
    pub min_mod_revision: i64,
    /// Only keys with `mod_revision <=` this (0: no bound).
    pub max_mod_revision: i64,
    /// Only keys with `create_revision >=` this (0: no bound).
    pub min_create_revision: i64,
    /// Only keys with `create_revision <=` this (0: no bound).
    pub max_create_revision: i64,
}

impl RangeRequest {
    /// Reads one key.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        RangeRequest { key: key.into(), ..Default::default() }
    }

    /// Reads every key starting with `prefix` (an empty prefix reads every key).
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let key = prefix.into();
        let (key, range_end) = if key.is_empty() {
            (vec![0], vec![0])
        } else {
            let end = prefix_end(&key);
            (key, end)
        };
        RangeRequest { key, range_end, ..Default::default() }
    }

    /// Reads the half-open range `[key, range_end)`.
    pub fn range(key: impl Into<Vec<u8>>, range_end: impl Into<Vec<u8>>) -> Self {
        RangeRequest { key: key.into(), range_end: range_end.into(), ..Default::default() }
    }
}

/// The smallest key greater than every key starting with `prefix` (etcd `GetPrefixRangeEnd`).
/// A prefix of only `0xff` bytes has no such key: the result is `[0]`, meaning "to the end".
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

/// Result of a range (etcd `RangeResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    /// Response header.
    pub header: ResponseHeader,
    /// The keys (empty with `count_only`).
    pub kvs: Vec<KeyValue>,
    /// Whether more keys matched than `limit` allowed.
    pub more: bool,
    /// Number of keys in the range at the read revision (before `limit` and filters).
    pub count: i64,
}

/// Write one key (etcd `PutRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    /// The key; must not be empty.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Lease to attach, 0 for none.
    pub lease: i64,
    /// Return the previous key-value.
    pub prev_kv: bool,
    /// Keep the current value (the key must exist, `value` must be empty).
    pub ignore_value: bool,
    /// Keep the current lease (the key must exist, `lease` must be 0).
    pub ignore_lease: bool,
}

impl PutRequest {
    /// A plain put of `value` at `key`.
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        PutRequest { key: key.into(), value: value.into(), ..Default::default() }
    }
}

/// Result of a put (etcd `PutResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResponse {
    /// Response header; `revision` is the revision of this put.
    pub header: ResponseHeader,
    /// The previous key-value, when asked for and present.
    pub prev_kv: Option<KeyValue>,
}

/// Delete keys (etcd `DeleteRangeRequest`); `range_end` as in [`RangeRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeRequest {
    /// First key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// End of the range; see [`RangeRequest`].
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
    /// Return the deleted key-values.
    pub prev_kv: bool,
}

impl DeleteRangeRequest {
    /// Deletes one key.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        DeleteRangeRequest { key: key.into(), ..Default::default() }
    }

    /// Deletes every key starting with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let r = RangeRequest::prefix(prefix);
        DeleteRangeRequest { key: r.key, range_end: r.range_end, prev_kv: false }
    }
}

/// Result of a delete (etcd `DeleteRangeResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeResponse {
    /// Response header.
    pub header: ResponseHeader,
    /// Number of keys deleted.
    pub deleted: i64,
    /// The deleted key-values, when asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// How a [`Compare`] compares (etcd `Compare.CompareResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareResult {
    /// `==`
    Equal,
    /// `>`
    Greater,
    /// `<`
    Less,
    /// `!=`
    NotEqual,
}

/// What a [`Compare`] compares, with the operand (etcd `Compare.target` + `target_union`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// The key's version (0 when absent).
    Version(i64),
    /// The key's create revision (0 when absent).
    Create(i64),
    /// The key's mod revision (0 when absent).
    Mod(i64),
    /// The key's value (a compare on an absent key is false).
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The key's lease (0 when absent or none).
    Lease(i64),
}

/// A transaction guard (etcd `Compare`). With a `range_end`, every key in the range must
/// satisfy it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    /// The comparison.
    pub result: CompareResult,
    /// The target and its operand.
    pub target: CompareTarget,
    /// The key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// End of the range; see [`RangeRequest`].
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
}

impl Compare {
    /// `key`'s `target` compared with `result` (no range).
    pub fn new(key: impl Into<Vec<u8>>, result: CompareResult, target: CompareTarget) -> Self {
        Compare { result, target, key: key.into(), range_end: Vec::new() }
    }
}

/// One operation of a transaction (etcd `RequestOp`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestOp {
    /// A range.
    Range(RangeRequest),
    /// A put.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
    /// A nested transaction.
    Txn(TxnRequest),
}

/// One result of a transaction (etcd `ResponseOp`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseOp {
    /// Result of a range.
    Range(RangeResponse),
    /// Result of a put.
    Put(PutResponse),
    /// Result of a delete.
    DeleteRange(DeleteRangeResponse),
    /// Result of a nested transaction.
    Txn(TxnResponse),
}

/// A transaction (etcd `TxnRequest`): if every compare holds, `success` runs, else `failure`.
/// All writes of one transaction make one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRequest {
    /// Guards, all evaluated against the state before the transaction.
    pub compare: Vec<Compare>,
    /// Run when every compare holds.
    pub success: Vec<RequestOp>,
    /// Run otherwise.
    pub failure: Vec<RequestOp>,
}

impl TxnRequest {
    /// Whether the transaction (including nested ones) only reads.
    pub fn is_read_only(&self) -> bool {
        self.success.iter().chain(&self.failure).all(|op| match op {
            RequestOp::Range(_) => true,
            RequestOp::Txn(t) => t.is_read_only(),
            RequestOp::Put(_) | RequestOp::DeleteRange(_) => false,
        })
    }

    /// Whether every range in the transaction is serializable (so the whole read-only
    /// transaction may be served locally).
    pub fn is_serializable(&self) -> bool {
        self.success.iter().chain(&self.failure).all(|op| match op {
            RequestOp::Range(r) => r.serializable,
            RequestOp::Txn(t) => t.is_serializable(),
            _ => false,
        })
    }
}

/// Result of a transaction (etcd `TxnResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// Response header.
    pub header: ResponseHeader,
    /// Whether the compares held (and `success` ran).
    pub succeeded: bool,
    /// One response per operation of the branch that ran.
    pub responses: Vec<ResponseOp>,
}

/// Compact the history (etcd `CompactionRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionRequest {
    /// Revisions below this one become unreadable.
    pub revision: i64,
    /// Accepted for compatibility: compaction here is always applied before the response.
    pub physical: bool,
}

/// Result of a compaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionResponse {
    /// Response header.
    pub header: ResponseHeader,
}

/// What happened to a key (etcd `mvccpb.Event.EventType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    /// The key was created or modified.
    Put,
    /// The key was deleted (by a delete, a transaction or a lease revocation).
    Delete,
}

/// One change of one key (etcd `mvccpb.Event`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Put or delete.
    pub kind: EventType,
    /// The key after the change. For a delete: the key, `mod_revision` = the deleting
    /// revision, every other field zero (as etcd sends it).
    pub kv: KeyValue,
    /// The key before the change, when the watch asked for it and the key existed.
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    /// The event of a change of `key` at `revision`: a put when `after` (the key's new
    /// state) is `Some`, a delete otherwise (which carries only the key and revision).
    pub(crate) fn of_change(key: &[u8], revision: i64, after: Option<KeyValue>, prev_kv: Option<KeyValue>) -> Self {
        match after {
            Some(kv) => Event { kind: EventType::Put, kv, prev_kv },
            None => Event {
                kind: EventType::Delete,
                kv: KeyValue { key: key.to_vec(), mod_revision: revision, ..Default::default() },
                prev_kv,
            },
        }
    }
}

/// Grant a lease (etcd `LeaseGrantRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrantRequest {
    /// Time to live in seconds (raised to the cluster's minimum, as etcd does).
    pub ttl: i64,
    /// The id to use; 0 lets the leader choose one.
    pub id: i64,
}

/// Result of a grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrantResponse {
    /// Response header.
    pub header: ResponseHeader,
    /// The lease id.
    pub id: i64,
    /// The granted time to live in seconds.
    pub ttl: i64,
}

/// Revoke a lease and delete every key attached to it (etcd `LeaseRevokeRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRevokeRequest {
    /// The lease id.
    pub id: i64,
}

/// Result of a revoke.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRevokeResponse {
    /// Response header (its revision is the one that deleted the attached keys).
    pub header: ResponseHeader,
}

/// Result of a keep-alive (etcd `LeaseKeepAliveResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseKeepAliveResponse {
    /// Response header.
    pub header: ResponseHeader,
    /// The lease id.
    pub id: i64,
    /// The renewed time to live in seconds.
    pub ttl: i64,
}

/// Result of a time-to-live query (etcd `LeaseTimeToLiveResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTimeToLiveResponse {
    /// Response header.
    pub header: ResponseHeader,
    /// The lease id.
    pub id: i64,
    /// Seconds left (-1 when the lease does not exist or has expired, as in etcd).
    pub ttl: i64,
    /// The time to live the lease was granted with.
    pub granted_ttl: i64,
    /// The attached keys, when asked for.
    pub keys: Vec<Vec<u8>>,
}

/// Result of listing leases (etcd `LeaseLeasesResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseLeasesResponse {
    /// Response header.
    pub header: ResponseHeader,
    /// Every lease id, ascending.
    pub leases: Vec<i64>,
}
