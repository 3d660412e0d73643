//! Watch on one node: live events, history replay, filters, prev_kv, progress, slow
//! consumers, compaction and stop.

mod common;

use std::time::Duration;

use common::*;
use quorumkv::*;

const WAIT: Duration = Duration::from_secs(5);

/// (kind, key, value, mod_revision) of every event.
type Seen = Vec<(EventType, Vec<u8>, Vec<u8>, i64)>;

fn flat(resp: &WatchResponse) -> Seen {
    resp.events.iter().map(|e| (e.kind, e.kv.key.clone(), e.kv.value.clone(), e.kv.mod_revision)).collect()
}

/// Reads responses until `n` events arrived, checking each response's invariants.
async fn collect(w: &mut Watcher, n: usize) -> Seen {
    let mut out = Seen::new();
    while out.len() < n {
        let resp = tokio::time::timeout(WAIT, w.next()).await.expect("events in time").expect("open").expect("ok");
        if resp.is_progress_notify() {
            continue;
        }
        let rev = resp.events.iter().map(|e| e.kv.mod_revision).max().unwrap();
        assert!(resp.header.revision >= rev, "header revision {} below its events' {rev}", resp.header.revision);
        out.extend(flat(&resp));
    }
    assert_eq!(out.len(), n, "more events than expected: {out:?}");
    out
}

async fn one_node() -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = single_config(dir.path(), "w1");
    cfg.watch_progress_notify_interval_ms = 200;
    let node = Node::start(cfg).await.unwrap();
    (dir, node)
}

fn put(k: &str, v: &str) -> PutRequest {
    PutRequest::new(k, v)
}

#[tokio::test]
async fn key_range_and_prefix_watches_see_exactly_their_keys() {
    let (_dir, node) = one_node().await;
    let mut on_key = node.watch(WatchRequest::key("a")).unwrap();
    let mut on_prefix = node.watch(WatchRequest::prefix("p/")).unwrap();
    let mut on_range =
        node.watch(WatchRequest { key: b"b".to_vec(), range_end: b"d".to_vec(), ..Default::default() }).unwrap();
    let mut from_c = node.watch(WatchRequest { key: b"c".to_vec(), range_end: vec![0], ..Default::default() }).unwrap();
    for (k, v) in [("a", "1"), ("p/x", "2"), ("b", "3"), ("c", "4"), ("d", "5"), ("p", "6"), ("a", "7")] {
        node.put(put(k, v)).await.unwrap();
    }
    node.delete_range(DeleteRangeRequest::key("a")).await.unwrap();
    let keys = |s: Seen| {
        s.into_iter()
            .map(|(t, k, v, _)| (t, String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect::<Vec<_>>()
    };
    use EventType::*;
    assert_eq!(
        keys(collect(&mut on_key, 3).await),
        vec![(Put, "a".into(), "1".into()), (Put, "a".into(), "7".into()), (Delete, "a".into(), "".into())]
    );
    assert_eq!(keys(collect(&mut on_prefix, 1).await), vec![(Put, "p/x".into(), "2".into())]);
    assert_eq!(
        keys(collect(&mut on_range, 2).await),
        vec![(Put, "b".into(), "3".into()), (Put, "c".into(), "4".into())]
    );
    // "\0" as range end: every key >= "c" ("p/x" sorts after "c").
    assert_eq!(
        keys(collect(&mut from_c, 4).await),
        vec![
            (Put, "p/x".into(), "2".into()),
            (Put, "c".into(), "4".into()),
            (Put, "d".into(), "5".into()),
            (Put, "p".into(), "6".into())
        ]
    );
    assert!(on_prefix.try_next().is_none(), "nothing else for the prefix");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn events_of_one_revision_arrive_together_with_prev_kv_and_filters() {
    let (_dir, node) = one_node().await;
    node.put(put("t/1", "old")).await.unwrap();
    let mut all = node.watch(WatchRequest::prefix("t/").with_prev_kv()).unwrap();
    let mut no_put = node.watch(WatchRequest { no_put: true, ..WatchRequest::prefix("t/") }).unwrap();
    let mut no_delete = node.watch(WatchRequest { no_delete: true, ..WatchRequest::prefix("t/") }).unwrap();
    let txn = TxnRequest {
        success: vec![
            RequestOp::Put(put("t/1", "new")),
            RequestOp::Put(put("t/2", "x")),
            RequestOp::Put(put("t/3", "y")),
        ],
        ..Default::default()
    };
    let rev = node.txn(txn).await.unwrap().header.revision;
    let resp = tokio::time::timeout(WAIT, all.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(resp.events.len(), 3, "one revision, one response: {resp:?}");
    assert!(resp.events.iter().all(|e| e.kv.mod_revision == rev));
    let prev = resp.events[0].prev_kv.as_ref().expect("prev_kv of t/1");
    assert_eq!(prev.value, b"old");
    assert!(resp.events[1].prev_kv.is_none(), "t/2 had no previous version");
    let del = node.delete_range(DeleteRangeRequest::prefix("t/")).await.unwrap();
    let resp = tokio::time::timeout(WAIT, all.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(resp.events.len(), 3);
    for e in &resp.events {
        assert_eq!(e.kind, EventType::Delete);
        assert_eq!(e.kv.mod_revision, del.header.revision);
        assert!(e.kv.value.is_empty() && e.kv.version == 0, "a delete carries the key and revision only");
        assert!(e.prev_kv.is_some(), "deleted keys report their last value");
    }
    assert!(collect_kinds(&mut no_put, 3).await.iter().all(|k| *k == EventType::Delete));
    assert!(collect_kinds(&mut no_delete, 3).await.iter().all(|k| *k == EventType::Put));
    let plain = node.watch(WatchRequest::prefix("t/").from_revision(rev)).unwrap();
    let mut plain = plain;
    let resp = tokio::time::timeout(WAIT, plain.next()).await.unwrap().unwrap().unwrap();
    assert!(resp.events.iter().all(|e| e.prev_kv.is_none()), "no prev_kv unless asked");
    node.stop().await.unwrap();
}

async fn collect_kinds(w: &mut Watcher, n: usize) -> Vec<EventType> {
    collect(w, n).await.into_iter().map(|e| e.0).collect()
}

#[tokio::test]
async fn a_past_start_revision_replays_history_then_continues_live() {
    let (_dir, node) = one_node().await;
    let mut revs = Vec::new();
    for i in 0..2500 {
        revs.push(node.put(put(&format!("h/{}", i % 7), &i.to_string())).await.unwrap().header.revision);
    }
    let start = revs[100];
    let mut w = node.watch(WatchRequest::prefix("h/").from_revision(start).with_prev_kv()).unwrap();
    let mut more = Vec::new();
    for i in 2500..2600 {
        more.push(node.put(put(&format!("h/{}", i % 7), &i.to_string())).await.unwrap().header.revision);
    }
    let seen = collect(&mut w, 2500).await;
    let got: Vec<i64> = seen.iter().map(|e| e.3).collect();
    let want: Vec<i64> = revs[100..].iter().chain(&more).copied().collect();
    assert_eq!(got, want, "every revision once, in order");
    for (i, (_, key, value, _)) in seen.iter().enumerate() {
        let n = i + 100;
        assert_eq!(key, format!("h/{}", n % 7).as_bytes());
        assert_eq!(value, n.to_string().as_bytes());
    }
    // A future start revision waits for it.
    let now = node.status().unwrap().revision;
    let mut future = node.watch(WatchRequest::prefix("h/").from_revision(now + 3)).unwrap();
    for i in 0..5 {
        node.put(put("h/f", &i.to_string())).await.unwrap();
    }
    let got: Vec<i64> = collect(&mut future, 3).await.iter().map(|e| e.3).collect();
    assert_eq!(got, vec![now + 3, now + 4, now + 5]);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_slow_consumer_is_bounded_and_caught_up_from_history() {
    let (_dir, node) = one_node().await;
    let mut w = node.watch(WatchRequest::prefix("s/")).unwrap();
    let first = node.status().unwrap().revision + 1;
    let writers = (0..8).map(|t| {
        let node = node.clone();
        tokio::spawn(async move {
            for i in 0..1000 {
                node.put(put(&format!("s/{t}/{i}"), "v")).await.unwrap();
            }
        })
    });
    for r in futures::future::join_all(writers).await {
        r.unwrap();
    }
    // Nobody read: the queue stayed bounded, the rest waits in history.
    let queued = w.queued_events();
    assert!(queued <= quorumkv::watch::SINK_EVENTS_MAX + 1000, "queue grew to {queued} events");
    let seen = collect(&mut w, 8000).await;
    let got: Vec<i64> = seen.iter().map(|e| e.3).collect();
    let want: Vec<i64> = (first..first + 8000).collect();
    assert_eq!(got, want, "no gap, no duplicate after catching up");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn compaction_cancels_watches_that_need_compacted_history() {
    let (_dir, node) = one_node().await;
    for i in 0..3000 {
        node.put(put("c/k", &i.to_string())).await.unwrap();
    }
    let rev = node.status().unwrap().revision;
    // A watch far behind that does not read: it is held in the unsynced group.
    let mut behind = node.watch(WatchRequest::key("c/k").from_revision(2)).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.compact(CompactionRequest { revision: rev - 10, physical: true }).await.unwrap();
    let mut got = 0;
    let err = loop {
        match tokio::time::timeout(WAIT, behind.next()).await.unwrap() {
            Some(Ok(resp)) => got += resp.events.len(),
            Some(Err(e)) => break e,
            None => panic!("ended without the compacted error"),
        }
    };
    assert_eq!(err, Error::Compacted { compact_revision: rev - 10 });
    assert!(got < 3000, "it had been held back ({got} events)");
    assert!(behind.next().await.is_none());
    // Starting below the compaction point fails at once; at it, it works.
    let err = node.watch(WatchRequest::key("c/k").from_revision(rev - 11)).unwrap_err();
    assert_eq!(err, Error::Compacted { compact_revision: rev - 10 });
    let mut at = node.watch(WatchRequest::key("c/k").from_revision(rev - 10)).unwrap();
    assert_eq!(collect(&mut at, 11).await.first().unwrap().3, rev - 10);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn progress_notifications_periodic_and_requested() {
    let (_dir, node) = one_node().await;
    node.put(put("x", "1")).await.unwrap();
    let rev = node.status().unwrap().revision;
    let mut w = node.watch(WatchRequest { progress_notify: true, ..WatchRequest::key("p") }).unwrap();
    let resp = tokio::time::timeout(WAIT, w.next()).await.unwrap().unwrap().unwrap();
    assert!(resp.is_progress_notify());
    assert_eq!(resp.header.revision, rev);
    assert_eq!(resp.header.member_id, node.id());
    // Requested: the stream answers with watch id -1 once everything is synced.
    let mut stream = node.watch_stream().unwrap();
    let id = stream.create(WatchRequest::key("q")).unwrap();
    assert_eq!(stream.watch_ids(), vec![id]);
    node.put(put("x", "2")).await.unwrap();
    stream.request_progress();
    let resp = tokio::time::timeout(WAIT, stream.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((resp.watch_id, resp.events.len()), (-1, 0));
    assert_eq!(resp.header.revision, rev + 1);
    // Cancel: a final canceled response, then the watch is gone.
    stream.cancel(id).unwrap();
    let resp = tokio::time::timeout(WAIT, stream.next()).await.unwrap().unwrap().unwrap();
    assert!(resp.canceled && resp.watch_id == id && resp.compact_revision == 0);
    assert!(stream.watch_ids().is_empty());
    assert!(stream.cancel(id).is_err());
    node.stop().await.unwrap();
}

#[tokio::test]
async fn many_watches_on_one_stream_with_chosen_ids() {
    let (_dir, node) = one_node().await;
    let mut stream = node.watch_stream().unwrap();
    stream.create(WatchRequest { watch_id: 7, ..WatchRequest::key("m/1") }).unwrap();
    let auto = stream.create(WatchRequest::key("m/2")).unwrap();
    assert_ne!(auto, 7);
    assert!(stream.create(WatchRequest { watch_id: 7, ..WatchRequest::key("m/3") }).is_err(), "id in use");
    assert_eq!(stream.create(WatchRequest::key("")).unwrap_err(), Error::EmptyKey);
    node.put(put("m/1", "a")).await.unwrap();
    node.put(put("m/2", "b")).await.unwrap();
    let a = tokio::time::timeout(WAIT, stream.next()).await.unwrap().unwrap().unwrap();
    let b = tokio::time::timeout(WAIT, stream.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((a.watch_id, a.events[0].kv.key.as_slice()), (7, b"m/1".as_slice()));
    assert_eq!((b.watch_id, b.events[0].kv.key.as_slice()), (auto, b"m/2".as_slice()));
    assert_eq!(node.status().unwrap().watch_count, 2);
    // A cancelled id is not reused before its final response was read, so no response
    // of the old watch can pass for the new one's.
    stream.cancel(7).unwrap();
    assert!(stream.create(WatchRequest { watch_id: 7, ..WatchRequest::key("m/9") }).is_err());
    let next = stream.create(WatchRequest::key("m/9")).unwrap();
    assert!(next != 7 && next != auto);
    let resp = tokio::time::timeout(WAIT, stream.next()).await.unwrap().unwrap().unwrap();
    assert!(resp.canceled && resp.watch_id == 7);
    stream.create(WatchRequest { watch_id: 7, ..WatchRequest::key("m/1") }).unwrap();
    assert_eq!(stream.watch_ids().len(), 3);
    assert_eq!(node.status().unwrap().watch_count, 3);
    drop(stream);
    assert_eq!(node.status().unwrap().watch_count, 0, "dropping the stream cancels its watches");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn stopping_the_node_ends_watches_with_stopped_and_resume_works() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = single_config(dir.path(), "r1");
    let node = Node::start(cfg.clone()).await.unwrap();
    let mut w = node.watch(WatchRequest::prefix("r/")).unwrap();
    let mut last = 0;
    for i in 0..10 {
        last = node.put(put(&format!("r/{i}"), "v")).await.unwrap().header.revision;
    }
    let seen = collect(&mut w, 10).await;
    assert_eq!(seen.last().unwrap().3, last);
    node.stop().await.unwrap();
    assert_eq!(tokio::time::timeout(WAIT, w.next()).await.unwrap(), Some(Err(Error::Stopped)));
    assert_eq!(w.next().await, None);
    assert_eq!(node.watch(WatchRequest::key("r/0")).unwrap_err(), Error::Stopped);
    // Restart, write more, and resume from the last revision seen + 1.
    let node = Node::start(cfg).await.unwrap();
    for i in 10..15 {
        node.put(put(&format!("r/{i}"), "v")).await.unwrap();
    }
    let mut w = node.watch(WatchRequest::prefix("r/").from_revision(last + 1)).unwrap();
    let seen = collect(&mut w, 5).await;
    assert_eq!(seen.iter().map(|e| e.3).collect::<Vec<_>>(), (last + 1..=last + 5).collect::<Vec<_>>());
    // Blocking API from a plain thread.
    let handle = std::thread::spawn(move || {
        let got = w.next_blocking(Duration::from_millis(100));
        assert_eq!(got, Some(Err(Error::Timeout)), "nothing new yet");
        w
    });
    let mut w = handle.join().unwrap();
    node.put(put("r/z", "v")).await.unwrap();
    let got = std::thread::spawn(move || w.next_blocking(WAIT)).join().unwrap();
    assert_eq!(got.unwrap().unwrap().events[0].kv.key, b"r/z");
    node.stop().await.unwrap();
}
