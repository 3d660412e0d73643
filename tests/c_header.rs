//! `include/quorumkv.h` is generated from `src/ffi` by cbindgen and committed: this test
//! regenerates it and fails when the committed file differs (run with `QKV_BLESS=1` to
//! rewrite it).

#[test]
fn committed_header_is_current() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_src(format!("{dir}/src/ffi/mod.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen cannot generate the header");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let fresh = String::from_utf8(fresh).expect("utf-8 header");
    let path = format!("{dir}/include/quorumkv.h");
    if std::env::var_os("QKV_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write header");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == fresh, "include/quorumkv.h is stale: run `QKV_BLESS=1 cargo test --test c_header`");
}
