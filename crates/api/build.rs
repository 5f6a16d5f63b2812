//! Compiles proto/upline/v1/*.proto with the vendored protoc (a fresh machine needs no system
//! protoc) and writes the file descriptor set that server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // Edition 2021: set_var is safe; build scripts are single-threaded here.
    std::env::set_var("PROTOC", protoc);
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = ["types.proto", "commands.proto", "queries.proto"]
        .map(|name| root.join("upline/v1").join(name));
    tonic_build::configure()
        .file_descriptor_set_path(out.join("upline_v1_descriptor.bin"))
        .compile_protos(&protos, std::slice::from_ref(&root))?;
    println!(
        "cargo:rerun-if-changed={}",
        root.join("upline/v1").display()
    );
    Ok(())
}
