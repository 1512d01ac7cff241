//! Compiles every bpf/*.bpf.c with clang and generates its libbpf-rs skeleton into OUT_DIR.
use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR must be set in build script"));
    // read at run time: a build script binary reused from another checkout (shared target dir)
    // must still compile this checkout's sources
    let manifest = env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let bpf_dir = PathBuf::from(manifest).join("../bpf");
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => panic!("unsupported target architecture for BPF: {other}"),
        Err(_) => "x86",
    };
    let debug = env::var_os("CAUSEWAY_BPF_DEBUG").is_some();
    // one skeleton per bpf/<name>.bpf.c, named as collector/src/probes/<name>.rs (`wire` holds
    // no program: the wire types, generated)
    let mut probes: Vec<String> = std::fs::read_dir(&bpf_dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", bpf_dir.display()))
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".bpf.c")
                .map(String::from)
        })
        .collect();
    probes.sort();
    println!("cargo:rerun-if-changed={}", bpf_dir.display());
    for name in &probes {
        let src = bpf_dir.join(format!("{name}.bpf.c"));
        let mut args = vec![
            format!("-I{}", bpf_dir.display()),
            format!("-D__TARGET_ARCH_{arch}"),
            "-Wall".to_string(),
        ];
        if debug {
            args.push("-DCAUSEWAY_DEBUG".to_string());
        }
        SkeletonBuilder::new()
            .source(&src)
            .clang_args(args)
            .build_and_generate(out.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {}: {e:#}", src.display()));
        println!("cargo:rerun-if-changed={}", src.display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        bpf_dir.join("causeway.h").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        bpf_dir.join("common.bpf.h").display()
    );
    println!("cargo:rerun-if-env-changed=CAUSEWAY_BPF_DEBUG");
}
