//! Reads another process's memory with `process_vm_readv` (one system
//! call per read, no ptrace stop: the target keeps running, as with
//! py-spy). Needs the same privilege as ptrace (root, or CAP_SYS_PTRACE).

/// Something a read came from: a live process, or (in tests) a buffer.
pub trait Memory {
    /// Fills `buf` from `addr`; false if any of it could not be read.
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool;

    fn u64(&self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b).then(|| u64::from_ne_bytes(b))
    }

    fn u32(&self, addr: u64) -> Option<u32> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b).then(|| u32::from_ne_bytes(b))
    }

    fn u8(&self, addr: u64) -> Option<u8> {
        let mut b = [0u8; 1];
        self.read(addr, &mut b).then_some(b[0])
    }
}

/// A live process's memory.
#[derive(Debug, Clone, Copy)]
pub struct ProcessMemory {
    pub pid: u32,
}

impl Memory for ProcessMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        if buf.is_empty() {
            return true;
        }
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: `local` covers exactly `buf`, which we own mutably; the
        // kernel checks the remote range against the target's mappings and
        // fails the call (or returns a short count) where it cannot read.
        let n =
            unsafe { libc::process_vm_readv(self.pid as libc::pid_t, &local, 1, &remote, 1, 0) };
        n == buf.len() as isize
    }
}

/// Memory from a list of (address, bytes) regions, for tests.
#[derive(Debug, Default)]
pub struct Regions(pub Vec<(u64, Vec<u8>)>);

impl Memory for Regions {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        for (start, bytes) in &self.0 {
            let Some(off) = addr.checked_sub(*start) else {
                continue;
            };
            let off = off as usize;
            if let Some(src) = bytes.get(off..off + buf.len()) {
                buf.copy_from_slice(src);
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_memory_and_refuses_an_unmapped_address() {
        let value: u64 = 0x1234_5678_9abc_def0;
        let me = ProcessMemory {
            pid: std::process::id(),
        };
        assert_eq!(me.u64(&value as *const u64 as u64), Some(value));
        assert_eq!(me.u64(8), None);
    }
}
