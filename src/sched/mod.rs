//! Spending the heat budget: the workloads behind one trait, and the allocator that splits the
//! budget between them.

pub mod accounting;
pub mod allocator;
pub mod scheduler;
pub mod workload;
