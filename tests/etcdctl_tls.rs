//! TLS on quorumkv's client and peer ports, driven by the real etcdctl 3.4 with
//! certificates made here by rcgen: server-only TLS, mutual TLS, and a cluster with
//! mutual TLS on both ports. Refused clients must fail (non-zero exit), not hang.

mod common;
mod interop;

use std::path::Path;
use std::time::Duration;

use interop::*;

/// Flags of a one-node quorumkv with its client port at `client`.
fn single_node_args(dir: &Path, name: &str, peer: &str, client: &str, tls: &[String]) -> Vec<String> {
    let data_dir = path_str(&dir.join(name));
    let mut args: Vec<String> =
        ["--name", name, "--data-dir", &data_dir, "--peer-addr", peer, "--client-addr"].map(String::from).to_vec();
    args.push(client.to_string());
    args.extend(["--election-timeout", "300", "--heartbeat-interval", "50", "--log-level", "warn"].map(String::from));
    args.extend(tls.iter().cloned());
    args
}

/// One client that must be refused: what it is, its etcdctl, endpoint and command.
type Refusal<'a> = (&'a str, &'a Etcdctl, &'a str, &'a [&'a str]);

/// Runs every refused client at once (each waits out etcdctl's timeouts) and asserts each
/// failed, with a non-zero exit within those timeouts, and read nothing.
fn assert_refused(cases: &[Refusal]) {
    let outputs: Vec<CtlOutput> = std::thread::scope(|s| {
        let runs: Vec<_> = cases.iter().map(|(_, ctl, e, args)| s.spawn(move || ctl.run(e, args))).collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for ((what, ..), out) in cases.iter().zip(outputs) {
        assert!(!out.success(), "{what} must fail: {out}");
        assert!(out.stderr.contains("Error:"), "{what}: etcdctl reports an error: {out}");
        assert!(!out.stdout.contains("secret"), "{what} must not read anything: {out}");
        assert!(out.elapsed < Duration::from_secs(15), "{what} must fail within etcdctl's timeouts: {out}");
    }
}

#[test]
fn client_port_with_server_tls() {
    let Some(tools) = tools(false) else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let server = ca.leaf("server", &["127.0.0.1", "localhost"]);
    let (peer, client) = (loopback(), loopback());
    let tls = vec!["--cert-file".into(), path_str(&server.cert), "--key-file".into(), path_str(&server.key)];
    let _node = start_quorumkv("tls1", &single_node_args(dir.path(), "tls1", &peer, &client, &tls), dir.path());
    let https = format!("https://{client}");
    let ctl = Etcdctl::new(&tools).with(&["--cacert", &path_str(&ca.cert_path())]);

    ctl.put(&https, "k", "secret");
    assert_eq!(ctl.get(&https, "k").unwrap().as_deref(), Some("secret"));
    // The member list shows the client URL as https, and the (plaintext) peer URL as http.
    let members = ctl.run(&https, &["member", "list"]).ok();
    assert!(members.contains(&format!(", started, tls1, http://{peer}, {https}, false")), "{members}");

    // Plain HTTP/2 to the TLS port fails; so does TLS without trusting the server's CA,
    // or trusting a CA that did not sign the server's certificate.
    let plain = Etcdctl::new(&tools);
    let other_ca = Ca::new(dir.path(), "other-ca");
    let wrong_ca = plain.with(&["--cacert", &path_str(&other_ca.cert_path())]);
    assert_refused(&[
        ("a plaintext client", &plain, &format!("http://{client}"), &["get", "k"]),
        ("a client not trusting the server's CA", &plain, &https, &["get", "k"]),
        ("a client trusting another CA", &wrong_ca, &https, &["get", "k"]),
    ]);
    // The server still serves.
    assert_eq!(ctl.get(&https, "k").unwrap().as_deref(), Some("secret"));
}

#[test]
fn client_port_with_mutual_tls() {
    let Some(tools) = tools(false) else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let server = ca.leaf("server", &["127.0.0.1"]);
    let good = ca.leaf("client", &["client.example"]);
    let rogue_ca = Ca::new(dir.path(), "rogue-ca");
    let rogue = rogue_ca.leaf("rogue", &["client.example"]);
    let client = loopback();
    let tls: Vec<String> = [
        "--cert-file",
        &path_str(&server.cert),
        "--key-file",
        &path_str(&server.key),
        "--trusted-ca-file",
        &path_str(&ca.cert_path()),
        "--client-cert-auth",
    ]
    .map(String::from)
    .to_vec();
    let _node = start_quorumkv("mtls1", &single_node_args(dir.path(), "mtls1", &loopback(), &client, &tls), dir.path());
    let https = format!("https://{client}");
    let trusting = Etcdctl::new(&tools).with(&["--cacert", &path_str(&ca.cert_path())]);
    let ctl = trusting.with(&["--cert", &path_str(&good.cert), "--key", &path_str(&good.key)]);

    ctl.put(&https, "k", "secret");
    assert_eq!(ctl.get(&https, "k").unwrap().as_deref(), Some("secret"));

    // Refused, for reads and writes: no client certificate, a certificate from a CA the
    // server does not trust, and plaintext.
    let rogue_ctl = trusting.with(&["--cert", &path_str(&rogue.cert), "--key", &path_str(&rogue.key)]);
    let plain = Etcdctl::new(&tools);
    assert_refused(&[
        ("a client without a certificate", &trusting, &https, &["get", "k"]),
        ("a write without a client certificate", &trusting, &https, &["put", "k2", "v"]),
        ("a client with another CA's certificate", &rogue_ctl, &https, &["get", "k"]),
        ("a write with another CA's certificate", &rogue_ctl, &https, &["put", "k2", "v"]),
        ("a plaintext client", &plain, &format!("http://{client}"), &["get", "k"]),
    ]);

    // None of the refused writes happened.
    assert_eq!(ctl.get(&https, "k2").unwrap(), None);
    assert_eq!(ctl.get(&https, "k").unwrap().as_deref(), Some("secret"));
}

#[test]
fn cluster_with_peer_and_client_mutual_tls() {
    let Some(tools) = tools(false) else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let names = ["tls-a", "tls-b", "tls-c"];
    let peers: Vec<String> = names.iter().map(|_| loopback()).collect();
    let clients: Vec<String> = names.iter().map(|_| loopback()).collect();
    let initial: Vec<String> = names.iter().zip(&peers).map(|(n, p)| format!("{n}={p}")).collect();
    let mut nodes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let leaf = ca.leaf(name, &["127.0.0.1"]);
        let (cert, key, ca_file) = (path_str(&leaf.cert), path_str(&leaf.key), path_str(&ca.cert_path()));
        let data_dir = path_str(&dir.path().join(name));
        let args: Vec<String> = [
            "--name",
            name,
            "--data-dir",
            &data_dir,
            "--peer-addr",
            &peers[i],
            "--client-addr",
            &clients[i],
            "--initial-cluster",
            &initial.join(","),
            "--election-timeout",
            "300",
            "--heartbeat-interval",
            "50",
            "--log-level",
            "warn",
            "--cert-file",
            &cert,
            "--key-file",
            &key,
            "--trusted-ca-file",
            &ca_file,
            "--client-cert-auth",
            "--peer-cert-file",
            &cert,
            "--peer-key-file",
            &key,
            "--peer-trusted-ca-file",
            &ca_file,
            "--peer-client-cert-auth",
        ]
        .map(String::from)
        .to_vec();
        nodes.push(start_quorumkv(name, &args, dir.path()));
    }
    let endpoints: Vec<String> = clients.iter().map(|c| format!("https://{c}")).collect();
    let user = ca.leaf("etcdctl-user", &["client.example"]);
    let ctl = Etcdctl::new(&tools).with(&[
        "--cacert",
        &path_str(&ca.cert_path()),
        "--cert",
        &path_str(&user.cert),
        "--key",
        &path_str(&user.key),
    ]);

    // The members find each other over peer TLS and agree on a leader; `--cluster` reaches
    // every member through the https client URLs the member list gives.
    poll("a leader agreed over peer TLS", Duration::from_secs(20), || {
        let out = ctl.run(&endpoints[0], &["endpoint", "status", "--cluster", "-w", "json"]).check()?;
        let st: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        let leaders: Vec<u64> =
            st.as_array().unwrap().iter().map(|s| s["Status"]["leader"].as_u64().unwrap_or(0)).collect();
        if leaders.len() == 3 && leaders[0] != 0 && leaders.iter().all(|l| *l == leaders[0]) {
            Ok(())
        } else {
            Err(format!("leaders: {leaders:?}"))
        }
    });
    let members = ctl.run(&endpoints[1], &["member", "list"]).ok();
    // Peer and client URLs are https: both ports serve TLS.
    for (i, name) in names.iter().enumerate() {
        let row = format!("started, {name}, https://{}, {}, false", peers[i], endpoints[i]);
        assert!(members.lines().any(|l| l.split_once(", ").is_some_and(|(_, r)| r == row)), "{row} in\n{members}");
    }

    // A write through one member, read through another (linearizable) and the third's own copy.
    ctl.put(&endpoints[0], "tls/k", "secret across");
    assert_eq!(ctl.get(&endpoints[1], "tls/k").unwrap().as_deref(), Some("secret across"));
    poll("the write on the third member", Duration::from_secs(10), || {
        let got = ctl.get_prefix(&endpoints[2], "tls/", true)?;
        match got.get("tls/k").map(String::as_str) {
            Some("secret across") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    // Every member refuses a client without a certificate.
    let anonymous = Etcdctl::new(&tools).with(&["--cacert", &path_str(&ca.cert_path())]);
    let cases: Vec<Refusal> =
        endpoints.iter().map(|e| ("an anonymous client", &anonymous, e.as_str(), &["get", "tls/k"][..])).collect();
    assert_refused(&cases);
    drop(nodes);
}
