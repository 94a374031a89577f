//! gproc: a cluster-wide `/proc` served over 9P.
//!
//! # Layout
//!
//! - [`proto`]: the 9P wire format (9P2000, 9P2000.u, 9P2000.L). Pure: no I/O.
//! - [`server`]: the [`server::Filesystem`] trait, per-connection sessions
//!   (fids, tags, flush) and the TCP/Unix listeners.
//! - [`client`]: one async 9P connection, shared by the CLI and the node
//!   pool ([`client::pool`]: connections to every node, limits, deadlines,
//!   reconnects).
//! - [`aggregator`]: pool + cache + tree + server assembled from a config.
//! - [`auth`]: MUNGE credentials (libmunge loaded at run time).
//! - [`format`](mod@format): the text formats gproc binaries exchange, each writer
//!   beside its parser: the node summary (`/.gproc/ps`) and the `/ps`,
//!   `/load`, `/nodes` tables. Pure: no I/O, imports nothing else of the
//!   crate, so every other module (and every front end) may import it.
//! - [`agent`]: a `Filesystem` over a local Linux `/proc`, plus the node
//!   summary's collector (the format is [`format::summary`]).
//! - [`net`]: endpoint addresses (`host:port`, `unix:/path`).
//! - [`cache`]: node data kept under per-path rules (moka).
//! - [`config`]: the TOML configuration, hostlists and durations.
//! - [`sim`]: synthetic nodes: deterministic `/proc` trees served over 9P on
//!   loopback addresses, with churn and fault injection.
//! - [`tree`]: the aggregator's merged namespace, a `Filesystem` over the
//!   pool and the cache.
//! - [`view`]: what an identity may see of the processes.
//! - [`sys`]: OS helpers: the user database (NSS lookups), the open-file
//!   limit, poison-tolerant locks, the pseudo-random generator.
//!
//! The front ends (`cli`, `top`, `mount`, `bench`) are not here: they are
//! the `gproc` binary's own modules, in `src/bin/gproc/`, so `src/` holds
//! the library alone and the binary uses only its public API, as any other
//! program would. Their heavy dependencies (fuser, ratatui, crossterm) sit
//! behind the default-on cargo features `fuse`, `tui` and `bench`, which
//! the library never needs.

pub mod agent;
pub mod aggregator;
pub mod auth;
pub mod cache;
pub mod client;
pub mod config;
pub mod format;
pub mod net;
pub mod proto;
pub mod server;
pub mod sim;
pub mod sys;
pub mod tree;
pub mod view;
