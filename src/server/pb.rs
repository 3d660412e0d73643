//! etcd v3 wire types and gRPC stubs, generated from `proto/etcd/*.proto`.
//!
//! These are etcd's own messages (package `etcdserverpb` and `mvccpb`), so the client
//! stubs here talk to any etcd v3 server as well as to quorumkv; the `bench` tool uses
//! them that way.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// etcd's storage types: `KeyValue` and `Event`.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's client API: KV, Watch, Lease, Cluster and Maintenance services.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
