//! The `gproc` binary: the front ends over the gproc library.
//!
//! `src/` holds the library (every module listed in its crate doc); this
//! directory, `src/bin/gproc/`, holds everything that exists only for the
//! command line, so a newcomer reading `ls src/` sees the library alone:
//!
//! - [`cli`]: the clap definitions of every subcommand and the glue that
//!   turns their options into library calls.
//! - [`top`]: `gproc top`, the live cluster view (model, text; the
//!   interactive drawing with the `tui` feature).
//! - [`mount`]: `gproc mount`, any 9P tree as a read-only FUSE file system
//!   (the `fuse` feature).
//! - [`bench`]: the benchmarks behind `gproc bench` (the `bench` feature).
//! - [`remote`]: the re-dialled connection `mount` and `top` hold.
//!
//! The front ends use only the library's public API (`gproc::...`), like
//! any other program would. The cargo features `fuse`, `tui` and `bench`
//! are on by default; `cargo build --no-default-features` builds a lean
//! binary (agent, serve, sim, ps, ls, cat, stat, config, demo, top's text
//! mode) without the FUSE, terminal-UI and benchmark dependencies.

#[cfg(feature = "bench")]
mod bench;
mod cli;
#[cfg(feature = "fuse")]
mod mount;
mod remote;
mod top;

/// The aggregator allocates and frees a few small objects per process of
/// every summary it reads, from many threads; glibc's allocator spends a
/// fifth of a cold table's CPU on that (`gproc bench cluster`).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "mimalloc")]
mod allocator {
    use std::ffi::{c_int, c_long};

    /// `mi_option_purge_delay` in mimalloc.h's `mi_option_e`: option
    /// numbers are part of mimalloc's ABI (retired ones keep their slot),
    /// the same in its versions 2 and 3.
    pub(super) const PURGE_DELAY: c_int = 15;

    /// How long freed memory stays mapped before mimalloc gives it back
    /// (ms). Tables are rebuilt about once a second under a live view;
    /// with mimalloc's 1 s default each rebuild wrote its rows into pages
    /// the kernel had to zero again (6% of a cold `/ps`'s CPU).
    const PURGE_DELAY_MS: c_long = 10_000;

    unsafe extern "C" {
        // mimalloc's own, linked through the `mimalloc` crate.
        fn mi_option_set_default(option: c_int, value: c_long);
        #[cfg(test)]
        pub(super) fn mi_option_get(option: c_int) -> c_long;
    }

    /// Sets the purge delay unless `MIMALLOC_PURGE_DELAY` says otherwise.
    pub(super) fn tune() {
        // SAFETY: a plain setter of a process-wide option, callable at
        // any time from any thread.
        unsafe { mi_option_set_default(PURGE_DELAY, PURGE_DELAY_MS) }
    }
}

fn main() -> std::process::ExitCode {
    #[cfg(feature = "mimalloc")]
    allocator::tune();
    cli::main()
}

#[cfg(all(test, feature = "mimalloc"))]
mod tests {
    /// Option 15 is the purge delay: its default is mimalloc's documented
    /// one (10 ms in version 2, 1,000 ms in version 3), or the
    /// environment's. A renumbered option would show another default.
    #[test]
    fn option_15_is_the_purge_delay() {
        // SAFETY: a plain getter.
        let v = unsafe { super::allocator::mi_option_get(super::allocator::PURGE_DELAY) };
        match std::env::var("MIMALLOC_PURGE_DELAY") {
            Ok(e) => assert_eq!(Some(v), e.parse().ok()),
            Err(_) => assert!(v == 10 || v == 1000, "option 15 is {v}"),
        }
    }
}
