//! A whole cluster in one process: `quorumkv local`, and the same for programs and tests.
//!
//! Every node has its own data dir under one directory, its own peer port and its own
//! etcd v3 client port, laid out as etcd's local-cluster Procfile does: members
//! `infra1`, `infra2`, `infra3`, ... with client ports 2379, 22379, 32379, ... and peer
//! ports 12380, 22380, 32380, ... Starting again on the same directory restarts the same
//! cluster with its data. The nodes share a [`LocalNetwork`]: Raft messages and forwarded
//! requests between them stay in memory, while every node still serves its peer port.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::server::{ClientServer, ServeOptions};
use crate::{Bootstrap, LocalNetwork, Node, NodeConfig};

/// Most nodes a local cluster can have with the Procfile port layout (ports < 65536).
pub const LOCAL_NODES_MAX: usize = 6;

/// Name, client port and peer port of member `i` (from 0) of a local cluster.
pub fn local_member(i: usize) -> (String, u16, u16) {
    let client = if i == 0 { 2379 } else { ((i + 1) * 10_000 + 2379) as u16 };
    let peer = ((i + 1) * 10_000 + 2380) as u16;
    (format!("infra{}", i + 1), client, peer)
}

/// A running local cluster.
///
/// Thread-safety: `Send + Sync`; [`LocalCluster::stop`] consumes it.
#[derive(Debug)]
pub struct LocalCluster {
    dir: PathBuf,
    members: Vec<(Node, ClientServer)>,
}

impl LocalCluster {
    /// Starts (or restarts) an `nodes`-node cluster with its data under `dir`, each node
    /// serving etcd's v3 API on its client port. `configure` may adjust each node's
    /// configuration (timeouts, limits) before it starts.
    ///
    /// Errors: `InvalidArgument` (0 or more than [`LOCAL_NODES_MAX`] nodes), anything
    /// [`Node::start`] or [`ClientServer::serve`] returns (a port in use, a locked data dir).
    pub async fn start(dir: &Path, nodes: usize, configure: impl Fn(&mut NodeConfig)) -> Result<LocalCluster> {
        if nodes == 0 || nodes > LOCAL_NODES_MAX {
            return Err(Error::InvalidArgument(format!(
                "a local cluster has 1 to {LOCAL_NODES_MAX} nodes, not {nodes}"
            )));
        }
        std::fs::create_dir_all(dir)?;
        let layout: Vec<_> = (0..nodes).map(local_member).collect();
        let initial: Vec<(String, String)> =
            layout.iter().map(|(name, _, peer)| (name.clone(), format!("127.0.0.1:{peer}"))).collect();
        // The nodes share one process: they reach each other in memory.
        let network = LocalNetwork::new();
        let starts = layout.iter().map(|(name, client, peer)| {
            let mut config =
                NodeConfig::new(name.clone(), dir.join(format!("{name}.quorumkv")), format!("127.0.0.1:{peer}"))
                    .bootstrap(if nodes == 1 { Bootstrap::Single } else { Bootstrap::InitialCluster(initial.clone()) });
            config.client_addrs = vec![format!("127.0.0.1:{client}")];
            config.local_network = Some(network.clone());
            configure(&mut config);
            Node::start(config)
        });
        // Together: a static bootstrap waits for a quorum of its peers.
        let results = futures::future::join_all(starts).await;
        let mut started = Vec::new();
        let mut first_err = None;
        for r in results {
            match r {
                Ok(node) => started.push(node),
                Err(e) => first_err = first_err.or(Some(e)),
            }
        }
        let mut members = Vec::new();
        if first_err.is_none() {
            for (node, (_, client, _)) in started.iter().zip(&layout) {
                match ClientServer::serve(node.clone(), &format!("127.0.0.1:{client}"), ServeOptions::default()).await {
                    Ok(server) => members.push((node.clone(), server)),
                    Err(e) => {
                        first_err = Some(e);
                        break;
                    }
                }
            }
        }
        if let Some(e) = first_err {
            for (_, server) in members {
                server.stop().await;
            }
            for node in started {
                let _ = node.stop().await;
            }
            return Err(e);
        }
        Ok(LocalCluster { dir: dir.to_path_buf(), members })
    }

    /// The directory holding the nodes' data dirs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The nodes, in member order (`infra1` first).
    pub fn nodes(&self) -> Vec<Node> {
        self.members.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The client endpoints (`127.0.0.1:2379`, ...), in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|(_, s)| s.local_addr().to_string()).collect()
    }

    /// Stops the client ports, then every node at once (the whole cluster goes down, so
    /// no leadership hand-over is waited for).
    pub async fn stop(self) -> Result<()> {
        let (nodes, servers): (Vec<Node>, Vec<ClientServer>) = self.members.into_iter().unzip();
        futures::future::join_all(servers.into_iter().map(ClientServer::stop)).await;
        let stops = futures::future::join_all(nodes.iter().map(|n| n.stop_abruptly())).await;
        stops.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procfile_layout() {
        assert_eq!(local_member(0), ("infra1".into(), 2379, 12380));
        assert_eq!(local_member(1), ("infra2".into(), 22379, 22380));
        assert_eq!(local_member(2), ("infra3".into(), 32379, 32380));
        assert_eq!(local_member(LOCAL_NODES_MAX - 1), ("infra6".into(), 62379, 62380));
    }
}
