//! `gproc demo`: a simulated cluster, an aggregator over it, a first look
//! at the cluster's processes, and the commands to try, in one command
//! with no configuration.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use gproc::aggregator::Aggregator;
use gproc::config::Config;
use gproc::format::table::{LoadRow, NodeRow, PsRow, Table};
use gproc::net::Address;
use gproc::server::listener::shutdown_on_signals;
use gproc::sim::{SimCluster, SimOptions};

/// Options of `gproc demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Simulated nodes.
    #[arg(long, default_value_t = 300)]
    nodes: usize,
    /// Processes per node.
    #[arg(long, default_value_t = 100)]
    procs_per_node: usize,
    /// Where the aggregator serves 9P over TCP (loopback).
    #[arg(long, default_value = "127.0.0.1:5640", value_parser = super::agent::parse_addr)]
    listen: Address,
    /// The aggregator's Unix socket.
    #[arg(long, default_value = "/tmp/gproc-demo.sock")]
    socket: String,
    /// Print the summary and exit instead of serving (for scripts).
    #[arg(long)]
    once: bool,
    /// Split the nodes across this many rack aggregators (each on its own
    /// loopback port) under the top one that serves `--listen`: a
    /// two-level site in one command.
    #[arg(long, default_value_t = 0)]
    racks: usize,
}

/// Starts `racks` rack aggregators over slices of `nodes` (name, address),
/// each on 127.0.0.1 with a port of its own; returns them and the top's
/// `[[nodes]]` tables for them.
async fn start_racks(
    nodes: &[(String, String)],
    racks: usize,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<(Vec<Aggregator>, String)> {
    let per = nodes.len().div_ceil(racks.max(1)).max(1);
    let mut started = Vec::new();
    let mut top = String::new();
    for (k, chunk) in nodes.chunks(per).enumerate() {
        let name = format!("rack{}", k + 1);
        let mut text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nauth = \"none\"\nname = \"{name}\"\n\n\
             [pool]\ndeadline = \"2s\"\nrequest_timeout = \"2s\"\nconnect_timeout = \"1s\"\nconnect = \"eager\"\n\n\
             [views]\nmode = \"off\"\n\n"
        );
        for (n, a) in chunk {
            text.push_str(&format!(
                "[[nodes]]\nnames = \"{n}\"\naddress = \"{a}\"\n\n"
            ));
        }
        let cfg = Config::from_str(&text, &name).map_err(|e| anyhow::anyhow!("{e}"))?;
        let agg = Aggregator::start(&cfg, shutdown.clone())
            .await
            .with_context(|| format!("cannot start {name}"))?;
        let addr = agg
            .addresses
            .first()
            .map(ToString::to_string)
            .context("a rack without an address")?;
        top.push_str(&format!(
            "[[nodes]]\nnames = \"{name}\"\naddress = \"{addr}\"\naname = \"\"\n\n"
        ));
        started.push(agg);
    }
    Ok((started, top))
}

/// Runs the demo until Ctrl-C.
pub async fn run(a: DemoArgs) -> Result<ExitCode> {
    let t0 = Instant::now();
    let shutdown = shutdown_on_signals();
    eprintln!(
        "gproc demo: starting {} simulated nodes ({} processes each) on 127.1.x.y ...",
        a.nodes, a.procs_per_node
    );
    // A cluster of a few hundred nodes with a couple that refuse
    // connections, so the node list shows what a down node looks like.
    let opts = SimOptions {
        nodes: a.nodes,
        procs_per_node: a.procs_per_node,
        churn_per_min: 6.0,
        refuse: if a.nodes >= 50 { 0.01 } else { 0.0 },
        base_port: 0,
        ..SimOptions::default()
    };
    let sim = SimCluster::start(opts)
        .await
        .context("cannot start the simulated cluster")?;
    let (racks, nodes) = if a.racks > 0 {
        let list: Vec<(String, String)> = sim
            .nodes()
            .iter()
            .map(|n| (n.name.clone(), n.addr.to_string()))
            .collect();
        let (racks, top) = start_racks(&list, a.racks, &shutdown).await?;
        eprintln!(
            "gproc demo: {} rack aggregators over {} nodes each ({:.1?} so far)",
            racks.len(),
            list.len().div_ceil(a.racks),
            t0.elapsed()
        );
        (racks, top)
    } else {
        (Vec::new(), sim.config_toml())
    };
    let config = format!(
        "[server]\nlisten = [\"{}\", \"unix:{}\"]\n# Loopback only: clients are trusted to say who they are.\nauth = \"none\"\n\n\
         [pool]\ndeadline = \"3s\"\nrequest_timeout = \"3s\"\nconnect_timeout = \"1s\"\nconnect = \"eager\"\n\n\
         # Simulated processes belong to made-up users: whoever runs the demo\n\
         # sees them all.\n[views]\nmode = \"off\"\n\n{}",
        a.listen, a.socket, nodes
    );
    let cfg = Config::from_str(&config, "demo").map_err(|e| anyhow::anyhow!("{e}"))?;
    // Views are off in the demo: say so when --listen leaves loopback.
    for w in &cfg.warnings {
        eprintln!("gproc demo: {w}");
    }
    let agg = Aggregator::start(&cfg, shutdown.clone()).await?;
    let tcp = agg.addresses.first().cloned().unwrap_or(a.listen.clone());
    eprintln!(
        "gproc demo: aggregator serving on {} and unix:{} ({:.1?} so far)",
        tcp,
        a.socket,
        t0.elapsed()
    );

    // Ctrl-C while the first summary is still being read stops the demo
    // cleanly instead of failing the read of a server that is going away.
    tokio::select! {
        biased;
        () = shutdown.cancelled() => {}
        r = first_look(&tcp, &a.socket, t0) => {
            // The interrupt closes the server first: a read that failed
            // because of it is the interrupt, not an error.
            if let Err(e) = r
                && !shutdown.is_cancelled()
            {
                return Err(e);
            }
        }
    }
    if a.once {
        shutdown.cancel();
    }
    shutdown.cancelled().await;
    eprintln!("gproc demo: stopping");
    let _ = agg.task.await;
    for r in racks {
        let _ = r.task.await;
    }
    sim.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Reads the first cluster-wide tables and prints the summary and the
/// commands to try.
async fn first_look(tcp: &Address, socket: &str, t0: Instant) -> Result<()> {
    let ps = super::ps::read_aggregator_file(tcp, "ps", Duration::from_secs(30)).await?;
    let load = super::ps::read_aggregator_file(tcp, "load", Duration::from_secs(30)).await?;
    let nodes = super::ps::read_aggregator_file(tcp, "nodes", Duration::from_secs(30)).await?;
    print_summary(
        &String::from_utf8_lossy(&ps),
        &String::from_utf8_lossy(&load),
        &String::from_utf8_lossy(&nodes),
    );
    eprintln!(
        "(first cluster-wide ps after {:.1?} from start)",
        t0.elapsed()
    );

    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "gproc".into());
    println!(
        "\nThe aggregator keeps serving. Try, in another terminal:\n\
         \n  {exe} ps --server {tcp} --sort -cpu | head\
         \n  {exe} ps --server {tcp} -u alice -n sim[0001-0010]\
         \n  {exe} ls --server {tcp} /\
         \n  {exe} cat --server {tcp} nodes load\
         \n  {exe} cat --server {tcp} sim0001/1/status\
         \n  {exe} ls -l --server unix:{sock} /sim0002/1\
         \n\nOn a machine with the v9fs module (as root):\
         \n  mount -t 9p -o trans=tcp,port={port},version=9p2000.L,cache=none,access=any 127.0.0.1 /mnt\
         \n\nCtrl-C stops it.",
        sock = socket,
        port = match &tcp {
            Address::Tcp(s) => s.rsplit(':').next().unwrap_or("5640").to_string(),
            Address::Unix(_) | Address::Inherited(_) => "5640".into(),
        },
    );
    Ok(())
}

fn print_summary(ps: &str, load: &str, nodes: &str) {
    // The aggregator wrote these: a text that is not a table counts as empty.
    let ps = Table::<PsRow>::parse(ps).unwrap_or_default();
    let load = Table::<LoadRow>::parse(load).unwrap_or_default();
    let nodes = Table::<NodeRow>::parse(nodes).unwrap_or_default();
    let mut rows = ps.rows;
    let up = nodes.rows.iter().filter(|n| n.is_up()).count();
    let total_nodes = nodes.rows.len();
    println!(
        "\n{} processes on {up} of {total_nodes} nodes\n",
        rows.len()
    );
    rows.sort_by(|a, b| b.cpu.total_cmp(&a.cpu));
    println!("Top processes by CPU:");
    println!(
        "{:<8} {:<8} {:>7} {:>5} {:>5} {:>9}  COMMAND",
        "NODE", "USER", "PID", "%CPU", "%MEM", "RSS"
    );
    for r in rows.iter().take(10) {
        let cmd: String = r.command.chars().take(60).collect();
        println!(
            "{:<8} {:<8} {:>7} {:>5.1} {:>5.1} {:>9}  {cmd}",
            r.node, r.user, r.pid, r.cpu, r.mem, r.rss_kb
        );
    }
    let mut loads: Vec<&LoadRow> = load.rows.iter().collect();
    loads.sort_by(|a, b| b.load[0].total_cmp(&a.load[0]));
    println!("\nBusiest nodes (load1, cpus):");
    for l in loads.iter().take(5) {
        println!("  {:<10} {:>6.2} {:>4}", l.node, l.load[0], l.cpus);
    }
    let down: Vec<&NodeRow> = nodes.rows.iter().filter(|n| n.is_down()).collect();
    if !down.is_empty() {
        println!("\nDown nodes:");
        for n in down {
            println!("  {} {}", n.node, n.error.as_deref().unwrap_or("-"));
        }
    }
    for n in &ps.notes {
        println!("  {n}");
    }
}
