//! The committed eBPF object and its manifest: what `cargo xtask ebpf`
//! writes and what the staleness test checks.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Committed object, embedded by `loadgen` (see `loadgen/src/profile/bpf.rs`).
pub const OBJECT: &str = "loadgen/bpf/loadgen-ebpf.o";
/// `key: value` lines describing how the object was built.
pub const MANIFEST: &str = "loadgen/bpf/MANIFEST";

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs")
            || p.file_name().is_some_and(|n| n == "Cargo.toml")
        {
            out.push(p);
        }
    }
}

/// SHA-256 over the eBPF sources (`ebpf/**/*.rs` and `Cargo.toml`s), each
/// as its path relative to the workspace, a NUL, its bytes, a NUL, in
/// path order.
pub fn sources_hash(root: &Path) -> String {
    let mut files = Vec::new();
    collect(&root.join("ebpf"), &mut files);
    let mut rel: Vec<(String, PathBuf)> = files
        .into_iter()
        .map(|p| {
            let r = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .replace('\\', "/");
            (r, p)
        })
        .collect();
    rel.sort();
    let mut h = Sha256::new();
    for (name, path) in rel {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(std::fs::read(&path).unwrap_or_default());
        h.update([0]);
    }
    hex(&h.finalize())
}

pub fn file_hash(path: &Path) -> std::io::Result<String> {
    Ok(hex(&Sha256::digest(std::fs::read(path)?)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads `key: value` lines.
pub fn read_manifest(root: &Path) -> std::io::Result<Vec<(String, String)>> {
    Ok(std::fs::read_to_string(root.join(MANIFEST))?
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

pub fn manifest_value(manifest: &[(String, String)], key: &str) -> Option<String> {
    manifest
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}
