//! The generated client of the Braiins OS+ public API subset (`proto/braiins/bos/`), compiled by
//! `build.rs` into its own folder of `OUT_DIR`.

/// Package `braiins.bos`: the API version, which needs no token.
#[allow(missing_docs, clippy::all)]
pub mod bos {
    tonic::include_proto!("braiins_client/braiins.bos");

    /// Package `braiins.bos.v1`: login, miner stats, cooling, tuner, actions.
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("braiins_client/braiins.bos.v1");
    }
}
