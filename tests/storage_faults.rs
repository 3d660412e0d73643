//! Damaged, foreign and full data dirs: refused or stopped with a clear error, never
//! half-read, never silently dropping a write.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use quorumkv::*;

async fn make_node_dir(dir: &Path) -> NodeConfig {
    let cfg = common::single_config(dir, "victim");
    let n = Node::start(cfg.clone()).await.unwrap();
    n.put(PutRequest::new("k", "v")).await.unwrap();
    n.stop().await.unwrap();
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incompatible_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = make_node_dir(dir.path()).await;
    std::fs::write(cfg.data_dir.join("FORMAT"), "quorumkv-data-v999\n").unwrap();
    let err = Node::start(cfg.clone()).await.unwrap_err();
    assert!(matches!(&err, Error::DataDirIncompatible { found, .. } if found == "quorumkv-data-v999"), "{err}");
    // Nothing was changed: restoring the marker gives the data back.
    std::fs::write(cfg.data_dir.join("FORMAT"), "quorumkv-data-v2\n").unwrap();
    let n = Node::start(cfg).await.unwrap();
    assert_eq!(n.get("k").await.unwrap().unwrap().value, b"v");
    n.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::single_config(dir.path(), "foreign");
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    std::fs::write(cfg.data_dir.join("precious.txt"), "do not touch").unwrap();
    let err = Node::start(cfg.clone()).await.unwrap_err();
    assert!(matches!(err, Error::DataDirCorrupted { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(cfg.data_dir.join("precious.txt")).unwrap(), "do not touch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_storage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = make_node_dir(dir.path()).await;
    let version = cfg.data_dir.join("db/version");
    let original = std::fs::read(&version).unwrap();
    std::fs::write(&version, b"\xde\xad\xbe\xef").unwrap();
    let err = Node::start(cfg.clone()).await.unwrap_err();
    assert!(matches!(err, Error::DataDirCorrupted { .. }), "{err}");
    assert!(err.to_string().contains("damaged"));
    std::fs::remove_file(&version).unwrap();
    let err = Node::start(cfg.clone()).await.unwrap_err();
    assert!(matches!(err, Error::DataDirCorrupted { .. }), "a missing version file is damage, not a new db: {err}");
    std::fs::write(&version, original).unwrap();
    let n = Node::start(cfg).await.unwrap();
    assert_eq!(n.get("k").await.unwrap().unwrap().value, b"v");
    n.stop().await.unwrap();
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// A small tmpfs: the disk really fills up.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(path).status();
        assert!(ok.is_ok_and(|s| s.success()), "mounting a tmpfs failed");
        Tmpfs(path.to_path_buf())
    }
    fn resize(&self, size: &str) {
        let ok = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).status();
        assert!(ok.is_ok_and(|s| s.success()));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_writes_and_loses_nothing_acknowledged() {
    if !is_root() {
        eprintln!("SKIPPED: mounting a small tmpfs needs root (CI runs as root)");
        return;
    }
    let outer = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&outer.path().join("disk"), "6m");
    let cfg = common::single_config(&fs.0, "full");
    let n = Node::start(cfg.clone()).await.unwrap();
    // Incompressible values (the storage engine compresses).
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut random_value = || {
        (0..64 * 1024)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect::<Vec<u8>>()
    };
    let mut acknowledged = Vec::new();
    let mut failure = None;
    for i in 0..400 {
        match n.put(PutRequest::new(format!("k{i:04}"), random_value())).await {
            Ok(_) => acknowledged.push(i),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("a 6 MiB disk cannot take 25 MiB of values");
    assert!(matches!(failure, Error::Fatal(_) | Error::Storage(_) | Error::Timeout), "{failure:?}");
    // The node reports it and takes no more writes.
    common::eventually("fatal error reported", Duration::from_secs(5), || {
        n.status().map(|s| s.fatal_error.is_some()).unwrap_or(true)
    })
    .await;
    assert!(n.put(PutRequest::new("after", "x")).await.is_err());
    n.stop().await.unwrap();
    // With room again, every acknowledged write is there.
    fs.resize("64m");
    let n = Node::start(cfg).await.unwrap();
    let r = n.range(RangeRequest { keys_only: true, ..RangeRequest::prefix("k") }).await.unwrap();
    let present: Vec<String> = r.kvs.iter().map(|kv| String::from_utf8(kv.key.clone()).unwrap()).collect();
    for i in &acknowledged {
        assert!(present.contains(&format!("k{i:04}")), "acknowledged write k{i:04} lost");
    }
    eprintln!("{} writes acknowledged before the disk filled: {failure}", acknowledged.len());
    n.stop().await.unwrap();
}
