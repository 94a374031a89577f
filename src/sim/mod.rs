//! The cluster simulator: synthetic node `/proc` trees served over real 9P
//! connections, so the aggregator can be tested and measured against
//! thousands of nodes on one machine.
//!
//! - [`Sim`] is the model: per node a hardware description and a compact
//!   record per process (pid, ppid, uid, start tick, CPU rate, RSS, an
//!   index into shared command tables), deterministic from the seed and
//!   the node index, with churn driven by a pausable clock. Some nodes
//!   hold what `ps` users hunt for: the leftovers of an ended job (a user's
//!   ranks reparented to init, in no job's cgroup), a process in disk sleep
//!   (`D`) and a zombie (`Z`), all from the seed ([`Sim::processes`] says
//!   which).
//! - With [`SimOptions::control`], process directories have `ctl` files
//!   whose signals the model applies and records ([`Sim::signals`]; see
//!   `control` for who may signal what).
//! - [`SimNodeFs`] serves one node's `/proc` (with `/.gproc/ps`) as a
//!   [`Filesystem`](crate::server::Filesystem), rendering files on open in
//!   the formats procfs parsers expect, with the agent's 9P shapes.
//! - [`SimCluster`] starts every node as a 9P server on its own loopback
//!   address (`127.1.0.1`, `127.1.0.2`, ...: all of 127/8 is loopback on
//!   Linux), injects faults (slow, hanging, dying, garbage-answering,
//!   refusing nodes, huge files) and writes the matching aggregator config.
//!
//! Depends on [`crate::server`] (to serve), [`crate::format`] (the
//! summary format), [`crate::config`] (hostlist compression) and
//! [`crate::sys`] (the file descriptor limit).

mod cluster;
mod control;
mod fs;
mod model;
mod render;
mod tables;

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use thiserror::Error;

pub use cluster::{NodeInfo, SimCluster};
pub use control::{SignalOutcome, SignalRecord};
pub use fs::{SimNode, SimNodeFs};
pub use model::{Arch, DieSchedule, GarbageKind, HangKind, Sim, SimProcess};

/// What is wrong with a simulated node, chosen per node from the seed.
/// A node has at most one fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Healthy.
    None,
    /// Every request is answered after a delay in `slow_delay`.
    Slow,
    /// Accepts connections and reads, but stops answering (see
    /// [`HangKind`]).
    Hang,
    /// The listener and its connections go away and may come back
    /// (see [`DieSchedule`]).
    Die,
    /// Answers with bytes that are not 9P (see [`GarbageKind`]).
    Garbage,
    /// Nothing listens: connections are refused.
    Refuse,
    /// One process's `maps` is `huge_bytes` long.
    Huge,
}

impl Fault {
    /// Lower-case name, as in the CLI flags.
    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Slow => "slow",
            Fault::Hang => "hang",
            Fault::Die => "die",
            Fault::Garbage => "garbage",
            Fault::Refuse => "refuse",
            Fault::Huge => "huge",
        }
    }

    /// Every fault, in the order fractions are assigned.
    pub const ALL: [Fault; 6] = [
        Fault::Slow,
        Fault::Hang,
        Fault::Die,
        Fault::Garbage,
        Fault::Refuse,
        Fault::Huge,
    ];
}

/// How to build and serve a simulated cluster.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Number of nodes (at least 1).
    pub nodes: usize,
    /// Processes per node at the start; churn keeps the count near it.
    pub procs_per_node: usize,
    /// Everything synthetic derives from it: same seed, same bytes.
    pub seed: u64,
    /// Processes started plus exited per node per simulated minute.
    pub churn_per_min: f64,
    /// Fraction of nodes that answer slowly.
    pub slow: f64,
    /// Fraction of nodes that hang.
    pub hang: f64,
    /// Fraction of nodes that die and come back.
    pub die: f64,
    /// Fraction of nodes that answer garbage.
    pub garbage: f64,
    /// Fraction of nodes nobody listens for.
    pub refuse: f64,
    /// Fraction of nodes with a huge `maps` file.
    pub huge: f64,
    /// Fraction of nodes without `/.gproc/ps` (like diod exporting
    /// `/proc`): the aggregator must read their per-process files.
    pub no_summary: f64,
    /// Fraction of the nodes with a summary whose summary has no
    /// `generation` and who serve no deltas (an agent from before them,
    /// [`crate::format::delta`]): readers always read them whole.
    pub no_deltas: f64,
    /// Port every node listens on (each node has its own address); 0 takes
    /// a free port per node, which tests use to run side by side.
    pub base_port: u16,
    /// Address of the first node; later nodes count up, skipping `.0` and
    /// `.255`. Must be in 127.0.0.0/8.
    pub first_address: Ipv4Addr,
    /// Node names are this prefix and a number: `sim0001`.
    pub name_prefix: String,
    /// Delay range of slow nodes, per request.
    pub slow_delay: (Duration, Duration),
    /// Mean flapping period of dying nodes.
    pub die_period: Duration,
    /// Size of the huge file.
    pub huge_bytes: usize,
    /// Wall-clock time of the simulation's start; `None` is now. Fix it
    /// to get the same bytes from two runs.
    pub epoch: Option<SystemTime>,
    /// Some racks are aarch64 with 64 KiB pages and some x86 nodes run an
    /// older kernel: the aggregator must not assume one architecture.
    pub arch_mix: bool,
    /// Every process directory has a `ctl` file that signals the simulated
    /// process (see [`SignalRecord`] and [`Sim::signals`]), as agents with
    /// `--control`.
    pub control: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            nodes: 16,
            procs_per_node: 100,
            seed: 1,
            churn_per_min: 0.0,
            slow: 0.0,
            hang: 0.0,
            die: 0.0,
            garbage: 0.0,
            refuse: 0.0,
            huge: 0.0,
            no_summary: 0.0,
            no_deltas: 0.0,
            base_port: 5640,
            first_address: Ipv4Addr::new(127, 1, 0, 1),
            name_prefix: "sim".into(),
            slow_delay: (Duration::from_millis(200), Duration::from_secs(2)),
            die_period: Duration::from_secs(60),
            huge_bytes: 32 << 20,
            epoch: None,
            arch_mix: true,
            control: false,
        }
    }
}

/// Most nodes one simulator hosts: what fits in 127.1.0.1 - 127.255.255.254
/// is far more than file descriptors allow anyway.
pub const MAX_NODES: usize = 1_000_000;

/// Most processes per node.
pub const MAX_PROCS_PER_NODE: usize = 100_000;

impl SimOptions {
    /// Checks ranges.
    ///
    /// # Errors
    /// [`SimError::Options`] naming the bad option.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::Options(m));
        if self.nodes == 0 || self.nodes > MAX_NODES {
            return bad(format!(
                "nodes must be 1 to {MAX_NODES}, not {}",
                self.nodes
            ));
        }
        if self.procs_per_node == 0 || self.procs_per_node > MAX_PROCS_PER_NODE {
            return bad(format!(
                "procs per node must be 1 to {MAX_PROCS_PER_NODE}, not {}",
                self.procs_per_node
            ));
        }
        if !(self.churn_per_min.is_finite() && (0.0..=100_000.0).contains(&self.churn_per_min)) {
            return bad(format!(
                "churn must be 0 to 100000 per minute, not {}",
                self.churn_per_min
            ));
        }
        let fracs = [
            ("slow", self.slow),
            ("hang", self.hang),
            ("die", self.die),
            ("garbage", self.garbage),
            ("refuse", self.refuse),
            ("huge", self.huge),
            ("no-summary", self.no_summary),
            ("no-deltas", self.no_deltas),
        ];
        for (name, f) in fracs {
            if !(f.is_finite() && (0.0..=1.0).contains(&f)) {
                return bad(format!("--{name} is a fraction of nodes, 0 to 1, not {f}"));
            }
        }
        let faulty: usize = fracs[..6]
            .iter()
            .map(|(_, f)| model::fraction_count(*f, self.nodes))
            .sum();
        if faulty > self.nodes {
            return bad(format!(
                "the fault fractions add up to {faulty} nodes but there are only {}: a node has at most one fault",
                self.nodes
            ));
        }
        if self.first_address.octets()[0] != 127 {
            return bad(format!(
                "first address {} is not loopback (127.0.0.0/8)",
                self.first_address
            ));
        }
        if self.slow_delay.0 > self.slow_delay.1 {
            return bad("slow delay range is reversed".into());
        }
        if self.die_period.is_zero() {
            return bad("die period must be positive".into());
        }
        if self.name_prefix.is_empty() {
            return bad("name prefix must not be empty".into());
        }
        if let Err(e) = crate::config::check_node_name(&format!("{}1", self.name_prefix)) {
            return bad(format!("name prefix: {e}"));
        }
        Ok(())
    }
}

/// Why the simulator could not start.
#[derive(Debug, Error)]
pub enum SimError {
    /// Options out of range.
    #[error("invalid simulator options: {0}")]
    Options(String),
    /// Not enough file descriptors for the listeners and their connections.
    #[error("{0}")]
    FdLimit(String),
    /// A node's address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
    /// More nodes than addresses left in 127.0.0.0/8 after the first one.
    #[error("{0}")]
    Addresses(String),
}

#[cfg(test)]
mod tests;
