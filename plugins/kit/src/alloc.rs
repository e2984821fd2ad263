//! A global allocator for filters: small blocks are kept on per-size free lists and handed out
//! again without a trip through the backing allocator. On wasm that is `talc` (its
//! `WasmDynamicTalc`, which grows linear memory as needed), not `System`: wasi-libc's dlmalloc
//! was ~1.7 KB more of module for the same job (measured with the size test's `wasm-opt -Oz`);
//! dlmalloc is still linked, used only by libc itself (the environment std reads on the panic
//! path), and both take whole pages with `memory.grow`, so they never share one.
//!
//! A filter's request path allocates and frees a dozen small vectors and strings per request
//! (header and property buffers, the host's calls into `proxy_on_memory_allocate`, the plan,
//! the response fields), always of the same few sizes, so a free list hit is the common case.
//!
//! Bounded: each of the six size classes (16 to 512 bytes) keeps at most [`MAX_CACHED`] free
//! blocks, about 64 KB in all; everything else, and anything with an alignment above 8, goes
//! to the backing allocator unchanged. Single-threaded by construction: proxy-wasm VMs run one
//! thread (wasm32-wasip1 has none to spawn), which is the only place this is `Sync`.
//! Must not know anything about proxy-wasm.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr;

/// The backing allocator: talc on single-threaded wasm, the system allocator elsewhere
/// (native unit tests).
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
static BACKING: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
#[cfg(not(all(target_arch = "wasm32", not(target_feature = "atomics"))))]
static BACKING: std::alloc::System = std::alloc::System;

/// Block sizes of the classes, bytes.
const CLASSES: [usize; 6] = [16, 32, 64, 128, 256, 512];

/// Free blocks kept per class.
pub const MAX_CACHED: usize = 64;

/// Largest alignment a cached block satisfies (every system block is 8-aligned or better).
const ALIGN: usize = 8;

struct Lists {
    /// First free block of each class; each free block stores the next one's address.
    head: [*mut u8; CLASSES.len()],
    len: [usize; CLASSES.len()],
}

/// Size-class free lists over the backing allocator.
pub struct CachingAlloc {
    lists: UnsafeCell<Lists>,
}

// SAFETY: proxy-wasm runs a VM on one thread and wasm32-wasip1 cannot start another, so the
// lists are never touched concurrently. Native builds (tests) use their own instances on one
// thread and never install this as the global allocator.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl Sync for CachingAlloc {}

impl Default for CachingAlloc {
    fn default() -> Self {
        Self::new()
    }
}

impl CachingAlloc {
    /// Empty lists.
    pub const fn new() -> Self {
        Self {
            lists: UnsafeCell::new(Lists {
                head: [ptr::null_mut(); CLASSES.len()],
                len: [0; CLASSES.len()],
            }),
        }
    }

    /// Free blocks currently kept, over all classes.
    pub fn cached(&self) -> usize {
        // SAFETY: single-threaded (see the Sync impl); no reference into the lists escapes.
        unsafe { (*self.lists.get()).len.iter().sum() }
    }
}

/// The class of a layout, if it is cached at all: the smallest power of two >= 16 that holds
/// it, by its bit length (no search; this runs on every allocation).
#[inline(always)]
fn class(layout: Layout) -> Option<usize> {
    let size = layout.size();
    if layout.align() > ALIGN || size == 0 || size > 512 {
        return None;
    }
    let bits = usize::BITS - (size - 1).leading_zeros();
    Some(bits.saturating_sub(4) as usize)
}

/// The system layout of every block of class `c`.
fn class_layout(c: usize) -> Layout {
    let size = CLASSES.get(c).copied().unwrap_or(ALIGN);
    // Sizes are powers of two >= 8 and ALIGN is 8: always a valid layout.
    Layout::from_size_align(size, ALIGN).unwrap_or(Layout::new::<u64>())
}

unsafe impl GlobalAlloc for CachingAlloc {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class(layout) else {
            // SAFETY: forwarded as is.
            return unsafe { BACKING.alloc(layout) };
        };
        // SAFETY: single-threaded (see the Sync impl); the reference ends in this call.
        let lists = unsafe { &mut *self.lists.get() };
        if let (Some(head), Some(len)) = (lists.head.get_mut(c), lists.len.get_mut(c)) {
            let block = *head;
            if !block.is_null() {
                // SAFETY: a free block of this class holds the next free block's address
                // in its first word (written by `dealloc`; blocks are >= 16 bytes, 8-aligned).
                *head = unsafe { block.cast::<*mut u8>().read() };
                *len -= 1;
                return block;
            }
        }
        // SAFETY: a valid non-zero layout.
        unsafe { BACKING.alloc(class_layout(c)) }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(c) = class(layout) else {
            // SAFETY: allocated by the backing allocator with this layout (see `alloc`).
            return unsafe { BACKING.dealloc(block, layout) };
        };
        // SAFETY: single-threaded (see the Sync impl); the reference ends in this call.
        let lists = unsafe { &mut *self.lists.get() };
        if let (Some(head), Some(len)) = (lists.head.get_mut(c), lists.len.get_mut(c)) {
            if *len < MAX_CACHED {
                // SAFETY: the block is ours again, at least CLASSES[c] >= 16 bytes and
                // 8-aligned: its first word can hold the list link.
                unsafe { block.cast::<*mut u8>().write(*head) };
                *head = block;
                *len += 1;
                return;
            }
        }
        // SAFETY: every block of class `c` was allocated with `class_layout(c)`.
        unsafe { BACKING.dealloc(block, class_layout(c)) }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A block already big enough for the new size stays where it is.
        let grown = Layout::from_size_align(new_size, layout.align()).ok();
        if let (Some(c), Some(n)) = (class(layout), grown) {
            if class(n) == Some(c) {
                return block;
            }
        }
        let Some(new_layout) = grown else {
            return ptr::null_mut();
        };
        if class(layout).is_none() && class(new_layout).is_none() {
            // SAFETY: allocated by the backing allocator with `layout` (see `alloc`); it may
            // grow in place.
            return unsafe { BACKING.realloc(block, layout, new_size) };
        }
        // SAFETY: GlobalAlloc's contract: allocate, copy the smaller size, free the old block.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                ptr::copy_nonoverlapping(block, new, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).expect("layout")
    }

    #[test]
    fn every_size_maps_to_the_smallest_class_that_holds_it() {
        for size in 1..=600usize {
            let want = CLASSES.iter().position(|&c| size <= c);
            assert_eq!(class(layout(size, 1)), want, "{size}");
        }
        assert_eq!(class(layout(0, 1)), None);
        assert_eq!(class(layout(8, 16)), None);
    }

    #[test]
    fn a_freed_block_is_reused_for_the_same_class_only() {
        let a = CachingAlloc::new();
        unsafe {
            let p = a.alloc(layout(24, 8));
            p.write_bytes(0xab, 24);
            a.dealloc(p, layout(24, 8));
            assert_eq!(a.cached(), 1);
            assert_eq!(a.alloc(layout(20, 4)), p, "same class (17..=32 bytes)");
            assert_eq!(a.cached(), 0);
            let q = a.alloc(layout(40, 8));
            assert_ne!(q, p);
            a.dealloc(q, layout(40, 8));
            let r = a.alloc(layout(8, 8));
            assert_ne!(r, q, "a 16-byte request does not take a 64-byte block");
            a.dealloc(r, layout(8, 8));
            a.dealloc(p, layout(20, 4));
            assert_eq!(a.cached(), 3);
        }
    }

    #[test]
    fn large_or_overaligned_blocks_bypass_the_lists_and_the_lists_stay_bounded() {
        let a = CachingAlloc::new();
        unsafe {
            for l in [layout(4096, 8), layout(32, 64)] {
                let p = a.alloc(l);
                assert!(!p.is_null() && p as usize % l.align() == 0);
                a.dealloc(p, l);
                assert_eq!(a.cached(), 0);
            }
            let blocks: Vec<*mut u8> = (0..MAX_CACHED + 10)
                .map(|_| a.alloc(layout(100, 8)))
                .collect();
            for p in &blocks {
                a.dealloc(*p, layout(100, 8));
            }
            assert_eq!(a.cached(), MAX_CACHED);
        }
    }

    #[test]
    fn realloc_keeps_the_block_within_its_class_and_moves_the_bytes_out_of_it() {
        let a = CachingAlloc::new();
        unsafe {
            let p = a.alloc(layout(10, 1));
            for i in 0..10u8 {
                p.add(usize::from(i)).write(i);
            }
            assert_eq!(a.realloc(p, layout(10, 1), 16), p);
            let q = a.realloc(p, layout(16, 1), 1000);
            assert_ne!(q, p);
            for i in 0..10u8 {
                assert_eq!(q.add(usize::from(i)).read(), i);
            }
            assert_eq!(a.cached(), 1, "the old block went back to its list");
            a.dealloc(q, layout(1000, 1));
        }
    }
}
