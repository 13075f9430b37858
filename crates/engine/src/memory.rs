//! Memory: wsiseg's own allocations, counted, with large buffers on their
//! own mappings; libtorch's tensors left to the process's malloc.
//!
//! [`TrackedAlloc`] is a global allocator for a binary (`#[global_allocator]`):
//! Rust allocations of 4 MiB and more (bands of mask rows as wide as the
//! level, thumbnails, the label copy GeoJSON is traced from) get their own
//! memory mappings, returned to the system when freed; smaller ones go to
//! malloc. libtorch allocates with malloc directly and is untouched.
//! It also counts the bytes Rust holds, so that reports can give wsiseg's own
//! peak ([`rust_peak_mib`]) beside the process's (which includes libtorch's
//! heap).
//!
//! Which malloc: the `wsiseg` binary links tcmalloc statically and names it
//! with [`set_malloc_name`] (see crates/cli/build.rs). glibc's malloc serves
//! blocks of 32 MiB and more — a batch's largest activations — from fresh mappings and
//! unmaps them when freed, so every batch page-faults its working set again;
//! a process-wide `mallopt(M_MMAP_THRESHOLD, 4 MiB)` did the same down to
//! 4 MiB and cost the model 16–20% (issue 11). tcmalloc keeps freed pages for
//! the next batch: the model's working set stays resident (a constant, not a
//! function of the slide's size) and the run spends no time in page faults.
//! Mapping Rust's large blocks keeps wsiseg's width-sized buffers out of
//! either heap.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Resident memory of this process now, in bytes (/proc/self/statm).
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * PAGE as u64)
}

/// This machine's memory for wsiseg: physical RAM, or the control group's
/// limit when a container sets a lower one.
pub fn machine_bytes() -> u64 {
    wsiseg_slide::machine_memory()
}

/// The default memory budget (`--max-memory`): 80% of [`machine_bytes`].
pub fn default_budget() -> u64 {
    machine_bytes() / 5 * 4
}

/// The process's memory budget in bytes; 0 = none.
static BUDGET: AtomicU64 = AtomicU64::new(0);

/// Sets the process's memory budget (`--max-memory`): while a slide's
/// tiles run, resident memory above it stops that slide
/// ([`crate::EngineError::MemoryLimit`]); plain images are decoded within
/// half of it (a band of rows needs far less).
pub fn set_budget(bytes: u64) {
    BUDGET.store(bytes, Ordering::Relaxed);
    wsiseg_slide::set_decode_limit(bytes / 2);
}

/// The process's memory budget, if one was set.
pub fn budget() -> Option<u64> {
    Some(BUDGET.load(Ordering::Relaxed)).filter(|&b| b > 0)
}

/// Rust allocations of at least this many bytes are mapped directly.
const LARGE: usize = 4 << 20;

/// Page size assumed for alignment (mmap returns page-aligned memory).
const PAGE: usize = 4096;

/// Bytes Rust holds now, and the most it has held (0 until something is
/// allocated through [`TrackedAlloc`]).
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The most memory wsiseg's own (Rust) allocations have held at once in
/// this process, in MiB; `None` when the binary does not use [`TrackedAlloc`].
pub fn rust_peak_mib() -> Option<f64> {
    let peak = PEAK.load(Ordering::Relaxed);
    (peak > 0).then(|| peak as f64 / f64::from(1 << 20))
}

/// The malloc this process runs on, as the binary named it.
static MALLOC: OnceLock<String> = OnceLock::new();

/// Records which malloc the binary links (e.g. "tcmalloc (gperftools 2.10,
/// static)"), for reports and `wsiseg bench`; the first call wins.
pub fn set_malloc_name(name: impl Into<String>) {
    let _ = MALLOC.set(name.into());
}

/// The malloc this process runs on: what the binary recorded with
/// [`set_malloc_name`], else the C library's ("glibc").
pub fn malloc_name() -> &'static str {
    MALLOC.get().map_or("glibc", String::as_str)
}

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    // Most allocations set no new peak: only those write the shared peak.
    if now > PEAK.load(Ordering::Relaxed) {
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

fn shrank(bytes: usize) {
    LIVE.fetch_sub(bytes, Ordering::Relaxed);
}

/// See the module documentation.
pub struct TrackedAlloc;

impl TrackedAlloc {
    /// Whether a block of this layout is (or would be) mapped directly.
    fn mapped(size: usize, align: usize) -> bool {
        size >= LARGE && align <= PAGE
    }

    /// Allocates without counting.
    ///
    /// # Safety
    /// As [`GlobalAlloc::alloc`] (`zeroed`: as `alloc_zeroed`).
    unsafe fn raw_alloc(layout: Layout, zeroed: bool) -> *mut u8 {
        if Self::mapped(layout.size(), layout.align()) {
            map(layout.size()) // anonymous mappings are zeroed
        } else if zeroed {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    /// Frees without counting.
    ///
    /// # Safety
    /// As [`GlobalAlloc::dealloc`].
    unsafe fn raw_dealloc(ptr: *mut u8, layout: Layout) {
        if Self::mapped(layout.size(), layout.align()) {
            // SAFETY: `ptr` is a mapping of `layout.size()` bytes made by `map`
            // or `mremap`, which the caller no longer uses.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(ptr, layout) }
        }
    }
}

/// A fresh private anonymous mapping of `size` bytes (zeroed), or null.
fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address the kernel picks
    // touches no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

// SAFETY: every block is either malloc's (small, or over-aligned) or a
// mapping of exactly `layout.size()` bytes; which one is decided by the
// layout alone, and Rust passes the same layout to `dealloc` and `realloc`
// as the block was allocated (or last reallocated) with.
unsafe impl GlobalAlloc for TrackedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { Self::raw_alloc(layout, false) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { Self::raw_alloc(layout, true) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { Self::raw_dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        let p = match (
            Self::mapped(layout.size(), align),
            Self::mapped(new_size, align),
        ) {
            // SAFETY: forwarded with the caller's guarantees.
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            (true, true) => {
                // SAFETY: `ptr` is a mapping of `layout.size()` bytes; the
                // kernel moves or resizes it, keeping its contents.
                let p = unsafe {
                    libc::mremap(ptr.cast(), layout.size(), new_size, libc::MREMAP_MAYMOVE)
                };
                if p == libc::MAP_FAILED {
                    std::ptr::null_mut()
                } else {
                    p.cast()
                }
            }
            _ => {
                // Crossing the threshold: a new block, the contents copied.
                // SAFETY: `new_size` is non-zero and `align` a power of two
                // (the caller's guarantees for `layout` and `new_size`).
                let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, align) };
                // SAFETY: a valid, non-zero layout.
                let new = unsafe { Self::raw_alloc(new_layout, false) };
                if !new.is_null() {
                    // SAFETY: both blocks hold at least the smaller size and
                    // do not overlap (`new` was just allocated).
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        Self::raw_dealloc(ptr, layout);
                    }
                }
                new
            }
        };
        if !p.is_null() {
            grew(new_size);
            shrank(layout.size());
        }
        p
    }
}

/// Peak resident memory of this process so far, in MiB (VmHWM).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks on both sides of the threshold keep their contents through
    /// growing and shrinking across it.
    #[test]
    fn contents_survive_reallocation_across_the_threshold() {
        let a = TrackedAlloc;
        let sizes = [
            100,
            LARGE - 1,
            LARGE,
            3 * LARGE + 5,
            LARGE + 1,
            64,
            2 * LARGE,
        ];
        let layout = |n| Layout::from_size_align(n, 8).unwrap();
        // SAFETY: every call gets the layout the block currently has.
        unsafe {
            let mut size = 10;
            let mut p = a.alloc_zeroed(layout(size));
            assert!(!p.is_null());
            assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
            std::slice::from_raw_parts_mut(p, size).fill(7);
            for &next in &sizes {
                p = a.realloc(p, layout(size), next);
                assert!(!p.is_null(), "realloc {size} → {next}");
                let kept = size.min(next).min(10);
                assert!(std::slice::from_raw_parts(p, kept).iter().all(|&b| b == 7));
                // The whole new block is writable.
                *p.add(next - 1) = 1;
                size = next;
            }
            a.dealloc(p, layout(size));
        }
        assert!(
            PEAK.load(Ordering::Relaxed) >= 3 * LARGE + 5,
            "the peak was counted"
        );
    }
}
