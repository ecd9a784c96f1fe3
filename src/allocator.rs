//! The global allocator: mimalloc, tuned to give memory back.
//!
//! A replayed line makes about ten short-lived allocations (the shared sample of the event,
//! a conditional bucket's copy, bucket entries, alert events). With glibc's malloc they
//! cost about 2,600 instructions an sshd line (13 % of it, callgrind on the replay bench);
//! with mimalloc's thread-local free lists the whole line costs 9 % fewer instructions.
//! It is declared here, in the library, so that the benches and tests run the allocator
//! the daemon runs.
//!
//! mimalloc's defaults trade memory for speed: arenas are committed eagerly and freed pages
//! are returned after a delay (1 s in the v3 we build). That took the replay bench's peak
//! RSS from 59 MB to 85 MB (sshd) and 115 MB (nginx), over the 64 MB target. Arena memory
//! is committed on demand, and freed pages are returned after [`PURGE_DELAY_MS`]. Purging
//! them at once (a delay of 0) kept the peak RSS lowest (40–41 MB), but pages freed were
//! faulted back in moments later: ~720 `madvise` calls and twice the page faults on a
//! million lines, 0.09–0.30 s of system time against 0.04–0.08 s with the delay, which
//! costs 2–5 MB of peak RSS.

use libmimalloc_sys::{mi_option_set, mi_option_t};
use mimalloc::MiMalloc;

#[cfg(not(test))]
#[global_allocator]
static ALLOCATOR: MiMalloc = MiMalloc;

/// Unit tests count the allocations their thread makes (a hot path that allocates per line
/// fails its test), through mimalloc as the daemon does.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

/// Allocations (and reallocations) made so far by the current thread (unit tests only).
#[cfg(test)]
pub fn allocations_on_this_thread() -> usize {
    counting::COUNT.with(std::cell::Cell::get)
}

#[cfg(test)]
mod counting {
    use super::MiMalloc;
    use std::alloc::{GlobalAlloc, Layout};
    use std::cell::Cell;

    thread_local! {
        pub(super) static COUNT: Cell<usize> = const { Cell::new(0) };
    }

    /// mimalloc, counting allocations per thread.
    pub struct Counting;

    // SAFETY: every call is forwarded unchanged to mimalloc.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            // SAFETY: forwarded unchanged.
            unsafe { MiMalloc.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded unchanged.
            unsafe { MiMalloc.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            // SAFETY: forwarded unchanged.
            unsafe { MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}

/// `mi_option_arena_eager_commit` and `mi_option_purge_delay` in `mi_option_e`
/// (`include/mimalloc.h` of the mimalloc libmimalloc-sys builds, v2 and v3 alike); the
/// crate's bindings name neither.
const OPTION_ARENA_EAGER_COMMIT: mi_option_t = 4;
const OPTION_PURGE_DELAY: mi_option_t = 15;

/// How long freed pages stay committed before mimalloc returns them, in milliseconds: long
/// enough that a page freed and reused within a burst of lines is not faulted in again,
/// short enough that memory freed by an expiry sweep is back with the system at once.
pub const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Sets the options before the first allocation: an arena is reserved, eagerly committed
/// or not, when the first one is made, which can be before `main` runs. Constructors in
/// `.init_array` run before Rust's runtime allocates anything.
#[used]
#[unsafe(link_section = ".init_array")]
static TUNE: extern "C" fn() = tune;

extern "C" fn tune() {
    // SAFETY: `mi_option_set` only writes mimalloc's option table; this runs once, on the
    // one thread of a starting process.
    unsafe {
        mi_option_set(OPTION_ARENA_EAGER_COMMIT, 0);
        mi_option_set(OPTION_PURGE_DELAY, PURGE_DELAY_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libmimalloc_sys::{mi_option_get, mi_option_show_errors};

    #[test]
    fn the_options_are_set_before_main_and_no_other() {
        // SAFETY: reads of mimalloc's option table.
        unsafe {
            assert_eq!(mi_option_get(OPTION_ARENA_EAGER_COMMIT), 0);
            assert_eq!(mi_option_get(OPTION_PURGE_DELAY), PURGE_DELAY_MS);
            // Neighbours keep their defaults: the numbering matches the library's.
            assert_eq!(mi_option_get(mi_option_show_errors), 0);
            assert_eq!(mi_option_get(OPTION_PURGE_DELAY + 1), 0, "use_numa_nodes");
            assert_eq!(
                mi_option_get(OPTION_PURGE_DELAY - 1),
                1,
                "eager_commit_delay"
            );
        }
    }
}
