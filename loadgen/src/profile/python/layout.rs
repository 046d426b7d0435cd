//! Where CPython keeps what the profiler reads, per minor version: the
//! offsets of the fields on the path `_PyRuntime` → interpreter → thread
//! state → current frame → code object. They are the same for every patch
//! release of a minor version (py-spy keeps one binding per minor version
//! for the same reason), and were read with `gdb ptype /o` from the debug
//! info of CPython 3.11.7 and 3.12.1 builds; Debian's 3.11.2 is checked
//! against py-spy by the tests. 3.13 and later publish these offsets in
//! `_Py_DebugOffsets` at the start of `_PyRuntime`; they are not read yet,
//! so those versions are reported as unsupported.

/// Offsets (bytes) of one CPython minor version on a 64-bit target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub version: (u8, u8),
    /// `_PyRuntime.interpreters.head`.
    pub runtime_interpreters_head: u64,
    /// `PyInterpreterState.threads.head`.
    pub interp_threads_head: u64,
    /// `PyThreadState.next`, `.native_thread_id`, `.cframe`.
    pub tstate_next: u64,
    pub tstate_native_thread_id: u64,
    pub tstate_cframe: u64,
    /// `_PyCFrame.current_frame`.
    pub cframe_current_frame: u64,
    /// `_PyInterpreterFrame` fields.
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
    cframe_current_frame: 8,
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
    cframe_current_frame: 0,
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

/// The versions this profiler reads, by (major, minor).
pub fn for_version(major: u8, minor: u8) -> Option<Layout> {
    match (major, minor) {
        (3, 11) => Some(V3_11),
        (3, 12) => Some(V3_12),
        _ => None,
    }
}

pub const SUPPORTED: &str = "3.11 and 3.12";
