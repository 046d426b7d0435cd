//! Replays samples captured with `LOADGEN_UNWIND_CAPTURE=DIR`: unwinds
//! each against the maps captured with it and the objects on this host,
//! and prints the frames (symbolized while the objects are still there).
//!
//! `cargo run --release --example unwind_capture DIR`

use std::collections::BTreeMap;

use loadgen::profile::objects::{Arch, ObjectCache};
use loadgen::profile::unwind::ProcessUnwinder;
use loadgen::profile::{maps, ringbuf};

fn main() {
    let dir = std::env::args().nth(1).expect("usage: unwind_capture DIR");
    let mut files: BTreeMap<(u32, usize), std::path::PathBuf> = BTreeMap::new();
    for e in std::fs::read_dir(&dir).expect("read dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let parts: Vec<&str> = name.split('.').collect();
        if let [pid, n, "sample"] = parts[..] {
            files.insert((pid.parse().unwrap(), n.parse().unwrap()), e.path());
        }
    }
    let mut objects = ObjectCache::default();
    for ((pid, n), path) in files {
        let text = std::fs::read_to_string(format!("{dir}/{pid}.maps")).expect("maps");
        let m = maps::parse(&text).expect("parse maps");
        let mut u = ProcessUnwinder::new(Arch::native(), m.clone(), |mm| objects.get(pid, mm));
        let bytes = std::fs::read(&path).unwrap();
        let rec = ringbuf::parse(&bytes).unwrap();
        let out = u.unwind(&rec.regs(), rec.stack_copy());
        let stack_map = maps::find(&m, rec.header.sp);
        println!(
            "{pid}.{n}: ip {:#x} sp {:#x} fp {:#x} flags {} len {} stack-map-end {:?} → {:?}, {} frames",
            rec.header.ip,
            rec.header.sp,
            rec.header.fp,
            rec.header.flags,
            rec.stack.len(),
            stack_map.map(|s| format!("{:#x} (+{})", s.end, s.end - rec.header.sp)),
            out.outcome,
            out.frames.len()
        );
        for f in &out.frames {
            let m = maps::find(&m, *f);
            println!(
                "    {f:#x} {}",
                m.map_or("?".to_string(), |m| format!(
                    "{}+{:#x}",
                    m.path,
                    f - m.start + m.offset
                ))
            );
        }
    }
}
