//! Compiles the protocol buffers with `protox` (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // libquorumkv.so carries the C ABI version as its soname (see src/ffi/mod.rs).
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libquorumkv.so.{}", abi_version()?);
    }
    // Packed relative relocations (DT_RELR, glibc 2.36+): the loader reads every dynamic
    // relocation at start, so 380 KB of `.rela.dyn` in the `quorumkv` binary were resident
    // in every idle process; packed, they take a few KB. Only for glibc targets.
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu") && glibc_has_relr() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs");
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

/// Whether the C toolchain links a program with `-z pack-relative-relocs` without a
/// warning: the linker knows the option and the C library supports DT_RELR (glibc 2.36+).
/// Cross builds skip the probe (the host's linker and libc say nothing of the target's).
fn glibc_has_relr() -> bool {
    if std::env::var("HOST") != std::env::var("TARGET") {
        return false;
    }
    let Some(out) = std::env::var_os("OUT_DIR") else { return false };
    let dir = std::path::PathBuf::from(out);
    let src = dir.join("relr_probe.c");
    if std::fs::write(&src, "int main(void) { return 0; }\n").is_err() {
        return false;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    std::process::Command::new(cc)
        .arg(&src)
        .arg("-o")
        .arg(dir.join("relr_probe"))
        .args(["-Wl,-z,pack-relative-relocs", "-Wl,--fatal-warnings"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
