//! Group commit: concurrent submissions are batched into one store transaction.
//!
//! One thread owns the write path for submissions. It takes the first waiting submission, then
//! every other one that queued up while the previous batch was committing (up to
//! [`MAX_BATCH`]), stores them with [`JobStore::submit_many`] in one transaction, and answers
//! each caller. Under load the batch grows by itself, so the per-commit cost (the lock, the WAL
//! append, and with [`SyncMode::Full`](super::store::SyncMode::Full) the fsync) is shared;
//! with a single caller a batch is one job and nothing waits for a timer.

use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::spec::JobSpec;
use super::store::{JobRecord, JobStore, StoreError};

/// Most submissions in one transaction.
pub const MAX_BATCH: usize = 512;

/// One submission waiting for its batch.
struct Pending {
    spec: JobSpec,
    reply: oneshot::Sender<Result<JobRecord, StoreError>>,
}

/// The handle callers submit through; cheap to clone. The commit thread ends when the last
/// handle is dropped, after answering everything already queued.
#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupCommit")
    }
}

impl GroupCommit {
    /// Starts the commit thread over `store`; `committed` runs after each batch that stored at
    /// least one job (the daemon wakes its executor there).
    pub fn start(
        store: Arc<JobStore>,
        committed: impl Fn() + Send + 'static,
    ) -> std::io::Result<GroupCommit> {
        let (tx, rx) = mpsc::channel::<Pending>();
        std::thread::Builder::new()
            .name("hearth-commit".into())
            .spawn(move || run(&store, &rx, &committed))?;
        Ok(GroupCommit { tx })
    }

    /// Stores `spec` durably (batched with concurrent submissions) and returns its record.
    pub async fn submit(&self, spec: JobSpec) -> Result<JobRecord, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { spec, reply })
            .map_err(|_| StoreError::CommitFailed("the store is closed".into()))?;
        rx.await
            .map_err(|_| StoreError::CommitFailed("the commit thread stopped".into()))?
    }
}

/// The commit loop: one transaction per batch of waiting submissions.
fn run(store: &JobStore, rx: &mpsc::Receiver<Pending>, committed: &dyn Fn()) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let specs: Vec<&JobSpec> = batch.iter().map(|p| &p.spec).collect();
        let results = store.submit_many(&specs);
        let stored = results.iter().filter(|r| r.is_ok()).count();
        tracing::trace!(batch = batch.len(), stored, "group commit");
        for (p, r) in batch.into_iter().zip(results) {
            // A caller that went away (its call was cancelled) still has its job stored.
            let _ = p.reply.send(r);
        }
        if stored > 0 {
            committed();
        }
    }
}
