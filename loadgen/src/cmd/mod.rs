//! The binary's commands. Library code does the work; these wire it to
//! flags, files and the terminal.

pub mod cli;
pub mod compare;
pub mod demo;
pub mod find_max;
pub mod merge;
pub mod report;
pub mod run;
pub mod setup;
pub mod target;

use std::io::Write;
use std::path::Path;

use anyhow::Context;

fn write_file(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let f =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = std::io::BufWriter::new(f);
    write(&mut w)
        .and_then(|()| w.flush())
        .with_context(|| format!("cannot write {}", path.display()))
}
