//! Python frames in native stacks. A native stack of a CPython thread
//! has one `_PyEval_EvalFrameDefault` frame per eval call; the Python
//! stack, split at its boundaries, has one group of frames per eval call,
//! in the same order (innermost first). Each eval frame is replaced by
//! its group, as py-spy's `--native` does. Python frames travel in the
//! native stack's `Vec<u64>` as tagged ids (no user address has the top
//! bits set), and symbolizing names them from the profile's table.

use std::ops::Range;

/// Top two bits: a Python frame's id (from 1), not an address.
pub const TAG: u64 = 0xC000_0000_0000_0000;

pub fn is_python(addr: u64) -> bool {
    addr & TAG == TAG
}

/// The tagged form of name id `id` (≥ 1).
pub fn tag(id: u32) -> u64 {
    TAG | id as u64
}

/// The name id of a tagged frame.
pub fn id_of(addr: u64) -> usize {
    (addr & !TAG) as usize
}

/// `native`, innermost first (the sampled ip, then return addresses),
/// with the eval frames replaced by `groups` (tagged frames, innermost
/// first, one group per eval call, innermost call first). An eval frame
/// beyond the groups stays as it is; groups beyond the eval frames (a
/// native stack cut short) go at the outer end, in order.
pub fn merge(native: &[u64], groups: &[Vec<u64>], eval: &[Range<u64>]) -> Vec<u64> {
    let mut out = Vec::with_capacity(native.len() + groups.iter().map(Vec::len).sum::<usize>());
    let mut next = groups.iter();
    for (i, &addr) in native.iter().enumerate() {
        // Return addresses point after the call: look at the call itself.
        let at = if i == 0 { addr } else { addr.wrapping_sub(1) };
        if eval.iter().any(|r| r.contains(&at))
            && let Some(g) = next.next()
        {
            out.extend_from_slice(g);
            continue;
        }
        out.push(addr);
    }
    for g in next {
        out.extend_from_slice(g);
    }
    out
}

/// Splits a Python stack at its boundaries (None) into groups, dropping an
/// empty group at the outer end (3.11 ends the stack with a boundary).
pub fn groups(frames: impl Iterator<Item = Option<u64>>) -> Vec<Vec<u64>> {
    let mut out = vec![Vec::new()];
    for f in frames {
        match f {
            Some(t) => out.last_mut().expect("never empty").push(t),
            None => out.push(Vec::new()),
        }
    }
    if out.last().is_some_and(Vec::is_empty) {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVAL: Range<u64> = 0x5000..0x6000;

    #[test]
    fn each_eval_frame_gets_its_calls_python_frames_in_order() {
        // leaf C function, eval (inner call), PyObject_Call, eval (outer), main
        let native = [0x100, 0x5010, 0x200, 0x5020, 0x300];
        let (a, b, c) = (tag(1), tag(2), tag(3));
        let g = groups([Some(a), Some(b), None, Some(c), None].into_iter());
        assert_eq!(g, vec![vec![a, b], vec![c]]);
        assert_eq!(
            merge(&native, &g, &[EVAL]),
            vec![0x100, a, b, 0x200, c, 0x300]
        );
    }

    #[test]
    fn a_return_address_just_past_the_eval_function_is_not_in_it() {
        // 0x6000 returns into the byte after the function: its call is at
        // 0x5fff, inside. The leaf 0x6000 is outside.
        let g = vec![vec![tag(1)]];
        assert_eq!(merge(&[0x100, 0x6000], &g, &[EVAL]), vec![0x100, tag(1)]);
        assert_eq!(merge(&[0x6000], &g, &[EVAL]), vec![0x6000, tag(1)]);
    }

    #[test]
    fn groups_beyond_a_cut_native_stack_go_outermost_and_extra_eval_frames_stay() {
        let g = vec![vec![tag(1)], vec![tag(2)]];
        assert_eq!(merge(&[0x5010], &g, &[EVAL]), vec![tag(1), tag(2)]);
        let g = vec![vec![tag(1)]];
        assert_eq!(merge(&[0x5010, 0x5020], &g, &[EVAL]), vec![tag(1), 0x5020]);
        assert!(is_python(tag(1)));
        assert!(!is_python(0x7fff_ffff_f000));
    }
}
