//! The CPythons on this machine and py-spy, the referee of the Python
//! frames in loadgen's profiles (`tests/tests/python_frames.rs`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Every CPython 3 on the machine, by the file it really is: Debian's
/// `/usr/bin/python3`, `python3` on PATH (pyenv's shim, for one) and
/// pyenv's versions. (real path, version as `sys.version_info[:2]`).
pub fn pythons() -> Vec<(PathBuf, (u32, u32))> {
    let mut candidates: Vec<PathBuf> = vec!["/usr/bin/python3".into()];
    if let Ok(out) = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
    {
        candidates.push(String::from_utf8_lossy(&out.stdout).trim().into());
    }
    let pyenv = std::env::var("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".pyenv")
        });
    if let Ok(dir) = std::fs::read_dir(pyenv.join("versions")) {
        for v in dir.flatten() {
            candidates.push(v.path().join("bin/python3"));
        }
    }
    let mut out = BTreeMap::new();
    for c in candidates {
        let Ok(real) = std::fs::canonicalize(&c) else {
            continue;
        };
        let Ok(v) = Command::new(&real)
            .args(["-c", "import sys; print(*sys.version_info[:2])"])
            .output()
        else {
            continue;
        };
        let text = String::from_utf8_lossy(&v.stdout);
        let mut it = text.split_whitespace().map(|s| s.parse::<u32>());
        if let (Some(Ok(major)), Some(Ok(minor))) = (it.next(), it.next())
            && major == 3
        {
            out.insert(real, (major, minor));
        }
    }
    out.into_iter().collect()
}

/// The supported ones (3.11, 3.12).
pub fn supported_pythons() -> Vec<(PathBuf, (u32, u32))> {
    pythons()
        .into_iter()
        .filter(|(_, v)| matches!(v.1, 11 | 12))
        .collect()
}

/// py-spy's path (`pip install py-spy`), or None after a loud SKIP.
pub fn py_spy() -> Option<String> {
    let mut candidates = vec!["py-spy".to_string()];
    if let Ok(home) = std::env::var("HOME") {
        candidates.push(format!("{home}/.local/bin/py-spy"));
    }
    candidates.push("/usr/local/bin/py-spy".into());
    for c in candidates {
        if crate::have_cmd(&c, &["--version"]) {
            return Some(c);
        }
    }
    crate::skip("py-spy is not installed (pip install py-spy)");
    None
}

/// A Python program started with `python`, that printed a line when
/// ready; killed when dropped.
pub struct PyProgram {
    pub child: Child,
    /// The line it printed when ready.
    pub ready: String,
}

impl PyProgram {
    pub fn start(python: &std::path::Path, source: &str, args: &[&str]) -> PyProgram {
        let mut child = Command::new(python)
            .arg("-c")
            .arg(source)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start python");
        let mut ready = String::new();
        let _ = BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut ready);
        PyProgram {
            child,
            ready: ready.trim().to_string(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PyProgram {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
