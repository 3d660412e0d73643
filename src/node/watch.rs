//! The watch API of a node (etcd's Watch service, in Rust).

use super::Node;
use crate::error::Result;
use crate::watch::{WatchRequest, WatchStream, Watcher};

impl Node {
    /// Opens a stream that can carry many watches (like one etcd gRPC watch stream).
    ///
    /// Errors: `Stopped`.
    pub fn watch_stream(&self) -> Result<WatchStream> {
        let hub = self.running()?.hub.clone();
        Ok(WatchStream::new(self.clone(), hub))
    }

    /// Watches a key, range or prefix from `req.start_revision` (0: from now). Served by
    /// this node from its own state: followers and learners watch without a leader.
    ///
    /// Errors: `EmptyKey`, `Compacted` (start revision below the compaction point),
    /// `InvalidArgument`, `Stopped`.
    pub fn watch(&self, req: WatchRequest) -> Result<Watcher> {
        let hub = self.running()?.hub.clone();
        Watcher::create(self.clone(), hub, req)
    }
}
