//! A linearizability checker for a key-value register history: a port of porcupine's
//! algorithm (Wing & Gong's search with Lowe's memoization of linearized-set + state).
//!
//! Linearizability is compositional, so each key is checked on its own. An operation
//! whose outcome is unknown (the client saw a timeout) has no return: it may take effect
//! at any point after its call, or never (it can always be linearized last).

use std::collections::{HashMap, HashSet};

/// One operation on one key.
#[derive(Debug, Clone)]
pub struct Op {
    pub call: u64,
    /// `None`: the outcome is unknown.
    pub ret: Option<u64>,
    pub kind: OpKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// Wrote this value.
    Put(Vec<u8>),
    /// Read this value (`None`: absent).
    Get(Option<Vec<u8>>),
}

type State = Option<Vec<u8>>;

fn step(state: &State, op: &OpKind, known: bool) -> Option<State> {
    match op {
        OpKind::Put(v) => Some(Some(v.clone())),
        OpKind::Get(seen) if !known || seen == state => Some(state.clone()),
        OpKind::Get(_) => None,
    }
}

#[derive(Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
}

const NIL: usize = usize::MAX;

/// Whether the history of one key (starting from `initial`) is linearizable.
pub fn check_register(ops: &[Op], initial: State) -> bool {
    // Events sorted by time; calls before returns at equal times.
    let mut events: Vec<(u64, bool, usize)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, true, i));
        events.push((op.ret.unwrap_or(u64::MAX), false, i));
    }
    events.sort_by_key(|(t, is_call, _)| (*t, !*is_call));
    // Doubly linked list over the events, with a head sentinel at index 0.
    let mut list: Vec<Entry> = vec![Entry { op: NIL, is_call: false, prev: NIL, next: NIL }];
    let mut call_at = vec![0usize; ops.len()];
    let mut ret_at = vec![0usize; ops.len()];
    for (_, is_call, op) in events {
        let idx = list.len();
        let prev = idx - 1;
        list[prev].next = idx;
        list.push(Entry { op, is_call, prev, next: NIL });
        if is_call {
            call_at[op] = idx;
        } else {
            ret_at[op] = idx;
        }
    }
    let lift = |list: &mut Vec<Entry>, i: usize| {
        let (p, n) = (list[i].prev, list[i].next);
        list[p].next = n;
        if n != NIL {
            list[n].prev = p;
        }
    };
    let unlift = |list: &mut Vec<Entry>, i: usize| {
        let (p, n) = (list[i].prev, list[i].next);
        list[p].next = i;
        if n != NIL {
            list[n].prev = i;
        }
    };
    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashMap<Vec<u64>, HashSet<State>> = HashMap::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state = initial;
    let mut cur = list[0].next;
    while list[0].next != NIL {
        if cur == NIL {
            return false;
        }
        let e = list[cur];
        if e.is_call {
            let op = &ops[e.op];
            if let Some(next_state) = step(&state, &op.kind, op.ret.is_some()) {
                let mut bits = linearized.clone();
                bits[e.op / 64] |= 1 << (e.op % 64);
                if cache.entry(bits.clone()).or_default().insert(next_state.clone()) {
                    stack.push((cur, state));
                    state = next_state;
                    linearized = bits;
                    lift(&mut list, call_at[e.op]);
                    lift(&mut list, ret_at[e.op]);
                    cur = list[0].next;
                    continue;
                }
            }
            cur = e.next;
        } else {
            // A return reached before its call was linearized: backtrack.
            let Some((entry, prev_state)) = stack.pop() else { return false };
            let op = list[entry].op;
            state = prev_state;
            linearized[op / 64] &= !(1 << (op % 64));
            unlift(&mut list, ret_at[op]);
            unlift(&mut list, call_at[op]);
            cur = list[entry].next;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(call: u64, ret: u64, v: &str) -> Op {
        Op { call, ret: Some(ret), kind: OpKind::Put(v.as_bytes().to_vec()) }
    }
    fn get(call: u64, ret: u64, v: Option<&str>) -> Op {
        Op { call, ret: Some(ret), kind: OpKind::Get(v.map(|s| s.as_bytes().to_vec())) }
    }

    #[test]
    fn checker_accepts_and_rejects() {
        // Sequential and correct.
        assert!(check_register(&[put(0, 1, "a"), get(2, 3, Some("a"))], None));
        // Stale read after a completed write: not linearizable.
        assert!(!check_register(&[put(0, 1, "a"), put(2, 3, "b"), get(4, 5, Some("a"))], None));
        // Concurrent write: either value may be read.
        assert!(check_register(&[put(0, 10, "a"), get(1, 2, None), get(3, 4, Some("a"))], None));
        // Reads going back in time are not allowed.
        assert!(!check_register(&[put(0, 10, "a"), get(1, 2, Some("a")), get(3, 4, None)], None));
        // An unknown write may have happened...
        let unknown = Op { call: 0, ret: None, kind: OpKind::Put(b"x".to_vec()) };
        assert!(check_register(&[unknown.clone(), get(5, 6, Some("x"))], None));
        // ...or not.
        assert!(check_register(&[unknown, get(5, 6, None)], None));
    }
}
