//! etcd's KV service.

use tonic::{Request, Response, Status};

use super::convert;
use super::pb::etcdserverpb::{self as pb, kv_server::Kv};
use super::Shared;
use crate::metrics::RequestKind;
use crate::mvcc::CompactionRequest;

#[tonic::async_trait]
impl Kv for Shared {
    async fn range(&self, req: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        let req = convert::range_request(req.into_inner());
        self.unary(RequestKind::Range, async { self.node.range(req).await.map(convert::range_response) }).await
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let req = convert::put_request(req.into_inner());
        self.unary(RequestKind::Put, async { self.node.put(req).await.map(convert::put_response) }).await
    }

    async fn delete_range(
        &self,
        req: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let req = convert::delete_request(req.into_inner());
        self.unary(RequestKind::DeleteRange, async { self.node.delete_range(req).await.map(convert::delete_response) })
            .await
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let req = convert::txn_request(req.into_inner());
        self.unary(RequestKind::Txn, async { self.node.txn(req).await.map(convert::txn_response) }).await
    }

    async fn compact(&self, req: Request<pb::CompactionRequest>) -> Result<Response<pb::CompactionResponse>, Status> {
        let r = req.into_inner();
        let req = CompactionRequest { revision: r.revision, physical: r.physical };
        self.unary(RequestKind::Compact, async {
            let resp = self.node.compact(req).await?;
            Ok(pb::CompactionResponse { header: convert::header(resp.header) })
        })
        .await
    }
}
