//! Conversions between etcd's wire messages and quorumkv's own types.
//!
//! Both mirror etcd's `rpc.proto` field for field, so every conversion is total: an enum
//! value unknown to this build maps to etcd's default (as a Go etcd server reads it).

use super::pb::etcdserverpb as pb;
use super::pb::mvccpb;
use crate::mvcc::*;
use crate::watch::{WatchRequest, WatchResponse};

pub(crate) fn header(h: ResponseHeader) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        cluster_id: h.cluster_id,
        member_id: h.member_id,
        revision: h.revision,
        raft_term: h.raft_term,
    })
}

pub(crate) fn kv(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub(crate) fn event(e: Event) -> mvccpb::Event {
    let kind = match e.kind {
        EventType::Put => mvccpb::event::EventType::Put,
        EventType::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event { r#type: kind as i32, kv: Some(kv(e.kv)), prev_kv: e.prev_kv.map(kv) }
}

pub(crate) fn range_request(r: pb::RangeRequest) -> RangeRequest {
    use pb::range_request::{SortOrder as O, SortTarget as T};
    let sort_order = match O::try_from(r.sort_order).unwrap_or(O::None) {
        O::None => SortOrder::None,
        O::Ascend => SortOrder::Ascend,
        O::Descend => SortOrder::Descend,
    };
    let sort_target = match T::try_from(r.sort_target).unwrap_or(T::Key) {
        T::Key => SortTarget::Key,
        T::Version => SortTarget::Version,
        T::Create => SortTarget::Create,
        T::Mod => SortTarget::Mod,
        T::Value => SortTarget::Value,
    };
    RangeRequest {
        key: r.key,
        range_end: r.range_end,
        limit: r.limit,
        revision: r.revision,
        sort_order,
        sort_target,
        serializable: r.serializable,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    }
}

pub(crate) fn range_response(r: RangeResponse) -> pb::RangeResponse {
    pb::RangeResponse {
        header: header(r.header),
        kvs: r.kvs.into_iter().map(kv).collect(),
        more: r.more,
        count: r.count,
    }
}

pub(crate) fn put_request(r: pb::PutRequest) -> PutRequest {
    PutRequest {
        key: r.key,
        value: r.value,
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

pub(crate) fn put_response(r: PutResponse) -> pb::PutResponse {
    pb::PutResponse { header: header(r.header), prev_kv: r.prev_kv.map(kv) }
}

pub(crate) fn delete_request(r: pb::DeleteRangeRequest) -> DeleteRangeRequest {
    DeleteRangeRequest { key: r.key, range_end: r.range_end, prev_kv: r.prev_kv }
}

pub(crate) fn delete_response(r: DeleteRangeResponse) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: header(r.header),
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(kv).collect(),
    }
}

fn compare(c: pb::Compare) -> Compare {
    use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let result = match R::try_from(c.result).unwrap_or(R::Equal) {
        R::Equal => CompareResult::Equal,
        R::Greater => CompareResult::Greater,
        R::Less => CompareResult::Less,
        R::NotEqual => CompareResult::NotEqual,
    };
    let number = |u: &Option<U>| match u {
        Some(U::Version(v) | U::CreateRevision(v) | U::ModRevision(v) | U::Lease(v)) => *v,
        _ => 0,
    };
    let target = match T::try_from(c.target).unwrap_or(T::Version) {
        T::Version => CompareTarget::Version(number(&c.target_union)),
        T::Create => CompareTarget::Create(number(&c.target_union)),
        T::Mod => CompareTarget::Mod(number(&c.target_union)),
        T::Lease => CompareTarget::Lease(number(&c.target_union)),
        T::Value => match c.target_union {
            Some(U::Value(v)) => CompareTarget::Value(v),
            _ => CompareTarget::Value(Vec::new()),
        },
    };
    Compare { result, target, key: c.key, range_end: c.range_end }
}

fn request_op(op: pb::RequestOp) -> Option<RequestOp> {
    use pb::request_op::Request as R;
    Some(match op.request? {
        R::RequestRange(r) => RequestOp::Range(range_request(r)),
        R::RequestPut(r) => RequestOp::Put(put_request(r)),
        R::RequestDeleteRange(r) => RequestOp::DeleteRange(delete_request(r)),
        R::RequestTxn(r) => RequestOp::Txn(txn_request(r)),
    })
}

/// An operation with no request set is skipped, as etcd's server does.
pub(crate) fn txn_request(r: pb::TxnRequest) -> TxnRequest {
    TxnRequest {
        compare: r.compare.into_iter().map(compare).collect(),
        success: r.success.into_iter().filter_map(request_op).collect(),
        failure: r.failure.into_iter().filter_map(request_op).collect(),
    }
}

fn response_op(op: ResponseOp) -> pb::ResponseOp {
    use pb::response_op::Response as R;
    let response = match op {
        ResponseOp::Range(r) => R::ResponseRange(range_response(r)),
        ResponseOp::Put(r) => R::ResponsePut(put_response(r)),
        ResponseOp::DeleteRange(r) => R::ResponseDeleteRange(delete_response(r)),
        ResponseOp::Txn(r) => R::ResponseTxn(txn_response(r)),
    };
    pb::ResponseOp { response: Some(response) }
}

pub(crate) fn txn_response(r: TxnResponse) -> pb::TxnResponse {
    pb::TxnResponse {
        header: header(r.header),
        succeeded: r.succeeded,
        responses: r.responses.into_iter().map(response_op).collect(),
    }
}

pub(crate) fn watch_request(r: pb::WatchCreateRequest) -> WatchRequest {
    use pb::watch_create_request::FilterType;
    let has = |f: FilterType| r.filters.contains(&(f as i32));
    WatchRequest {
        no_put: has(FilterType::Noput),
        no_delete: has(FilterType::Nodelete),
        key: r.key,
        range_end: r.range_end,
        start_revision: r.start_revision,
        progress_notify: r.progress_notify,
        prev_kv: r.prev_kv,
        watch_id: r.watch_id,
    }
}

pub(crate) fn watch_response(r: WatchResponse) -> pb::WatchResponse {
    pb::WatchResponse {
        header: header(r.header),
        watch_id: r.watch_id,
        created: false,
        canceled: r.canceled,
        compact_revision: r.compact_revision,
        cancel_reason: r.cancel_reason,
        fragment: false,
        events: r.events.into_iter().map(event).collect(),
    }
}

/// The URL schemes of a member's client and peer addresses. Each port has its own TLS
/// setting (as etcd's `--cert-file` and `--peer-cert-file`), so each has its own scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Schemes {
    pub client: &'static str,
    pub peer: &'static str,
}

impl Schemes {
    pub fn new(client_tls: bool, peer_tls: bool) -> Self {
        let scheme = |tls| if tls { "https" } else { "http" };
        Schemes { client: scheme(client_tls), peer: scheme(peer_tls) }
    }
}

pub(crate) fn member(m: crate::Member, schemes: Schemes) -> pb::Member {
    pb::Member {
        id: m.id,
        name: m.name,
        peer_ur_ls: m.peer_addrs.iter().map(|a| url(a, schemes.peer)).collect(),
        client_ur_ls: m.client_addrs.iter().map(|a| url(a, schemes.client)).collect(),
        is_learner: m.is_learner,
    }
}

/// `host:port` as etcd shows addresses: a URL (`http://host:port`).
pub(crate) fn url(addr: &str, scheme: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("{scheme}://{addr}")
    }
}

/// An etcd peer or client URL as a quorumkv address (`host:port`), or `None` if it is
/// not one (etcd's "given member URLs are invalid").
pub fn addr_of_url(u: &str) -> Option<String> {
    let rest = u.strip_prefix("http://").or_else(|| u.strip_prefix("https://")).unwrap_or(u);
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':')?;
    if host.is_empty() || rest.contains('/') || port.parse::<u16>().is_err() {
        return None;
    }
    Some(rest.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_and_client_urls_take_their_own_ports_scheme() {
        let m = crate::Member {
            id: 7,
            name: "n1".into(),
            peer_addrs: vec!["127.0.0.1:2380".into()],
            client_addrs: vec!["127.0.0.1:2379".into()],
            is_learner: false,
        };
        let urls = |client_tls, peer_tls| {
            let pb = member(m.clone(), Schemes::new(client_tls, peer_tls));
            (pb.client_ur_ls[0].clone(), pb.peer_ur_ls[0].clone())
        };
        let (plain_client, tls_client) = ("http://127.0.0.1:2379", "https://127.0.0.1:2379");
        let (plain_peer, tls_peer) = ("http://127.0.0.1:2380", "https://127.0.0.1:2380");
        assert_eq!(urls(false, false), (plain_client.into(), plain_peer.into()));
        assert_eq!(urls(true, false), (tls_client.into(), plain_peer.into()));
        assert_eq!(urls(false, true), (plain_client.into(), tls_peer.into()));
        assert_eq!(urls(true, true), (tls_client.into(), tls_peer.into()));
    }

    #[test]
    fn urls_and_addresses() {
        assert_eq!(addr_of_url("http://127.0.0.1:2380"), Some("127.0.0.1:2380".into()));
        assert_eq!(addr_of_url("https://host.example:1/"), Some("host.example:1".into()));
        assert_eq!(addr_of_url("127.0.0.1:7001"), Some("127.0.0.1:7001".into()));
        assert_eq!(addr_of_url("http://127.0.0.1"), None);
        assert_eq!(addr_of_url("http://127.0.0.1:x"), None);
        assert_eq!(addr_of_url("http://a:1/path"), None);
        assert_eq!(url("127.0.0.1:1", "http"), "http://127.0.0.1:1");
        assert_eq!(url("https://a:1", "http"), "https://a:1");
    }

    #[test]
    fn compares_keep_their_operands() {
        use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
        let c = compare(pb::Compare {
            result: R::Less as i32,
            target: T::Mod as i32,
            key: b"k".to_vec(),
            target_union: Some(U::ModRevision(7)),
            range_end: vec![],
        });
        assert_eq!(c.result, CompareResult::Less);
        assert_eq!(c.target, CompareTarget::Mod(7));
        let v = compare(pb::Compare {
            result: R::NotEqual as i32,
            target: T::Value as i32,
            key: b"k".to_vec(),
            target_union: Some(U::Value(b"v".to_vec())),
            range_end: b"l".to_vec(),
        });
        assert_eq!(v.target, CompareTarget::Value(b"v".to_vec()));
        assert_eq!(v.range_end, b"l");
    }
}
