//! gproc: a cluster-wide `/proc` served over 9P.
//!
//! # Layers and allowed imports
//!
//! Each rule has one home. A module may import only the modules in its row
//! (below it in the table); `tests/it/layers.rs` checks this table against
//! the code, so it stays true. Test code may reach across.
//!
//! | module | its one job | may import |
//! |---|---|---|
//! | [`proto`] | 9P2000, 9P2000.u and 9P2000.L messages, encode/decode, framing, the one metadata type and errno mapping. Pure: no I/O | nothing |
//! | [`format`](mod@format) | the text formats gproc binaries exchange, each writer beside its parser: the node summary (`/.gproc/ps`) and its deltas since a generation, the `/ps` `/load` `/nodes` `/jobs` tables, with their extension rules; the cgroup patterns that name a process's batch job; GPU devices by device number. Pure | nothing |
//! | [`sys`] | OS helpers: the user database (NSS), acting as another user on dedicated threads, the open-file limit, poison-tolerant locks, the one pseudo-random generator | nothing |
//! | [`net`] | endpoint addresses (`host:port`, `unix:/path`) | nothing |
//! | [`auth`] | MUNGE credentials (libmunge loaded at run time) | `sys` |
//! | [`config`] | the TOML schema, defaults (written once), hostlists, durations, validation with line numbers | `proto`, `net`, `format`, `sys` |
//! | [`server`] | the [`server::Filesystem`] trait (location apart from open contents), sessions (fids, tags, flush, snapshots, cookies), one [`server::Identity`] per attach under an access policy, TCP/Unix listeners | `proto`, `net`, `auth`, `sys` |
//! | [`client`] | one async 9P connection for the CLI and the node pool ([`client::pool`]: every node, limits, deadlines, fan-out, health as data, re-dial) | `proto`, `net`, `auth`, `sys` |
//! | [`cache`] | node data kept under per-path rules (moka): expiry, coalesced loads, a byte bound | `config`, `sys` |
//! | [`view`] | what an identity may see: admins, allotted nodes, own processes | `config`, `server`, `sys` |
//! | [`agent`] | a `Filesystem` over a local Linux `/proc` read with the asking user's credentials, and the node summary's collector (with its GPU scan) | `server`, `format`, `proto`, `sys` |
//! | [`sim`] | synthetic nodes: deterministic `/proc` trees served over 9P on loopback addresses, with churn and fault injection | `server`, `format`, `proto`, `config`, `net`, `sys` |
//! | [`tree`] | the aggregator's merged namespace: a `Filesystem` over the pool and the cache, filtered by views | `server`, `client`, `cache`, `view`, `format`, `proto`, `config`, `net`, `sys` |
//! | [`scrape`] | the HTTP listener for Prometheus scrapers (`GET /metrics`, hyper): bounded connections, request heads and time | nothing |
//! | [`aggregator`] | the composition root: pool, cache, tree, views, server and scrape listener assembled from a config; reloads | `server`, `client`, `cache`, `tree`, `view`, `auth`, `config`, `format`, `net`, `proto`, `scrape`, `sys` |
//!
//! The front ends (`cli`, `top`, `mount`, `bench`) are not here: they are
//! the `gproc` binary's own modules, in `src/bin/gproc/`, so `src/` holds
//! the library alone and the binary uses only its public API, as any other
//! program would. Their heavy dependencies (fuser, ratatui, crossterm) sit
//! behind the default-on cargo features `fuse`, `tui` and `bench`, which
//! the library never needs.

#![warn(missing_docs, unreachable_pub)]

pub mod agent;
pub mod aggregator;
pub mod auth;
pub mod cache;
pub mod client;
pub mod config;
pub mod format;
pub mod net;
pub mod proto;
pub mod scrape;
pub mod server;
pub mod sim;
pub mod sys;
pub mod tree;
pub mod view;
