//! Model-based property test: random operation sequences against a real node and against
//! a small in-memory model of etcd's rules; every response must match the model.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use proptest::prelude::*;
use quorumkv::*;

#[derive(Debug, Clone)]
enum Cmd {
    Put { key: u8, value: u8, prev_kv: bool },
    Delete { from: u8, to: Option<u8> },
    Range { from: u8, to: Option<u8>, back: u8, limit: u8 },
    Txn { key: u8, expect_version: u8, then_key: u8, else_key: u8 },
    Compact { back: u8 },
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        4 => (0..6u8, any::<u8>(), any::<bool>()).prop_map(|(key, value, prev_kv)| Cmd::Put { key, value, prev_kv }),
        1 => (0..6u8, proptest::option::of(0..7u8)).prop_map(|(from, to)| Cmd::Delete { from, to }),
        3 => (0..6u8, proptest::option::of(0..7u8), 0..6u8, 0..4u8)
            .prop_map(|(from, to, back, limit)| Cmd::Range { from, to, back, limit }),
        2 => (0..6u8, 0..3u8, 0..6u8, 0..6u8)
            .prop_map(|(key, expect_version, then_key, else_key)| Cmd::Txn { key, expect_version, then_key, else_key }),
        1 => (0..8u8).prop_map(|back| Cmd::Compact { back }),
    ]
}

/// etcd's rules, the simple way: a full copy of the live keys at every revision.
struct Model {
    prefix: String,
    rev: i64,
    compact: i64,
    states: BTreeMap<i64, BTreeMap<Vec<u8>, KeyValue>>,
}

impl Model {
    fn key(&self, k: u8) -> Vec<u8> {
        format!("{}/{k}", self.prefix).into_bytes()
    }

    fn current(&self) -> BTreeMap<Vec<u8>, KeyValue> {
        self.states.range(..=self.rev).next_back().map(|(_, s)| s.clone()).unwrap_or_default()
    }

    fn commit(&mut self, state: BTreeMap<Vec<u8>, KeyValue>) {
        self.rev += 1;
        self.states.insert(self.rev, state);
    }

    fn put_into(&self, state: &mut BTreeMap<Vec<u8>, KeyValue>, key: Vec<u8>, value: Vec<u8>, rev: i64) {
        let prev = state.get(&key).cloned();
        let kv = KeyValue {
            key: key.clone(),
            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(0, |p| p.version) + 1,
            value,
            lease: 0,
        };
        state.insert(key, kv);
    }

    fn range_bounds(&self, from: u8, to: Option<u8>) -> (Vec<u8>, Vec<u8>) {
        (self.key(from), to.map(|t| self.key(t)).unwrap_or_default())
    }

    fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
        if end.is_empty() {
            key == start
        } else {
            key >= start && key < end
        }
    }
}

fn node() -> &'static Node {
    static NODE: OnceLock<(tempfile::TempDir, Node)> = OnceLock::new();
    &NODE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let n = Node::start_blocking(common::single_config(dir.path(), "model")).unwrap();
            (dir, n)
        })
        .1
}

static CASE: AtomicUsize = AtomicUsize::new(0);

fn run(cmds: Vec<Cmd>) -> Result<(), TestCaseError> {
    let n = node();
    let status = n.status().unwrap();
    let mut m = Model {
        prefix: format!("case{:05}", CASE.fetch_add(1, Ordering::Relaxed)),
        rev: status.revision,
        compact: status.compact_revision,
        states: BTreeMap::new(),
    };
    m.states.insert(m.rev, BTreeMap::new());
    for c in cmds {
        match c {
            Cmd::Put { key, value, prev_kv } => {
                let k = m.key(key);
                let resp = n.put_blocking(PutRequest { prev_kv, ..PutRequest::new(k.clone(), vec![value]) }).unwrap();
                let mut state = m.current();
                let prev = state.get(&k).cloned();
                m.put_into(&mut state, k, vec![value], m.rev + 1);
                m.commit(state);
                prop_assert_eq!(resp.header.revision, m.rev);
                prop_assert_eq!(resp.prev_kv, if prev_kv { prev } else { None });
            }
            Cmd::Delete { from, to } => {
                let (start, end) = m.range_bounds(from, to);
                let resp = n
                    .delete_range_blocking(DeleteRangeRequest {
                        key: start.clone(),
                        range_end: end.clone(),
                        prev_kv: true,
                    })
                    .unwrap();
                let mut state = m.current();
                let victims: Vec<Vec<u8>> =
                    state.keys().filter(|k| Model::in_range(k, &start, &end)).cloned().collect();
                for v in &victims {
                    state.remove(v);
                }
                if !victims.is_empty() {
                    m.commit(state);
                }
                prop_assert_eq!(resp.deleted, victims.len() as i64);
                prop_assert_eq!(resp.header.revision, m.rev);
            }
            Cmd::Range { from, to, back, limit } => {
                let (start, end) = m.range_bounds(from, to);
                let rev = if back == 0 { 0 } else { m.rev - back as i64 + 1 };
                let req = RangeRequest {
                    key: start.clone(),
                    range_end: end.clone(),
                    revision: rev,
                    limit: limit as i64,
                    ..Default::default()
                };
                let got = n.range_blocking(req);
                if rev > 0 && rev < m.compact {
                    prop_assert_eq!(got, Err(Error::Compacted { compact_revision: m.compact }));
                    continue;
                }
                let at = if rev <= 0 { m.rev } else { rev };
                let state = m.states.range(..=at).next_back().map(|(_, s)| s.clone()).unwrap_or_default();
                let all: Vec<KeyValue> =
                    state.values().filter(|kv| Model::in_range(&kv.key, &start, &end)).cloned().collect();
                let got = got.unwrap();
                prop_assert_eq!(got.count, all.len() as i64);
                let want: Vec<KeyValue> =
                    if limit > 0 { all.iter().take(limit as usize).cloned().collect() } else { all.clone() };
                prop_assert_eq!(got.more, limit > 0 && all.len() > limit as usize);
                prop_assert_eq!(got.kvs, want);
            }
            Cmd::Txn { key, expect_version, then_key, else_key } => {
                let k = m.key(key);
                let req = TxnRequest {
                    compare: vec![Compare::new(
                        k.clone(),
                        CompareResult::Equal,
                        CompareTarget::Version(expect_version as i64),
                    )],
                    success: vec![RequestOp::Put(PutRequest::new(m.key(then_key), b"then".to_vec()))],
                    failure: vec![RequestOp::Put(PutRequest::new(m.key(else_key), b"else".to_vec()))],
                };
                let resp = n.txn_blocking(req).unwrap();
                let mut state = m.current();
                let ok = state.get(&k).map_or(0, |kv| kv.version) == expect_version as i64;
                let (target, value) = if ok { (then_key, b"then") } else { (else_key, b"else") };
                m.put_into(&mut state, m.key(target), value.to_vec(), m.rev + 1);
                m.commit(state);
                prop_assert_eq!(resp.succeeded, ok);
                prop_assert_eq!(resp.header.revision, m.rev);
            }
            Cmd::Compact { back } => {
                let target = m.rev - back as i64;
                let got = n.compact_blocking(CompactionRequest { revision: target, physical: true });
                if target <= m.compact {
                    prop_assert_eq!(got, Err(Error::Compacted { compact_revision: m.compact }));
                } else {
                    got.unwrap();
                    m.compact = target;
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn node_matches_the_model(cmds in proptest::collection::vec(cmd(), 1..40)) {
        run(cmds)?;
    }
}
