//! The compute marketplace on NATS JetStream (issue 8).
//!
//! - [`layout`]: the streams, buckets and the shared consumer, created idempotently;
//! - [`offer`]: what a tenant offers (a [`crate::jobs::JobSpec`] plus the market's terms);
//! - [`wire`]: job events, device entries and the blob formats;
//! - [`receipt`]: device keys and signed receipts;
//! - [`device`]: the heater's side, a supervised task that takes offers while heat is wanted;
//! - [`client`]: the tenant's side (submit, events, verified results, devices);
//! - [`conn`]: connecting and publishing events, shared by both sides.

pub mod client;
pub mod config;
pub mod conn;
pub mod device;
pub mod layout;
pub mod offer;
pub mod receipt;
pub mod wire;

pub use config::MarketConfig;
pub use layout::{
    ensure_consumer, ensure_layout, event_subject, offer_subject, Layout, LayoutConfig,
    MarketError, BLOBS_BUCKET, DEVICES_BUCKET, EVENTS_STREAM, EVENTS_SUBJECTS, HEATERS_CONSUMER,
    JOBS_STREAM, JOBS_SUBJECTS,
};
pub use offer::{new_job_id, validate_job_id, MarketOffer, MAX_REDUNDANCY};
