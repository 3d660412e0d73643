//! One node: etcd's KV rules, checked against real storage.

mod common;

use quorumkv::*;

async fn node() -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start(common::single_config(dir.path(), "solo")).await.unwrap();
    (dir, n)
}

fn keys(r: &RangeResponse) -> Vec<String> {
    r.kvs.iter().map(|kv| String::from_utf8(kv.key.clone()).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_versions_and_revisions() {
    let (_d, n) = node().await;
    assert_eq!(n.status().unwrap().revision, 1, "an empty store is at revision 1, as etcd");
    let r1 = n.put(PutRequest::new("a", "1")).await.unwrap();
    assert_eq!(r1.header.revision, 2);
    assert_eq!(r1.header.member_id, n.id());
    assert_eq!(r1.header.cluster_id, n.cluster_id());
    assert!(r1.header.raft_term >= 1);
    let r2 = n.put(PutRequest { prev_kv: true, ..PutRequest::new("a", "2") }).await.unwrap();
    assert_eq!(r2.header.revision, 3);
    let prev = r2.prev_kv.unwrap();
    assert_eq!((prev.value.as_slice(), prev.version, prev.mod_revision), (&b"1"[..], 1, 2));
    let kv = n.get("a").await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version, kv.value.as_slice()), (2, 3, 2, &b"2"[..]));
    // Delete then re-create: version and create revision restart.
    let d = n.delete_range(DeleteRangeRequest { prev_kv: true, ..DeleteRangeRequest::key("a") }).await.unwrap();
    assert_eq!((d.deleted, d.header.revision, d.prev_kvs.len()), (1, 4, 1));
    let none = n.delete_range(DeleteRangeRequest::key("a")).await.unwrap();
    assert_eq!((none.deleted, none.header.revision), (0, 4), "deleting nothing makes no revision");
    n.put(PutRequest::new("a", "3")).await.unwrap();
    let kv = n.get("a").await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.version), (5, 1));
    // Read the past.
    let old = n.range(RangeRequest { revision: 3, ..RangeRequest::key("a") }).await.unwrap();
    assert_eq!(old.kvs[0].value, b"2");
    assert_eq!(old.header.revision, 5, "header carries the current revision");
    let gone = n.range(RangeRequest { revision: 4, ..RangeRequest::key("a") }).await.unwrap();
    assert!(gone.kvs.is_empty());
    assert_eq!(n.range(RangeRequest { revision: 6, ..RangeRequest::key("a") }).await, Err(Error::FutureRevision));
    n.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_flags_follow_etcd() {
    let (_d, n) = node().await;
    let ignore_value = PutRequest { ignore_value: true, ..PutRequest::new("k", "") };
    assert_eq!(n.put(ignore_value.clone()).await, Err(Error::KeyNotFound));
    assert_eq!(n.put(PutRequest { ignore_value: true, ..PutRequest::new("k", "x") }).await, Err(Error::ValueProvided));
    assert_eq!(
        n.put(PutRequest { ignore_lease: true, lease: 5, ..PutRequest::new("k", "") }).await,
        Err(Error::LeaseProvided)
    );
    assert_eq!(n.put(PutRequest { lease: 99, ..PutRequest::new("k", "v") }).await, Err(Error::LeaseNotFound));
    assert_eq!(n.put(PutRequest::new("", "v")).await, Err(Error::EmptyKey));
    assert_eq!(n.status().unwrap().revision, 1, "failed puts make no revision");
    n.put(PutRequest::new("k", "v1")).await.unwrap();
    n.put(ignore_value).await.unwrap();
    let kv = n.get("k").await.unwrap().unwrap();
    assert_eq!((kv.value.as_slice(), kv.version), (&b"v1"[..], 2));
    let big = vec![0u8; 2 << 20];
    assert!(matches!(n.put(PutRequest::new("big", big)).await, Err(Error::RequestTooLarge { .. })));
    n.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_options() {
    let (_d, n) = node().await;
    for (k, v) in [("a", "5"), ("b", "4"), ("c", "3"), ("d", "2"), ("e", "1"), ("f/x", "0")] {
        n.put(PutRequest::new(k, v)).await.unwrap();
    }
    n.put(PutRequest::new("c", "33")).await.unwrap(); // c: version 2, mod 8
    let r = n.range(RangeRequest::range("b", "e")).await.unwrap();
    assert_eq!((keys(&r), r.count, r.more), (vec!["b".into(), "c".into(), "d".into()], 3, false));
    let all = n.range(RangeRequest::range("\0", "\0")).await.unwrap();
    assert_eq!(all.count, 6, "\\0..\\0 is every key");
    let from_c = n.range(RangeRequest::range("c", "\0")).await.unwrap();
    assert_eq!(keys(&from_c), vec!["c", "d", "e", "f/x"]);
    let prefix = n.range(RangeRequest::prefix("f/")).await.unwrap();
    assert_eq!(keys(&prefix), vec!["f/x"]);
    let limited = n.range(RangeRequest { limit: 2, ..RangeRequest::range("a", "\0") }).await.unwrap();
    assert_eq!((keys(&limited), limited.count, limited.more), (vec!["a".into(), "b".into()], 6, true));
    let counted = n.range(RangeRequest { count_only: true, ..RangeRequest::range("a", "\0") }).await.unwrap();
    assert_eq!((counted.kvs.len(), counted.count), (0, 6));
    for limit in [-1, 0, 1] {
        let one = n.range(RangeRequest { limit, ..RangeRequest::key("a") }).await.unwrap();
        assert_eq!((one.kvs.len(), one.count, one.more), (1, 1, false), "limit {limit}: negative is no limit");
    }
    let none = n.range(RangeRequest { limit: -1, ..RangeRequest::range("a", "\0") }).await.unwrap();
    assert_eq!((none.kvs.len(), none.more), (6, false));
    let ko = n.range(RangeRequest { keys_only: true, ..RangeRequest::key("a") }).await.unwrap();
    assert!(ko.kvs[0].value.is_empty() && ko.kvs[0].version == 1);
    let by_value =
        n.range(RangeRequest { sort_target: SortTarget::Value, ..RangeRequest::range("a", "f") }).await.unwrap();
    assert_eq!(keys(&by_value), vec!["e", "d", "c", "b", "a"], "a non-key target with order NONE sorts ascending");
    let desc = n
        .range(RangeRequest { sort_order: SortOrder::Descend, limit: 2, ..RangeRequest::range("a", "\0") })
        .await
        .unwrap();
    assert_eq!((keys(&desc), desc.more), (vec!["f/x".into(), "e".into()], true));
    let by_mod = n
        .range(RangeRequest {
            sort_order: SortOrder::Descend,
            sort_target: SortTarget::Mod,
            limit: 1,
            ..RangeRequest::range("a", "\0")
        })
        .await
        .unwrap();
    assert_eq!(keys(&by_mod), vec!["c"]);
    let by_version = n
        .range(RangeRequest {
            sort_order: SortOrder::Descend,
            sort_target: SortTarget::Version,
            limit: 1,
            ..RangeRequest::range("a", "\0")
        })
        .await
        .unwrap();
    assert_eq!(keys(&by_version), vec!["c"]);
    let by_create = n
        .range(RangeRequest {
            sort_order: SortOrder::Ascend,
            sort_target: SortTarget::Create,
            ..RangeRequest::range("a", "\0")
        })
        .await
        .unwrap();
    assert_eq!(keys(&by_create), vec!["a", "b", "c", "d", "e", "f/x"]);
    // Filters do not change count; more is computed after them.
    let filt = n
        .range(RangeRequest { min_mod_revision: 5, max_mod_revision: 7, ..RangeRequest::range("a", "\0") })
        .await
        .unwrap();
    assert_eq!((keys(&filt), filt.count), (vec!["d".into(), "e".into(), "f/x".into()], 6));
    let filt_c = n
        .range(RangeRequest { min_create_revision: 4, max_create_revision: 4, ..RangeRequest::range("a", "\0") })
        .await
        .unwrap();
    assert_eq!(keys(&filt_c), vec!["c"]);
    let past = n.range(RangeRequest { revision: 4, ..RangeRequest::range("a", "\0") }).await.unwrap();
    assert_eq!(keys(&past), vec!["a", "b", "c"]);
    assert_eq!(past.kvs[2].value, b"3");
    let ser = n.range(RangeRequest { serializable: true, ..RangeRequest::key("c") }).await.unwrap();
    assert_eq!(ser.kvs[0].value, b"33");
    assert!(n.range(RangeRequest::range("d", "b")).await.unwrap().kvs.is_empty(), "end before start is empty");
    assert_eq!(n.range(RangeRequest::key("")).await, Err(Error::EmptyKey));
    n.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions() {
    let (_d, n) = node().await;
    n.put(PutRequest::new("x", "1")).await.unwrap(); // rev 2
    let cas = |expect: &str, new: &str| TxnRequest {
        compare: vec![Compare::new("x", CompareResult::Equal, CompareTarget::Value(expect.into()))],
        success: vec![RequestOp::Put(PutRequest::new("x", new)), RequestOp::Put(PutRequest::new("y", new))],
        failure: vec![RequestOp::Range(RangeRequest::key("x"))],
    };
    let ok = n.txn(cas("1", "2")).await.unwrap();
    assert!(ok.succeeded);
    assert_eq!(ok.header.revision, 3, "one txn makes one revision");
    let (x, y) = (n.get("x").await.unwrap().unwrap(), n.get("y").await.unwrap().unwrap());
    assert_eq!((x.mod_revision, y.mod_revision), (3, 3));
    let failed = n.txn(cas("1", "3")).await.unwrap();
    assert!(!failed.succeeded);
    assert_eq!(failed.header.revision, 3, "a txn that only reads makes no revision");
    let ResponseOp::Range(r) = &failed.responses[0] else { panic!() };
    assert_eq!(r.kvs[0].value, b"2");
    // Each compare target and result.
    let cmp = |target, result| TxnRequest { compare: vec![Compare::new("x", result, target)], ..Default::default() };
    for (target, result, want) in [
        (CompareTarget::Version(2), CompareResult::Equal, true),
        (CompareTarget::Version(1), CompareResult::Greater, true),
        (CompareTarget::Create(2), CompareResult::Equal, true),
        (CompareTarget::Mod(4), CompareResult::Less, true),
        (CompareTarget::Mod(3), CompareResult::NotEqual, false),
        (CompareTarget::Lease(0), CompareResult::Equal, true),
        (CompareTarget::Value(b"1".to_vec()), CompareResult::Greater, true),
    ] {
        assert_eq!(n.txn(cmp(target.clone(), result)).await.unwrap().succeeded, want, "{target:?} {result:?}");
    }
    // Missing keys compare as zero, except values, which never match.
    let missing =
        |target| TxnRequest { compare: vec![Compare::new("nope", CompareResult::Equal, target)], ..Default::default() };
    assert!(n.txn(missing(CompareTarget::Version(0))).await.unwrap().succeeded);
    assert!(!n.txn(missing(CompareTarget::Value(vec![]))).await.unwrap().succeeded);
    // Range compare: every key in range must hold.
    let range_cmp = TxnRequest {
        compare: vec![Compare {
            range_end: b"z".to_vec(),
            ..Compare::new("x", CompareResult::Equal, CompareTarget::Mod(3))
        }],
        ..Default::default()
    };
    assert!(n.txn(range_cmp).await.unwrap().succeeded);
    // Nested txn; reads after writes in one txn see them.
    let nested = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::Put(PutRequest::new("n1", "a")),
            RequestOp::Txn(TxnRequest {
                compare: vec![Compare::new("n1", CompareResult::Equal, CompareTarget::Version(0))],
                success: vec![RequestOp::Put(PutRequest::new("n2", "pre-state-seen"))],
                failure: vec![RequestOp::Put(PutRequest::new("n3", "x"))],
            }),
            RequestOp::Range(RangeRequest::prefix("n")),
            RequestOp::DeleteRange(DeleteRangeRequest::key("y")),
        ],
        failure: vec![],
    };
    let r = n.txn(nested).await.unwrap();
    assert_eq!(r.header.revision, 4);
    let ResponseOp::Txn(inner) = &r.responses[1] else { panic!() };
    assert!(inner.succeeded, "nested compares see the state before the txn");
    let ResponseOp::Range(seen) = &r.responses[2] else { panic!() };
    assert_eq!(keys(seen), vec!["n1", "n2"]);
    let ResponseOp::DeleteRange(del) = &r.responses[3] else { panic!() };
    assert_eq!(del.deleted, 1);
    // Errors.
    let dup = TxnRequest {
        success: vec![RequestOp::Put(PutRequest::new("d", "1")), RequestOp::Put(PutRequest::new("d", "2"))],
        ..Default::default()
    };
    assert_eq!(n.txn(dup).await, Err(Error::DuplicateKey));
    let many = TxnRequest {
        success: (0..129).map(|i| RequestOp::Put(PutRequest::new(format!("m{i}"), "v"))).collect(),
        ..Default::default()
    };
    assert_eq!(n.txn(many).await, Err(Error::TooManyOps { max: 128 }));
    let missing_ignore = TxnRequest {
        success: vec![RequestOp::Put(PutRequest { ignore_value: true, ..PutRequest::new("zz", "") })],
        ..Default::default()
    };
    assert_eq!(n.txn(missing_ignore).await, Err(Error::KeyNotFound));
    assert_eq!(n.status().unwrap().revision, 4, "failed txns make no revision");
    n.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction() {
    let (_d, n) = node().await;
    for i in 0..10 {
        n.put(PutRequest::new("k", format!("v{i}"))).await.unwrap(); // revs 2..=11
    }
    n.put(PutRequest::new("gone", "x")).await.unwrap(); // 12
    n.delete_range(DeleteRangeRequest::key("gone")).await.unwrap(); // 13
    assert_eq!(n.compact(CompactionRequest { revision: 14, physical: true }).await, Err(Error::FutureRevision));
    n.compact(CompactionRequest { revision: 8, physical: true }).await.unwrap();
    assert_eq!(
        n.range(RangeRequest { revision: 7, ..RangeRequest::key("k") }).await,
        Err(Error::Compacted { compact_revision: 8 })
    );
    let at = n.range(RangeRequest { revision: 8, ..RangeRequest::key("k") }).await.unwrap();
    assert_eq!(at.kvs[0].value, b"v6", "the compaction point stays readable");
    assert_eq!(
        n.compact(CompactionRequest { revision: 8, physical: false }).await,
        Err(Error::Compacted { compact_revision: 8 })
    );
    n.compact(CompactionRequest { revision: 13, physical: false }).await.unwrap();
    let at = n.range(RangeRequest { revision: 13, ..RangeRequest::range("a", "\0") }).await.unwrap();
    assert_eq!(at.kvs.len(), 1);
    assert_eq!(n.get("k").await.unwrap().unwrap().version, 10);
    n.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_restart_and_dir_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::single_config(dir.path(), "solo");
    let n = Node::start(cfg.clone()).await.unwrap();
    let id = n.id();
    n.put(PutRequest::new("persist", "yes")).await.unwrap();
    let mut second = cfg.clone();
    second.peer_addr = common::addr();
    assert!(matches!(Node::start(second).await, Err(Error::DataDirLocked { .. })));
    n.stop().await.unwrap();
    assert_eq!(n.put(PutRequest::new("x", "y")).await, Err(Error::Stopped));
    let n = Node::start(cfg.clone()).await.unwrap();
    assert_eq!(n.id(), id, "identity persists");
    assert_eq!(n.get("persist").await.unwrap().unwrap().value, b"yes");
    n.stop().await.unwrap();
}

/// A put that asks for no previous value takes the key's versions and lease from the
/// applier's in-memory key index, which a restart rebuilds from disk: versions, create
/// revisions and leases carry on across it as they would without the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_versions_carry_on_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::single_config(dir.path(), "solo");
    let n = Node::start(cfg.clone()).await.unwrap();
    let lease = n.lease_grant(LeaseGrantRequest { ttl: 600, id: 0 }).await.unwrap().id;
    n.put(PutRequest::new("a", "1")).await.unwrap();
    let created = n.put(PutRequest { lease, ..PutRequest::new("a", "2") }).await.unwrap().header.revision - 1;
    n.put(PutRequest::new("gone", "1")).await.unwrap();
    n.delete_range(DeleteRangeRequest::key("gone")).await.unwrap();
    n.stop().await.unwrap();

    let n = Node::start(cfg).await.unwrap();
    let put = n.put(PutRequest { ignore_lease: true, ..PutRequest::new("a", "3") }).await.unwrap();
    n.put(PutRequest::new("gone", "back")).await.unwrap();
    let a = n.get("a").await.unwrap().unwrap();
    assert_eq!((a.version, a.create_revision, a.mod_revision, a.lease), (3, created, put.header.revision, lease));
    let gone = n.get("gone").await.unwrap().unwrap();
    assert_eq!((gone.version, gone.create_revision), (1, gone.mod_revision), "a deleted key starts over");
    // Compares read the same index.
    let cas = |target| TxnRequest {
        compare: vec![Compare::new("a", CompareResult::Equal, target)],
        success: vec![RequestOp::Put(PutRequest { ignore_lease: true, ..PutRequest::new("a", "4") })],
        ..Default::default()
    };
    assert!(n.txn(cas(CompareTarget::Version(3))).await.unwrap().succeeded);
    assert!(n.txn(cas(CompareTarget::Create(created))).await.unwrap().succeeded);
    assert!(!n.txn(cas(CompareTarget::Lease(0))).await.unwrap().succeeded);
    // The lease still holds the key, so revoking it deletes the key.
    n.lease_revoke(lease).await.unwrap();
    assert_eq!(n.get("a").await.unwrap(), None);
    n.stop().await.unwrap();
}

/// The futures of the hot calls stay small. The etcd server boxes one per request and
/// callers move them, so their size is allocated and copied on every read and write.
/// Before the rare paths (membership changes, gRPC forwarding, Raft's apply wait) were
/// boxed where they start, a range's future took 5,048 bytes and a put's 5,224, and
/// glibc served each from its slow path (chunks over 1 KiB skip the thread cache).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_request_futures_stay_small() {
    let (_d, n) = node().await;
    let range = n.range(RangeRequest::key("k"));
    let barrier = n.read_barrier();
    let put = n.put(PutRequest::new("k", "v"));
    let sizes = [
        ("range", std::mem::size_of_val(&range), 1024),
        ("read_barrier", std::mem::size_of_val(&barrier), 1024),
        ("put", std::mem::size_of_val(&put), 2560),
    ];
    drop((range, barrier, put));
    for (call, size, max) in sizes {
        assert!(size <= max, "the future of {call} takes {size} bytes (at most {max}): box its rare paths");
    }
    n.stop().await.unwrap();
}

/// The workspace's .cargo/config.toml builds everything with `--cfg tokio_unstable`, which
/// turns off the library runtime's LIFO slot (src/node/mod.rs, `shared_runtime`). A
/// RUSTFLAGS variable replaces that setting; this fails when it did.
#[test]
#[allow(clippy::assertions_on_constants)] // constant per build, and the build is what is checked
fn built_with_the_runtime_setting() {
    assert!(cfg!(tokio_unstable), "build with --cfg tokio_unstable (see .cargo/config.toml)");
}
