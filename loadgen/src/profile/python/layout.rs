//! Where CPython keeps what the profiler reads, per minor version: the
//! offsets of the fields on the path `_PyRuntime` → interpreter → thread
//! state → current frame → code object. For 3.11 and 3.12 they are the
//! same for every patch release of a minor version (py-spy keeps one
//! binding per minor version for the same reason), and were read with `gdb
//! ptype /o` from the debug info of CPython 3.11.7 and 3.12.1 builds;
//! Debian's 3.11.2 is checked against py-spy by the tests. 3.13 publishes
//! them in `_Py_DebugOffsets`, the first member of `_PyRuntime`: they are
//! read from the interpreter's own file ([`from_debug_offsets`]).

/// Offsets (bytes) of one CPython minor version on a 64-bit target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub version: (u8, u8),
    /// `_PyRuntime.interpreters.head`.
    pub runtime_interpreters_head: u64,
    /// `PyInterpreterState.threads.head`.
    pub interp_threads_head: u64,
    /// `PyThreadState.next`, `.native_thread_id`, and `.cframe` (3.11,
    /// 3.12) or `.current_frame` (3.13).
    pub tstate_next: u64,
    pub tstate_native_thread_id: u64,
    pub tstate_cframe: u64,
    /// `_PyCFrame.current_frame`; None where the thread state points at
    /// the frame itself (3.13).
    pub cframe_current_frame: Option<u64>,
    /// `_PyInterpreterFrame` fields: the code object (`f_code`,
    /// `f_executable` in 3.13), the caller's frame, and the instruction
    /// (`prev_instr`; 3.13's `instr_ptr`, which CPython's own line number
    /// reads the same way).
    pub frame_code: u64,
    pub frame_previous: u64,
    pub frame_prev_instr: u64,
    pub frame_owner: u64,
    /// 3.11: `is_entry`, set on the first frame a `_PyEval_EvalFrameDefault`
    /// call runs (the ones it runs inline are above it).
    pub frame_is_entry: Option<u64>,
    /// 3.12: `_PyEval_EvalFrameDefault` pushes a shim frame with this owner
    /// (`FRAME_OWNED_BY_CSTACK`) below the frames it runs.
    pub owner_cstack: Option<u8>,
    /// `PyCodeObject` fields.
    pub code_firstlineno: u64,
    pub code_filename: u64,
    /// `co_qualname` (`Class.method`), which py-spy shows from 3.11 on.
    pub code_qualname: u64,
    pub code_linetable: u64,
    /// `co_code_adaptive`: the bytecode, which `prev_instr` points into.
    pub code_bytecode: u64,
    /// `sizeof(PyASCIIObject)` and `sizeof(PyCompactUnicodeObject)`: where
    /// the characters of a compact string start.
    pub ascii_data: u64,
    pub compact_data: u64,
}

/// `PyUnicodeObject.length`, `.state` and `PyBytesObject.ob_size`,
/// `.ob_sval`: the same in every supported version.
pub const UNICODE_LENGTH: u64 = 16;
pub const UNICODE_STATE: u64 = 32;
pub const BYTES_SIZE: u64 = 16;
pub const BYTES_DATA: u64 = 32;

pub const V3_11: Layout = Layout {
    version: (3, 11),
    runtime_interpreters_head: 40,
    interp_threads_head: 16,
    tstate_next: 8,
    tstate_native_thread_id: 160,
    tstate_cframe: 56,
    cframe_current_frame: Some(8),
    frame_code: 32,
    frame_previous: 48,
    frame_prev_instr: 56,
    frame_owner: 69,
    frame_is_entry: Some(68),
    owner_cstack: None,
    code_firstlineno: 72,
    code_filename: 112,
    code_qualname: 128,
    code_linetable: 136,
    code_bytecode: 184,
    ascii_data: 48,
    compact_data: 72,
};

pub const V3_12: Layout = Layout {
    version: (3, 12),
    runtime_interpreters_head: 40,
    interp_threads_head: 72,
    tstate_next: 8,
    tstate_native_thread_id: 144,
    tstate_cframe: 56,
    cframe_current_frame: Some(0),
    frame_code: 0,
    frame_previous: 8,
    frame_prev_instr: 56,
    frame_owner: 70,
    frame_is_entry: None,
    owner_cstack: Some(3),
    code_firstlineno: 68,
    code_filename: 112,
    code_qualname: 128,
    code_linetable: 136,
    code_bytecode: 192,
    ascii_data: 40,
    compact_data: 56,
};

/// The versions whose offsets are known here, by (major, minor); 3.13's
/// come from the interpreter ([`from_debug_offsets`]).
pub fn for_version(major: u8, minor: u8) -> Option<Layout> {
    match (major, minor) {
        (3, 11) => Some(V3_11),
        (3, 12) => Some(V3_12),
        _ => None,
    }
}

pub const SUPPORTED: &str = "3.11, 3.12 and 3.13";

/// Bytes of 3.13's `_Py_DebugOffsets` read (up to the code object's).
pub const DEBUG_OFFSETS_BYTES: usize = 352;

/// 3.13's layout from its `_Py_DebugOffsets` (the first
/// [`DEBUG_OFFSETS_BYTES`] of `_PyRuntime`'s initial value). Where each
/// offset sits in that struct was read with `gdb ptype /o` from 3.13.0's
/// debug info; the string sizes and the shim frame's owner, which it does
/// not publish, too.
pub fn from_debug_offsets(d: &[u8]) -> Result<Layout, String> {
    let at = |off: usize| -> Result<u64, String> {
        d.get(off..off + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| "its _Py_DebugOffsets is cut short".to_string())
    };
    if d.get(..8) != Some(b"xdebugpy".as_slice()) {
        return Err(
            "its _PyRuntime does not start with _Py_DebugOffsets (no xdebugpy cookie)".into(),
        );
    }
    let version = at(8)?;
    if (version >> 24, (version >> 16) & 0xff) != (3, 13) {
        return Err(format!(
            "its _Py_DebugOffsets is of version {version:#x}, not 3.13"
        ));
    }
    if at(16)? != 0 {
        return Err("free-threaded CPython (3.13t) is not supported".into());
    }
    Ok(Layout {
        version: (3, 13),
        runtime_interpreters_head: at(40)?,
        interp_threads_head: at(72)?,
        tstate_next: at(168)?,
        tstate_native_thread_id: at(200)?,
        tstate_cframe: at(184)?,
        cframe_current_frame: None,
        frame_code: at(240)?,
        frame_previous: at(232)?,
        frame_prev_instr: at(248)?,
        frame_owner: at(264)?,
        frame_is_entry: None,
        owner_cstack: Some(3),
        code_firstlineno: at(312)?,
        code_filename: at(280)?,
        code_qualname: at(296)?,
        code_linetable: at(304)?,
        code_bytecode: at(344)?,
        ascii_data: 40,
        compact_data: 56,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3.13.0's `_Py_DebugOffsets` as its struct lays it out, with the
    /// values gdb shows for the fields the profiler reads.
    fn debug_offsets_3_13() -> Vec<u8> {
        let mut d = vec![0u8; DEBUG_OFFSETS_BYTES];
        d[..8].copy_from_slice(b"xdebugpy");
        let mut put = |off: usize, v: u64| d[off..off + 8].copy_from_slice(&v.to_le_bytes());
        put(8, 0x030d_00f0);
        for (off, v) in [
            (40, 40),   // runtime_state.interpreters_head
            (72, 7344), // interpreter_state.threads_head (any value)
            (168, 16),  // thread_state.next
            (184, 72),  // thread_state.current_frame
            (200, 152), // thread_state.native_thread_id
            (232, 8),   // interpreter_frame.previous
            (240, 0),   // interpreter_frame.executable
            (248, 56),  // interpreter_frame.instr_ptr
            (264, 70),  // interpreter_frame.owner
            (280, 112), // code_object.filename
            (296, 128), // code_object.qualname
            (304, 136), // code_object.linetable
            (312, 68),  // code_object.firstlineno
            (344, 200), // code_object.co_code_adaptive
        ] {
            put(off, v);
        }
        d
    }

    #[test]
    fn the_3_13_layout_comes_from_its_debug_offsets() {
        let l = from_debug_offsets(&debug_offsets_3_13()).unwrap();
        assert_eq!(l.version, (3, 13));
        assert_eq!((l.tstate_cframe, l.cframe_current_frame), (72, None));
        assert_eq!(
            (l.frame_code, l.frame_previous, l.frame_prev_instr),
            (0, 8, 56)
        );
        assert_eq!((l.frame_owner, l.owner_cstack), (70, Some(3)));
        assert_eq!((l.code_qualname, l.code_bytecode), (128, 200));
        assert_eq!(l.interp_threads_head, 7344);
    }

    #[test]
    fn other_debug_offsets_are_refused_with_a_reason() {
        let mut d = debug_offsets_3_13();
        d[16] = 1;
        assert!(
            from_debug_offsets(&d)
                .unwrap_err()
                .contains("free-threaded")
        );
        let mut d = debug_offsets_3_13();
        d[8..16].copy_from_slice(&0x030e_00f0u64.to_le_bytes());
        assert!(from_debug_offsets(&d).unwrap_err().contains("not 3.13"));
        assert!(
            from_debug_offsets(&[0; 16])
                .unwrap_err()
                .contains("xdebugpy")
        );
        assert!(from_debug_offsets(b"xdebugpy").is_err());
    }
}
