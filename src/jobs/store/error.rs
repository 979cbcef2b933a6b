//! The store's error type and the small constructors its modules share.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::jobs::spec::{JobId, SpecError};

/// Why a store operation failed. The variants mirror gRPC status codes.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A malformed argument; `field` names it.
    #[error("{field}: {msg}")]
    InvalidArgument {
        /// The argument or spec field, e.g. `lease.tenant`, `page_token`.
        field: String,
        /// What is wrong.
        msg: String,
    },
    /// No such job.
    #[error("job {0} not found")]
    NotFound(JobId),
    /// The job is not in a state that allows this.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Over a store limit.
    #[error("{what} exhausted: {msg}")]
    ResourceExhausted {
        /// The limit's name.
        what: &'static str,
        /// By how much.
        msg: String,
    },
    /// Stored data is damaged or inconsistent (e.g. a result whose digest does not match).
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// SQLite failed.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The group commit this submission was batched into failed; nothing of it was stored.
    #[error("commit failed, the job was not stored: {0}")]
    CommitFailed(String),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl From<SpecError> for StoreError {
    fn from(e: SpecError) -> Self {
        StoreError::InvalidArgument {
            field: e.field,
            msg: e.msg,
        }
    }
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn corrupt(msg: impl Into<String>) -> StoreError {
    StoreError::Corrupt(msg.into())
}
