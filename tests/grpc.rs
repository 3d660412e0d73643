//! The etcd v3 gRPC port seen by a client library (tonic stubs generated from etcd's own
//! proto): watch-stream semantics etcdctl does not exercise, and error codes.

mod common;

use std::time::Duration;

use common::*;
use quorumkv::server::pb::etcdserverpb as pb;
use quorumkv::server::{ClientServer, ServeOptions};
use quorumkv::Node;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Code;

async fn serve(nodes: &[Node]) -> Vec<ClientServer> {
    let mut servers = Vec::new();
    for n in nodes {
        servers.push(ClientServer::serve(n.clone(), "127.0.0.1:0", ServeOptions::default()).await.unwrap());
    }
    servers
}

async fn channel(server: &ClientServer) -> Channel {
    Channel::from_shared(format!("http://{}", server.local_addr())).unwrap().connect().await.unwrap()
}

fn create(key: &[u8], f: impl FnOnce(&mut pb::WatchCreateRequest)) -> pb::WatchRequest {
    let mut c =
        pb::WatchCreateRequest { key: key.to_vec(), range_end: quorumkv::prefix_end(key), ..Default::default() };
    f(&mut c);
    pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CreateRequest(c)) }
}

async fn next(stream: &mut tonic::Streaming<pb::WatchResponse>) -> pb::WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message()).await.expect("a watch response").unwrap().unwrap()
}

fn put(key: &str, value: Vec<u8>) -> pb::RequestOp {
    let req = pb::PutRequest { key: key.into(), value, ..Default::default() };
    pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(req)) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_stream_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = single_config(dir.path(), "g1");
    config.max_request_bytes = 64 * 1024;
    let node = Node::start(config).await.unwrap();
    let servers = serve(std::slice::from_ref(&node)).await;
    let ch = channel(&servers[0]).await;
    let mut kv = pb::kv_client::KvClient::new(ch.clone());
    let mut watch = pb::watch_client::WatchClient::new(ch.clone());

    let (tx, rx) = mpsc::channel(16);
    let mut stream = watch.watch(ReceiverStream::new(rx)).await.unwrap().into_inner();

    // Client-chosen id, then a duplicate of it: created-and-canceled with id -1.
    tx.send(create(b"a/", |c| c.watch_id = 7)).await.unwrap();
    let r = next(&mut stream).await;
    assert!(r.created && r.watch_id == 7 && r.header.unwrap().cluster_id == node.cluster_id());
    tx.send(create(b"a/", |c| c.watch_id = 7)).await.unwrap();
    let r = next(&mut stream).await;
    assert!(r.created && r.canceled && r.watch_id == -1 && !r.cancel_reason.is_empty(), "{r:?}");

    // Fragmented: one revision larger than the limit arrives in parts, nothing lost.
    tx.send(create(b"f/", |c| {
        c.watch_id = 8;
        c.fragment = true;
        c.prev_kv = true;
    }))
    .await
    .unwrap();
    assert!(next(&mut stream).await.created);
    let ops: Vec<_> = (0..20).map(|i| put(&format!("f/{i:02}"), vec![b'x'; 3000])).collect();
    let txn = pb::TxnRequest { success: ops.clone(), ..Default::default() };
    kv.txn(txn.clone()).await.unwrap();
    kv.txn(txn).await.unwrap(); // Now with prev_kv: about twice the limit.
    let mut events = 0;
    let mut fragments = 0;
    while events < 40 {
        let r = next(&mut stream).await;
        assert_eq!(r.watch_id, 8);
        fragments += usize::from(r.fragment);
        events += r.events.len();
    }
    assert_eq!(events, 40);
    assert!(fragments > 0, "the large revision was not fragmented");

    // Cancel: a final canceled response for the watch.
    let cancel = pb::WatchCancelRequest { watch_id: 8 };
    tx.send(pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CancelRequest(cancel)) })
        .await
        .unwrap();
    let r = next(&mut stream).await;
    assert!(r.canceled && r.watch_id == 8);

    // Progress: watch id -1 (etcd 3.4 sends the stream's progress with the header revision).
    let progress = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(pb::WatchProgressRequest {})),
    };
    tx.send(progress).await.unwrap();
    let r = next(&mut stream).await;
    assert!(r.events.is_empty() && !r.canceled);
    assert_eq!(r.header.unwrap().revision, node.status().unwrap().revision);

    // A compacted start revision: created, then canceled with the compaction revision.
    let rev = node.status().unwrap().revision;
    kv.compact(pb::CompactionRequest { revision: rev, physical: false }).await.unwrap();
    tx.send(create(b"f/", |c| c.start_revision = 2)).await.unwrap();
    let created = next(&mut stream).await;
    assert!(created.created && !created.canceled);
    let canceled = next(&mut stream).await;
    assert!(canceled.canceled && canceled.watch_id == created.watch_id);
    assert_eq!(canceled.compact_revision, rev);

    // Errors carry etcd's codes and texts.
    let err = kv.range(pb::RangeRequest { key: b"k".to_vec(), revision: rev + 100, ..Default::default() }).await;
    let err = err.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision")
    );
    let err = kv.put(pb::PutRequest::default()).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::InvalidArgument, "etcdserver: key is not provided"));

    // Keep-alive of an unknown lease: TTL 0, not an error (as etcd answers).
    let mut lease = pb::lease_client::LeaseClient::new(ch);
    let (ltx, lrx) = mpsc::channel(4);
    let mut alive = lease.lease_keep_alive(ReceiverStream::new(lrx)).await.unwrap().into_inner();
    ltx.send(pb::LeaseKeepAliveRequest { id: 12345 }).await.unwrap();
    let r = alive.message().await.unwrap().unwrap();
    assert_eq!((r.id, r.ttl), (12345, 0));

    drop(tx);
    for s in servers {
        s.stop().await;
    }
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_requiring_a_leader_fails_without_one() {
    let spec = ClusterSpec::new(3);
    let nodes = start_cluster(&spec).await;
    let servers = serve(&nodes).await;
    let leader = leader_index(&nodes, wait_for_leader(&nodes, Duration::from_secs(10)).await);
    let survivor = (leader + 1) % 3;
    let mut watch = pb::watch_client::WatchClient::new(channel(&servers[survivor]).await);

    // With a leader: the stream works.
    let (tx, rx) = mpsc::channel(4);
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    req.metadata_mut().insert("hasleader", "true".parse().unwrap());
    let mut stream = watch.watch(req).await.unwrap().into_inner();
    tx.send(create(b"x/", |_| {})).await.unwrap();
    assert!(next(&mut stream).await.created);

    // Quorum lost (both others killed at once): the open stream ends with etcd's
    // no-leader error...
    let others = nodes.iter().enumerate().filter(|(i, _)| *i != survivor).map(|(_, n)| n.stop_abruptly());
    for r in futures::future::join_all(others).await {
        r.unwrap();
    }
    let ended = tokio::time::timeout(Duration::from_secs(15), stream.message()).await.expect("the stream ended");
    let err = ended.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::Unavailable, "etcdserver: no leader"));

    // ...and a new one is refused, while one not asking for a leader is served. The
    // survivor may have won an election with a vote cast just before the others died:
    // it then counts as led until its quorum acknowledgement is three election timeouts
    // old, so a new stream is refused from then on, not necessarily at once.
    let refused = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let (_tx2, rx2) = mpsc::channel(4);
            let mut req = tonic::Request::new(ReceiverStream::new(rx2));
            req.metadata_mut().insert("hasleader", "true".parse().unwrap());
            match watch.watch(req).await {
                Err(err) => return err,
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("a stream requiring a leader is refused once the leader is gone");
    assert_eq!((refused.code(), refused.message()), (Code::Unavailable, "etcdserver: no leader"));
    assert!(!nodes[survivor].has_live_leader());
    let (tx3, rx3) = mpsc::channel(4);
    let mut plain = watch.watch(ReceiverStream::new(rx3)).await.unwrap().into_inner();
    tx3.send(create(b"x/", |_| {})).await.unwrap();
    assert!(next(&mut plain).await.created);

    drop((tx, tx3));
    for s in servers {
        s.stop().await;
    }
    nodes[survivor].stop().await.unwrap();
}
