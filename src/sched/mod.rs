//! Spending the heat budget: the allocator that splits it between the workloads.

pub mod allocator;
