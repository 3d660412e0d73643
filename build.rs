//! Compiles the protocol buffers with `protox` (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // The peer protocol carries opaque payloads: `bytes::Bytes` avoids copies.
    let peer = protox::compile(["proto/peer.proto"], ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).bytes(".").compile_fds(peer)?;
    // etcd's client API: keys and values as `Vec<u8>`, as the MVCC layer holds them.
    let etcd = protox::compile(["rpc.proto", "kv.proto"], ["proto/etcd"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(etcd)?;
    Ok(())
}
