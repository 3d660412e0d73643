//! TLS on the peer port: clusters over (mutual) TLS with certificates made here by rcgen.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use quorumkv::tls::TlsFiles;
use quorumkv::*;

/// A certificate authority writing its certificate and the leaves it signs to a directory.
struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: PathBuf,
    name: String,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("quorumkv test {name}"));
        let issuer = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), issuer.pem()).unwrap();
        Ca { issuer, dir: dir.to_path_buf(), name: name.into() }
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }

    /// Peer TLS files (mutual TLS, trusting `trusted`) of a leaf with these SANs.
    fn leaf(&self, name: &str, sans: &[&str], trusted: &Ca) -> TlsFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_file, key_file) = (self.dir.join(format!("{name}.pem")), self.dir.join(format!("{name}-key.pem")));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        TlsFiles::new(cert_file, key_file).trusted_ca(trusted.cert_path()).client_cert_auth(true)
    }
}

/// A cluster spec whose members use peer TLS signed by one CA (mutual TLS unless `mutual` is off).
fn tls_spec(n: usize, mutual: bool) -> (ClusterSpec, Ca, Vec<NodeConfig>) {
    let spec = ClusterSpec::new(n);
    let ca = Ca::new(spec.dir.path(), "ca");
    let configs = (0..n)
        .map(|i| {
            let mut c = spec.config(i);
            c.peer_tls = Some(ca.leaf(&spec.members[i].0, &["127.0.0.1"], &ca).client_cert_auth(mutual));
            c
        })
        .collect();
    (spec, ca, configs)
}

fn joiner(spec: &ClusterSpec, name: &str, via: &Node, tls: TlsFiles) -> NodeConfig {
    let mut cfg = single_config(spec.dir.path(), name).bootstrap(Bootstrap::Join(vec![via.config().peer_addr.clone()]));
    cfg.request_timeout_ms = 500;
    cfg.peer_tls = Some(tls);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_cluster_replicates_and_survives_a_leader_crash() {
    let (_spec, _ca, configs) = tls_spec(3, true);
    let configs: Vec<NodeConfig> = configs
        .into_iter()
        .map(|mut c| {
            c.snapshot_threshold_entries = 30;
            c.snapshot_logs_to_keep = 5;
            c
        })
        .collect();
    let nodes = start_configs(configs.clone()).await;
    let leader = wait_for_leader(&nodes, Duration::from_secs(10)).await;
    // Through a follower: the write is forwarded to the leader over TLS.
    let follower = nodes.iter().find(|n| n.id() != leader).unwrap();
    follower.put(PutRequest::new("k", "over tls")).await.unwrap();
    for n in &nodes {
        assert_eq!(n.get("k").await.unwrap().unwrap().value, b"over tls", "read on {}", n.name());
    }
    // A crash (no hand-over): the others elect a new leader over TLS.
    let li = leader_index(&nodes, leader);
    nodes[li].stop_abruptly().await.unwrap();
    let new_leader = wait_for_leader(&nodes, Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);
    let live: Vec<&Node> = nodes.iter().filter(|n| n.is_running()).collect();
    for j in 0..100 {
        live[j % 2].put(PutRequest::new(format!("s{j:03}"), "x")).await.unwrap();
    }
    // The crashed node comes back and catches up by a snapshot sent over TLS.
    let back = Node::start(configs[li].clone()).await.unwrap();
    eventually("the restarted node catches up", Duration::from_secs(20), || {
        back.range_local(&RangeRequest::prefix("s")).map(|r| r.count).unwrap_or(0) == 100
    })
    .await;
    assert_eq!(back.get("k").await.unwrap().unwrap().value, b"over tls");
    back.stop().await.unwrap();
    stop_all(live).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_only_tls_cluster_and_a_node_joining_it() {
    let (spec, ca, mut configs) = tls_spec(2, false);
    // Nodes with peer TLS stay off a local network they are given: every message between
    // them goes through TLS.
    let network = LocalNetwork::new();
    for c in &mut configs {
        c.local_network = Some(network.clone());
    }
    let nodes = start_configs(configs).await;
    nodes[0].put(PutRequest::new("k", "v")).await.unwrap();
    nodes[1].put(PutRequest::new("k2", "v2")).await.unwrap();
    assert!(network.addresses().is_empty());
    assert_eq!(network.deliveries(), 0);
    // Without client certificate auth a joining node needs only the CA and its own certificate.
    let mut cfg = joiner(&spec, "n3", &nodes[1], ca.leaf("n3", &["127.0.0.1"], &ca).client_cert_auth(false));
    // A join that succeeds and a first read over new TLS connections: the usual timeout,
    // not the short one the refused joiners of the other tests use.
    cfg.request_timeout_ms = 5_000;
    let n3 = Node::start(cfg).await.unwrap();
    assert_eq!(n3.get("k").await.unwrap().unwrap().value, b"v");
    // Each member lists the new one once it applied the change.
    eventually("every member lists n3", Duration::from_secs(10), || {
        nodes.iter().all(|n| n.members().map(|m| m.len() == 3).unwrap_or(false))
    })
    .await;
    n3.stop().await.unwrap();
    stop_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_with_a_certificate_from_another_ca_cannot_join() {
    let (spec, ca, configs) = tls_spec(3, true);
    let nodes = start_configs(configs).await;
    nodes[0].put(PutRequest::new("k", "v")).await.unwrap();
    let rogue_ca = Ca::new(spec.dir.path(), "rogue-ca");

    // It trusts the cluster's CA, but the cluster does not trust its certificate.
    let tls = rogue_ca.leaf("n4", &["127.0.0.1"], &ca);
    let err = Node::start(joiner(&spec, "n4", &nodes[1], tls)).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert!(msg.contains("no member reachable to join"), "{msg}");

    // Trusting only its own CA, it refuses the members' certificates itself.
    let tls = rogue_ca.leaf("n5", &["127.0.0.1"], &rogue_ca);
    let err = Node::start(joiner(&spec, "n5", &nodes[1], tls)).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert!(msg.to_lowercase().contains("certificate"), "the error says why: {msg}");

    // The cluster did not notice.
    assert_eq!(nodes[0].members().unwrap().len(), 3);
    wait_for_leader(&nodes, Duration::from_secs(5)).await;
    nodes[2].put(PutRequest::new("k", "still")).await.unwrap();
    assert_eq!(nodes[0].get("k").await.unwrap().unwrap().value, b"still");
    stop_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_whose_certificate_does_not_cover_its_host_is_refused() {
    // n3's certificate is signed by the cluster's CA but made out for another host.
    let (spec, ca, mut configs) = tls_spec(3, true);
    configs[2].peer_tls = Some(ca.leaf("n3-elsewhere", &["127.0.0.2", "n3.example"], &ca));
    let nodes: Vec<Node> =
        futures::future::join_all(configs.into_iter().map(Node::start)).await.into_iter().map(|r| r.unwrap()).collect();
    // n1 and n2 form the cluster; n3 is refused both ways (its messages, and its certificate
    // when they dial it) and learns nothing.
    let pair = &nodes[..2];
    wait_for_leader(pair, Duration::from_secs(10)).await;
    nodes[0].put(PutRequest::new("k", "v")).await.unwrap();
    assert_eq!(nodes[1].get("k").await.unwrap().unwrap().value, b"v");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(nodes[2].leader(), None, "n3 must not join the cluster");
    assert_eq!(nodes[2].range_local(&RangeRequest::prefix("k")).unwrap().count, 0);
    assert!(pair.iter().all(|n| n.leader() == pair[0].leader()), "n3 disrupted no election");

    // A joining node whose certificate does not cover the address it connects from (and
    // asks to join with) is refused, with the reason.
    let tls = ca.leaf("n4-elsewhere", &["127.0.0.2"], &ca);
    let err = Node::start(joiner(&spec, "n4", &nodes[0], tls)).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("peer certificate refused") && msg.contains("do not cover 127.0.0.1"), "{msg}");
    assert_eq!(nodes[0].members().unwrap().len(), 3);
    stop_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_peer_tls_files_fail_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let good = ca.leaf("n1", &["127.0.0.1"], &ca);
    let other = ca.leaf("other", &["127.0.0.1"], &ca);
    std::fs::write(dir.path().join("junk.pem"), "junk").unwrap();
    let cases = [
        (TlsFiles { cert_file: dir.path().join("missing.pem"), ..good.clone() }, "missing.pem"),
        (TlsFiles { cert_file: dir.path().join("junk.pem"), ..good.clone() }, "junk.pem"),
        (TlsFiles { key_file: other.key_file.clone(), ..good.clone() }, "does not match the certificate"),
        (TlsFiles { trusted_ca_file: Some(dir.path().join("junk.pem")), ..good.clone() }, "junk.pem"),
        (TlsFiles { trusted_ca_file: None, client_cert_auth: false, ..good.clone() }, "trusted_ca_file"),
    ];
    for (files, expect) in cases {
        let mut cfg = single_config(dir.path(), "n1");
        cfg.peer_tls = Some(files);
        match Node::start(cfg).await {
            Err(Error::InvalidConfig(m)) => assert!(m.contains(expect), "{m:?} should mention {expect:?}"),
            other => panic!("expected InvalidConfig mentioning {expect:?}, got {other:?}"),
        }
    }
    // Nothing was started: the data dir is free for a good config.
    let mut cfg = single_config(dir.path(), "n1");
    cfg.peer_tls = Some(good);
    let node = Node::start(cfg).await.unwrap();
    node.put(PutRequest::new("k", "v")).await.unwrap();
    node.stop().await.unwrap();
}
