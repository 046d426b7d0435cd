//! `cargo xtask ebpf [--check]`: builds the kernel-side program and commits
//! it (object + manifest) into `loadgen/bpf/`, so a plain stable
//! `cargo build` needs no eBPF toolchain. `--check` rebuilds from source
//! and fails unless the result is byte-identical to the committed object.
//!
//! Toolchain (DEVELOPERS.md): nightly with rust-src, and bpf-linker built
//! against LLVM 22.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use loadgen_tests::ebpf::{
    MANIFEST, OBJECT, file_hash, manifest_value, read_manifest, sources_hash,
};

pub fn main(args: &[String]) -> anyhow::Result<()> {
    let check = match args.first().map(String::as_str) {
        None => false,
        Some("--check") => true,
        Some(other) => bail!("unknown option {other:?} (use --check)"),
    };
    let root = loadgen_tests::workspace_root();
    let target_dir = if check {
        std::env::temp_dir().join(format!("loadgen-ebpf-check-{}", std::process::id()))
    } else {
        root.join("target/ebpf")
    };
    let built = build(&root, &target_dir)?;
    if check {
        let committed = std::fs::read(root.join(OBJECT))
            .context("no committed object: run cargo xtask ebpf")?;
        let fresh = std::fs::read(&built)?;
        let manifest = read_manifest(&root)?;
        let want_src = manifest_value(&manifest, "sources-sha256").unwrap_or_default();
        let _ = std::fs::remove_dir_all(&target_dir);
        if want_src != sources_hash(&root) {
            bail!(
                "ebpf/ sources changed since the object was built: run `cargo xtask ebpf` and commit {OBJECT}"
            );
        }
        if committed != fresh {
            bail!(
                "rebuilding ebpf/ gave a different object ({} bytes, sha256 {}) than the committed one ({} bytes, sha256 {}): run `cargo xtask ebpf` and commit",
                fresh.len(),
                file_hash(&built).unwrap_or_default(),
                committed.len(),
                manifest_value(&manifest, "object-sha256").unwrap_or_default()
            );
        }
        println!(
            "ok: {OBJECT} is byte-identical to a fresh build of ebpf/ ({} bytes)",
            fresh.len()
        );
        return Ok(());
    }
    let dest = root.join(OBJECT);
    std::fs::create_dir_all(dest.parent().context("object path")?)?;
    std::fs::copy(&built, &dest)?;
    let manifest = format!(
        "# Written by `cargo xtask ebpf`; checked by tests/tests/ebpf_object.rs and `cargo xtask ebpf --check`.\n\
         sources-sha256: {}\nobject-sha256: {}\nobject-bytes: {}\nrustc: {}\nbpf-linker: {}\n",
        sources_hash(&root),
        file_hash(&dest)?,
        std::fs::metadata(&dest)?.len(),
        version(Command::new("rustc").args(["+nightly", "--version"])),
        version(Command::new("bpf-linker").arg("--version")),
    );
    std::fs::write(root.join(MANIFEST), manifest)?;
    println!("wrote {OBJECT} and {MANIFEST}");
    Ok(())
}

fn version(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn build(root: &Path, target_dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let status = Command::new("cargo")
        .args([
            "+nightly",
            "build",
            "-p",
            "loadgen-ebpf",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--release",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(root)
        // The host's rustflags (frame pointers) are not for BPF. Full debug
        // info in every crate (aya-ebpf's memcpy too), from which bpf-linker
        // makes the BTF that bpf_loop's callbacks need; the checkout's path
        // mapped away, so that every checkout builds the same bytes.
        .env_remove("RUSTFLAGS")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            [
                "-Cdebuginfo=2".to_string(),
                "-Clink-arg=--btf".to_string(),
                format!("--remap-path-prefix={}=.", root.display()),
            ]
            .join("\x1f"),
        )
        .status()
        .context(
            "cannot run cargo +nightly (rustup toolchain install nightly --component rust-src)",
        )?;
    if !status.success() {
        bail!(
            "building ebpf/ failed: it needs nightly with rust-src and bpf-linker (see DEVELOPERS.md)"
        );
    }
    // The BTF stays; the DWARF it was made from is 15 times the program.
    let linked = target_dir.join("bpfel-unknown-none/release/loadgen-ebpf");
    let stripped = target_dir.join("loadgen-ebpf.o");
    let llvm = std::env::var("LLVM_PREFIX").unwrap_or_else(|_| "/usr/lib/llvm-22".into());
    let status = Command::new(Path::new(&llvm).join("bin/llvm-objcopy"))
        .arg("--strip-debug")
        .arg(&linked)
        .arg(&stripped)
        .status()
        .with_context(|| format!("cannot run {llvm}/bin/llvm-objcopy (apt-get install llvm-22)"))?;
    if !status.success() {
        bail!("llvm-objcopy --strip-debug failed on {}", linked.display());
    }
    Ok(stripped)
}
