//! The Kubernetes manifest and the container build: what loadgen needs of
//! them, checked offline (no cluster, no registry here).

use std::path::PathBuf;

use serde_yaml::Value;

fn root() -> PathBuf {
    loadgen_tests::workspace_root()
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    let mut cur = v;
    for key in path {
        cur = cur
            .get(*key)
            .unwrap_or_else(|| panic!("the manifest has no {}", path.join(".")));
    }
    cur
}

#[test]
fn the_job_manifest_is_an_indexed_job_that_runs_one_fleet() {
    let text = std::fs::read_to_string(root().join("deploy/kubernetes/job.yaml")).unwrap();
    let job: Value = serde_yaml::from_str(&text).expect("job.yaml is YAML");
    assert_eq!(s(&job, &["apiVersion"]), "batch/v1");
    assert_eq!(s(&job, &["kind"]), "Job");
    let name = s(&job, &["metadata", "name"]).as_str().unwrap();
    let spec = s(&job, &["spec"]);
    assert_eq!(s(spec, &["completionMode"]), "Indexed");
    let n = s(spec, &["completions"]).as_u64().unwrap();
    assert_eq!(
        s(spec, &["parallelism"]).as_u64(),
        Some(n),
        "all parts at once"
    );
    assert!(n > 1);
    assert_eq!(
        s(spec, &["backoffLimit"]).as_u64(),
        Some(0),
        "no retries after --start-at"
    );
    let pod = s(spec, &["template", "spec"]);
    assert_eq!(s(pod, &["restartPolicy"]), "Never");
    let containers = s(pod, &["containers"]).as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    let args: Vec<String> = s(&containers[0], &["args"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| match a {
            Value::String(s) => s.clone(),
            other => panic!("an arg that is not a string: {other:?}"),
        })
        .collect();
    let after = |flag: &str| {
        let i = args
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("the pod does not pass {flag}: {args:?}"));
        args[i + 1].clone()
    };
    assert_eq!(
        after("--part"),
        format!("auto/{n}"),
        "N matches completions"
    );
    assert_eq!(
        after("--start-at"),
        "${START_AT}",
        "substituted at apply time"
    );
    assert_eq!(after("--json"), "-", "each pod prints its report");
    let c: u64 = after("-c").parse().unwrap();
    assert!(c >= n, "-c {c} is the fleet's: at least one per part");
    // The arguments are loadgen's: they parse (once the time is filled in).
    let soon = std::time::SystemTime::now() + std::time::Duration::from_secs(600);
    let at = soon
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let filled: Vec<String> = args
        .iter()
        .map(|a| {
            if a == "${START_AT}" {
                at.clone()
            } else {
                a.clone()
            }
        })
        .collect();
    let out = std::process::Command::new(loadgen_tests::loadgen_bin())
        .args(&filled)
        .env("JOB_COMPLETION_INDEX", "0")
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The README's collect command selects this Job's pods.
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("kubectl logs -l job-name={name} --tail=-1")),
        "the README collects the logs of job {name}"
    );
    // io_uring needs a seccomp profile that allows it.
    assert_eq!(
        s(pod, &["securityContext", "seccompProfile", "type"]),
        "Unconfined"
    );
}

#[test]
fn the_container_builds_the_binary_the_readme_builds() {
    let text = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    assert!(
        text.contains("cargo build --release --locked -p loadgen --bin loadgen"),
        "{text}"
    );
    let rust = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let msrv = rust
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        text.contains(&format!("FROM rust:{msrv}")),
        "the image's Rust is the MSRV {msrv}"
    );
    assert!(text.contains("ENTRYPOINT [\"/usr/local/bin/loadgen\"]"));
}
