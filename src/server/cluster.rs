//! etcd's Cluster service: membership, with addresses shown as URLs.

use tonic::{Request, Response, Status};

use super::convert;
use super::pb::etcdserverpb::{self as pb, cluster_server::Cluster};
use super::Shared;
use crate::error::{Error, Result};
use crate::metrics::RequestKind;
use crate::Member;

impl Shared {
    fn members_pb(&self, members: Vec<Member>) -> Vec<pb::Member> {
        members.into_iter().map(|m| convert::member(m, self.schemes)).collect()
    }

    fn current_members(&self) -> Result<Vec<pb::Member>> {
        Ok(self.members_pb(self.node.members()?))
    }
}

/// Peer URLs as addresses; etcd's "given member URLs are invalid" when one is not a URL.
fn peer_addrs(urls: &[String]) -> Result<Vec<String>> {
    if urls.is_empty() {
        return Err(Error::InvalidArgument("etcdserver: given member URLs are invalid".into()));
    }
    urls.iter()
        .map(|u| {
            convert::addr_of_url(u)
                .ok_or_else(|| Error::InvalidArgument("etcdserver: given member URLs are invalid".into()))
        })
        .collect()
}

#[tonic::async_trait]
impl Cluster for Shared {
    /// Adds a member by peer URL before it starts (etcd's add-then-start workflow). The
    /// member has no name until a node starts on that peer address and joins; it then
    /// takes the added member's place (as voter, or as learner with `isLearner`).
    async fn member_add(&self, req: Request<pb::MemberAddRequest>) -> Result<Response<pb::MemberAddResponse>, Status> {
        let r = req.into_inner();
        self.unary(RequestKind::MemberAdd, async {
            let addrs = peer_addrs(&r.peer_ur_ls)?;
            let added = self.node.add_member("", &addrs[0], r.is_learner).await?;
            let mut members = self.node.members()?;
            if !members.iter().any(|m| m.id == added.id) {
                members.push(added.clone());
            }
            Ok(pb::MemberAddResponse {
                header: convert::header(self.node.header_now()),
                member: Some(convert::member(added, self.schemes)),
                members: self.members_pb(members),
            })
        })
        .await
    }

    async fn member_remove(
        &self,
        req: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let id = req.into_inner().id;
        self.unary(RequestKind::MemberRemove, async {
            self.node.remove_member(id).await?;
            let members = self.node.members()?.into_iter().filter(|m| m.id != id).collect();
            Ok(pb::MemberRemoveResponse {
                header: convert::header(self.node.header_now()),
                members: self.members_pb(members),
            })
        })
        .await
    }

    async fn member_update(
        &self,
        req: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let r = req.into_inner();
        self.unary(RequestKind::MemberUpdate, async {
            let members = self.node.update_member(r.id, peer_addrs(&r.peer_ur_ls)?).await?;
            Ok(pb::MemberUpdateResponse {
                header: convert::header(self.node.header_now()),
                members: self.members_pb(members),
            })
        })
        .await
    }

    /// The membership as this member knows it after catching up with the leader, so a
    /// `member add` made through another member shows at once; without a live leader,
    /// the local view (an error if the client asked for a linearizable list).
    async fn member_list(
        &self,
        req: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let linearizable = req.into_inner().linearizable;
        self.unary(RequestKind::MemberList, async {
            if linearizable || self.node.has_live_leader() {
                self.node.read_barrier().await?;
            }
            Ok(pb::MemberListResponse {
                header: convert::header(self.node.header_now()),
                members: self.current_members()?,
            })
        })
        .await
    }

    async fn member_promote(
        &self,
        req: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let id = req.into_inner().id;
        self.unary(RequestKind::MemberPromote, async {
            self.node.promote_member(id).await?;
            let mut members = self.node.members()?;
            // The local view may trail the leader's by a moment.
            for m in members.iter_mut().filter(|m| m.id == id) {
                m.is_learner = false;
            }
            Ok(pb::MemberPromoteResponse {
                header: convert::header(self.node.header_now()),
                members: self.members_pb(members),
            })
        })
        .await
    }
}
