//! The text formats gproc binaries exchange, each writer beside its parser:
//!
//! - [`summary`]: the node summary file `/.gproc/ps` an agent (or the
//!   simulator) serves and the aggregator reads;
//! - [`escaped`]: the summary's escaped string fields, kept escaped;
//! - [`delta`]: what changed in a node summary since a generation the
//!   reader holds (`/.gproc/since/TOKEN`), for live refresh;
//! - [`merged`]: the merged summary a gproc aggregator serves at the same
//!   path, every node below it in one read, for the aggregator above it;
//! - [`table`]: the aggregator's `/ps`, `/load`, `/nodes` and `/jobs`
//!   tables (and a job's `nodes`) that `gproc ps`, `gproc jobs`, `gproc
//!   top`, the benchmarks and scripts read;
//! - [`rank`]: the name of a ranked excerpt of `/ps` (`/top/<query>`)
//!   and its count line;
//! - [`ctl`]: the commands written to a process's `ctl` file (signals);
//! - [`jobs`]: the batch job a process runs in, from its cgroup paths;
//! - [`gpus`]: the GPU devices a process has open, by device number.
//!
//! Pure: no I/O, no async, and nothing else of the crate, so any binary (a
//! newer or older one included) can depend on it. Each module's doc says how
//! its format may grow without breaking older readers.

pub mod ctl;
pub mod delta;
pub mod escaped;
pub mod gpus;
pub mod jobs;
pub mod merged;
pub mod rank;
pub mod summary;
pub mod table;
