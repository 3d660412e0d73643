//! etcd's Maintenance service.

use std::pin::Pin;

use futures::Stream;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tonic::{Request, Response, Status};

use super::convert;
use super::pb::etcdserverpb::{self as pb, maintenance_server::Maintenance};
use super::{async_stream, status, Shared};
use crate::error::Error;
use crate::metrics::RequestKind;

/// Bytes per `SnapshotResponse` (etcd sends 32 KiB blobs).
const SNAPSHOT_CHUNK_BYTES: usize = 32 * 1024;
/// etcd's snapshots are page-aligned database files, and etcdctl finds the SHA-256
/// trailer by that alignment (`size % 512 == 32`): the backup is padded with zero bytes
/// to a multiple of this before the trailer.
const SNAPSHOT_ALIGN_BYTES: u64 = 512;

/// The etcd API level quorumkv speaks, reported as `version` in `Status`: etcd clients
/// gate features on it.
pub const ETCD_API_VERSION: &str = "3.4.0";

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for Shared {
    /// Alarms are raised by hand (`ACTIVATE`) or by the node itself: a node whose storage
    /// failed (disk full, failed fsync) reports `NOSPACE`.
    async fn alarm(&self, req: Request<pb::AlarmRequest>) -> Result<Response<pb::AlarmResponse>, Status> {
        use pb::alarm_request::AlarmAction;
        let r = req.into_inner();
        self.unary(RequestKind::Alarm, async {
            let mut alarms = self.alarms.lock().expect("alarms lock");
            match AlarmAction::try_from(r.action).unwrap_or(AlarmAction::Get) {
                AlarmAction::Get => {}
                AlarmAction::Activate => {
                    if r.alarm != pb::AlarmType::None as i32 && !alarms.contains(&(r.member_id, r.alarm)) {
                        alarms.push((r.member_id, r.alarm));
                    }
                }
                AlarmAction::Deactivate => alarms.retain(|a| *a != (r.member_id, r.alarm)),
            }
            let mut list: Vec<pb::AlarmMember> =
                alarms.iter().map(|&(member_id, alarm)| pb::AlarmMember { member_id, alarm }).collect();
            drop(alarms);
            let status = self.node.status()?;
            if status.fatal_error.is_some() {
                list.push(pb::AlarmMember { member_id: status.id, alarm: pb::AlarmType::Nospace as i32 });
            }
            Ok(pb::AlarmResponse { header: convert::header(self.node.header_now()), alarms: list })
        })
        .await
    }

    async fn status(&self, _: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        self.unary(RequestKind::Status, async {
            let s = self.node.status()?;
            Ok(pb::StatusResponse {
                header: convert::header(self.node.header(s.revision)),
                version: ETCD_API_VERSION.to_string(),
                db_size: s.db_size_bytes as i64,
                leader: s.leader.unwrap_or(0),
                raft_index: s.commit_index,
                raft_term: s.term,
                raft_applied_index: s.applied_index,
                errors: s.fatal_error.into_iter().collect(),
                db_size_in_use: s.db_size_bytes as i64,
                is_learner: s.is_learner,
            })
        })
        .await
    }

    async fn defragment(&self, _: Request<pb::DefragmentRequest>) -> Result<Response<pb::DefragmentResponse>, Status> {
        self.unary(RequestKind::Defragment, async {
            self.node.defragment().await?;
            Ok(pb::DefragmentResponse { header: convert::header(self.node.header_now()) })
        })
        .await
    }

    /// The hash of the key-value state at the current revision (see [`crate::KvHash`]).
    async fn hash(&self, _: Request<pb::HashRequest>) -> Result<Response<pb::HashResponse>, Status> {
        self.unary(RequestKind::Hash, async {
            let h = self.node.hash_kv(0).await?;
            Ok(pb::HashResponse { header: convert::header(self.node.header(h.revision)), hash: h.hash })
        })
        .await
    }

    async fn hash_kv(&self, req: Request<pb::HashKvRequest>) -> Result<Response<pb::HashKvResponse>, Status> {
        let revision = req.into_inner().revision;
        self.unary(RequestKind::HashKv, async {
            let h = self.node.hash_kv(revision).await?;
            Ok(pb::HashKvResponse {
                header: convert::header(self.node.header(h.revision)),
                hash: h.hash,
                compact_revision: h.compact_revision,
            })
        })
        .await
    }

    type SnapshotStream = SnapshotStream;

    /// Streams a consistent backup of the node's state in 32 KiB blobs, zero-padded to a
    /// multiple of 512 bytes as etcd's are, then etcd's integrity trailer: one last blob
    /// holding the SHA-256 of every byte before it. The
    /// backup is staged in a file under the data dir (never held in memory) and removed
    /// when the stream ends.
    async fn snapshot(&self, _: Request<pb::SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        let node = self.node.clone();
        let dir = node.config().data_dir.join("backup");
        let path = dir.join(format!("backup-{}-{}.tmp", std::process::id(), rand::random::<u64>()));
        tokio::fs::create_dir_all(&dir).await.map_err(|e| status(Error::from(e)))?;
        self.metrics.track(RequestKind::Snapshot, node.backup(&path)).await.map_err(status)?;
        let out = async_stream(move |tx| async move {
            let result = send_file(&node, &path, &tx).await;
            let _ = tokio::fs::remove_file(&path).await;
            if let Err(e) = result {
                let _ = tx.send(Err(status(e))).await;
            }
        });
        Ok(Response::new(out))
    }

    async fn move_leader(
        &self,
        req: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let target = req.into_inner().target_id;
        self.unary(RequestKind::MoveLeader, async {
            self.node.move_leader(target).await?;
            Ok(pb::MoveLeaderResponse { header: convert::header(self.node.header_now()) })
        })
        .await
    }
}

async fn send_file(
    node: &crate::Node,
    path: &std::path::Path,
    tx: &tokio::sync::mpsc::Sender<Result<pb::SnapshotResponse, Status>>,
) -> crate::Result<()> {
    let mut file = tokio::fs::File::open(path).await?;
    let file_size = file.metadata().await?.len();
    let size = file_size.div_ceil(SNAPSHOT_ALIGN_BYTES) * SNAPSHOT_ALIGN_BYTES;
    let header = convert::header(node.header_now());
    let mut sha = Sha256::new();
    let mut sent = 0u64;
    let mut buf = vec![0u8; SNAPSHOT_CHUNK_BYTES];
    while sent < size {
        let want = buf.len().min((size - sent) as usize);
        let mut filled = 0;
        while filled < want {
            let n = file.read(&mut buf[filled..want]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if sent + (filled as u64) < file_size && filled < want {
            return Err(Error::Storage(format!("backup {} ended early", path.display())));
        }
        // Past the end of the file: the alignment padding.
        buf[filled..want].fill(0);
        let filled = want;
        sent += filled as u64;
        sha.update(&buf[..filled]);
        let chunk =
            pb::SnapshotResponse { header, remaining_bytes: size.saturating_sub(sent), blob: buf[..filled].to_vec() };
        if tx.send(Ok(chunk)).await.is_err() {
            return Ok(());
        }
    }
    let trailer = pb::SnapshotResponse { header, remaining_bytes: 0, blob: sha.finalize().to_vec() };
    let _ = tx.send(Ok(trailer)).await;
    Ok(())
}
