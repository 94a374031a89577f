//! gproc's integration tests, one binary (one link, one process start per
//! run): each module drives real things (loopback servers, the `gproc`
//! binary, diod, the Python 9P clients, munged, the kernel's v9fs under
//! qemu) and skips loudly, or fails under CI, when a peer is missing.
//!
//! Run one area with `cargo test --test it MODULE::`, e.g.
//! `cargo test --test it views::`.

mod common;

mod as_user;
mod as_user_clients;
mod client_cli;
mod client_diod;
mod client_faults;
mod client_proc;
mod conformance;
mod control;
mod demo;
mod docs;
mod fair;
mod gpus;
mod hetero;
mod hierarchy;
mod hostile_client;
mod hostile_input;
mod hostile_server;
#[cfg(feature = "fuse")]
mod hung_process;
mod interop;
mod job_tree;
mod jobs;
mod layers;
mod live;
mod metrics;
mod mount;
mod pool;
mod ps_watch;
mod reload;
mod restart;
mod sim_aggregator;
mod sim_cluster;
mod sim_control;
mod sim_scale;
mod sim_strays;
mod top;
mod v9fs;
mod views;
