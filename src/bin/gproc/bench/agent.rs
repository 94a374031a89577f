//! `gproc bench agent`: the node side. Reads every `/proc/<pid>/stat` and
//! `status` of this machine through 9P, N rounds with K requests in flight,
//! from `gproc agent` and from `diod -e /proc` started in the same run, and
//! prints operations per second, latency percentiles, server RSS and CPU,
//! reads per second of server CPU, and the ratios: the agent reading as a
//! user (switched to `nobody`) against the agent reading as itself, and
//! the agent against diod, in reads per second and in reads per CPU
//! second (the server's own cost, which other load on the machine moves
//! less than it moves throughput).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;

use super::{cpu_seconds, percentiles, print_table, rss_kib};
use gproc::client::{Client, ClientOptions};
use gproc::net::Address;

/// Settings of the node-side benchmark.
#[derive(Debug, Clone)]
pub struct AgentBench {
    /// Passes over every pid's two files.
    pub rounds: usize,
    /// Requests in flight.
    pub concurrency: usize,
}

struct Server {
    name: &'static str,
    child: Child,
    addr: Address,
    aname: &'static str,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_up(addr: &str) -> Result<()> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("{addr} did not come up")
}

async fn start_agent() -> Result<Server> {
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let exe = std::env::current_exe().context("cannot find the gproc binary")?;
    let child = Command::new(exe)
        .args(["agent", "--auth", "none", "--listen", &addr])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start gproc agent")?;
    wait_up(&addr).await?;
    Ok(Server {
        name: "gproc agent",
        child,
        addr: Address::Tcp(addr),
        aname: "/proc",
    })
}

async fn start_diod() -> Option<Server> {
    let diod = ["/usr/sbin/diod", "/usr/bin/diod"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let port = free_port().ok()?;
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(diod)
        .args(["-f", "-n", "-l", &addr, "-e", "/proc"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    wait_up(&addr).await.ok()?;
    Some(Server {
        name: "diod",
        child,
        addr: Address::Tcp(addr),
        aname: "/proc",
    })
}

struct Run {
    ops: usize,
    errors: usize,
    secs: f64,
    lat: Vec<Duration>,
    rss_kib: u64,
    cpu: f64,
}

/// Who the reads are made for: root (the agent's service identity, reading
/// as itself) or an ordinary user (the agent switches a thread to them).
const AS_ROOT: (&str, u32) = ("root", 0);
const AS_USER: (&str, u32) = ("nobody", 65534);

async fn run_one(
    s: &Server,
    who: (&str, u32),
    paths: &Arc<Vec<String>>,
    b: &AgentBench,
) -> Result<Run> {
    let client = Client::connect(&s.addr, ClientOptions::default()).await?;
    let root = Arc::new(client.attach(who.0, s.aname, Some(who.1)).await?);
    // Warm-up pass so both servers start with hot dentries.
    for p in paths.iter().take(50) {
        let _ = root.read_all(p).await;
    }
    let cpu0 = cpu_seconds(s.child.id());
    let start = Instant::now();
    let jobs = (0..b.rounds).flat_map(|_| (0..paths.len()).collect::<Vec<_>>());
    let results: Vec<(Duration, bool)> = futures::stream::iter(jobs)
        .map(|i| {
            let root = root.clone();
            let paths = paths.clone();
            async move {
                let t = Instant::now();
                let ok = root.read_all(&paths[i]).await.is_ok();
                (t.elapsed(), ok)
            }
        })
        .buffer_unordered(b.concurrency.max(1))
        .collect()
        .await;
    let secs = start.elapsed().as_secs_f64();
    let errors = results.iter().filter(|r| !r.1).count();
    Ok(Run {
        ops: results.len(),
        errors,
        secs,
        lat: results.into_iter().map(|r| r.0).collect(),
        rss_kib: rss_kib(s.child.id()),
        cpu: cpu_seconds(s.child.id()) - cpu0,
    })
}

/// Runs the benchmark and prints its table.
///
/// # Errors
/// The agent cannot be started or read.
pub async fn run(b: AgentBench) -> Result<()> {
    let mut paths = Vec::new();
    for e in std::fs::read_dir("/proc")?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_ok() {
            paths.push(format!("{name}/stat"));
            paths.push(format!("{name}/status"));
        }
    }
    let paths = Arc::new(paths);
    eprintln!(
        "bench agent: {} files ({} processes' stat and status) x {} rounds, {} in flight",
        paths.len(),
        paths.len() / 2,
        b.rounds,
        b.concurrency
    );
    let mut servers = vec![start_agent().await?];
    match start_diod().await {
        Some(d) => servers.push(d),
        None => eprintln!("bench agent: diod is not installed; no ratio (apt-get install diod)"),
    }
    let mut rows = Vec::new();
    let mut rates = Vec::new();
    let mut per_cpu = Vec::new();
    // The agent as its service identity, the agent as a user, then diod.
    let mut passes = vec![(&servers[0], AS_ROOT), (&servers[0], AS_USER)];
    passes.extend(servers.get(1).map(|d| (d, AS_ROOT)));
    for (s, who) in passes {
        eprintln!("bench agent: {} as {} ...", s.name, who.0);
        let r = run_one(s, who, &paths, &b).await?;
        let (p50, p99, max) = percentiles(r.lat);
        let rate = r.ops as f64 / r.secs;
        rates.push(rate);
        let eff = if r.cpu > 0.0 {
            r.ops as f64 / r.cpu
        } else {
            0.0
        };
        per_cpu.push(eff);
        rows.push(vec![
            format!("{} as {}", s.name, who.0),
            r.ops.to_string(),
            r.errors.to_string(),
            format!("{rate:.0}"),
            format!("{p50:.0}"),
            format!("{p99:.0}"),
            format!("{max:.0}"),
            format!("{:.1}", r.rss_kib as f64 / 1024.0),
            format!("{:.2}", r.cpu),
            format!("{eff:.0}"),
        ]);
    }
    println!(
        "\nWhole-file reads (walk, open, read to EOF, clunk) of /proc/<pid>/{{stat,status}}:\n"
    );
    print_table(
        &[
            "server",
            "reads",
            "errors",
            "reads/s",
            "p50 us",
            "p99 us",
            "max us",
            "RSS MiB",
            "server CPU s",
            "reads per CPU s",
        ],
        &rows,
    );
    if rates[0] > 0.0 {
        println!(
            "\nratio gproc agent as a user / as its service identity: {:.2}x reads per second",
            rates[1] / rates[0]
        );
    }
    if rates.len() == 3 && rates[2] > 0.0 {
        println!(
            "ratio gproc agent / diod (both as root): {:.2}x reads per second",
            rates[0] / rates[2]
        );
    }
    if per_cpu.len() == 3 && per_cpu[2] > 0.0 {
        println!(
            "ratio gproc agent / diod (both as root): {:.2}x reads per server CPU second",
            per_cpu[0] / per_cpu[2]
        );
    }
    Ok(())
}
