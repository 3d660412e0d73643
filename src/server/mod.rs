//! The etcd v3 gRPC client port.
pub mod pb;
