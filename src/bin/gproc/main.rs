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

fn main() -> std::process::ExitCode {
    cli::main()
}
