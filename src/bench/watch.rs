//! The watch workload: `--watchers` streams watch the `w` prefix, writers put `--total`
//! keys under it, and every watcher must then have received every put's event exactly
//! once, in revision order.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use super::options::Options;
use super::run::{connect, run_phase, status_key};
use super::stats::{Report, WatchCheck};
use crate::server::pb::etcdserverpb::watch_client::WatchClient;
use crate::server::pb::etcdserverpb::watch_request::RequestUnion;
use crate::server::pb::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};

/// What one watcher received.
struct Received {
    /// `mod_revision` of each event, in arrival order.
    revisions: Vec<i64>,
    /// How the stream failed, if it did.
    error: Option<String>,
    /// When the last event arrived.
    last_event: Option<Instant>,
}

pub(super) async fn run(opts: &Options) -> Result<Report, String> {
    // Watch streams on channels without a request deadline, puts on channels with one.
    let watch_chans = connect(opts, false).await?;
    let kv_chans = connect(opts, true).await?;
    let prefix = vec![opts.workload.key_prefix()];
    let range_end = vec![opts.workload.key_prefix() + 1];
    let (target_tx, target_rx) = watch::channel(None::<i64>);
    let mut watchers = Vec::with_capacity(opts.watchers);
    for i in 0..opts.watchers {
        let mut client = WatchClient::new(watch_chans[i % watch_chans.len()].clone());
        let (tx, rx) = mpsc::channel(1);
        let create = WatchCreateRequest { key: prefix.clone(), range_end: range_end.clone(), ..Default::default() };
        tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) })
            .await
            .map_err(|_| "watch request channel closed".to_string())?;
        let mut stream = tokio::time::timeout(opts.timeout, client.watch(ReceiverStream::new(rx)))
            .await
            .map_err(|_| format!("watcher {i}: no answer to the watch call in {:?}", opts.timeout))?
            .map_err(|s| format!("watcher {i}: {}", status_key(&s)))?
            .into_inner();
        match tokio::time::timeout(opts.timeout, stream.message()).await {
            Ok(Ok(Some(r))) if r.created && !r.canceled => {}
            Ok(Ok(Some(r))) => return Err(format!("watcher {i}: not created: {r:?}")),
            Ok(Ok(None)) => return Err(format!("watcher {i}: stream ended before the watch was created")),
            Ok(Err(s)) => return Err(format!("watcher {i}: {}", status_key(&s))),
            Err(_) => return Err(format!("watcher {i}: not created within {:?}", opts.timeout)),
        }
        watchers.push(tokio::spawn(watcher(stream, tx, target_rx.clone(), opts.timeout)));
    }
    eprintln!("{} watchers created", opts.watchers);

    let start = Instant::now();
    let mut phase = run_phase(opts, &kv_chans, opts.total, "watch (writes)").await;
    let mut expected = std::mem::take(&mut phase.revisions);
    expected.sort_unstable();
    expected.dedup();
    let _ = target_tx.send(Some(expected.last().copied().unwrap_or(0)));

    let mut check = WatchCheck::default();
    let mut last_event = start;
    for (i, w) in watchers.into_iter().enumerate() {
        let got = w.await.map_err(|e| format!("watcher {i} failed: {e}"))?;
        check.add_watcher(&expected, &got.revisions);
        if let Some(e) = got.error {
            *check.stream_errors.entry(e).or_default() += 1;
        }
        last_event = last_event.max(got.last_event.unwrap_or(start));
    }
    let secs = last_event.duration_since(start).as_secs_f64();
    check.events_per_sec = if secs > 0.0 { check.received as f64 / secs } else { 0.0 };
    drop(target_tx);
    let mut report = phase.report(opts);
    report.watch = Some(check);
    Ok(report)
}

/// Gathers a stream's event revisions until it has seen the target revision (the last
/// put's, once the writers are done), or until nothing came for `grace` after that.
async fn watcher(
    mut stream: Streaming<WatchResponse>,
    _requests: mpsc::Sender<WatchRequest>,
    mut target: watch::Receiver<Option<i64>>,
    grace: Duration,
) -> Received {
    let mut got = Received { revisions: Vec::new(), error: None, last_event: None };
    let mut highest = 0;
    let mut deadline: Option<tokio::time::Instant> = None;
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    loop {
        if let Some(t) = *target.borrow() {
            if highest >= t {
                break;
            }
        }
        tokio::select! {
            msg = stream.message() => match msg {
                Ok(Some(resp)) => {
                    if resp.canceled {
                        got.error = Some(format!("watch canceled: {}", resp.cancel_reason));
                        break;
                    }
                    for ev in resp.events {
                        let rev = ev.kv.map_or(0, |kv| kv.mod_revision);
                        got.revisions.push(rev);
                        highest = highest.max(rev);
                    }
                    got.last_event = Some(Instant::now());
                    if deadline.is_some() {
                        deadline = Some(tokio::time::Instant::now() + grace);
                    }
                }
                Ok(None) => {
                    got.error = Some("watch stream ended".to_string());
                    break;
                }
                Err(s) => {
                    got.error = Some(status_key(&s));
                    break;
                }
            },
            changed = target.changed(), if deadline.is_none() => {
                if changed.is_err() {
                    break;
                }
                if target.borrow().is_some() {
                    deadline = Some(tokio::time::Instant::now() + grace);
                }
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => break,
        }
    }
    got
}
