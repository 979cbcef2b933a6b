//! Durable jobs: what is submitted ([`spec`]), where it is kept ([`store`]), and in what order
//! it runs ([`queue`]).

pub mod commit;
pub mod executor;
pub mod queue;
pub mod spec;
pub mod store;

pub use commit::GroupCommit;
pub use queue::{order, QueueEntry};
pub use spec::{JobId, JobSpec, JobState, Lease, SpecError};
pub use store::{
    JobRecord, JobStore, ListFilter, StoreError, StoreLimits, SyncMode, Transition, Usage,
};
