//! gproc: a cluster-wide `/proc` served over 9P.
//!
//! # Layout
//!
//! - [`proto`]: the 9P wire format (9P2000, 9P2000.u, 9P2000.L). Pure: no I/O.
//! - [`server`]: the [`server::Filesystem`] trait, per-connection sessions
//!   (fids, tags, flush) and the TCP/Unix listeners.
//! - [`client`]: one async 9P connection, shared by the CLI and the node pool.
//! - [`pool`]: connections to every node, limits, deadlines, reconnects.
//! - [`bench`]: the benchmarks behind `gproc bench`.
//! - [`aggregator`]: pool + cache + tree + server assembled from a config.
//! - [`auth`]: MUNGE credentials (libmunge loaded at run time).
//! - [`agent`]: a `Filesystem` over a local Linux `/proc`, plus the node
//!   summary file.
//! - [`net`]: endpoint addresses (`host:port`, `unix:/path`).
//! - [`cache`]: node data kept under per-path rules (moka).
//! - [`config`]: the TOML configuration, hostlists and durations.
//! - [`sim`]: synthetic nodes: deterministic `/proc` trees served over 9P on
//!   loopback addresses, with churn and fault injection.
//! - [`mount`]: `gproc mount`, any 9P tree as a read-only FUSE file system.
//! - [`top`]: `gproc top`, the live cluster view (model, drawing, text).
//! - [`users`]: the user database (NSS lookups).
//! - [`cli`]: the `gproc` subcommands.

pub mod agent;
pub mod aggregator;
pub mod auth;
pub mod bench;
pub mod cache;
pub mod cli;
pub mod client;
pub mod config;
pub mod creds;
pub mod mount;
pub mod net;
pub mod pool;
pub mod proto;
pub mod server;
pub mod sim;
pub mod top;
pub mod tree;
pub mod users;
pub mod view;
