//! quorumkv: an embeddable, Raft-replicated, etcd-compatible key-value store.
//!
//! Programs host cluster nodes in-process: [`Node::start`] opens a data dir, joins or
//! forms a Raft cluster over TCP, and serves etcd's data model (revisions, ranges,
//! transactions, compaction) through async methods and blocking twins.
//!
//! ```no_run
//! # async fn demo() -> quorumkv::Result<()> {
//! use quorumkv::{Node, NodeConfig, PutRequest};
//! let node = Node::start(NodeConfig::new("n1", "/tmp/qkv-n1", "127.0.0.1:7001")).await?;
//! node.put(PutRequest::new("greeting", "hello")).await?;
//! let kv = node.get("greeting").await?.expect("just written");
//! assert_eq!(kv.value, b"hello");
//! node.stop().await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

#[doc(hidden)]
pub mod bench;
pub mod error;
pub mod ffi;
mod lease;
pub mod local;
pub mod metrics;
pub mod mvcc;
mod node;
pub(crate) mod raft;
pub mod server;
pub mod tls;
pub mod watch;

pub use error::{Error, Result};
pub use mvcc::*;
pub use node::{Bootstrap, DetachedFuture, KeepAlive, KvHash, Member, Node, NodeConfig, NodeStatus};
pub use raft::network::LocalNetwork;
pub use watch::{WatchCanceler, WatchRequest, WatchResponse, WatchStream, Watcher};

/// The code examples of the user guides are compiled as doc tests.
#[cfg(doctest)]
mod guide_examples {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../docs/rust-api.md")]
    struct RustApi;
    #[doc = include_str!("../docs/watch-and-leases.md")]
    struct WatchAndLeases;
    #[doc = include_str!("../docs/operations.md")]
    struct Operations;
}
