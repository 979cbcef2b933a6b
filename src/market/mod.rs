//! The compute marketplace on NATS JetStream (issue 8): the streams, buckets and subjects the
//! heaters and tenants share ([`layout`]) and what a tenant offers ([`offer`]).
//!
//! Groundwork only: nothing in the daemon uses it yet.

pub mod layout;
pub mod offer;

pub use layout::{
    ensure_layout, event_subject, offer_subject, Layout, LayoutConfig, MarketError, BLOBS_BUCKET,
    DEVICES_BUCKET, EVENTS_STREAM, EVENTS_SUBJECTS, JOBS_STREAM, JOBS_SUBJECTS,
};
pub use offer::{MarketOffer, MAX_REDUNDANCY};
