//! etcd's Lease service.

use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use super::pb::etcdserverpb::{self as pb, lease_server::Lease};
use super::{async_stream, status, Shared};
use crate::error::Error;
use crate::metrics::RequestKind;
use crate::mvcc::LeaseGrantRequest;

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for Shared {
    async fn lease_grant(
        &self,
        req: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let r = req.into_inner();
        self.unary(RequestKind::LeaseGrant, async {
            let resp = self.node.lease_grant(LeaseGrantRequest { ttl: r.ttl, id: r.id }).await?;
            Ok(pb::LeaseGrantResponse {
                header: convert::header(resp.header),
                id: resp.id,
                ttl: resp.ttl,
                error: String::new(),
            })
        })
        .await
    }

    async fn lease_revoke(
        &self,
        req: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let id = req.into_inner().id;
        self.unary(RequestKind::LeaseRevoke, async {
            let resp = self.node.lease_revoke(id).await?;
            Ok(pb::LeaseRevokeResponse { header: convert::header(resp.header) })
        })
        .await
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    /// One response per request, in order. An unknown or expired lease is answered with
    /// TTL 0 (not an error), as etcd does; other errors end the stream.
    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = req.into_inner();
        let node = self.node.clone();
        let metrics = self.metrics.clone();
        let out = async_stream(move |tx| async move {
            loop {
                let id = match inbound.message().await {
                    Ok(Some(r)) => r.id,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let renewed = metrics.track(RequestKind::LeaseKeepAlive, node.lease_keep_alive(id)).await;
                let resp = match renewed {
                    Ok(r) => pb::LeaseKeepAliveResponse { header: convert::header(r.header), id: r.id, ttl: r.ttl },
                    Err(Error::LeaseNotFound) => {
                        pb::LeaseKeepAliveResponse { header: convert::header(node.header_now()), id, ttl: 0 }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(status(e))).await;
                        return;
                    }
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(out))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let r = req.into_inner();
        self.unary(RequestKind::LeaseTimeToLive, async {
            let resp = self.node.lease_time_to_live(r.id, r.keys).await?;
            Ok(pb::LeaseTimeToLiveResponse {
                header: convert::header(resp.header),
                id: resp.id,
                ttl: resp.ttl,
                granted_ttl: resp.granted_ttl,
                keys: resp.keys,
            })
        })
        .await
    }

    async fn lease_leases(
        &self,
        _: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        self.unary(RequestKind::LeaseLeases, async {
            let resp = self.node.lease_leases().await?;
            Ok(pb::LeaseLeasesResponse {
                header: convert::header(resp.header),
                leases: resp.leases.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
            })
        })
        .await
    }
}
