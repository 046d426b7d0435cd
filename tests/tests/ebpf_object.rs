//! The committed eBPF object must come from the committed `ebpf/` sources:
//! editing the program without `cargo xtask ebpf` fails here. (`cargo
//! xtask ebpf --check`, run by CI, also rebuilds it and compares bytes.)

use loadgen_tests::ebpf::{
    MANIFEST, OBJECT, file_hash, manifest_value, read_manifest, sources_hash,
};
use loadgen_tests::workspace_root;

#[test]
fn manifest_matches_the_sources_and_the_object() {
    let root = workspace_root();
    let manifest = read_manifest(&root).unwrap_or_else(|e| panic!("cannot read {MANIFEST}: {e}"));
    assert_eq!(
        manifest_value(&manifest, "sources-sha256").as_deref(),
        Some(sources_hash(&root).as_str()),
        "ebpf/ changed since {OBJECT} was built: run `cargo xtask ebpf` and commit the result"
    );
    assert_eq!(
        manifest_value(&manifest, "object-sha256").as_deref(),
        Some(file_hash(&root.join(OBJECT)).unwrap().as_str()),
        "{OBJECT} does not match {MANIFEST}: run `cargo xtask ebpf`"
    );
}

#[test]
fn the_binary_embeds_the_committed_object() {
    let committed = std::fs::read(workspace_root().join(OBJECT)).unwrap();
    assert_eq!(loadgen::profile::bpf::OBJECT, committed.as_slice());
    assert_eq!(&committed[..4], b"\x7fELF");
}
