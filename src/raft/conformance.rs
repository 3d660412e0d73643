//! openraft's storage test suite, run against the fjall log store and state machine.

use std::sync::Arc;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;

use super::log_store::{FsyncStats, LogStore};
use super::state_machine::StateMachine;
use super::TypeConfig;
use crate::mvcc::MvccStore;

struct FjallBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for FjallBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = fjall::Database::builder(dir.path().join("db")).worker_threads(1).open().expect("open fjall");
        let log = LogStore::open(db.clone(), Arc::new(FsyncStats::default())).expect("log store");
        let store = Arc::new(MvccStore::open(db).expect("mvcc store"));
        let sm = StateMachine::open(store, dir.path().join("snapshots"), None).expect("state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async { Suite::test_all(FjallBuilder).await.expect("storage suite") });
}
