//! Real 3-node clusters on loopback, in one process.

mod common;

use std::time::{Duration, Instant};

use common::*;
use quorumkv::*;

/// Two tests of one scenario on a 3-node cluster: `$tcp` with the members talking over
/// loopback TCP, `$local` with them on a local network (in memory).
macro_rules! on_both_transports {
    ($scenario:ident: $tcp:ident, $local:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $tcp() {
            $scenario(ClusterSpec::new(3)).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $local() {
            $scenario(ClusterSpec::on_local_network(3)).await;
        }
    };
}

on_both_transports!(
    any_node_takes_any_request:
    any_node_takes_any_request_and_leader_stop_loses_nothing,
    any_node_takes_any_request_on_a_local_network
);

/// Writes and reads through every node, the leader stopped and restarted.
async fn any_node_takes_any_request(spec: ClusterSpec) {
    let nodes = start_cluster(&spec).await;
    let on_network = |spec: &ClusterSpec| spec.network.as_ref().map(|n| (n.addresses(), n.forwarded()));
    let mut addrs: Vec<String> = spec.members.iter().map(|(_, a)| a.clone()).collect();
    addrs.sort();
    let before = on_network(&spec);
    if let Some((on, _)) = &before {
        assert_eq!(on, &addrs, "every node is on the network");
    }
    let cluster_ids: Vec<u64> = nodes.iter().map(|n| n.cluster_id()).collect();
    assert!(cluster_ids.iter().all(|c| *c == cluster_ids[0] && *c != 0));
    // Writes through every node, followers included.
    for (i, n) in nodes.iter().enumerate() {
        for j in 0..20 {
            n.put(PutRequest::new(format!("k{i}-{j}"), format!("v{i}-{j}"))).await.unwrap();
        }
    }
    // With three members no node may read locally: every linearizable read takes a
    // read index from the leader.
    assert!(nodes.iter().all(|n| !n.reads_are_local()), "no local reads with three members");
    // Linearizable reads on every node see every write at once.
    for n in &nodes {
        let r = n.range(RangeRequest::prefix("k")).await.unwrap();
        assert_eq!(r.count, 60, "linearizable read on {}", n.name());
    }
    // Serializable reads converge.
    for n in &nodes {
        eventually("serializable reads converge", Duration::from_secs(5), || {
            n.range_local(&RangeRequest::prefix("k")).unwrap().count == 60
        })
        .await;
    }
    let members = nodes[0].members().unwrap();
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| !m.is_learner));
    // On a local network, the followers' writes reached the leader through it.
    if let (Some((_, f0)), Some((_, f1))) = (before, on_network(&spec)) {
        assert!(f1 > f0, "forwarded requests went through the network: {f0} -> {f1}");
    }
    // Stopping the leader hands leadership over first: a new leader at once.
    let leader = wait_for_leader(&nodes, Duration::from_secs(5)).await;
    let li = leader_index(&nodes, leader);
    let t = Instant::now();
    nodes[li].stop().await.unwrap();
    if let Some((on, _)) = on_network(&spec) {
        assert!(!on.contains(&spec.members[li].1) && on.len() == 2, "a stopped node leaves the network: {on:?}");
    }
    let new_leader = wait_for_leader(&nodes, Duration::from_secs(5)).await;
    assert_ne!(new_leader, leader);
    eprintln!("leader handover took {:?}", t.elapsed());
    let survivor = nodes.iter().find(|n| n.is_running()).unwrap();
    assert_eq!(survivor.range(RangeRequest::prefix("k")).await.unwrap().count, 60);
    survivor.put(PutRequest::new("after", "stop")).await.unwrap();
    // Restart the stopped node: it rejoins with its identity and catches up.
    let restarted = Node::start(spec.config(li)).await.unwrap();
    assert_eq!(restarted.id(), leader);
    assert_eq!(restarted.get("after").await.unwrap().unwrap().value, b"stop");
    if let Some((on, _)) = on_network(&spec) {
        assert_eq!(on, addrs, "a restarted node is back on the network");
    }
    stop_all(nodes.iter().chain([&restarted])).await;
}

on_both_transports!(
    whole_cluster_restart:
    whole_cluster_restart_keeps_every_key,
    whole_cluster_restart_keeps_every_key_on_a_local_network
);

async fn whole_cluster_restart(spec: ClusterSpec) {
    let nodes = start_cluster(&spec).await;
    for j in 0..100 {
        nodes[j % 3].put(PutRequest::new(format!("key{j:03}"), format!("{j}"))).await.unwrap();
    }
    stop_all(&nodes).await;
    // Restart in reverse order; any order works.
    let mut restarted = Vec::new();
    for i in (0..3).rev() {
        restarted.push(Node::start(spec.config(i)).await.unwrap());
    }
    wait_for_leader(&restarted, Duration::from_secs(10)).await;
    for n in &restarted {
        let r = n.range(RangeRequest::prefix("key")).await.unwrap();
        assert_eq!(r.count, 100);
        assert_eq!(r.kvs[42].value, b"42");
    }
    stop_all(&restarted).await;
}

// On a local network the snapshot itself still travels over TCP.
on_both_transports!(
    follower_catches_up_by_snapshot:
    lagging_follower_catches_up_by_snapshot,
    lagging_follower_catches_up_by_snapshot_on_a_local_network
);

async fn follower_catches_up_by_snapshot(spec: ClusterSpec) {
    let configs: Vec<NodeConfig> = (0..3)
        .map(|i| {
            let mut c = spec.config(i);
            c.snapshot_threshold_entries = 50;
            c.snapshot_logs_to_keep = 10;
            c
        })
        .collect();
    let nodes = start_configs(configs.clone()).await;
    let leader = wait_for_leader(&nodes, Duration::from_secs(10)).await;
    let fi = (0..3).find(|i| nodes[*i].id() != leader).unwrap();
    // A key the follower knows and that is deleted while it is down: its key index,
    // rebuilt from the installed snapshot, must forget it.
    nodes[0].put(PutRequest::new("gone", "1")).await.unwrap();
    eventually("follower applies 'gone'", Duration::from_secs(10), || {
        nodes[fi].range_local(&RangeRequest::key("gone")).map(|r| r.count).unwrap_or(0) == 1
    })
    .await;
    nodes[fi].stop().await.unwrap();
    let live: Vec<&Node> = nodes.iter().filter(|n| n.is_running()).collect();
    live[0].delete_range(DeleteRangeRequest::key("gone")).await.unwrap();
    for j in 0..400 {
        live[j % 2].put(PutRequest::new(format!("s{j:04}"), vec![b'x'; 100])).await.unwrap();
    }
    let follower = Node::start(configs[fi].clone()).await.unwrap();
    // Serializable reads on the follower never fail while it installs the snapshot and
    // catches up (during the install they see the state from before it).
    eventually("follower catches up", Duration::from_secs(20), || {
        follower.range_local(&RangeRequest::prefix("s")).expect("a read during the catch-up").count == 400
    })
    .await;
    let snaps: Vec<_> = std::fs::read_dir(spec.data_dir(fi).join("snapshots"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "snap"))
        .collect();
    assert!(!snaps.is_empty(), "the follower installed a snapshot");
    // The installed state is a full MVCC state: history, versions, revision.
    let s = follower.status().unwrap();
    let leader_rev = live[0].status().unwrap().revision;
    assert_eq!(s.revision, leader_rev);
    // Writes applied after the install build on the installed versions, as the others'.
    live[0].put(PutRequest::new("s0000", "again")).await.unwrap();
    live[0].put(PutRequest::new("gone", "back")).await.unwrap();
    let local = |n: &Node| -> Vec<KeyValue> {
        ["gone", "s0000"].iter().flat_map(|k| n.range_local(&RangeRequest::key(*k)).unwrap().kvs).collect()
    };
    // Linearizable: `live[0]` may be a follower that has not applied its own forwarded puts yet.
    let mut expect = Vec::new();
    for k in ["gone", "s0000"] {
        expect.extend(live[0].range(RangeRequest::key(k)).await.unwrap().kvs);
    }
    assert_eq!(expect.iter().map(|kv| kv.version).collect::<Vec<_>>(), [1, 2]);
    eventually("follower applies the new writes", Duration::from_secs(10), || local(&follower) == expect).await;
    follower.stop().await.unwrap();
    stop_all(live).await;
}

// The joining nodes use the network too (a join itself goes over the peer port).
on_both_transports!(
    joins_and_removals:
    join_through_any_member_then_remove,
    join_through_any_member_then_remove_on_a_local_network
);

async fn joins_and_removals(spec: ClusterSpec) {
    let nodes = start_cluster(&spec).await;
    nodes[0].put(PutRequest::new("before-join", "1")).await.unwrap();
    let leader = wait_for_leader(&nodes, Duration::from_secs(5)).await;
    // Join through a follower's address.
    let via = nodes.iter().find(|n| n.id() != leader).unwrap().config().peer_addr.clone();
    let cfg = NodeConfig { local_network: spec.network.clone(), ..single_config(spec.dir.path(), "n4") }
        .bootstrap(Bootstrap::Join(vec![via]));
    let n4 = Node::start(cfg.clone()).await.unwrap();
    assert_eq!(n4.cluster_id(), nodes[0].cluster_id());
    eventually("n4 is a voter everywhere", Duration::from_secs(10), || {
        nodes[0].members().unwrap().iter().any(|m| m.id == n4.id() && !m.is_learner)
    })
    .await;
    assert_eq!(n4.get("before-join").await.unwrap().unwrap().value, b"1");
    if n4.leader() != Some(n4.id()) {
        // Two of four voters are no quorum: the leader confirms with a heartbeat round.
        let s = n4.status().unwrap();
        assert!(s.forwarded_read_rounds >= 1);
        assert_eq!(s.forwarded_vouched_rounds, 0, "a follower of a 4-voter cluster cannot vouch");
    }
    // Nor does any follower vouch for the leader's own reads.
    let l4 = nodes.iter().chain([&n4]).find(|n| n.leader() == Some(n.id())).unwrap();
    let before = l4.status().unwrap().vouched_read_rounds;
    l4.get("before-join").await.unwrap().unwrap();
    assert_eq!(l4.status().unwrap().vouched_read_rounds, before, "a 4-voter leader runs heartbeat rounds");
    n4.put(PutRequest::new("from-n4", "x")).await.unwrap();
    // A learner join stops at learner.
    let lcfg = NodeConfig {
        join_as_learner: true,
        local_network: spec.network.clone(),
        ..single_config(spec.dir.path(), "n5")
    }
    .bootstrap(Bootstrap::Join(vec![spec.members[0].1.clone()]));
    let n5 = Node::start(lcfg).await.unwrap();
    assert!(n5.status().unwrap().is_learner);
    if let Some(network) = &spec.network {
        assert_eq!(network.addresses().len(), 5, "the joined nodes are on the network");
    }
    eventually("every member lists n5 as a learner", Duration::from_secs(10), || {
        nodes[1].members().unwrap().iter().any(|m| m.id == n5.id() && m.is_learner)
    })
    .await;
    assert_eq!(n5.get("from-n4").await.unwrap().unwrap().value, b"x", "a learner serves linearizable reads");
    let s = n5.status().unwrap();
    assert!(s.forwarded_read_rounds >= 1);
    assert_eq!(s.forwarded_vouched_rounds, 0, "a learner's vote counts for nothing");
    // Remove both.
    nodes[2].remove_member(n5.id()).await.unwrap();
    assert!(!nodes[2].members().unwrap().iter().any(|m| m.id == n5.id()), "the caller's list shows a removal at once");
    nodes[1].remove_member(n4.id()).await.unwrap();
    eventually("members back to 3", Duration::from_secs(10), || nodes[0].members().unwrap().len() == 3).await;
    assert_eq!(nodes[0].remove_member(12345).await, Err(Error::MemberNotFound));
    stop_all(nodes.iter().chain([&n4, &n5])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_another_cluster_and_keeps_its_data() {
    refuses_another_cluster(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_another_cluster_on_the_same_local_network() {
    refuses_another_cluster(Some(LocalNetwork::new())).await;
}

async fn refuses_another_cluster(network: Option<LocalNetwork>) {
    let dir = tempfile::tempdir().unwrap();
    let config = |name| NodeConfig { local_network: network.clone(), ..single_config(dir.path(), name) };
    let a = Node::start(config("a")).await.unwrap();
    let b = Node::start(config("b")).await.unwrap();
    a.put(PutRequest::new("mine", "a")).await.unwrap();
    let a_cfg = a.config().clone();
    a.stop().await.unwrap();
    // Restart `a` asking to join `b`'s cluster: its data dir already belongs to cluster A.
    // A restarted node ignores the bootstrap; the peers refuse its messages as foreign.
    let mut rejoin = a_cfg.clone();
    rejoin.bootstrap = Bootstrap::Join(vec![b.config().peer_addr.clone()]);
    let err = Node::start(rejoin).await.unwrap_err();
    assert!(matches!(err, Error::ClusterMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("cluster id mismatch"));
    // Its data is untouched: started normally it is still cluster A with its key.
    let a2 = Node::start(a_cfg).await.unwrap();
    assert_ne!(a2.cluster_id(), b.cluster_id());
    assert_eq!(a2.get("mine").await.unwrap().unwrap().value, b"a");
    assert_eq!(b.members().unwrap().len(), 1, "b's cluster did not change");
    a2.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_peer_address_is_taken_as_the_new_one() {
    let spec = ClusterSpec::new(3);
    let nodes = start_cluster(&spec).await;
    let leader = wait_for_leader(&nodes, Duration::from_secs(5)).await;
    let fi = (0..3).find(|i| nodes[*i].id() != leader).unwrap();
    nodes[fi].stop().await.unwrap();
    let mut cfg = spec.config(fi);
    cfg.peer_addr = addr();
    let moved = Node::start(cfg.clone()).await.unwrap();
    let others: Vec<&Node> = nodes.iter().filter(|n| n.is_running()).collect();
    eventually("membership has the new address", Duration::from_secs(15), || {
        others[0].members().unwrap().iter().any(|m| m.id == moved.id() && m.peer_addrs == vec![cfg.peer_addr.clone()])
    })
    .await;
    others[0].put(PutRequest::new("after-move", "1")).await.unwrap();
    eventually("moved node catches up", Duration::from_secs(10), || {
        moved.range_local(&RangeRequest::key("after-move")).unwrap().count == 1
    })
    .await;
    moved.stop().await.unwrap();
    stop_all(others).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_requests_fail_after_the_timeout() {
    let spec = ClusterSpec::new(3);
    let mut cfgs: Vec<NodeConfig> = (0..3).map(|i| spec.config(i)).collect();
    for c in &mut cfgs {
        c.request_timeout_ms = 800;
    }
    let nodes = start_configs(cfgs).await;
    nodes[1].stop().await.unwrap();
    nodes[2].stop().await.unwrap();
    let t = Instant::now();
    let r = nodes[0].put(PutRequest::new("k", "v")).await;
    assert!(matches!(r, Err(Error::NoLeader) | Err(Error::Timeout)), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "it fails after the request timeout, not never");
    let r = nodes[0].range(RangeRequest::key("k")).await;
    assert!(matches!(r, Err(Error::NoLeader) | Err(Error::Timeout)), "{r:?}");
    // Serializable reads still work.
    nodes[0].range(RangeRequest { serializable: true, ..RangeRequest::key("k") }).await.unwrap();
    nodes[0].stop().await.unwrap();
}

/// A leader that cannot get its leadership confirmed at once (its followers are down, or
/// their connections are still coming up after a restart) keeps trying until the request
/// timeout instead of failing the read after one lease (300 ms here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linearizable_read_waits_for_the_quorum_to_come_back() {
    let spec = ClusterSpec::new(3);
    // Room for a slow machine to restart the follower before the read's deadline.
    let config = |i: usize| NodeConfig { request_timeout_ms: 15_000, ..spec.config(i) };
    let nodes = start_configs((0..3).map(config).collect()).await;
    let leader = wait_for_leader(&nodes, Duration::from_secs(10)).await;
    let li = leader_index(&nodes, leader);
    nodes[li].put(PutRequest::new("k", "v")).await.unwrap();
    let followers: Vec<usize> = (0..3).filter(|i| *i != li).collect();
    for f in &followers {
        nodes[*f].stop().await.unwrap();
    }
    let read = {
        let n = nodes[li].clone();
        tokio::spawn(async move { n.range(RangeRequest::key("k")).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!read.is_finished(), "the read waits (up to the request timeout), it does not fail early");
    let back = Node::start(config(followers[0])).await.unwrap();
    let r = read.await.unwrap().unwrap();
    assert_eq!(r.kvs[0].value, b"v");
    stop_all([&nodes[li], &back]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_start_the_same_node_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = single_config(dir.path(), "again");
    for i in 0..10 {
        let n = Node::start(cfg.clone()).await.unwrap();
        n.put(PutRequest::new(format!("round{i}"), "x")).await.unwrap();
        assert_eq!(n.range(RangeRequest::prefix("round")).await.unwrap().count, i + 1);
        n.stop().await.unwrap();
    }
}

#[test]
fn blocking_api_from_plain_threads() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::start_blocking(single_config(dir.path(), "blocking")).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let n = n.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    n.put_blocking(PutRequest::new(format!("t{t}-{i}"), "v")).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(n.range_blocking(RangeRequest::prefix("t")).unwrap().count, 100);
    assert_eq!(n.get_blocking(b"t0-0".to_vec()).unwrap().unwrap().value, b"v");
    // A lone leader's reads need no wait and skip the runtime; the blocking calls still
    // refuse to run on an async runtime's thread, whatever the read.
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        for serializable in [false, true] {
            let req = RangeRequest { serializable, ..RangeRequest::key("t0-0") };
            assert!(matches!(n.range_blocking(req), Err(Error::InvalidArgument(_))), "serializable: {serializable}");
        }
        assert!(matches!(n.get_blocking(b"t0-0".to_vec()), Err(Error::InvalidArgument(_))));
    });
    n.stop_blocking().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_added_before_they_start() {
    let spec = ClusterSpec::new(3);
    let nodes = start_cluster(&spec).await;
    // etcd's add-then-start: a learner, then a voter.
    let learner_cfg = NodeConfig { join_as_learner: true, ..single_config(spec.dir.path(), "l4") }
        .bootstrap(Bootstrap::Join(vec![spec.members[1].1.clone()]));
    let added = nodes[0].add_member("l4", &learner_cfg.peer_addr, true).await.unwrap();
    assert!(added.is_learner);
    assert!(nodes[0].members().unwrap().iter().any(|m| m.id == added.id), "the caller's list shows an add at once");
    assert_eq!(
        nodes[2].add_member("l4", &learner_cfg.peer_addr, true).await.map(|_| ()),
        Err(Error::PeerAddrExists),
        "the same member twice"
    );
    let voter_cfg = single_config(spec.dir.path(), "v5").bootstrap(Bootstrap::Join(vec![spec.members[2].1.clone()]));
    let voter = nodes[1].add_member("v5", &voter_cfg.peer_addr, false).await.unwrap();
    assert!(!voter.is_learner);
    eventually("both registered", Duration::from_secs(10), || {
        let m = nodes[0].members().unwrap();
        m.iter().any(|x| x.id == added.id && x.is_learner) && m.iter().any(|x| x.id == voter.id && !x.is_learner)
    })
    .await;
    // The nodes start with the registered identities and keep their roles.
    let l4 = Node::start(learner_cfg).await.unwrap();
    let v5 = Node::start(voter_cfg).await.unwrap();
    assert_eq!((l4.id(), v5.id()), (added.id, voter.id));
    nodes[2].put(PutRequest::new("k", "v")).await.unwrap();
    assert_eq!(l4.get("k").await.unwrap().unwrap().value, b"v");
    assert!(l4.status().unwrap().is_learner);
    eventually("v5 sees itself a voter", Duration::from_secs(10), || !v5.status().unwrap().is_learner).await;
    // The learner is promoted on request.
    nodes[0].promote_member(l4.id()).await.unwrap();
    assert!(nodes[0].members().unwrap().iter().any(|m| m.id == l4.id() && !m.is_learner), "and a promotion");
    eventually("l4 is a voter", Duration::from_secs(10), || !l4.status().unwrap().is_learner).await;
    assert!(nodes[0].promote_member(l4.id()).await.is_err(), "only learners are promoted");
    stop_all(nodes.iter().chain([&l4, &v5])).await;
}

/// A follower's concurrent writes reach the leader in shared requests, and its
/// concurrent linearizable reads share read-index rounds, which the leader answers
/// without a heartbeat round because the follower vouches for it; every write is applied once,
/// each at its own revision, and every read sees every write acknowledged before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followers_concurrent_requests_share_trips_to_the_leader() {
    let spec = ClusterSpec::new(3);
    let nodes = start_cluster(&spec).await;
    let leader = wait_for_leader(&nodes, Duration::from_secs(5)).await;
    let follower = nodes.iter().find(|n| n.id() != leader).unwrap().clone();
    // The follower must know the leader, or it would not forward at all.
    eventually("the follower knows the leader", Duration::from_secs(5), || follower.leader() == Some(leader)).await;
    const WRITES: usize = 200;
    let puts = (0..WRITES).map(|i| {
        let f = follower.clone();
        async move { f.put(PutRequest::new(format!("batch/{i:03}"), format!("v{i}"))).await.unwrap() }
    });
    let revisions: std::collections::BTreeSet<i64> =
        futures::future::join_all(puts).await.iter().map(|r| r.header.revision).collect();
    assert_eq!(revisions.len(), WRITES, "every write has a revision of its own");
    // `requests` forwarded items took `trips` trips to the leader: well under one each.
    let shared = |what: &str, requests: u64, trips: u64| {
        assert_eq!(requests, WRITES as u64, "forwarded {what}");
        assert!(trips < requests / 4, "{requests} {what} took {trips} trips to the leader");
        eprintln!("{requests} {what}: {trips} trips");
    };
    let s = follower.status().unwrap();
    shared("writes", s.forwarded_writes, s.forwarded_write_batches);
    let reads = (0..WRITES).map(|i| {
        let f = follower.clone();
        async move { f.get(format!("batch/{i:03}")).await.unwrap().expect("acknowledged before the read").value }
    });
    for (i, value) in futures::future::join_all(reads).await.into_iter().enumerate() {
        assert_eq!(value, format!("v{i}").into_bytes());
    }
    let s = follower.status().unwrap();
    shared("reads", s.forwarded_reads, s.forwarded_read_rounds);
    // In a 3-voter cluster the follower and the leader are a quorum: the follower vouches
    // for the leader, and its rounds need no heartbeats from the leader (a round whose
    // leader had no fresh quorum acknowledgement, after a stall of this machine, may
    // still take the full one).
    let (vouched, rounds) = (s.forwarded_vouched_rounds, s.forwarded_read_rounds);
    assert!(vouched >= 1 && 2 * vouched >= rounds, "{vouched} of {rounds} rounds vouched for");
    // The leader forwards nothing.
    let l = nodes.iter().find(|n| n.id() == leader).unwrap();
    l.put(PutRequest::new("on-the-leader", "x")).await.unwrap();
    // The leader waits one heartbeat interval for a follower to vouch, then falls back
    // to a heartbeat round: after a stall of this machine, a read may take the fallback.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        l.get("on-the-leader").await.unwrap().unwrap();
        if l.status().unwrap().vouched_read_rounds >= 1 || Instant::now() > deadline {
            break;
        }
    }
    let ls = l.status().unwrap();
    assert_eq!((ls.forwarded_writes, ls.forwarded_reads), (0, 0));
    assert!(ls.vouched_read_rounds >= 1, "a follower vouched for the leader's own reads");
    stop_all(nodes.iter()).await;
}

/// A leader that is its cluster's only member serves linearizable reads from its own
/// state (no Raft round); a member joining turns that off before it can read, and its
/// removal turns it back on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_leader_reads_locally_until_a_member_joins() {
    let dir = tempfile::tempdir().unwrap();
    let n1 = Node::start(single_config(dir.path(), "n1")).await.unwrap();
    eventually("the lone leader reads locally", Duration::from_secs(10), || n1.reads_are_local()).await;
    n1.put(PutRequest::new("k", "1")).await.unwrap();
    // Raft's metrics show the put applied a moment after it is answered.
    eventually("reads local again after a put", Duration::from_secs(10), || n1.reads_are_local()).await;
    assert_eq!(n1.get("k").await.unwrap().unwrap().value, b"1");
    let lcfg = NodeConfig { join_as_learner: true, ..single_config(dir.path(), "n2") }
        .bootstrap(Bootstrap::Join(vec![n1.config().peer_addr.clone()]));
    let n2 = Node::start(lcfg).await.unwrap();
    assert!(!n1.reads_are_local(), "a learner in the cluster: the leader takes read indexes");
    assert!(!n2.reads_are_local(), "a learner never reads locally");
    n1.put(PutRequest::new("k", "2")).await.unwrap();
    assert_eq!(n2.get("k").await.unwrap().unwrap().value, b"2", "the learner's linearizable read");
    assert_eq!(n1.get("k").await.unwrap().unwrap().value, b"2");
    n1.remove_member(n2.id()).await.unwrap();
    eventually("alone again, the leader reads locally", Duration::from_secs(10), || n1.reads_are_local()).await;
    assert_eq!(n1.get("k").await.unwrap().unwrap().value, b"2");
    n2.stop().await.unwrap();
    n1.stop().await.unwrap();
    assert!(!n1.reads_are_local(), "a stopped node reads nothing");
}

/// Async reads that have nothing to wait for (a lone leader's linearizable reads,
/// serializable reads and read-only txns anywhere) complete without a network round, but
/// still yield to the runtime now and then: a task looping over one kind of them on a
/// one-thread runtime lets a timer task end the loop. Without the yield point that loop
/// never ends (it did in the core benchmark).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_that_need_no_wait_still_let_the_runtime_run() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// Loops `read` on a one-thread runtime of its own until a timer task on that runtime
    /// stops it; the loop's read count, or `None` if the timer never got to run.
    fn loop_until_timer<F, Fut>(node: &Node, read: F) -> Option<u64>
    where
        F: Fn(Node) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let node = node.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let reads = rt.block_on(async move {
                let stop = Arc::new(AtomicBool::new(false));
                let flag = stop.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    flag.store(true, Ordering::Relaxed);
                });
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    read(node.clone()).await;
                    reads += 1;
                }
                reads
            });
            let _ = done_tx.send(reads);
        });
        done_rx.recv_timeout(Duration::from_secs(30)).ok()
    }

    let dir = tempfile::tempdir().unwrap();
    let n1 = Node::start(single_config(dir.path(), "n1")).await.unwrap();
    n1.put(PutRequest::new("k", "v")).await.unwrap();
    eventually("the lone leader reads locally", Duration::from_secs(10), || n1.reads_are_local()).await;
    let linearizable = loop_until_timer(&n1, |n| async move {
        assert_eq!(n.get("k").await.unwrap().unwrap().value, b"v");
    });
    assert!(linearizable.is_some_and(|r| r > 0), "a loop of the lone leader's gets starved its runtime's timer");
    assert!(n1.reads_are_local(), "the gets above took the local path");
    let serializable = loop_until_timer(&n1, |n| async move {
        let req = RangeRequest { serializable: true, ..RangeRequest::key("k") };
        assert_eq!(n.range(req).await.unwrap().kvs.len(), 1);
    });
    assert!(serializable.is_some_and(|r| r > 0), "a loop of serializable ranges starved its runtime's timer");
    let txns = loop_until_timer(&n1, |n| async move {
        let txn = TxnRequest {
            success: vec![RequestOp::Range(RangeRequest { serializable: true, ..RangeRequest::key("k") })],
            ..Default::default()
        };
        assert!(n.txn(txn).await.unwrap().succeeded);
    });
    assert!(txns.is_some_and(|r| r > 0), "a loop of serializable read-only txns starved its runtime's timer");
    n1.stop().await.unwrap();
}

// Followers vouch for their leader's read index, for their own reads and the leader's,
// instead of the leader running a heartbeat round (3 voters). Clients on every member,
// while leadership moves and a leader is stopped like a crash and restarted: every key's
// history of puts and linearizable gets stays linearizable.
on_both_transports!(
    reads_stay_linearizable_while_leaders_change:
    follower_reads_stay_linearizable_while_leaders_change,
    follower_reads_stay_linearizable_on_a_local_network
);

async fn reads_stay_linearizable_while_leaders_change(spec: ClusterSpec) {
    use common::linearizability::{check_register, Op, OpKind};
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex, RwLock};

    let nodes = Arc::new(RwLock::new(start_cluster(&spec).await));
    let start = Instant::now();
    let now = move || start.elapsed().as_nanos() as u64;
    let ops: Arc<Mutex<BTreeMap<String, Vec<Op>>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (nodes, ops, stop) = (nodes.clone(), ops.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let node = nodes.read().unwrap()[w % 3].clone();
                    let key = format!("reg{}", n % 3);
                    let call = now();
                    let op = if n.is_multiple_of(3) {
                        let value = format!("w{w}-{n}").into_bytes();
                        let r = node.put(PutRequest::new(key.clone(), value.clone())).await;
                        Op { call, ret: r.is_ok().then(now), kind: OpKind::Put(value) }
                    } else {
                        match node.range(RangeRequest::key(key.clone())).await {
                            Ok(r) => Op {
                                call,
                                ret: Some(now()),
                                kind: OpKind::Get(r.kvs.first().map(|kv| kv.value.clone())),
                            },
                            Err(_) => {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                continue;
                            }
                        }
                    };
                    ops.lock().unwrap().entry(key).or_default().push(op);
                }
            })
        })
        .collect();
    // Move leadership round the members, and once stop the leader abruptly and restart it:
    // for at least 5.2 s and until both are done (an iteration finding no leader, or a
    // move that times out, does nothing), then let the clients run 0.8 s more.
    let mut moves = 0;
    let mut crashed = false;
    let (min_end, deadline) = (Instant::now() + Duration::from_millis(5200), Instant::now() + Duration::from_secs(40));
    while (moves < 3 || !crashed || Instant::now() < min_end) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let current: Vec<Node> = nodes.read().unwrap().clone();
        let Some(leader) = current.iter().find_map(|n| n.leader()) else { continue };
        let li = leader_index(&current, leader);
        if !crashed && moves >= 3 {
            crashed = true;
            current[li].stop_abruptly().await.unwrap();
            tokio::time::sleep(Duration::from_millis(400)).await;
            nodes.write().unwrap()[li] = Node::start(spec.config(li)).await.unwrap();
        } else if current[li].move_leader(current[(li + 1) % 3].id()).await.is_ok() {
            moves += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert!(moves >= 3 && crashed, "{moves} moves, crashed: {crashed}");
    let current: Vec<Node> = nodes.read().unwrap().clone();
    let vouched: u64 = current.iter().map(|n| n.status().unwrap().forwarded_vouched_rounds).sum();
    assert!(vouched > 0, "followers vouched for no read index");
    let leaders_vouched: u64 = current.iter().map(|n| n.status().unwrap().vouched_read_rounds).sum();
    assert!(leaders_vouched > 0, "no follower vouched for a leader's own reads");
    let mut total = 0;
    for (key, ops) in ops.lock().unwrap().iter() {
        total += ops.len();
        assert!(check_register(ops, None), "history of {key} is not linearizable ({} ops)", ops.len());
    }
    eprintln!(
        "{moves} leadership moves, 1 crash, {vouched} + {leaders_vouched} vouched rounds, {total} register ops checked"
    );
    stop_all(current.iter()).await;
}

/// Each member's (term, leader) as it sees them.
fn terms(nodes: &[&Node]) -> Vec<(u64, Option<u64>)> {
    nodes.iter().map(|n| n.status().map(|s| (s.term, s.leader)).unwrap()).collect()
}

/// Waits until every member knows one leader other than `gone`, then checks that nothing
/// changes while the cluster idles. Returns the leader.
async fn stays_put(nodes: &[&Node], gone: Option<u64>) -> u64 {
    eventually("every member knows the leader", Duration::from_secs(5), || {
        let t = terms(nodes);
        t.iter().all(|x| x.1.is_some() && x.1 != gone && *x == t[0])
    })
    .await;
    let before = terms(nodes);
    // Three minimum election timeouts ([`idle_tolerant`]) with no writes: heartbeats
    // alone must hold the leader.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(terms(nodes), before, "an idle cluster kept its term and leader");
    before[0].1.unwrap()
}

/// The leader's heartbeats come from the node's own clock, not openraft's tick, which is off
/// on the leader and slower on the others (`src/node/heartbeat.rs`). An idle cluster must still
/// keep its leader and term: followers that missed heartbeats would elect within one election
/// timeout (1–2 s here). The same must hold under a leader elected later, and the
/// followers' election timers must still fire when a leader dies without a hand-over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_cluster_keeps_its_leader_and_a_dead_one_is_replaced() {
    let spec = ClusterSpec::new(3);
    let nodes = start_configs((0..3).map(|i| idle_tolerant(spec.config(i))).collect()).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = stays_put(&all, None).await;
    let li = leader_index(&nodes, leader);
    let (term, _) = terms(&all)[0];
    // No hand-over: the followers' election timers must notice and elect.
    let t = Instant::now();
    nodes[li].stop_abruptly().await.unwrap();
    let rest: Vec<&Node> = nodes.iter().filter(|n| n.is_running()).collect();
    let new_leader = stays_put(&rest, Some(leader)).await;
    assert_ne!(new_leader, leader);
    assert!(terms(&rest)[0].0 > term, "a new term");
    eprintln!("re-election and 3 s idle took {:?}", t.elapsed());
    // The new leader takes writes, and the old one rejoins as a follower of it.
    rest[0].put(PutRequest::new("k", "v")).await.unwrap();
    let restarted = Node::start(idle_tolerant(spec.config(li))).await.unwrap();
    let again: Vec<&Node> = rest.iter().copied().chain([&restarted]).collect();
    assert_eq!(stays_put(&again, None).await, new_leader);
    assert_eq!(restarted.get("k").await.unwrap().unwrap().value, b"v");
    stop_all(again).await;
}

/// A lone leader sends no heartbeats (nobody to send them to). Members that join later
/// must start receiving them at once: a grown cluster keeps its leader and term while idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_leader_starts_heartbeats_when_members_join() {
    let dir = tempfile::tempdir().unwrap();
    let first = Node::start(idle_tolerant(single_config(dir.path(), "n1"))).await.unwrap();
    first.put(PutRequest::new("k", "v")).await.unwrap();
    let via = first.config().peer_addr.clone();
    let mut nodes = vec![first];
    for name in ["n2", "n3"] {
        let cfg = idle_tolerant(single_config(dir.path(), name)).bootstrap(Bootstrap::Join(vec![via.clone()]));
        nodes.push(Node::start(cfg).await.unwrap());
    }
    eventually("three voters, one leader everywhere", Duration::from_secs(10), || {
        nodes.iter().all(|n| {
            n.members().map(|m| m.iter().filter(|m| !m.is_learner).count() == 3).unwrap_or(false)
                && n.leader() == Some(nodes[0].id())
        })
    })
    .await;
    let all: Vec<&Node> = nodes.iter().collect();
    assert_eq!(stays_put(&all, None).await, nodes[0].id(), "the joined members kept the first leader");
    assert_eq!(nodes[2].get("k").await.unwrap().unwrap().value, b"v");
    stop_all(&nodes).await;
}

/// A follower that stays down long enough for the leader's heartbeat connection to it to
/// back off must hear heartbeats again once it is back, with no write to carry them: an
/// idle cluster's restarted member keeps a live leader (contact within three election
/// timeouts, 3 s here) through an idle spell of two such windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_hears_heartbeats_again_while_idle() {
    let spec = ClusterSpec::new(3);
    let nodes = start_configs((0..3).map(|i| idle_tolerant(spec.config(i))).collect()).await;
    nodes[0].put(PutRequest::new("k", "v")).await.unwrap();
    let leader = wait_for_leader(&nodes, Duration::from_secs(5)).await;
    let fi = nodes.iter().position(|n| n.id() != leader).unwrap();
    nodes[fi].stop_abruptly().await.unwrap();
    // Long enough for every retry delay of the leader's connections to reach its maximum.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let back = Node::start(idle_tolerant(spec.config(fi))).await.unwrap();
    eventually("the restarted member hears from the leader", Duration::from_secs(5), || back.has_live_leader()).await;
    let term = back.status().unwrap().term;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(back.has_live_leader(), "the restarted member lost contact with an idle leader");
    }
    let s = back.status().unwrap();
    assert_eq!((s.term, s.leader), (term, Some(leader)), "no election while idle");
    assert_eq!(back.range_local(&RangeRequest::key("k")).unwrap().count, 1);
    let rest: Vec<&Node> = nodes.iter().enumerate().filter(|(i, _)| *i != fi).map(|(_, n)| n).collect();
    stop_all(rest.into_iter().chain([&back])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_network_members_and_a_tcp_member_form_one_cluster() {
    let spec = ClusterSpec::on_local_network(3);
    let mut configs: Vec<NodeConfig> = (0..3).map(|i| spec.config(i)).collect();
    configs[2].local_network = None;
    let nodes = start_configs(configs).await;
    let network = spec.network.as_ref().unwrap();
    assert_eq!(network.addresses().len(), 2, "only the two nodes given the network are on it");
    // Writes through every node reach the leader, over memory or TCP as the pair allows.
    for (i, n) in nodes.iter().enumerate() {
        n.put(PutRequest::new(format!("m{i}"), "v")).await.unwrap();
    }
    for n in &nodes {
        assert_eq!(n.range(RangeRequest::prefix("m")).await.unwrap().count, 3, "read on {}", n.name());
    }
    stop_all(&nodes).await;
}

on_both_transports!(
    foreign_node_at_a_members_address:
    a_node_of_another_cluster_at_a_members_address_hears_nothing_of_it,
    a_node_of_another_cluster_at_a_members_address_hears_nothing_on_a_local_network
);

/// A member stops and a node of another cluster takes its peer address: the cluster's
/// leader keeps sending it appends and heartbeats, which it must refuse by cluster id.
async fn foreign_node_at_a_members_address(spec: ClusterSpec) {
    let nodes = start_cluster(&spec).await;
    // Leader moves raise the cluster's term above the stranger's (1): Raft alone would
    // then let the stranger follow this cluster's leader.
    for _ in 0..3 {
        let leader = wait_for_leader(&nodes, Duration::from_secs(5)).await;
        let next = nodes.iter().find(|n| n.id() != leader).unwrap();
        nodes[leader_index(&nodes, leader)].move_leader(next.id()).await.unwrap();
    }
    let leader = wait_for_leader(&nodes, Duration::from_secs(5)).await;
    assert!(nodes[0].status().unwrap().term > 2);
    let fi = (0..3).find(|i| nodes[*i].id() != leader).unwrap();
    nodes[fi].stop().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = single_config(dir.path(), "stranger");
    cfg.peer_addr = spec.members[fi].1.clone();
    cfg.local_network = spec.network.clone();
    let stranger = Node::start(cfg).await.unwrap();
    stranger.put(PutRequest::new("own", "1")).await.unwrap();
    let term = stranger.status().unwrap().term;
    let li = leader_index(&nodes, leader);
    for i in 0..20 {
        nodes[li].put(PutRequest::new(format!("x{i}"), "v")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let s = stranger.status().unwrap();
    assert_eq!((s.leader, s.term), (Some(stranger.id()), term), "the stranger still leads its own cluster");
    assert_eq!(stranger.members().unwrap().len(), 1);
    assert_eq!(
        stranger.range(RangeRequest::range("\0", "\0")).await.unwrap().count,
        1,
        "no entry of the other cluster"
    );
    stranger.stop().await.unwrap();
    stop_all(nodes.iter().filter(|n| n.is_running())).await;
}
