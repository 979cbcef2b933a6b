//! Compiles `proto/hearth/v1/*.proto` with protox (a pure-Rust protobuf compiler, so no system
//! `protoc` is needed) and generates the tonic services and prost messages. The encoded file
//! descriptor set is written next to them for server reflection. The Braiins OS+ API subset in
//! `proto/braiins/` is compiled client-only into its own folder ([`braiins_client`]), outside
//! that descriptor set.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/hearth/v1/control.proto",
        "proto/hearth/v1/jobs.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("hearth_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    braiins_client(&out)?;
    Ok(())
}

/// Compiles the Braiins OS+ public API subset (`proto/braiins/bos/...`) into
/// `OUT_DIR/braiins_client/`, clients only, for the Braiins driver.
fn braiins_client(out: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/braiins/bos/version.proto",
        "proto/braiins/bos/v1/actions.proto",
        "proto/braiins/bos/v1/authentication.proto",
        "proto/braiins/bos/v1/common.proto",
        "proto/braiins/bos/v1/configuration.proto",
        "proto/braiins/bos/v1/constraints.proto",
        "proto/braiins/bos/v1/cooling.proto",
        "proto/braiins/bos/v1/miner.proto",
        "proto/braiins/bos/v1/performance.proto",
        "proto/braiins/bos/v1/pool.proto",
        "proto/braiins/bos/v1/units.proto",
        "proto/braiins/bos/v1/work.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let dir = out.join("braiins_client");
    std::fs::create_dir_all(&dir)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .out_dir(dir)
        .compile_fds(protox::compile(protos, ["proto"])?)?;
    Ok(())
}
