//! The `gproc` command line: clap definitions and the glue that calls the
//! library. Each subcommand lives in its own module.

mod agent;
#[cfg(feature = "bench")]
mod bench;
mod demo;
mod docs;
mod forest;
mod inspect;
mod jobs;
mod kill;
#[cfg(feature = "fuse")]
mod mount;
mod ps;
mod serve;
mod sim;
mod top;

use std::process::ExitCode;

#[cfg(not(all(feature = "fuse", feature = "bench")))]
use clap::Args;
use clap::{Parser, Subcommand};

/// A cluster-wide /proc over 9P.
#[derive(Debug, Parser)]
#[command(name = "gproc", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve this node's /proc over 9P (the node agent).
    Agent(agent::AgentArgs),
    /// List a directory of a 9P server's tree, like ls.
    Ls(inspect::LsArgs),
    /// Print files of a 9P server's tree, like cat.
    Cat(inspect::CatArgs),
    /// Describe files of a 9P server's tree, like stat(1).
    Stat(inspect::StatArgs),
    /// Run the aggregator: merge every node's /proc into one 9P tree.
    Serve(serve::ServeArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(serve::ConfigCmd),
    /// The cluster's processes, like `ps aux` with a NODE column.
    Ps(ps::PsArgs),
    /// The cluster's batch jobs: users, processes, nodes and sums per job.
    Jobs(jobs::JobsArgs),
    /// Signal the processes a selection picks (default TERM), through the
    /// aggregator's ctl files: lists them, asks, reports each.
    Kill(kill::KillArgs),
    /// Send a signal (a name or number) to the processes a selection
    /// picks, like kill.
    Signal(kill::SignalArgs),
    /// Mount a 9P server's tree (aggregator, agent, diod) read-only with FUSE.
    #[cfg(feature = "fuse")]
    Mount(mount::MountArgs),
    /// Not in this build: `gproc mount` needs the `fuse` feature.
    #[cfg(not(feature = "fuse"))]
    Mount(Absent),
    /// Host many synthetic nodes, each a 9P server on its own loopback address.
    Sim(sim::SimArgs),
    /// A simulated cluster with an aggregator over it, in one command.
    Demo(demo::DemoArgs),
    /// A live view of the cluster: nodes, totals, top processes, jobs.
    Top(top::TopArgs),
    /// Write the manual pages (gproc.1, gproc-ps.1, ...) into a directory.
    Man(docs::ManArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(docs::CompletionsArgs),
    /// Benchmarks (the tables of BENCHMARKS.md).
    #[cfg(feature = "bench")]
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Not in this build: `gproc bench` needs the `bench` feature.
    #[cfg(not(feature = "bench"))]
    Bench(Absent),
}

/// The arguments of a subcommand left out of this build (a cargo feature
/// was off): taken whatever they are, so the user is told which feature
/// is missing rather than that the subcommand does not exist.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
#[cfg(not(all(feature = "fuse", feature = "bench")))]
struct Absent {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _args: Vec<String>,
}

/// The error for a subcommand whose cargo feature was off at build time.
#[cfg(not(all(feature = "fuse", feature = "bench")))]
fn absent(cmd: &str, feature: &str) -> anyhow::Result<ExitCode> {
    anyhow::bail!(
        "`gproc {cmd}` is not in this build: it needs the cargo feature `{feature}` \
         (on by default; this binary was built without it)"
    )
}

/// Entry point of the `gproc` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo talks to a person: its own lines, and only warnings from
    // the servers it runs (RUST_LOG still chooses).
    init_logging(if matches!(cli.cmd, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    });
    let rt = match runtime(&cli.cmd) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gproc: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(async {
        match cli.cmd {
            Command::Agent(a) => agent::run(a).await,
            Command::Ls(a) => inspect::run_ls(a).await,
            Command::Cat(a) => inspect::run_cat(a).await,
            Command::Stat(a) => inspect::run_stat(a).await,
            Command::Serve(a) => serve::run(a).await,
            Command::Config(c) => serve::run_config(c),
            Command::Ps(a) => ps::run(a).await,
            Command::Jobs(a) => jobs::run(a).await,
            Command::Kill(a) => kill::kill(a).await,
            Command::Signal(a) => kill::signal(a).await,
            #[cfg(feature = "bench")]
            Command::Bench(c) => bench::run(c).await,
            #[cfg(not(feature = "bench"))]
            Command::Bench(_) => absent("bench", "bench"),
            Command::Sim(a) => sim::run(a).await,
            Command::Demo(a) => demo::run(a).await,
            #[cfg(feature = "fuse")]
            Command::Mount(a) => mount::run(a).await,
            #[cfg(not(feature = "fuse"))]
            Command::Mount(_) => absent("mount", "fuse"),
            Command::Top(a) => top::run(a).await,
            Command::Man(a) => docs::run_man(a),
            Command::Completions(a) => docs::run_completions(a),
        }
    });
    match res {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS; // `gproc ... | head` is not an error
            }
            // Errors can quote what a server sent (a 9P2000 error string).
            eprintln!(
                "gproc: {}",
                gproc::format::table::printable(&format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

/// The runtime `cmd` runs on. A client (`ps`, `cat`, `top`, `mount`,
/// ...) waits on one server at a time and the agent serves one node: one
/// worker does their work, and more only add thread switches to every
/// request (see [`gproc::sys::NODES_PER_WORKER`]). The aggregator and the
/// simulator get one worker per that many nodes, or what they are told;
/// the benchmarks and the demo, which host both, one per core.
fn runtime(cmd: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = match cmd {
        Command::Agent(a) => Some(usize::from(a.threads)),
        Command::Serve(a) => Some(a.worker_threads()),
        Command::Sim(a) => Some(a.worker_threads()),
        Command::Bench(_) | Command::Demo(_) => None,
        _ => Some(1),
    };
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        b.worker_threads(n.max(1));
    }
    b.enable_all().build()
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Logs to stderr; `RUST_LOG` selects the level (default `default`).
/// Colours only on a terminal: journald and log files get plain text, so
/// the audit records (`gproc::audit`) can be searched as written.
fn init_logging(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// A lean build (`cargo test --no-default-features --bin gproc`, run by
/// CI): the left-out subcommands take any arguments and say which feature
/// they need.
#[cfg(all(test, not(all(feature = "fuse", feature = "bench"))))]
mod tests {
    use super::*;

    #[test]
    fn absent_subcommands_name_their_feature() {
        #[cfg(not(feature = "fuse"))]
        {
            let cli = Cli::try_parse_from(["gproc", "mount", "-f", "--ttl", "2s", "h:1", "/mnt"])
                .expect("any arguments are taken");
            assert!(matches!(cli.cmd, Command::Mount(_)));
            let e = absent("mount", "fuse").unwrap_err().to_string();
            assert!(e.contains("`gproc mount`") && e.contains("`fuse`"), "{e}");
        }
        #[cfg(not(feature = "bench"))]
        {
            let cli = Cli::try_parse_from(["gproc", "bench", "faults", "--nodes", "3"])
                .expect("any arguments are taken");
            assert!(matches!(cli.cmd, Command::Bench(_)));
        }
    }
}
