//! `etcdctl make-mirror` (etcdctl 3.4) between a real etcd 3.4 and quorumkv, both ways:
//! the initial copy (ranges read at one revision, in pages) and the live updates (a watch
//! from the next revision, replayed as transactions) must carry every put, overwrite and
//! delete across.

mod common;
mod interop;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use interop::*;

type Kvs = BTreeMap<String, String>;

/// A one-member etcd on loopback; returns it once it answers.
fn start_etcd(tools: &Tools, ctl: &Etcdctl, dir: &Path) -> (Proc, String) {
    let (client, peer) = (format!("http://{}", loopback()), format!("http://{}", loopback()));
    let mut cmd = Command::new(tools.etcd.as_ref().unwrap());
    cmd.args(["--name", "e1", "--data-dir"])
        .arg(dir.join("etcd"))
        .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("e1={peer}")])
        .args(["--heartbeat-interval", "50", "--election-timeout", "300"]);
    let etcd = Proc::spawn("etcd", cmd, dir);
    poll("etcd to serve", START_DEADLINE, || {
        ctl.run(&client, &["endpoint", "health"]).check().map_err(|e| format!("{e}\netcd: {}", etcd.stderr_tail()))
    });
    (etcd, client)
}

/// quorumkv members on loopback (one alone, or several in one cluster); returns their endpoints.
fn start_quorumkv_cluster(names: &[&str], dir: &Path) -> (Vec<Proc>, Vec<String>) {
    let peers: Vec<String> = names.iter().map(|_| loopback()).collect();
    let clients: Vec<String> = names.iter().map(|_| loopback()).collect();
    let initial: Vec<String> = names.iter().zip(&peers).map(|(n, p)| format!("{n}={p}")).collect();
    let procs = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let data_dir = path_str(&dir.join(name));
            let mut args: Vec<String> =
                ["--name", name, "--data-dir", &data_dir, "--peer-addr", &peers[i], "--client-addr", &clients[i]]
                    .map(String::from)
                    .to_vec();
            if names.len() > 1 {
                args.extend(["--initial-cluster".to_string(), initial.join(",")]);
            }
            args.extend(
                ["--election-timeout", "300", "--heartbeat-interval", "50", "--log-level", "warn"].map(String::from),
            );
            start_quorumkv(name, &args, dir)
        })
        .collect();
    (procs, clients.iter().map(|c| format!("http://{c}")).collect())
}

/// Starts `etcdctl make-mirror` from `source` to `dest`; it runs until killed.
fn start_mirror(ctl: &Etcdctl, source: &str, dest: &str, extra: &[&str], dir: &Path) -> Proc {
    let mut args = vec!["make-mirror"];
    args.extend(extra);
    args.push(dest);
    Proc::spawn("make-mirror", ctl.command(source, &args), dir)
}

/// Waits until `endpoint`'s whole keyspace is `want`, failing early if make-mirror exits.
fn wait_mirrored(ctl: &Etcdctl, endpoint: &str, want: &Kvs, mirror: &mut Proc, what: &str) {
    let started = Instant::now();
    poll(what, Duration::from_secs(30), || {
        if let Some(status) = mirror.try_wait() {
            panic!("make-mirror exited ({status}) while waiting for {what}:\n{}", mirror.stderr_tail());
        }
        let got = ctl.get_prefix(endpoint, "", false)?;
        if got == *want {
            return Ok(());
        }
        let missing: Vec<_> = want.iter().filter(|(k, v)| got.get(*k) != Some(*v)).take(5).collect();
        let extra: Vec<_> = got.iter().filter(|(k, _)| !want.contains_key(*k)).take(5).collect();
        Err(format!("{} keys of {}; missing or wrong: {missing:?}; unexpected: {extra:?}", got.len(), want.len()))
    });
    eprintln!("{what}: {:?}", started.elapsed());
}

#[test]
fn make_mirror_from_etcd_into_quorumkv_with_prefixes() {
    let Some(tools) = tools(true) else { return };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let ctl = Etcdctl::new(&tools);
    let (_etcd, etcd) = start_etcd(&tools, &ctl, dir.path());
    let (_qkv, qkv) = start_quorumkv_cluster(&["q1"], dir.path());
    let qkv = &qkv[0];

    // Keys in etcd before the mirror starts: only src/ is mirrored, to mirrored/.
    let mut want = Kvs::new();
    for k in ["a", "b", "c1", "c2", "d"] {
        ctl.put(&etcd, &format!("src/{k}"), &format!("{k}-0"));
        want.insert(format!("mirrored/{k}"), format!("{k}-0"));
    }
    ctl.put(&etcd, "other/x", "not mirrored");
    // A key already in quorumkv stays (make-mirror only writes).
    ctl.put(qkv, "local/key", "mine");
    want.insert("local/key".into(), "mine".into());

    let mut mirror = start_mirror(&ctl, &etcd, qkv, &["--prefix", "src/", "--dest-prefix", "mirrored/"], dir.path());
    wait_mirrored(&ctl, qkv, &want, &mut mirror, "the initial copy from etcd");

    // Changes while it runs: new keys, an overwrite, a delete, a prefix delete (two
    // deletes in one revision), a transaction (a put and a delete in one revision).
    ctl.put(&etcd, "src/e", "e-1");
    want.insert("mirrored/e".into(), "e-1".into());
    ctl.put(&etcd, "src/a", "a-1");
    want.insert("mirrored/a".into(), "a-1".into());
    assert_eq!(ctl.run(&etcd, &["del", "src/b"]).ok().trim(), "1");
    want.remove("mirrored/b");
    assert_eq!(ctl.run(&etcd, &["del", "--prefix", "src/c"]).ok().trim(), "2");
    want.remove("mirrored/c1");
    want.remove("mirrored/c2");
    ctl.txn(&etcd, &["put src/f f-1".into(), "del src/d".into(), "put other/y no".into()]);
    want.insert("mirrored/f".into(), "f-1".into());
    want.remove("mirrored/d");
    for i in 0..20 {
        ctl.put(&etcd, "src/counter", &i.to_string());
    }
    want.insert("mirrored/counter".into(), "19".into());
    // 120 puts in one revision: one transaction of 120 operations on quorumkv (under its
    // default limit of 128, as under etcd's).
    let ops: Vec<String> = (0..120)
        .map(|i| {
            want.insert(format!("mirrored/bulk/{i:03}"), format!("b{i}"));
            format!("put src/bulk/{i:03} b{i}")
        })
        .collect();
    ctl.txn(&etcd, &ops);
    wait_mirrored(&ctl, qkv, &want, &mut mirror, "the live changes from etcd");
    eprintln!("etcd -> quorumkv took {:?}", started.elapsed());
}

#[test]
fn make_mirror_from_a_quorumkv_cluster_into_etcd() {
    let Some(tools) = tools(true) else { return };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let ctl = Etcdctl::new(&tools);
    let (_etcd, etcd) = start_etcd(&tools, &ctl, dir.path());
    let (_qkv, qkv) = start_quorumkv_cluster(&["q1", "q2", "q3"], dir.path());

    // More keys than make-mirror's page (1000) before it starts, written as transactions
    // through every member.
    let mut want = Kvs::new();
    for batch in 0..10 {
        let ops: Vec<String> = (0..120)
            .map(|i| {
                let (k, v) = (format!("bulk/{batch:02}/{i:03}"), format!("b{batch}-{i}"));
                want.insert(k.clone(), v.clone());
                format!("put {k} {v}")
            })
            .collect();
        ctl.txn(&qkv[batch % 3], &ops);
    }
    for k in ["a", "b", "c1", "c2", "d"] {
        ctl.put(&qkv[0], &format!("pre/{k}"), &format!("{k}-0"));
        want.insert(format!("pre/{k}"), format!("{k}-0"));
    }

    // The whole keyspace, read from one member while the writes go through the others.
    let mut mirror = start_mirror(&ctl, &qkv[0], &etcd, &[], dir.path());
    wait_mirrored(&ctl, &etcd, &want, &mut mirror, "the initial copy from quorumkv");

    ctl.put(&qkv[1], "pre/e", "e-1");
    want.insert("pre/e".into(), "e-1".into());
    ctl.put(&qkv[2], "pre/a", "a-1");
    want.insert("pre/a".into(), "a-1".into());
    assert_eq!(ctl.run(&qkv[1], &["del", "pre/b"]).ok().trim(), "1");
    want.remove("pre/b");
    assert_eq!(ctl.run(&qkv[2], &["del", "--prefix", "pre/c"]).ok().trim(), "2");
    want.remove("pre/c1");
    want.remove("pre/c2");
    assert_eq!(ctl.run(&qkv[1], &["del", "--prefix", "bulk/03/"]).ok().trim(), "120");
    want.retain(|k, _| !k.starts_with("bulk/03/"));
    ctl.txn(&qkv[2], &["put pre/f f-1".into(), "del pre/d".into(), "put bulk/00/000 changed".into()]);
    want.insert("pre/f".into(), "f-1".into());
    want.remove("pre/d");
    want.insert("bulk/00/000".into(), "changed".into());
    for i in 0..20 {
        ctl.put(&qkv[1 + i % 2], "pre/counter", &i.to_string());
    }
    want.insert("pre/counter".into(), "19".into());
    wait_mirrored(&ctl, &etcd, &want, &mut mirror, "the live changes from quorumkv");
    // The source holds the same.
    assert_eq!(ctl.get_prefix(&qkv[0], "", false).unwrap(), want);
    eprintln!("quorumkv -> etcd took {:?}", started.elapsed());
}
