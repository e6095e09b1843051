//! Compiles `proto/` into Rust with protox (a pure-Rust protobuf compiler, so no system `protoc`
//! is needed) and writes the descriptor set that server reflection serves.

use std::path::PathBuf;

use prost::Message;

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: &[&str] = &[
    "tollgate/identity/v1/common.proto",
    "tollgate/identity/v1/users.proto",
    "tollgate/identity/v1/api_keys.proto",
    "tollgate/identity/v1/roles.proto",
    "tollgate/identity/v1/authorization.proto",
    "tollgate/identity/v1/audit.proto",
    "tollgate/events/v1/events.proto",
    "tollgate/events/v1/meters.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    // `compile` includes the imported well-known types, which reflection clients need to
    // resolve `google.protobuf.Timestamp` and `Struct`.
    let descriptors = protox::compile(PROTO_FILES, [PROTO_ROOT])?;
    std::fs::write(
        out_dir.join("tollgate_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    // Our codec reports an undecodable request as the client's fault (INVALID_ARGUMENT).
    tonic_prost_build::configure()
        .codec_path("crate::codec::ProtoCodec")
        .emit_rerun_if_changed(false)
        .compile_fds(descriptors)?;
    Ok(())
}
