//! etcd's clustering guide, walked through with quorumkv processes and the real etcdctl 3.4:
//! a cluster grown from one machine by joining, a leader crash and fail-over, a crashed
//! member catching up, and a crash of the whole cluster that loses no acknowledged write.

mod common;
mod interop;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use interop::*;

/// One machine of the guide: its flags, and its process while it runs.
struct Machine {
    name: String,
    peer: String,
    client: String,
    args: Vec<String>,
    proc: Option<Proc>,
}

impl Machine {
    fn endpoint(&self) -> String {
        format!("http://{}", self.client)
    }

    fn start(&mut self, log_dir: &Path) {
        assert!(self.proc.is_none(), "{} already runs", self.name);
        self.proc = Some(start_quorumkv(&self.name, &self.args, log_dir));
    }

    /// SIGKILL: a crash, without handing leadership over.
    fn crash(&mut self) {
        self.proc.take().expect("running").kill();
    }
}

fn tuning() -> Vec<String> {
    ["--election-timeout", "300", "--heartbeat-interval", "50", "--log-level", "warn"].map(String::from).to_vec()
}

/// machine1 starts alone, with the one-dash Go-style flags of etcd's original guide.
fn machine1(dir: &Path) -> Machine {
    let (peer, client) = (loopback(), loopback());
    let data_dir = path_str(&dir.join("machine1"));
    let mut args: Vec<String> =
        ["-peer-addr", &peer, "-addr", &client, "-data-dir", &data_dir, "-name", "machine1"].map(String::from).to_vec();
    args.extend(["-election-timeout", "300", "-heartbeat-interval", "50", "-log-level", "warn"].map(String::from));
    Machine { name: "machine1".into(), peer, client, args, proc: None }
}

/// A machine joining through `peers` (a list that may hold unreachable addresses).
fn joiner(dir: &Path, name: &str, peers: &[&str]) -> Machine {
    let (peer, client) = (loopback(), loopback());
    let data_dir = path_str(&dir.join(name));
    let mut args: Vec<String> =
        ["--name", name, "--data-dir", &data_dir, "--peer-addr", &peer, "--client-addr", &client, "--peers"]
            .map(String::from)
            .to_vec();
    args.push(peers.join(","));
    args.extend(tuning());
    Machine { name: name.into(), peer, client, args, proc: None }
}

/// (endpoint, member id, leader id) of each endpoint, from `endpoint status -w json`.
fn statuses(ctl: &Etcdctl, endpoints: &str, cluster: bool) -> Result<Vec<(String, u64, u64)>, String> {
    let mut args = vec!["endpoint", "status", "-w", "json"];
    if cluster {
        args.push("--cluster");
    }
    let out = ctl.run(endpoints, &args).check()?;
    let json: serde_json::Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    let list = json.as_array().ok_or_else(|| format!("not a list: {out}"))?;
    list.iter()
        .map(|s| {
            let endpoint = s["Endpoint"].as_str().ok_or("no Endpoint")?.to_string();
            let member = s["Status"]["header"]["member_id"].as_u64().ok_or("no member_id")?;
            // etcd leaves a zero (no leader) out of its JSON.
            let leader = s["Status"]["leader"].as_u64().unwrap_or(0);
            Ok((endpoint, member, leader))
        })
        .collect()
}

/// Waits until every endpoint reports the same leader, one of them, and not `not`;
/// returns the leader's endpoint.
fn agreed_leader(ctl: &Etcdctl, endpoints: &[String], cluster: bool, not: Option<&str>) -> String {
    poll("an agreed leader", Duration::from_secs(20), || {
        let st = statuses(ctl, &endpoints.join(","), cluster)?;
        let leaders: Vec<u64> = st.iter().map(|s| s.2).collect();
        if leaders.is_empty() || leaders[0] == 0 || leaders.iter().any(|l| *l != leaders[0]) {
            return Err(format!("leaders reported: {st:?}"));
        }
        let leader = st.iter().find(|s| s.1 == leaders[0]).ok_or(format!("leader not among {st:?}"))?;
        if Some(leader.0.as_str()) == not {
            return Err(format!("still led by {}", leader.0));
        }
        Ok(leader.0.clone())
    })
}

/// Reads `want` back through `endpoint` (linearizable, or serializable: its own copy),
/// polling until every key has its value.
fn read_back(ctl: &Etcdctl, endpoint: &str, want: &BTreeMap<String, String>, serializable: bool, timeout: Duration) {
    poll(&format!("{} keys read back from {endpoint}", want.len()), timeout, || {
        let got = ctl.get_prefix(endpoint, "guide/", serializable)?;
        let missing: Vec<_> = want.iter().filter(|(k, v)| got.get(*k) != Some(*v)).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("missing or wrong: {missing:?}"))
        }
    });
}

#[test]
fn clustering_guide_walkthrough() {
    let Some(tools) = tools(false) else { return };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let logs: PathBuf = dir.path().to_path_buf();
    let ctl = Etcdctl::new(&tools);
    // Nothing listens here: the joiners must get past it to a live member.
    let unreachable = loopback();

    let mut m = vec![machine1(dir.path())];
    m[0].start(&logs);
    let m1_peer = m[0].peer.clone();
    m.push(joiner(dir.path(), "machine2", &[&unreachable, &m1_peer]));
    m[1].start(&logs);
    m.push(joiner(dir.path(), "machine3", &[&m1_peer, &unreachable]));
    m[2].start(&logs);
    let endpoints: Vec<String> = m.iter().map(Machine::endpoint).collect();

    // `member list`: three started members with their names and URLs.
    let list = ctl.run(&endpoints[0], &["member", "list"]).ok();
    let rows: Vec<Vec<&str>> = list.lines().map(|l| l.split(", ").collect()).collect();
    assert_eq!(rows.len(), 3, "member list:\n{list}");
    for machine in &m {
        let row =
            rows.iter().find(|r| r[2] == machine.name).unwrap_or_else(|| panic!("{} not in\n{list}", machine.name));
        let want =
            ["started".to_string(), machine.name.clone(), format!("http://{}", machine.peer), machine.endpoint()];
        assert_eq!(row[1..], [&want[..], &["false".to_string()]].concat(), "member list:\n{list}");
    }
    // Every member sees the same list.
    for e in &endpoints[1..] {
        let other = ctl.run(e, &["member", "list"]).ok();
        let mut a: Vec<&str> = list.lines().collect();
        let mut b: Vec<&str> = other.lines().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "member list through {e}");
    }
    let health = ctl.run(&endpoints[0], &["endpoint", "health", "--cluster", "-w", "json"]).ok();
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    let healthy: Vec<&str> = health
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["health"] == true)
        .filter_map(|h| h["endpoint"].as_str())
        .collect();
    assert_eq!(healthy.len(), 3, "endpoint health: {health}");

    // The leader, as `endpoint status --cluster` shows it.
    let leader = agreed_leader(&ctl, &endpoints[..1], true, None);
    let leader_ix = endpoints.iter().position(|e| *e == leader).unwrap();

    // Writes through every member.
    let mut acked = BTreeMap::new();
    for i in 0..9 {
        let (k, v) = (format!("guide/before/{i}"), format!("v{i}"));
        ctl.put(&endpoints[i % 3], &k, &v);
        acked.insert(k, v);
    }
    read_back(&ctl, &endpoints[(leader_ix + 1) % 3], &acked, false, Duration::from_secs(5));

    // The leader crashes; the other two elect a new one among themselves.
    m[leader_ix].crash();
    let survivors: Vec<String> = (0..3).filter(|i| *i != leader_ix).map(|i| endpoints[i].clone()).collect();
    let new_leader = agreed_leader(&ctl, &survivors, false, Some(&leader));
    assert!(survivors.contains(&new_leader));
    let mut while_down = BTreeMap::new();
    for i in 0..6 {
        let (k, v) = (format!("guide/while-down/{i}"), format!("w{i}"));
        ctl.put(&survivors[i % 2], &k, &v);
        while_down.insert(k, v);
    }
    acked.extend(while_down.clone());
    for e in &survivors {
        read_back(&ctl, e, &acked, false, Duration::from_secs(5));
    }
    // A write to a key written before the crash, and a delete, both through a follower.
    let follower = survivors.iter().find(|e| **e != new_leader).unwrap();
    ctl.put(follower, "guide/before/0", "overwritten");
    acked.insert("guide/before/0".into(), "overwritten".into());
    let del = ctl.run(follower, &["del", "guide/before/8"]).ok();
    assert_eq!(del.trim(), "1", "del through {follower}");
    acked.remove("guide/before/8");

    // The crashed machine restarts with its name and data dir, and catches up: its own
    // (serializable) copy gets the writes it missed.
    m[leader_ix].start(&logs);
    read_back(&ctl, &leader, &acked, true, Duration::from_secs(20));
    // The delete came after the writes read back above: it may land a moment later.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let gone = ctl.run(&leader, &["get", "--consistency=s", "guide/before/8"]).ok();
        if gone.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the delete never reached the restarted member: {gone}");
        std::thread::sleep(Duration::from_millis(100));
    }
    agreed_leader(&ctl, &endpoints[..1], true, None);
    assert_eq!(ctl.run(&leader, &["member", "list"]).ok().lines().filter(|l| l.contains(", started, ")).count(), 3);

    // The whole cluster crashes at once and restarts: every acknowledged write is there,
    // read through every member.
    for machine in &mut m {
        machine.crash();
    }
    for machine in m.iter_mut().rev() {
        machine.start(&logs);
    }
    agreed_leader(&ctl, &endpoints, false, None);
    for e in &endpoints {
        read_back(&ctl, e, &acked, false, Duration::from_secs(20));
        let got = ctl.get_prefix(e, "guide/", false).unwrap();
        assert_eq!(got, acked, "exactly the acknowledged state through {e}");
    }
    // And it takes writes again.
    ctl.put(&endpoints[2], "guide/after-restart", "yes");
    assert_eq!(ctl.get(&endpoints[0], "guide/after-restart").unwrap().as_deref(), Some("yes"));
    eprintln!("clustering guide walkthrough took {:?}", started.elapsed());
}
