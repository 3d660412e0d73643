//! Request validation done before a request is proposed (etcd `v3rpc/key.go`).
//!
//! Order and rules follow etcd: per-level op counts first (each list counted alone, nested
//! transactions get the remaining budget), empty keys next, duplicate keys last.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::mvcc::types::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

/// Validates a range request.
pub fn check_range(r: &RangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// Validates a put request.
pub fn check_put(r: &PutRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

/// Validates a delete request.
pub fn check_delete(r: &DeleteRangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// Validates a transaction: op counts, empty keys, then duplicate keys.
pub fn check_txn(r: &TxnRequest, max_txn_ops: usize) -> Result<()> {
    check_txn_shape(r, max_txn_ops)?;
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn check_txn_shape(r: &TxnRequest, max_txn_ops: usize) -> Result<()> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len());
    if opc > max_txn_ops {
        return Err(Error::TooManyOps { max: max_txn_ops });
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        match op {
            RequestOp::Range(x) => check_range(x)?,
            RequestOp::Put(x) => check_put(x)?,
            RequestOp::DeleteRange(x) => check_delete(x)?,
            RequestOp::Txn(t) => check_txn_shape(t, max_txn_ops - opc)?,
        }
    }
    Ok(())
}

/// A deleted interval: a point (`end == None` and `point`), `[start, end)`, or `[start, ∞)`.
#[derive(Debug, Clone)]
struct Interval {
    start: Vec<u8>,
    /// `None`: unbounded above. Ignored for points.
    end: Option<Vec<u8>>,
    point: bool,
}

impl Interval {
    fn of(key: &[u8], range_end: &[u8]) -> Self {
        match range_end {
            [] => Interval { start: key.to_vec(), end: None, point: true },
            [0] => Interval { start: key.to_vec(), end: None, point: false },
            end => Interval { start: key.to_vec(), end: Some(end.to_vec()), point: false },
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        if self.point {
            return self.start == key;
        }
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|e| key < e)
    }
}

fn any_contains(dels: &[Interval], key: &[u8]) -> bool {
    dels.iter().any(|d| d.contains(key))
}

/// Port of etcd's `checkIntervals`: returns this level's puts and deletes (including
/// nested ones). Unlike released etcd, an open-ended delete (`range_end == "\0"`) does
/// conflict with a put inside it (the fix etcd has pending as PR #22395): a transaction
/// that deletes a range and writes into it is ambiguous, so it is refused.
fn check_intervals(ops: &[RequestOp]) -> Result<(BTreeSet<Vec<u8>>, Vec<Interval>)> {
    let mut dels: Vec<Interval> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(d) => Some(Interval::of(&d.key, &d.range_end)),
            _ => None,
        })
        .collect();
    let mut puts: BTreeSet<Vec<u8>> = BTreeSet::new();
    for op in ops {
        let RequestOp::Txn(t) = op else { continue };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || any_contains(&dels, k) {
                return Err(Error::DuplicateKey);
            }
        }
        puts.extend(puts_then.iter().cloned());
        for k in puts_else {
            if (puts.contains(&k) && !puts_then.contains(&k)) || any_contains(&dels, &k) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(k);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let RequestOp::Put(p) = op else { continue };
        if puts.contains(&p.key) || any_contains(&dels, &p.key) {
            return Err(Error::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::types::*;

    fn put(k: &str) -> RequestOp {
        RequestOp::Put(PutRequest::new(k, "v"))
    }
    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp::DeleteRange(DeleteRangeRequest { key: k.into(), range_end: end.into(), prev_kv: false })
    }
    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest { compare: vec![], success, failure }
    }

    #[test]
    fn duplicate_key_table() {
        let cases: Vec<(&str, TxnRequest, bool)> = vec![
            ("two puts same key", txn(vec![put("a"), put("a")], vec![]), true),
            ("put in deleted range", txn(vec![del("a", "c"), put("b")], vec![]), true),
            ("put outside deleted range", txn(vec![del("a", "c"), put("c")], vec![]), false),
            ("delete point then put", txn(vec![del("a", ""), put("a")], vec![]), true),
            ("overlapping deletes", txn(vec![del("a", "c"), del("b", "d")], vec![]), false),
            ("success vs failure never conflict", txn(vec![put("a")], vec![put("a")]), false),
            ("open-ended delete then put", txn(vec![del("a", "\0"), put("z")], vec![]), true),
            (
                "nested then/else same key",
                txn(vec![RequestOp::Txn(txn(vec![put("a")], vec![put("a")]))], vec![]),
                false,
            ),
            ("nested put vs outer put", txn(vec![put("a"), RequestOp::Txn(txn(vec![put("a")], vec![]))], vec![]), true),
            (
                "nested put in outer delete",
                txn(vec![del("a", "b"), RequestOp::Txn(txn(vec![], vec![put("a")]))], vec![]),
                true,
            ),
            (
                "outer put in nested delete",
                txn(vec![RequestOp::Txn(txn(vec![del("a", "")], vec![])), put("a")], vec![]),
                true,
            ),
            ("range ops never conflict", txn(vec![RequestOp::Range(RangeRequest::key("a")), put("a")], vec![]), false),
        ];
        for (name, t, dup) in cases {
            let got = check_txn(&t, 128);
            assert_eq!(got == Err(Error::DuplicateKey), dup, "{name}: {got:?}");
        }
    }

    #[test]
    fn op_limits_are_per_list_and_nested_get_the_rest() {
        let many = |n: usize| (0..n).map(|i| put(&format!("k{i}"))).collect::<Vec<_>>();
        assert!(check_txn(&txn(many(128), many(128)), 128).is_ok());
        assert_eq!(check_txn(&txn(many(129), vec![]), 128), Err(Error::TooManyOps { max: 128 }));
        let mut outer = many(100);
        outer.push(RequestOp::Txn(txn(many(28), vec![])));
        assert_eq!(check_txn(&txn(outer, vec![]), 128), Err(Error::TooManyOps { max: 27 }));
    }

    #[test]
    fn empty_keys_are_refused_everywhere() {
        assert_eq!(check_put(&PutRequest::new("", "v")), Err(Error::EmptyKey));
        assert_eq!(check_range(&RangeRequest::key("")), Err(Error::EmptyKey));
        let mut t = txn(vec![], vec![]);
        t.compare.push(Compare::new("", CompareResult::Equal, CompareTarget::Version(0)));
        assert_eq!(check_txn(&t, 128), Err(Error::EmptyKey));
        assert_eq!(check_txn(&txn(vec![del("", "")], vec![]), 128), Err(Error::EmptyKey));
    }
}
