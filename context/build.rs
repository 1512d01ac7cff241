//! Compiles c/causeway_ctx.c twice: as a static library linked into Rust users of this crate, and
//! as `libcauseway_ctx.so` for C/C++ programs and the Python hook (path in `SHARED_LIBRARY`).

use std::path::PathBuf;

fn main() {
    let dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let src = dir.join("c/causeway_ctx.c");
    println!("cargo:rerun-if-changed={}", src.display());
    println!(
        "cargo:rerun-if-changed={}",
        dir.join("c/causeway_ctx.h").display()
    );

    cc::Build::new()
        .file(&src)
        .flag("-fvisibility=hidden")
        .opt_level(2)
        .compile("causeway_ctx");

    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let so = out.join("libcauseway_ctx.so");
    let compiler = cc::Build::new().opt_level(2).pic(true).get_compiler();
    let status = compiler
        .to_command()
        .args(["-shared", "-fPIC", "-fvisibility=hidden", "-Wall", "-o"])
        .arg(&so)
        .arg(&src)
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => panic!("building {} failed: {other:?}", so.display()),
    }
    // Python and C users find the shared library here (also copied next to the binaries by
    // tests/run.sh).
    println!("cargo:rustc-env=CAUSEWAY_CTX_SO={}", so.display());
}
