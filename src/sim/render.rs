//! File contents of a simulated node, rendered on open from the compact
//! records: nothing rendered is ever stored.
//!
//! Formats follow Linux 6.1 byte for byte where tools care (`stat`'s 52
//! fields, `status`' tab-separated keys and `kB` columns, `maps`' padded
//! path column, `meminfo`'s aligned values) so that procfs parsers, `ps`
//! and the aggregator read them like real ones. Values derive from the
//! record and the tick: CPU times grow with age at the process's rate, user
//! processes' RSS grows towards 1.5 times its start value.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::format::gpus::{Gpu, Gpus};
use crate::format::jobs::JobRef;
use crate::format::summary::{Args, LoadAvg, NodeSummary, ProcEntry};

use super::model::{Arch, CpuModel, HZ, Hold, JobStep, NodeAt, NodeModel, ProcRec, Sim};
use super::tables::{Libs, Role, user_name};
use crate::sys::rng::{Rng, hash};

/// A file of a process (or of one of its threads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProcFile {
    Cmdline,
    Comm,
    Environ,
    Io,
    Maps,
    Stat,
    Statm,
    Status,
    Cgroup,
}

/// A node-wide file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeFile {
    Cpuinfo,
    Loadavg,
    Meminfo,
    Stat,
    Uptime,
    Version,
}

/// What a process's files are computed from.
pub(crate) struct ProcCtx<'a> {
    pub(crate) sim: &'a Sim,
    pub(crate) node: &'a NodeModel,
    pub(crate) p: ProcRec,
    /// Ticks since boot.
    pub(crate) now: u64,
}

/// Per-process constants that are not worth storing: derived from a hash
/// of the node, pid and start.
fn phash(ctx: &ProcCtx<'_>, salt: u64) -> u64 {
    hash(&[
        ctx.sim.opts.seed,
        u64::from(ctx.node.index),
        u64::from(ctx.p.pid),
        ctx.p.start,
        salt,
    ])
}

fn is_user_role(r: Role) -> bool {
    matches!(
        r,
        Role::Rank | Role::Short | Role::Job | Role::Shell | Role::Session
    )
}

/// Age in ticks.
pub(crate) fn age(p: &ProcRec, now: u64) -> u64 {
    now.saturating_sub(p.start)
}

/// (utime, stime) in ticks.
pub(crate) fn cpu_times(p: &ProcRec, now: u64) -> (u64, u64) {
    let total = age(p, now) * u64::from(p.cpu_milli) / 1000;
    if p.role == Role::Kernel {
        (0, total)
    } else {
        let u = total * 92 / 100;
        (u, total - u)
    }
}

/// Resident set now, KiB: user processes grow from their start size
/// towards 1.5 times it (half of the growth within an hour).
pub(crate) fn rss_kb(p: &ProcRec, now: u64) -> u64 {
    if p.hold == Hold::Zombie {
        return 0;
    }
    let base = u64::from(p.rss_kb);
    if !is_user_role(p.role) {
        return base;
    }
    let a = age(p, now);
    base + base / 2 * a / (a + 3_600 * HZ)
}

/// Virtual size, KiB (fixed for a process).
fn vsize_kb(ctx: &ProcCtx<'_>) -> u64 {
    let p = &ctx.p;
    if p.role == Role::Kernel || p.hold == Hold::Zombie {
        return 0;
    }
    let base = u64::from(p.rss_kb);
    let libs = ctx.sim.tables.cmd(p.cmd).libs;
    match libs {
        Libs::Java => base * 2 + 70_000_000,
        Libs::Mpi => base * 2 + 2_400_000 + phash(ctx, 1) % 400_000,
        _ => base * (2 + phash(ctx, 1) % 3) + 8_000 + phash(ctx, 2) % 60_000,
    }
}

/// The state letter at `now`.
pub(crate) fn state(ctx: &ProcCtx<'_>) -> char {
    let p = &ctx.p;
    match p.hold {
        Hold::None => {}
        Hold::Stopped | Hold::StoppedDying => return 'T',
        Hold::Disk => return 'D',
        Hold::Zombie => return 'Z',
    }
    if p.role == Role::Kernel {
        let comm = &ctx.sim.tables.cmd(p.cmd).comm;
        return if comm.starts_with("kworker") || comm.ends_with("wq") {
            'I'
        } else {
            'S'
        };
    }
    let second = ctx.now / HZ;
    let h = hash(&[u64::from(p.pid), p.start, second]) % 100;
    // `D` only where the model holds a process in it, so that a filter
    // on it finds exactly those.
    if u64::from(p.cpu_milli) >= 500 && h < 85 {
        'R'
    } else {
        'S'
    }
}

fn state_word(c: char) -> &'static str {
    match c {
        'R' => "R (running)",
        'D' => "D (disk sleep)",
        'I' => "I (idle)",
        'Z' => "Z (zombie)",
        'T' => "T (stopped)",
        _ => "S (sleeping)",
    }
}

fn page_kb(ctx: &ProcCtx<'_>) -> u64 {
    ctx.node.hw.page_size / 1024
}

fn tty_nr(p: &ProcRec) -> u32 {
    if p.tty == 0 {
        0
    } else {
        (136 << 8) | u32::from(p.tty - 1)
    }
}

/// `/proc/<pid>/stat` (or `task/<tid>/stat`): the 52 fields of Linux 6.1.
pub(crate) fn stat(ctx: &ProcCtx<'_>, tid: u32) -> Vec<u8> {
    let p = &ctx.p;
    let cmd = ctx.sim.tables.cmd(p.cmd);
    let st = state(ctx);
    let (mut ut, mut stt) = cpu_times(p, ctx.now);
    if tid != p.pid {
        ut /= u64::from(p.threads);
        stt /= u64::from(p.threads);
    }
    let kernel = p.role == Role::Kernel;
    let (prio, nice, rt, policy) = if cmd.comm.starts_with("migration/") {
        (-100, 0, 99, 1)
    } else if cmd.comm.contains("H-")
        || cmd.comm.ends_with("wq")
        || cmd.comm.starts_with("kworker/R")
    {
        (0, -20, 0, 0)
    } else {
        (20, 0, 0, 0)
    };
    let (pgrp, session) = match p.role {
        Role::Kernel => (0, 0),
        Role::Short | Role::Rank | Role::Job => (p.pid, p.ppid),
        _ => (p.pid, p.pid),
    };
    let tpgid: i64 = if p.tty != 0 { i64::from(p.pid) } else { -1 };
    let flags: u32 = if kernel { 0x0020_8040 } else { 0x0040_0100 };
    let a = age(p, ctx.now);
    let h = phash(ctx, 3);
    let minflt = if kernel {
        0
    } else {
        u64::from(p.rss_kb) / 4 + a / 50
    };
    let majflt = if kernel { 0 } else { h % 400 };
    let rss_pages = rss_kb(p, ctx.now) / page_kb(ctx);
    let vsize = vsize_kb(ctx) * 1024;
    let processor = (h >> 8) % u64::from(ctx.node.hw.cpus);
    let mut out = String::with_capacity(320);
    let _ = write!(
        out,
        "{tid} ({}) {st} {} {pgrp} {session} {} {tpgid} {flags} {minflt} 0 {majflt} 0 {ut} {stt} 0 0 {prio} {nice} {} 0 {} {vsize} {rss_pages} 18446744073709551615 ",
        cmd.comm,
        p.ppid,
        tty_nr(p),
        p.threads,
        p.start,
    );
    if kernel {
        out.push_str("0 0 0 0 0 0 0 2147483647 0 ");
    } else {
        let code = 0x5555_5555_0000u64 + (h & 0xff_ffff) * 4096;
        let stack = 0x7ffc_0000_0000u64 + (h >> 24 & 0xfff_ffff) * 16;
        let _ = write!(
            out,
            "{code} {} {stack} 0 0 0 0 4096 {} ",
            code + 0x2_0000 + (h & 0xfff) * 4096,
            if p.role == Role::Shell { 65_538 } else { 1_260 },
        );
    }
    let _ = write!(
        out,
        "0 0 0 17 {processor} {rt} {policy} {} 0 0 ",
        if kernel { 0 } else { h % 90 }
    );
    if kernel {
        out.push_str("0 0 0 0 0 0 0 0\n");
    } else {
        let data = 0x5555_5560_0000u64 + (h & 0xffff) * 4096;
        let brk = 0x5555_6000_0000u64 + (h & 0xf_ffff) * 4096;
        let arg = 0x7ffc_ffff_0000u64 + (h >> 20 & 0xffff) * 16;
        let argl = cmd.cmdline.len() as u64;
        let _ = writeln!(
            out,
            "{data} {} {brk} {arg} {} {} {} 0",
            data + 0x1000 + (h & 0xff) * 64,
            arg + argl,
            arg + argl,
            arg + argl + 2_000 + (h & 0x7ff),
        );
    }
    out.into_bytes()
}

fn kb(out: &mut String, key: &str, v: u64) {
    let _ = writeln!(out, "{key}:\t{v:>8} kB");
}

/// A CPU bitmap as the kernel prints it: 32-bit hex groups, most
/// significant first, the first one unpadded.
fn cpu_mask(cpus: u32) -> String {
    let mut groups = Vec::new();
    let mut left = cpus;
    while left > 0 {
        let n = left.min(32);
        groups.push(if n == 32 { u32::MAX } else { (1u32 << n) - 1 });
        left -= n;
    }
    let mut out = String::new();
    for (i, g) in groups.iter().rev().enumerate() {
        if i == 0 {
            let _ = write!(out, "{g:x}");
        } else {
            let _ = write!(out, ",{g:08x}");
        }
    }
    out
}

/// `/proc/<pid>/status`.
pub(crate) fn status(ctx: &ProcCtx<'_>, tid: u32) -> Vec<u8> {
    let p = &ctx.p;
    let cmd = ctx.sim.tables.cmd(p.cmd);
    let kernel = p.role == Role::Kernel;
    let mut o = String::with_capacity(1400);
    let _ = writeln!(o, "Name:\t{}", cmd.comm);
    let _ = writeln!(o, "Umask:\t{}", if kernel { "0000" } else { "0022" });
    let _ = writeln!(o, "State:\t{}", state_word(state(ctx)));
    let _ = writeln!(o, "Tgid:\t{}", p.pid);
    o.push_str("Ngid:\t0\n");
    let _ = writeln!(o, "Pid:\t{tid}");
    let _ = writeln!(o, "PPid:\t{}", p.ppid);
    o.push_str("TracerPid:\t0\n");
    let u = p.uid;
    let _ = writeln!(o, "Uid:\t{u}\t{u}\t{u}\t{u}");
    let _ = writeln!(o, "Gid:\t{u}\t{u}\t{u}\t{u}");
    let fds = fd_count(ctx);
    let _ = writeln!(o, "FDSize:\t{}", if fds > 64 { 256 } else { 64 });
    if u >= super::tables::FIRST_UID {
        let _ = writeln!(o, "Groups:\t100 {u} ");
    } else {
        o.push_str("Groups:\t\n");
    }
    let _ = writeln!(o, "NStgid:\t{}", p.pid);
    let _ = writeln!(o, "NSpid:\t{tid}");
    let (pgrp, sid) = match p.role {
        Role::Kernel => (0, 0),
        Role::Short | Role::Rank | Role::Job => (p.pid, p.ppid),
        _ => (p.pid, p.pid),
    };
    let _ = writeln!(o, "NSpgid:\t{pgrp}");
    let _ = writeln!(o, "NSsid:\t{sid}");
    if !kernel && p.hold != Hold::Zombie {
        let vs = vsize_kb(ctx);
        let rss = rss_kb(p, ctx.now);
        let file = (rss / 5).min(60_000);
        let shmem = if cmd.libs == Libs::Mpi { rss / 20 } else { 0 };
        let anon = rss - file - shmem;
        kb(&mut o, "VmPeak", vs + vs / 50);
        kb(&mut o, "VmSize", vs);
        kb(&mut o, "VmLck", 0);
        kb(&mut o, "VmPin", 0);
        kb(&mut o, "VmHWM", rss + rss / 40);
        kb(&mut o, "VmRSS", rss);
        kb(&mut o, "RssAnon", anon);
        kb(&mut o, "RssFile", file);
        kb(&mut o, "RssShmem", shmem);
        kb(&mut o, "VmData", vs / 2);
        kb(&mut o, "VmStk", 132);
        kb(&mut o, "VmExe", 900 + phash(ctx, 4) % 9_000);
        kb(&mut o, "VmLib", 2_000 + phash(ctx, 5) % 40_000);
        kb(&mut o, "VmPTE", 40 + rss / 500);
        kb(&mut o, "VmSwap", 0);
        kb(&mut o, "HugetlbPages", 0);
        o.push_str("CoreDumping:\t0\nTHP_enabled:\t1\n");
    }
    let _ = writeln!(o, "Threads:\t{}", p.threads);
    let _ = writeln!(
        o,
        "SigQ:\t0/{}",
        ctx.node.hw.mem_total_kb / 1024 / 4 * 3 / 2
    );
    o.push_str("SigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n");
    if kernel {
        o.push_str(
            "SigBlk:\t0000000000000000\nSigIgn:\tffffffffffffffff\nSigCgt:\t0000000000000000\n",
        );
    } else {
        o.push_str(
            "SigBlk:\t0000000000000000\nSigIgn:\t0000000000001000\nSigCgt:\t00000001800044eb\n",
        );
    }
    let caps = if u == 0 {
        "000001ffffffffff"
    } else {
        "0000000000000000"
    };
    let _ = write!(
        o,
        "CapInh:\t0000000000000000\nCapPrm:\t{caps}\nCapEff:\t{caps}\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n"
    );
    o.push_str("NoNewPrivs:\t0\nSeccomp:\t0\nSeccomp_filters:\t0\n");
    o.push_str("Speculation_Store_Bypass:\tthread vulnerable\n");
    if ctx.node.hw.arch == Arch::X86_64 {
        o.push_str("SpeculationIndirectBranch:\tconditional enabled\n");
    }
    let cpus = ctx.node.hw.cpus;
    let _ = writeln!(o, "Cpus_allowed:\t{}", cpu_mask(cpus));
    let _ = writeln!(o, "Cpus_allowed_list:\t0-{}", cpus - 1);
    let sockets = ctx.node.hw.sockets;
    let _ = writeln!(o, "Mems_allowed:\t{}", cpu_mask(sockets));
    let _ = writeln!(
        o,
        "Mems_allowed_list:\t{}",
        if sockets == 1 {
            "0".to_string()
        } else {
            format!("0-{}", sockets - 1)
        }
    );
    let a = age(p, ctx.now);
    let _ = writeln!(
        o,
        "voluntary_ctxt_switches:\t{}",
        a / 7 + phash(ctx, 6) % 100
    );
    let _ = writeln!(
        o,
        "nonvoluntary_ctxt_switches:\t{}",
        a * u64::from(p.cpu_milli) / 100_000
    );
    o.into_bytes()
}

/// `/proc/<pid>/statm`, in pages.
pub(crate) fn statm(ctx: &ProcCtx<'_>) -> Vec<u8> {
    let pk = page_kb(ctx);
    let size = vsize_kb(ctx) / pk;
    let res = rss_kb(&ctx.p, ctx.now) / pk;
    let shared = (res / 5).min(60_000 / pk);
    let text = if ctx.p.role == Role::Kernel {
        0
    } else {
        (900 + phash(ctx, 4) % 9_000) / pk
    };
    format!("{size} {res} {shared} {text} 0 {} 0\n", size / 2).into_bytes()
}

/// `/proc/<pid>/io`.
pub(crate) fn io(ctx: &ProcCtx<'_>) -> Vec<u8> {
    let a = age(&ctx.p, ctx.now);
    let busy = a * u64::from(ctx.p.cpu_milli.max(1)) / 1000;
    let h = phash(ctx, 7);
    let rchar = busy * 40_000 + h % 1_000_000;
    let wchar = busy * 9_000 + h % 300_000;
    format!(
        "rchar: {rchar}\nwchar: {wchar}\nsyscr: {}\nsyscw: {}\nread_bytes: {}\nwrite_bytes: {}\ncancelled_write_bytes: {}\n",
        rchar / 3_000 + 10,
        wchar / 2_000 + 5,
        rchar / 4096 * 512,
        wchar / 4096 * 4096,
        wchar / 4096 * 64,
    )
    .into_bytes()
}

/// `/proc/<pid>/cmdline`.
pub(crate) fn cmdline(ctx: &ProcCtx<'_>) -> Vec<u8> {
    if ctx.p.hold == Hold::Zombie {
        return Vec::new(); // its memory is gone
    }
    ctx.sim.tables.cmd(ctx.p.cmd).cmdline.to_vec()
}

/// The job and step a process runs in: its node's Slurm job, the step
/// its record says.
pub(crate) fn job(node: &NodeModel, sim: &Sim, p: &ProcRec) -> Option<JobRef> {
    let step = p.step.name()?;
    let job = &sim.jobs[node.job? as usize];
    Some(JobRef {
        id: job.id.to_string(),
        step: Some(step.to_string()),
    })
}

/// The GPUs a process holds: on a GPU node, the user processes of its
/// job's `srun` step (the ranks and what they start) hold every GPU of the
/// node (the job has the node, and the CUDA runtime opens each device it
/// is allowed); nothing else holds one.
pub(crate) fn gpus(node: &NodeModel, p: &ProcRec) -> Gpus {
    let holds = p.step == JobStep::Zero && p.uid != 0 && node.job.is_some();
    let n = if holds { node.hw.gpus } else { 0 };
    Gpus::new((0..u32::from(n)).map(Gpu::Nvidia), false)
}

/// `/proc/<pid>/cgroup` as a Slurm node has it: cgroup v2 (one `0::`
/// line) on most nodes, v1 (one line per hierarchy, Slurm's in freezer,
/// memory, devices, cpuset and cpu,cpuacct) on some. Job
/// processes are in `job_<id>/step_<step>`, user sessions in their
/// systemd session scope, daemons in `system.slice`, kernel threads at
/// the root.
pub(crate) fn cgroup(ctx: &ProcCtx<'_>) -> Vec<u8> {
    let p = &ctx.p;
    let job = job(ctx.node, ctx.sim, p);
    // A cluster half-way through its move to cgroup v2: the older
    // kernels and every third rack of 32 nodes are still on v1.
    let v1 = ctx.node.hw.old_kernel || (ctx.node.index / 32) % 3 == 1;
    let other = match p.role {
        Role::Kernel | Role::Init => "/".to_string(),
        _ if p.uid == 0 => "/system.slice".to_string(),
        _ => format!(
            "/user.slice/user-{}.slice/session-{}.scope",
            p.uid,
            u32::from(p.tty.max(1))
        ),
    };
    let task = match p.role {
        Role::Stepd => "slurm",
        _ => "user/task_0",
    };
    if !v1 {
        return match &job {
            Some(j) => format!(
                "0::/system.slice/slurmstepd.scope/job_{}/step_{}/{task}\n",
                j.id,
                j.step.as_deref().unwrap_or_default()
            ),
            None => format!("0::{other}\n"),
        }
        .into_bytes();
    }
    // Slurm's v1 tree is per job owner, slurmstepd (root) included.
    let owner = ctx.node.job.map_or(p.uid, |j| {
        super::tables::FIRST_UID + u32::from(ctx.sim.jobs[j as usize].user)
    });
    let slurm = job.as_ref().map(|j| {
        format!(
            "/slurm/uid_{owner}/job_{}/step_{}",
            j.id,
            j.step.as_deref().unwrap_or_default()
        )
    });
    let mut out = String::new();
    for (n, hierarchy, slurm_uses) in [
        (11, "pids", false),
        (10, "freezer", true),
        (9, "memory", true),
        (6, "devices", true),
        (4, "cpu,cpuacct", true),
        (3, "cpuset", true),
        (1, "name=systemd", false),
    ] {
        let path = match &slurm {
            Some(sp) if slurm_uses => sp.as_str(),
            _ if hierarchy == "name=systemd" || p.role == Role::Kernel => other.as_str(),
            _ if p.uid == 0 => "/system.slice",
            _ => "/user.slice",
        };
        out.push_str(&format!("{n}:{hierarchy}:{path}\n"));
    }
    out.push_str("0::/\n");
    out.into_bytes()
}

/// `/proc/<pid>/comm`.
pub(crate) fn comm(ctx: &ProcCtx<'_>) -> Vec<u8> {
    format!("{}\n", ctx.sim.tables.cmd(ctx.p.cmd).comm).into_bytes()
}

/// `/proc/<pid>/environ`: NUL-terminated `KEY=value` strings.
pub(crate) fn environ(ctx: &ProcCtx<'_>) -> Vec<u8> {
    let p = &ctx.p;
    let cmd = ctx.sim.tables.cmd(p.cmd);
    let mut vars: Vec<String> = Vec::new();
    match p.role {
        Role::Kernel => {}
        Role::Init => {
            vars.push("HOME=/".into());
            vars.push("init=/sbin/init".into());
            vars.push("TERM=linux".into());
            vars.push(format!("BOOT_IMAGE=/vmlinuz-{}", ctx.node.hw.kernel()));
            vars.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
            vars.push("PWD=/".into());
        }
        Role::Daemon | Role::Stepd => {
            vars.push("LANG=C.UTF-8".into());
            vars.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
            vars.push(format!(
                "INVOCATION_ID={:016x}{:016x}",
                phash(ctx, 8),
                phash(ctx, 9)
            ));
            vars.push(format!(
                "JOURNAL_STREAM=8:{}",
                20_000 + phash(ctx, 10) % 60_000
            ));
            vars.push(format!("SYSTEMD_EXEC_PID={}", p.pid));
        }
        _ => {
            let u = user_name(p.uid);
            vars.push("SHELL=/bin/bash".into());
            vars.push(format!("USER={u}"));
            vars.push(format!("LOGNAME={u}"));
            vars.push(format!("HOME=/home/{u}"));
            vars.push(format!(
                "PATH=/home/{u}/.local/bin:/opt/apps/bin:/usr/local/bin:/usr/bin:/bin"
            ));
            vars.push("LANG=en_US.UTF-8".into());
            vars.push(format!("PWD={}", cmd.cwd));
            if p.tty != 0 {
                vars.push(format!(
                    "SSH_CONNECTION=10.1.{}.{} {} 10.2.{}.{} 22",
                    phash(ctx, 11) % 4,
                    1 + phash(ctx, 12) % 250,
                    32_768 + phash(ctx, 13) % 28_000,
                    ctx.node.index / 254 % 256,
                    1 + ctx.node.index % 254,
                ));
                vars.push(format!("SSH_TTY=/dev/pts/{}", p.tty - 1));
                vars.push("TERM=xterm-256color".into());
            }
            if let Some(j) = ctx.node.job.map(|j| &ctx.sim.jobs[j as usize])
                && p.uid == super::tables::FIRST_UID + u32::from(j.user)
                && p.tty == 0
            {
                vars.push(format!("SLURM_JOB_ID={}", j.id));
                vars.push(format!("SLURM_JOB_USER={u}"));
                vars.push(format!("SLURM_JOB_NUM_NODES={}", j.nodes));
                vars.push(format!("SLURM_CPUS_ON_NODE={}", ctx.node.hw.cpus));
                vars.push(format!(
                    "OMP_NUM_THREADS={}",
                    p.threads.saturating_sub(2).max(1)
                ));
            }
        }
    }
    let mut out = Vec::new();
    for v in vars {
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Number of open file descriptors.
pub(crate) fn fd_count(ctx: &ProcCtx<'_>) -> u32 {
    if ctx.p.hold == Hold::Zombie {
        return 0;
    }
    let h = phash(ctx, 14) as u32;
    match ctx.p.role {
        Role::Kernel => 0,
        Role::Init => 60 + h % 40,
        Role::Daemon => 6 + h % 12,
        Role::Stepd => 8 + h % 8,
        Role::Session => 8 + h % 4,
        Role::Shell => 4,
        Role::Job => 5 + h % 4,
        Role::Rank => 24 + h % 40,
        Role::Short => 3 + h % 5,
    }
}

/// Where descriptor `fd` points.
pub(crate) fn fd_target(ctx: &ProcCtx<'_>, fd: u32) -> String {
    let p = &ctx.p;
    let ino = 10_000_000 + hash(&[phash(ctx, 15), u64::from(fd)]) % 90_000_000;
    let tty = (p.tty != 0).then(|| format!("/dev/pts/{}", p.tty - 1));
    match fd {
        0..=2 => match (&tty, p.role) {
            (Some(t), _) => t.clone(),
            (None, Role::Daemon) if fd > 0 => format!("socket:[{ino}]"),
            (None, Role::Rank | Role::Job) if fd > 0 => format!("pipe:[{ino}]"),
            _ => "/dev/null".into(),
        },
        3 => format!("socket:[{ino}]"),
        4 => "anon_inode:[eventpoll]".into(),
        5 if p.role == Role::Rank => "/dev/infiniband/uverbs0".into(),
        5 => "anon_inode:[eventfd]".into(),
        _ => match fd % 4 {
            0 if p.role == Role::Rank => format!("/dev/shm/psm3_shm.{}.{fd}", p.ppid),
            0 => format!("{}/output.{fd}.log", ctx.sim.tables.cmd(p.cmd).cwd),
            1 => format!("socket:[{ino}]"),
            2 => format!("pipe:[{ino}]"),
            _ => "anon_inode:[eventfd]".into(),
        },
    }
}

/// One `maps` line: the kernel pads the path to column 74.
#[allow(clippy::too_many_arguments)] // one argument per column of the line
fn map_line(
    out: &mut Vec<u8>,
    start: u64,
    end: u64,
    perms: &str,
    off: u64,
    dev: &str,
    ino: u64,
    path: &str,
) {
    let before = out.len();
    let _ = write!(
        Bytes(out),
        "{start:08x}-{end:08x} {perms} {off:08x} {dev} {ino} "
    );
    if !path.is_empty() {
        let width = out.len() - before;
        if width < 73 {
            out.resize(out.len() + 73 - width, b' ');
        }
        out.extend_from_slice(path.as_bytes());
    }
    out.push(b'\n');
}

/// `write!` into a `Vec<u8>` without going through `io::Write`.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// `/proc/<pid>/maps`; `huge` bytes of extra anonymous mappings for the
/// huge-file fault.
pub(crate) fn maps(ctx: &ProcCtx<'_>, huge: usize) -> Vec<u8> {
    let p = &ctx.p;
    if p.role == Role::Kernel || p.hold == Hold::Zombie {
        return Vec::new();
    }
    let cmd = ctx.sim.tables.cmd(p.cmd);
    let mut r = Rng::new(&[phash(ctx, 16)]);
    let mut out = Vec::with_capacity(4096 + huge);
    let exe_dev = if cmd.exe.starts_with("/opt")
        || cmd.exe.starts_with("/home")
        || cmd.exe.starts_with("/scratch")
    {
        "00:2f"
    } else {
        "fd:01"
    };
    let mut a = 0x5555_0000_0000u64 + r.below(0xfff_ffff) * 4096;
    let ino = r.range(100_000, 9_000_000);
    let mut exe_off = 0;
    for (perms, pages) in [
        ("r--p", 8),
        ("r-xp", 64 + r.below(400)),
        ("r--p", 30),
        ("r--p", 2),
        ("rw-p", 2),
    ] {
        map_line(
            &mut out,
            a,
            a + pages * 4096,
            perms,
            exe_off,
            exe_dev,
            ino,
            &cmd.exe,
        );
        a += pages * 4096;
        exe_off += pages * 4096;
    }
    let heap = a + r.range(1, 0x1000) * 4096;
    let heap_len = (u64::from(p.rss_kb) / 4).max(33) * 4096;
    map_line(
        &mut out,
        heap,
        heap + heap_len,
        "rw-p",
        0,
        "00:00",
        0,
        "[heap]",
    );
    let mut libs: Vec<&str> = Vec::new();
    let machine = if ctx.node.hw.arch == Arch::X86_64 {
        "x86_64-linux-gnu"
    } else {
        "aarch64-linux-gnu"
    };
    match cmd.libs {
        Libs::Mpi => libs.extend([
            "/opt/apps/openmpi/4.1.6/lib/libmpi.so.40.30.6",
            "/opt/apps/openmpi/4.1.6/lib/libopen-pal.so.40.30.3",
            "/opt/apps/ucx/1.15.0/lib/libucp.so.0.0.0",
            "/opt/apps/ucx/1.15.0/lib/libucs.so.0.0.0",
            "/usr/lib/{m}/libibverbs.so.1.14.44.0",
            "/usr/lib/{m}/libgomp.so.1.0.0",
            "/usr/lib/{m}/libgfortran.so.5.0.0",
        ]),
        Libs::Python => libs.extend([
            "/usr/lib/{m}/libpython3.11.so.1.0",
            "/home/{u}/.local/lib/python3.11/site-packages/torch/lib/libtorch_cpu.so",
            "/usr/lib/python3.11/lib-dynload/_ssl.cpython-311-{m}.so",
        ]),
        Libs::Java => libs.extend([
            "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so",
            "/usr/lib/jvm/java-17-openjdk-amd64/lib/libjava.so",
            "/usr/lib/jvm/java-17-openjdk-amd64/lib/modules",
        ]),
        _ => {}
    }
    libs.extend([
        "/usr/lib/{m}/libm.so.6",
        "/usr/lib/{m}/libc.so.6",
        "/usr/lib/locale/C.utf8/LC_CTYPE",
        "/usr/lib/{m}/ld-linux-x86-64.so.2",
    ]);
    let user = user_name(p.uid);
    let mut lib_a = 0x7f00_0000_0000u64 + r.below(0xff_ffff) * 4096;
    for lib in libs {
        let path = lib.replace("{m}", machine).replace("{u}", &user);
        let path = if ctx.node.hw.arch == Arch::Aarch64 {
            path.replace("ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1")
        } else {
            path
        };
        let ino = r.range(100_000, 9_000_000);
        let dev = if path.starts_with("/opt") || path.starts_with("/home") {
            "00:2f"
        } else {
            "fd:01"
        };
        let mut off = 0;
        for (perms, pages) in [
            ("r--p", 40),
            ("r-xp", 100 + r.below(800)),
            ("r--p", 50),
            ("r--p", 4),
            ("rw-p", 2),
        ] {
            map_line(
                &mut out,
                lib_a,
                lib_a + pages * 4096,
                perms,
                off,
                dev,
                ino,
                &path,
            );
            lib_a += pages * 4096;
            off += pages * 4096;
        }
        lib_a += r.range(1, 64) * 4096;
    }
    // Anonymous mappings (thread stacks, arenas) and, for the huge fault,
    // as many as it takes to reach `huge` bytes.
    let mut anon = 0x7e00_0000_0000u64 + r.below(0xff_ffff) * 4096;
    let anon_count = 4 + u64::from(p.threads) * 2;
    for _ in 0..anon_count {
        let len = r.range(1, 2048) * 4096;
        map_line(&mut out, anon, anon + len, "rw-p", 0, "00:00", 0, "");
        anon += len + 4096;
    }
    while out.len() < huge {
        let len = (r.below(255) + 1) * 4096;
        map_line(&mut out, anon, anon + len, "rw-p", 0, "00:00", 0, "");
        anon += len + 4096;
    }
    let stack = 0x7ffc_0000_0000u64 + r.below(0x3_ffff) * 4096;
    map_line(
        &mut out,
        stack,
        stack + 33 * 4096,
        "rw-p",
        0,
        "00:00",
        0,
        "[stack]",
    );
    let vvar = stack + 0x40_0000 + r.below(0xfff) * 4096;
    map_line(
        &mut out,
        vvar,
        vvar + 4 * 4096,
        "r--p",
        0,
        "00:00",
        0,
        "[vvar]",
    );
    map_line(
        &mut out,
        vvar + 4 * 4096,
        vvar + 6 * 4096,
        "r-xp",
        0,
        "00:00",
        0,
        "[vdso]",
    );
    if ctx.node.hw.arch == Arch::X86_64 {
        map_line(
            &mut out,
            0xffff_ffff_ff60_0000,
            0xffff_ffff_ff60_1000,
            "--xp",
            0,
            "00:00",
            0,
            "[vsyscall]",
        );
    }
    out
}

/// A node-wide file at the snapshot's tick.
pub(crate) fn node_file(sim: &Sim, node: &NodeModel, snap: &NodeAt, f: NodeFile) -> Vec<u8> {
    match f {
        NodeFile::Cpuinfo => cpuinfo(node),
        NodeFile::Loadavg => {
            let l = loadavg(sim, node, snap);
            format!(
                "{:.2} {:.2} {:.2} {}/{} {}\n",
                l.one, l.five, l.fifteen, l.running, l.total, snap.last_pid
            )
            .into_bytes()
        }
        NodeFile::Meminfo => meminfo(sim, node, snap),
        NodeFile::Stat => kstat(sim, node, snap),
        NodeFile::Uptime => {
            let (up, idle) = uptime(sim, node, snap);
            format!("{up:.2} {idle:.2}\n").into_bytes()
        }
        NodeFile::Version => version(node).into_bytes(),
    }
}

fn version(node: &NodeModel) -> String {
    let k = node.hw.kernel();
    let (deb, date) = if k.starts_with("5.10") {
        ("5.10.209-2", "2024-01-31")
    } else {
        ("6.1.76-1", "2024-02-01")
    };
    format!(
        "Linux version {k} (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian {deb} ({date})\n"
    )
}

fn ctx<'a>(sim: &'a Sim, node: &'a NodeModel, p: &ProcRec, now: u64) -> ProcCtx<'a> {
    ProcCtx {
        sim,
        node,
        p: *p,
        now,
    }
}

/// Sum of CPU rates of the processes, in CPUs.
fn busy_cpus(snap: &NodeAt) -> f64 {
    snap.procs
        .iter()
        .map(|p| f64::from(p.cpu_milli))
        .sum::<f64>()
        / 1000.0
}

fn loadavg(sim: &Sim, node: &NodeModel, snap: &NodeAt) -> LoadAvg {
    let busy = busy_cpus(snap);
    let minute = snap.now / (60 * HZ);
    let wobble = |k: u64, amp: f64| {
        1.0 + amp
            * (crate::sys::rng::unit(hash(&[sim.opts.seed, u64::from(node.index), minute, k]))
                - 0.5)
    };
    let running = snap
        .procs
        .iter()
        .filter(|p| state(&ctx(sim, node, p, snap.now)) == 'R')
        .map(|p| u32::from(p.threads))
        .sum::<u32>()
        .max(1);
    let total: u32 = snap.procs.iter().map(|p| u32::from(p.threads)).sum();
    let r2 = |v: f64| (v * 100.0).round() / 100.0;
    LoadAvg {
        one: r2(busy * wobble(1, 0.2)),
        five: r2(busy * wobble(5, 0.08)),
        fifteen: r2(busy * wobble(15, 0.03)),
        running,
        total,
    }
}

/// (uptime, idle) in seconds.
fn uptime(_sim: &Sim, node: &NodeModel, snap: &NodeAt) -> (f64, f64) {
    let up = snap.now as f64 / HZ as f64;
    let cpus = f64::from(node.hw.cpus);
    let idle_frac = (1.0 - busy_cpus(snap) / cpus).clamp(0.02, 1.0);
    (up, up * cpus * idle_frac)
}

struct Mem {
    total: u64,
    free: u64,
    available: u64,
    buffers: u64,
    cached: u64,
    anon: u64,
    slab: u64,
}

fn mem(sim: &Sim, node: &NodeModel, snap: &NodeAt) -> Mem {
    let total = node.hw.mem_total_kb;
    let anon: u64 = snap
        .procs
        .iter()
        .map(|p| rss_kb(p, snap.now))
        .sum::<u64>()
        .min(total * 9 / 10);
    let h = hash(&[sim.opts.seed, u64::from(node.index), 0x6d656d]);
    let cached = (total / 20 + h % (total / 8)).min(total - anon - total / 50);
    let buffers = 40_000 + h % 400_000;
    let slab = 1_500_000 + (h >> 20) % 3_000_000;
    let used = anon + cached + buffers + slab + 2_000_000;
    let free = total.saturating_sub(used).max(total / 100);
    Mem {
        total,
        free,
        available: free + cached * 8 / 10 + slab / 2,
        buffers,
        cached,
        anon,
        slab,
    }
}

fn meminfo(sim: &Sim, node: &NodeModel, snap: &NodeAt) -> Vec<u8> {
    let m = mem(sim, node, snap);
    let mut o = String::with_capacity(1600);
    let mut line = |k: &str, v: u64| {
        let _ = writeln!(o, "{:<16}{v:>8} kB", format!("{k}:"));
    };
    line("MemTotal", m.total);
    line("MemFree", m.free);
    line("MemAvailable", m.available);
    line("Buffers", m.buffers);
    line("Cached", m.cached);
    line("SwapCached", 0);
    line("Active", m.anon * 7 / 10 + m.cached / 2);
    line("Inactive", m.anon * 3 / 10 + m.cached / 2);
    line("Active(anon)", m.anon * 7 / 10);
    line("Inactive(anon)", m.anon * 3 / 10);
    line("Active(file)", m.cached / 2);
    line("Inactive(file)", m.cached / 2);
    line("Unevictable", 0);
    line("Mlocked", 0);
    line("SwapTotal", 0);
    line("SwapFree", 0);
    line("Zswap", 0);
    line("Zswapped", 0);
    line("Dirty", 1_204);
    line("Writeback", 0);
    line("AnonPages", m.anon);
    line("Mapped", m.cached / 10);
    line("Shmem", m.anon / 30);
    line("KReclaimable", m.slab / 2);
    line("Slab", m.slab);
    line("SReclaimable", m.slab / 2);
    line("SUnreclaim", m.slab - m.slab / 2);
    line("KernelStack", 40_000);
    line("PageTables", m.anon / 500);
    line("SecPageTables", 0);
    line("NFS_Unstable", 0);
    line("Bounce", 0);
    line("WritebackTmp", 0);
    line("CommitLimit", m.total / 2);
    line("Committed_AS", m.anon * 2);
    line("VmallocTotal", 34_359_738_367);
    line("VmallocUsed", 250_000);
    line("VmallocChunk", 0);
    line("Percpu", 130_000);
    line("HardwareCorrupted", 0);
    line("AnonHugePages", m.anon / 3 / 2048 * 2048);
    line("ShmemHugePages", 0);
    line("ShmemPmdMapped", 0);
    line("FileHugePages", 0);
    line("FilePmdMapped", 0);
    let _ = writeln!(o, "HugePages_Total:       0");
    let _ = writeln!(o, "HugePages_Free:        0");
    let _ = writeln!(o, "HugePages_Rsvd:        0");
    let _ = writeln!(o, "HugePages_Surp:        0");
    let mut line = |k: &str, v: u64| {
        let _ = writeln!(o, "{:<16}{v:>8} kB", format!("{k}:"));
    };
    line(
        "Hugepagesize",
        if node.hw.arch == Arch::X86_64 {
            2048
        } else {
            524_288
        },
    );
    line("Hugetlb", 0);
    if node.hw.arch == Arch::X86_64 {
        line("DirectMap4k", 1_400_000);
        line("DirectMap2M", 60_000_000);
        line("DirectMap1G", m.total - 61_400_000 + m.total % 1_048_576);
    }
    o.into_bytes()
}

fn kstat(sim: &Sim, node: &NodeModel, snap: &NodeAt) -> Vec<u8> {
    let cpus = u64::from(node.hw.cpus);
    let busy = (busy_cpus(snap) / cpus as f64).clamp(0.0, 0.98);
    let total = snap.now * cpus;
    let user = (total as f64 * busy * 0.9) as u64;
    let system = (total as f64 * busy * 0.07) as u64;
    let softirq = (total as f64 * busy * 0.01) as u64;
    let iowait = total / 500;
    let idle = total - user - system - softirq - iowait;
    let mut o = String::with_capacity(128 * (cpus as usize + 8));
    let _ = writeln!(
        o,
        "cpu  {user} 0 {system} {idle} {iowait} 0 {softirq} 0 0 0"
    );
    for c in 0..cpus {
        let h = hash(&[sim.opts.seed, u64::from(node.index), c]);
        // Share the totals, with a small per-CPU imbalance.
        let part = |v: u64, k: u64| {
            let base = v / cpus;
            let j = (h >> (k * 8) & 0xff) * base / 2560;
            base - base / 20 + j
        };
        let _ = writeln!(
            o,
            "cpu{c} {} 0 {} {} {} 0 {} 0 0 0",
            part(user, 0),
            part(system, 1),
            part(idle, 2),
            part(iowait, 3),
            part(softirq, 4)
        );
    }
    let up_s = snap.now / HZ;
    let _ = writeln!(
        o,
        "intr {} 0 9 0 0 0 0 0 0 0 0 0 0 144 0 0 0",
        up_s * cpus * 400
    );
    let _ = writeln!(o, "ctxt {}", up_s * cpus * 900);
    let _ = writeln!(o, "btime {}", boot_time(sim, node));
    let _ = writeln!(o, "processes {}", snap.forks);
    let running = snap
        .procs
        .iter()
        .filter(|p| state(&ctx(sim, node, p, snap.now)) == 'R')
        .count();
    let _ = writeln!(o, "procs_running {}", running.max(1));
    let _ = writeln!(o, "procs_blocked 0");
    let _ = writeln!(
        o,
        "softirq {} 0 {} 2 {} 0 0 {} {} 0 {}",
        up_s * cpus * 200,
        up_s * cpus * 50,
        up_s * 300,
        up_s * 80,
        up_s * cpus * 40,
        up_s * cpus * 30
    );
    o.into_bytes()
}

/// Boot time, unix seconds (`btime`).
pub(crate) fn boot_time(sim: &Sim, node: &NodeModel) -> u64 {
    (sim.clock.epoch_ms() / 10).saturating_sub(node.uptime0) / HZ
}

fn cpuinfo(node: &NodeModel) -> Vec<u8> {
    let hw = &node.hw;
    let mut o = String::with_capacity(1600 * hw.cpus as usize);
    for c in 0..hw.cpus {
        match hw.model {
            CpuModel::Altra => {
                let _ = write!(
                    o,
                    "processor\t: {c}\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n"
                );
            }
            CpuModel::Epyc | CpuModel::Xeon => {
                let epyc = hw.model == CpuModel::Epyc;
                let per_socket = hw.cpus / hw.sockets;
                let (vendor, family, model, name, stepping, mhz, cache, bogo) = if epyc {
                    (
                        "AuthenticAMD",
                        25,
                        1,
                        "AMD EPYC 7763 64-Core Processor",
                        1,
                        "2450.000",
                        "512 KB",
                        "4890.70",
                    )
                } else {
                    (
                        "GenuineIntel",
                        6,
                        85,
                        "Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz",
                        7,
                        "3000.000",
                        "36608 KB",
                        "6000.00",
                    )
                };
                let flags = if epyc {
                    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid extd_apicid aperfmperf rapl pni pclmulqdq monitor ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand lahf_lm cmp_legacy svm extapic cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw ibs skinit wdt tce topoext perfctr_core perfctr_nb bpext perfctr_llc mwaitx cpb cat_l3 cdp_l3 invpcid_single hw_pstate ssbd mba ibrs ibpb stibp vmmcall fsgsbase bmi1 avx2 smep bmi2 invpcid cqm rdt_a rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves cqm_llc cqm_occup_llc cqm_mbm_total cqm_mbm_local clzero irperf xsaveerptr rdpru wbnoinvd amd_ppin arat npt lbrv svm_lock nrip_save tsc_scale vmcb_clean flushbyasid decodeassists pausefilter pfthreshold v_vmsave_vmload vgif v_spec_ctrl umip pku ospke vaes vpclmulqdq rdpid overflow_recov succor smca"
                } else {
                    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc art arch_perfmon pebs bts rep_good nopl xtopology nonstop_tsc cpuid aperfmperf pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid dca sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm abm 3dnowprefetch cpuid_fault epb cat_l3 cdp_l3 invpcid_single intel_ppin ssbd mba ibrs ibpb stibp ibrs_enhanced tpr_shadow vnmi flexpriority ept vpid ept_ad fsgsbase tsc_adjust bmi1 hle avx2 smep bmi2 erms invpcid rtm cqm mpx rdt_a avx512f avx512dq rdseed adx smap clflushopt clwb intel_pt avx512cd avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves cqm_llc cqm_occup_llc cqm_mbm_total cqm_mbm_local dtherm ida arat pln pts pku ospke avx512_vnni md_clear flush_l1d arch_capabilities"
                };
                let _ = write!(
                    o,
                    "processor\t: {c}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\nmodel name\t: {name}\nstepping\t: {stepping}\nmicrocode\t: 0xa0011d1\ncpu MHz\t\t: {mhz}\ncache size\t: {cache}\nphysical id\t: {}\nsiblings\t: {per_socket}\ncore id\t\t: {}\ncpu cores\t: {per_socket}\napicid\t\t: {c}\ninitial apicid\t: {c}\nfpu\t\t: yes\nfpu_exception\t: yes\ncpuid level\t: 16\nwp\t\t: yes\nflags\t\t: {flags}\nbugs\t\t: sysret_ss_attrs spectre_v1 spectre_v2 spec_store_bypass srso\nbogomips\t: {bogo}\nTLB size\t: 2560 4K pages\nclflush size\t: 64\ncache_alignment\t: 64\naddress sizes\t: 48 bits physical, 48 bits virtual\npower management: ts ttp tm hwpstate cpb eff_freq_ro [13] [14]\n\n",
                    c / per_socket,
                    c % per_socket,
                );
            }
        }
    }
    o.into_bytes()
}

/// The node summary (`/.gproc/ps`) of a snapshot, in the agent's format.
pub(crate) fn summary(sim: &Sim, node: &NodeModel, snap: &NodeAt, hostname: String) -> NodeSummary {
    let m = mem(sim, node, snap);
    let (up, idle) = uptime(sim, node, snap);
    let procs = snap
        .procs
        .iter()
        .map(|p| {
            let c = ctx(sim, node, p, snap.now);
            let cmd = sim.tables.cmd(p.cmd);
            let (utime, stime) = cpu_times(p, snap.now);
            ProcEntry {
                pid: p.pid as i32,
                ppid: p.ppid as i32,
                ruid: p.uid,
                euid: p.uid,
                user: user_name(p.uid).into(),
                state: state(&c),
                utime,
                stime,
                rss_pages: rss_kb(p, snap.now) / page_kb(&c),
                vsize: vsize_kb(&c) * 1024,
                start_ticks: p.start,
                threads: i64::from(p.threads),
                comm: cmd.summary.0.clone(),
                // A zombie's memory is gone: no arguments (`cmdline`).
                cmdline: if p.hold == Hold::Zombie {
                    Args::default()
                } else {
                    cmd.summary.1.clone()
                },
                job: job(node, sim, p).map(Arc::new),
                gpus: Some(Arc::new(gpus(node, p))),
            }
        })
        .collect();
    NodeSummary {
        hostname,
        arch: node.hw.arch.name().to_string(),
        kernel: node.hw.kernel().to_string(),
        boot_time: boot_time(sim, node),
        clk_tck: HZ,
        page_size: node.hw.page_size,
        uptime: up,
        idle: (idle * 100.0).round() / 100.0,
        time: sim.clock.unix_at(snap.ticks),
        cpus: node.hw.cpus,
        mem_total_kb: m.total,
        mem_free_kb: m.free,
        mem_available_kb: Some(m.available),
        loadavg: loadavg(sim, node, snap),
        procs,
        // The simulated node resolves `<pid>.<start>` (see `fs`).
        pinned_walk: true,
        // Its `open` serves the file as `Contents::Fresh`.
        fresh_at_zero: true,
    }
}
