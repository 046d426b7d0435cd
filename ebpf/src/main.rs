//! Kernel-side eBPF program of loadgen.
//!
//! Built only for `bpfel-unknown-none` with nightly and bpf-linker
//! (`cargo xtask ebpf`), which is why the workspace's `default-members`
//! leave it out. The stack sampler that fills it is tracked by the profiler
//! issue; until then this is an empty program so the crate layout is fixed.
#![no_std]
#![no_main]

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
