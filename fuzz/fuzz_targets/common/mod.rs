//! What every target shares: a global allocator that turns any single allocation over
//! [`MAX_ALLOC`] into a crash. libFuzzer's own malloc limit needs a sanitizer, and these
//! targets are built without one (`-s none`); its RSS limit only sees memory that is touched,
//! not a huge `Vec::with_capacity`. Inputs are kilobytes, so an allocation this large can only
//! come from trusting a length field.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;

/// The largest single allocation a target may make (the inputs are at most a few hundred
/// KiB; see `-max_len` in fuzz/README.md).
pub const MAX_ALLOC: usize = 32 << 20;

pub struct CappedAlloc;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

thread_local! {
    static REPORTING: Cell<bool> = const { Cell::new(false) };
}

#[cold]
fn too_large(size: usize) -> ! {
    // The report allocates (small amounts); do not recurse into another report.
    let first = REPORTING.with(|r| !r.replace(true));
    if first {
        let bt = std::backtrace::Backtrace::force_capture();
        let _ = writeln!(
            std::io::stderr(),
            "==fuzz: allocation of {size} bytes exceeds the {MAX_ALLOC}-byte cap \
             (a length field trusted before it was checked?)\n{bt}"
        );
    }
    std::process::abort();
}

unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOC {
            too_large(layout.size());
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOC {
            too_large(layout.size());
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOC {
            too_large(new_size);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
