//! Compiles the protocol buffers with `protox` (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // libquorumkv.so carries the C ABI version as its soname (see src/ffi/mod.rs).
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libquorumkv.so.{}", abi_version()?);
    }
    // The peer protocol carries opaque payloads: `bytes::Bytes` avoids copies.
    let peer = protox::compile(["proto/peer.proto"], ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).bytes(".").compile_fds(peer)?;
    // etcd's client API: keys and values as `Vec<u8>`, as the MVCC layer holds them.
    let etcd = protox::compile(["rpc.proto", "kv.proto"], ["proto/etcd"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(etcd)?;
    Ok(())
}

/// `QKV_ABI_VERSION` as src/ffi/mod.rs defines it: the one place it is written.
fn abi_version() -> Result<u32, Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=src/ffi/mod.rs");
    let src = std::fs::read_to_string("src/ffi/mod.rs")?;
    let line = src.lines().find(|l| l.starts_with("pub const QKV_ABI_VERSION: u32 = ")).ok_or("no QKV_ABI_VERSION")?;
    Ok(line.trim_start_matches("pub const QKV_ABI_VERSION: u32 = ").trim_end_matches(';').parse()?)
}
