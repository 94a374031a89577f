//! The cluster-wide tables a simulated process points into: accounts,
//! kernel thread names, daemons, applications and interactive commands.
//!
//! A process record holds only an index into [`Tables::cmds`], so the
//! (sometimes kilobyte-long) command lines exist once per cluster, not once
//! per process. The entries are chosen to exercise what real clusters throw
//! at a `/proc` reader: kernel threads with empty command lines and long
//! `kworker` names, `setproctitle` titles padded with NULs, arguments with
//! spaces, quotes, backslashes and non-ASCII text, a `comm` containing
//! `") ("`, and command lines over 1 KiB.

use crate::format::escaped::{Args, Escaped};
use std::fmt::Write as _;

/// First uid of the simulated users.
pub(crate) const FIRST_UID: u32 = 1000;

/// Simulated users; user `i` has uid and gid `FIRST_UID + i`.
pub(crate) const USERS: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yvonne",
];

/// System accounts the daemons run as: (uid, name).
const SYSTEM_USERS: &[(u32, &str)] = &[
    (0, "root"),
    (104, "messagebus"),
    (105, "_chrony"),
    (107, "_rpc"),
    (108, "nslcd"),
    (995, "nvidia-persistenced"),
    (996, "munge"),
    (997, "polkitd"),
    (64030, "slurm"),
    (65534, "nobody"),
];

/// The account name of a uid, as the node's password database would give
/// it (the number itself when unknown, as `ps` prints it).
pub(crate) fn user_name(uid: u32) -> String {
    if let Some(i) = uid.checked_sub(FIRST_UID)
        && let Some(u) = USERS.get(i as usize)
    {
        return (*u).to_string();
    }
    SYSTEM_USERS
        .iter()
        .find(|(id, _)| *id == uid)
        .map(|(_, n)| (*n).to_string())
        .unwrap_or_else(|| uid.to_string())
}

/// What a process is in the simulated tree: decides its state, resources,
/// files and whether churn may end it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A kernel thread: empty cmdline, no memory, no exe.
    Kernel,
    /// pid 1.
    Init,
    /// A system daemon, child of pid 1.
    Daemon,
    /// A root helper in a user's tree (`slurmstepd`, `sshd: u [priv]`).
    Stepd,
    /// A user's `sshd: user@pts/N`.
    Session,
    /// A user's shell: new short commands start under it.
    Shell,
    /// A long-running part of a job (`srun`, the extern step's `sleep`).
    Job,
    /// An application process (an MPI rank, a threaded program).
    Rank,
    /// A short command in a shell: the only processes churn ends.
    Short,
}

/// Which shared libraries a process maps, for `maps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Libs {
    /// Kernel thread: no mappings.
    None,
    /// libc and the loader.
    Base,
    /// An MPI program: libmpi, UCX, verbs, OpenMP, Fortran runtime.
    Mpi,
    /// Python with its native extensions.
    Python,
    /// A JVM.
    Java,
}

/// One command: what `comm`, `cmdline`, `exe` and `cwd` show.
#[derive(Debug)]
pub(crate) struct Cmd {
    /// `comm` (up to 15 bytes, longer only for kworkers, as the kernel does).
    pub(crate) comm: Box<str>,
    /// `/proc/<pid>/cmdline` bytes: NUL-terminated arguments, empty for
    /// kernel threads, NUL-padded for `setproctitle` titles.
    pub(crate) cmdline: Box<[u8]>,
    /// Target of `exe`; empty for kernel threads (readlink fails).
    pub(crate) exe: Box<str>,
    /// Target of `cwd`.
    pub(crate) cwd: Box<str>,
    /// Libraries for `maps`.
    pub(crate) libs: Libs,
    /// `comm` and the arguments as a summary carries them (escaped once,
    /// shared by every process running the command).
    pub(crate) summary: (Escaped, Args),
}

/// A system daemon: a child of pid 1 on every node.
pub(crate) struct DaemonSpec {
    comm: &'static str,
    exe: &'static str,
    argv: &'static [&'static str],
    /// Account it runs as.
    pub(crate) uid: u32,
    /// Threads.
    pub(crate) threads: u16,
    /// Resident set, KiB.
    pub(crate) rss_kb: u32,
    /// Average CPU use, thousandths of a CPU.
    pub(crate) cpu_milli: u32,
}

/// Daemons in start (and so pid) order. The agent must be among them: the
/// node's `self` link points at it, as it does on a node running gproc.
pub(crate) const DAEMONS: &[DaemonSpec] = &[
    d(
        "systemd-journal",
        "/usr/lib/systemd/systemd-journald",
        &["/lib/systemd/systemd-journald"],
        0,
        1,
        34_000,
        3,
    ),
    d(
        "systemd-udevd",
        "/usr/lib/systemd/systemd-udevd",
        &["/lib/systemd/systemd-udevd"],
        0,
        1,
        9_000,
        0,
    ),
    d(
        "slurmd",
        "/usr/sbin/slurmd",
        &["/usr/sbin/slurmd", "--systemd"],
        0,
        3,
        12_400,
        2,
    ),
    d(
        "munged",
        "/usr/sbin/munged",
        &["/usr/sbin/munged", "--num-threads", "10"],
        996,
        11,
        3_900,
        1,
    ),
    d(
        "sshd",
        "/usr/sbin/sshd",
        &["sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"],
        0,
        1,
        8_200,
        0,
    ),
    d(
        "gproc",
        "/usr/local/bin/gproc",
        &["/usr/local/bin/gproc", "agent", "--listen", "0.0.0.0:5640"],
        0,
        9,
        14_000,
        4,
    ),
    d(
        "chronyd",
        "/usr/sbin/chronyd",
        &["/usr/sbin/chronyd", "-F", "1"],
        105,
        1,
        3_300,
        0,
    ),
    d(
        "rsyslogd",
        "/usr/sbin/rsyslogd",
        &["/usr/sbin/rsyslogd", "-n", "-iNONE"],
        0,
        4,
        5_600,
        1,
    ),
    d(
        "dbus-daemon",
        "/usr/bin/dbus-daemon",
        &[
            "/usr/bin/dbus-daemon",
            "--system",
            "--address=systemd:",
            "--nofork",
            "--nopidfile",
            "--systemd-activation",
            "--syslog-only",
        ],
        104,
        1,
        5_100,
        0,
    ),
    d(
        "systemd-logind",
        "/usr/lib/systemd/systemd-logind",
        &["/lib/systemd/systemd-logind"],
        0,
        1,
        7_800,
        0,
    ),
    d(
        "cron",
        "/usr/sbin/cron",
        &["/usr/sbin/cron", "-f"],
        0,
        1,
        2_700,
        0,
    ),
    d(
        "nslcd",
        "/usr/sbin/nslcd",
        &["/usr/sbin/nslcd"],
        108,
        6,
        3_100,
        0,
    ),
    d(
        "rpcbind",
        "/usr/sbin/rpcbind",
        &["/sbin/rpcbind", "-f", "-w"],
        107,
        1,
        3_600,
        0,
    ),
    d(
        "auditd",
        "/usr/sbin/auditd",
        &["/sbin/auditd"],
        0,
        2,
        2_900,
        0,
    ),
    d(
        "polkitd",
        "/usr/libexec/polkitd",
        &["/usr/libexec/polkitd", "--no-debug"],
        997,
        3,
        9_300,
        0,
    ),
    d(
        "node_exporter",
        "/usr/local/bin/node_exporter",
        &[
            "/usr/local/bin/node_exporter",
            "--collector.systemd",
            "--web.listen-address=:9100",
        ],
        65534,
        8,
        21_000,
        6,
    ),
    d(
        "nvidia-persiste",
        "/usr/bin/nvidia-persistenced",
        &[
            "/usr/bin/nvidia-persistenced",
            "--user",
            "nvidia-persistenced",
        ],
        995,
        1,
        1_900,
        0,
    ),
    d(
        "agetty",
        "/usr/sbin/agetty",
        &["/sbin/agetty", "-o", "-p -- \\u", "--noclear", "-", "linux"],
        0,
        1,
        1_800,
        0,
    ),
];

/// The index of the agent in [`DAEMONS`].
pub(crate) const AGENT_DAEMON: usize = 5;

#[allow(clippy::too_many_arguments)]
const fn d(
    comm: &'static str,
    exe: &'static str,
    argv: &'static [&'static str],
    uid: u32,
    threads: u16,
    rss_kb: u32,
    cpu_milli: u32,
) -> DaemonSpec {
    DaemonSpec {
        comm,
        exe,
        argv,
        uid,
        threads,
        rss_kb,
        cpu_milli,
    }
}

/// An application a job runs. Placeholders in strings: `{user}`, `{home}`,
/// `{scratch}`; an argument that is exactly `{classpath}` becomes a long
/// Java class path.
pub(crate) struct AppSpec {
    comm: &'static str,
    exe: &'static str,
    argv: &'static [&'static str],
    cwd: &'static str,
    /// Resident set per process, MiB.
    pub(crate) rss_mb: u32,
    /// Threads per process (OpenMP, JVM, PyTorch pools).
    pub(crate) threads: u16,
    /// MPI: one process per rank, many per node; otherwise one per node.
    pub(crate) mpi: bool,
    libs: Libs,
}

/// Applications of batch jobs.
pub(crate) const APPS: &[AppSpec] = &[
    AppSpec {
        comm: "lmp_mpi",
        exe: "/opt/apps/lammps/2Aug2023/bin/lmp_mpi",
        argv: &[
            "/opt/apps/lammps/2Aug2023/bin/lmp_mpi",
            "-in",
            "in.lj",
            "-var",
            "x",
            "8",
            "-var",
            "y",
            "8",
            "-var",
            "z",
            "8",
            "-sf",
            "omp",
            "-pk",
            "omp",
            "4",
            "-log",
            "{scratch}/lj/log.lammps",
        ],
        cwd: "{scratch}/lj",
        rss_mb: 900,
        threads: 4,
        mpi: true,
        libs: Libs::Mpi,
    },
    AppSpec {
        comm: "gmx_mpi",
        exe: "/opt/apps/gromacs/2023.3/bin/gmx_mpi",
        argv: &[
            "gmx_mpi", "mdrun", "-deffnm", "md_0_1", "-ntomp", "8", "-pin", "on", "-maxh", "23.5",
        ],
        cwd: "{scratch}/lysozyme",
        rss_mb: 600,
        threads: 8,
        mpi: true,
        libs: Libs::Mpi,
    },
    AppSpec {
        comm: "wrf.exe",
        exe: "{scratch}/WRF/run/wrf.exe",
        argv: &["./wrf.exe"],
        cwd: "{scratch}/WRF/run",
        rss_mb: 2500,
        threads: 1,
        mpi: true,
        libs: Libs::Mpi,
    },
    AppSpec {
        comm: "vasp_std",
        exe: "/opt/apps/vasp/6.4.2/bin/vasp_std",
        argv: &["vasp_std"],
        cwd: "{scratch}/Si 2x2x2 relax",
        rss_mb: 3800,
        threads: 2,
        mpi: true,
        libs: Libs::Mpi,
    },
    AppSpec {
        comm: "simpleFoam",
        exe: "/opt/openfoam11/platforms/linux64GccDPInt32Opt/bin/simpleFoam",
        argv: &["simpleFoam", "-parallel", "-case", "{scratch}/motorBike"],
        cwd: "{scratch}/motorBike",
        rss_mb: 700,
        threads: 1,
        mpi: true,
        libs: Libs::Mpi,
    },
    AppSpec {
        comm: "xhpl",
        exe: "{home}/hpl-2.3/bin/Linux/xhpl",
        argv: &["./xhpl"],
        cwd: "{home}/hpl-2.3/bin/Linux",
        rss_mb: 7000,
        threads: 1,
        mpi: true,
        libs: Libs::Mpi,
    },
    AppSpec {
        comm: "python3",
        exe: "/usr/bin/python3.11",
        argv: &[
            "python3",
            "{home}/projects/résumé-classifier/train.py",
            "--epochs",
            "300",
            "--lr",
            "3e-4",
            "--data",
            "{scratch}/datasets/imagenet",
            "--name",
            "run 17 (α=0.5, β=2)",
        ],
        cwd: "{home}/projects/résumé-classifier",
        rss_mb: 12_000,
        threads: 16,
        mpi: false,
        libs: Libs::Python,
    },
    AppSpec {
        comm: "java",
        exe: "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
        argv: &[
            "java",
            "-Xms4g",
            "-Xmx64g",
            "-XX:+UseG1GC",
            "-Dspark.master=local[*]",
            "-cp",
            "{classpath}",
            "org.apache.spark.deploy.SparkSubmit",
            "--class",
            "com.example.Etl",
            "{home}/etl-assembly-1.4.jar",
            "--input",
            "{scratch}/logs/2024-*.parquet",
        ],
        cwd: "{home}",
        rss_mb: 30_000,
        threads: 48,
        mpi: false,
        libs: Libs::Java,
    },
    AppSpec {
        comm: "R",
        exe: "/usr/lib/R/bin/exec/R",
        argv: &[
            "/usr/lib/R/bin/exec/R",
            "--no-echo",
            "--no-restore",
            "--file=simulate.R",
            "--args",
            "100000",
        ],
        cwd: "{home}/stats",
        rss_mb: 2000,
        threads: 1,
        mpi: false,
        libs: Libs::Base,
    },
    AppSpec {
        comm: "MATLAB",
        exe: "/opt/matlab/R2023b/bin/glnxa64/MATLAB",
        argv: &[
            "/opt/matlab/R2023b/bin/glnxa64/MATLAB",
            "-nodisplay",
            "-nosplash",
            "-batch",
            "run('{home}/Experiment 3/main.m')",
        ],
        cwd: "{home}/Experiment 3",
        rss_mb: 4000,
        threads: 12,
        mpi: false,
        libs: Libs::Base,
    },
    AppSpec {
        comm: "julia",
        exe: "/opt/julia-1.10.0/bin/julia",
        argv: &[
            "julia",
            "-t",
            "16",
            "--project={home}/Sim.jl",
            "run.jl",
            "--steps=1_000_000",
        ],
        cwd: "{home}/Sim.jl",
        rss_mb: 3000,
        threads: 16,
        mpi: false,
        libs: Libs::Base,
    },
];

/// A short interactive command; `{files}` expands to many arguments.
pub(crate) struct ShortSpec {
    comm: &'static str,
    exe: &'static str,
    argv: &'static [&'static str],
    cwd: &'static str,
    /// Resident set, KiB.
    pub(crate) rss_kb: u32,
    /// Average CPU use, thousandths of a CPU.
    pub(crate) cpu_milli: u32,
    /// Threads.
    pub(crate) threads: u16,
}

const fn s(
    comm: &'static str,
    exe: &'static str,
    argv: &'static [&'static str],
    cwd: &'static str,
    rss_kb: u32,
    cpu_milli: u32,
    threads: u16,
) -> ShortSpec {
    ShortSpec {
        comm,
        exe,
        argv,
        cwd,
        rss_kb,
        cpu_milli,
        threads,
    }
}

/// Commands users run in shells; churn starts and ends these.
pub(crate) const SHORTS: &[ShortSpec] = &[
    s(
        "vim",
        "/usr/bin/vim.basic",
        &["vim", "notes.md"],
        "{home}",
        11_000,
        0,
        1,
    ),
    s(
        "less",
        "/usr/bin/less",
        &["less", "slurm.out"],
        "{home}",
        2_600,
        0,
        1,
    ),
    s("top", "/usr/bin/top", &["top"], "{home}", 4_400, 8, 1),
    s(
        "htop",
        "/usr/bin/htop",
        &["htop", "-u", "{user}"],
        "{home}",
        5_200,
        15,
        1,
    ),
    s(
        "python3",
        "/usr/bin/python3.11",
        &["python3"],
        "{home}",
        9_800,
        0,
        1,
    ),
    s(
        "make",
        "/usr/bin/make",
        &["make", "-j8"],
        "{home}/src",
        3_100,
        20,
        1,
    ),
    s(
        "cc1",
        "/usr/lib/gcc/x86_64-linux-gnu/12/cc1",
        &[
            "/usr/lib/gcc/x86_64-linux-gnu/12/cc1",
            "-quiet",
            "-imultiarch",
            "x86_64-linux-gnu",
            "solver.c",
            "-quiet",
            "-dumpbase",
            "solver.c",
            "-march=native",
            "-O2",
            "-o",
            "/tmp/ccA1b2C3.s",
        ],
        "{home}/src",
        84_000,
        950,
        1,
    ),
    s(
        "tail",
        "/usr/bin/tail",
        &["tail", "-f", "{scratch}/run.log"],
        "{home}",
        1_900,
        0,
        1,
    ),
    s(
        "watch",
        "/usr/bin/watch",
        &["watch", "-n", "5", "squeue", "-u", "{user}"],
        "{home}",
        3_000,
        2,
        1,
    ),
    s(
        "sleep",
        "/usr/bin/sleep",
        &["sleep", "600"],
        "{home}",
        1_000,
        0,
        1,
    ),
    s(
        "rsync",
        "/usr/bin/rsync",
        &[
            "rsync",
            "-a",
            "--info=progress2",
            "{home}/data/",
            "{scratch}/data/",
        ],
        "{home}",
        6_200,
        300,
        1,
    ),
    s(
        "tar",
        "/usr/bin/tar",
        &["tar", "-czf", "{scratch}/backup.tgz", "{files}"],
        "{scratch}/results",
        3_400,
        700,
        1,
    ),
    s(
        "run (copy)",
        "{home}/bin/run (copy)",
        &["{home}/bin/run (copy)", "--fast", "--label", "ünïcödé ✓"],
        "{home}",
        22_000,
        500,
        2,
    ),
    s(
        "grep",
        "/usr/bin/grep",
        &["grep", "-rn", "TODO: fix ünïcödé", "src/"],
        "{home}",
        2_400,
        400,
        1,
    ),
    s(
        "emacs",
        "/usr/bin/emacs-gtk",
        &["emacs", "-nw", "main.c"],
        "{home}/src",
        41_000,
        3,
        1,
    ),
    s(
        "squeue",
        "/usr/bin/squeue",
        &[
            "squeue",
            "-u",
            "{user}",
            "-o",
            "%.18i %.9P %.30j %.8u %.2t %.10M %.6D %R",
        ],
        "{home}",
        7_300,
        100,
        1,
    ),
];

/// Kernel threads that exist once per node, in creation order.
const KGLOBAL: &[&str] = &[
    "rcu_gp",
    "rcu_par_gp",
    "slub_flushwq",
    "netns",
    "mm_percpu_wq",
    "rcu_tasks_kthread",
    "rcu_tasks_rude_kthread",
    "rcu_tasks_trace_kthread",
    "rcu_preempt",
    "kdevtmpfs",
    "inet_frag_wq",
    "kauditd",
    "khungtaskd",
    "oom_reaper",
    "writeback",
    "kcompactd0",
    "kcompactd1",
    "ksmd",
    "khugepaged",
    "kintegrityd",
    "kblockd",
    "blkcg_punt_bio",
    "edac-poller",
    "devfreq_wq",
    "watchdogd",
    "kswapd0",
    "kswapd1",
    "kthrotld",
    "nvme-wq",
    "nvme-reset-wq",
    "nvme-delete-wq",
    "scsi_eh_0",
    "scsi_tmf_0",
    "ib-comp-wq",
    "ib-comp-unb-wq",
    "ib_mcast",
    "ib_nl_sa_wq",
    "mlx5_health0000",
    "jbd2/nvme0n1p2-8",
    "ext4-rsv-conver",
    "ptlrpcd_00_00",
    "ldlm_bl_01",
    "ll_ping",
];

/// Kernel threads per CPU, `{}` is the CPU number.
const KPERCPU: &[&str] = &[
    "cpuhp/{}",
    "migration/{}",
    "ksoftirqd/{}",
    "kworker/{}:0H-events_highpri",
    "kworker/{}:1-events",
];

/// Most CPUs a simulated node has (per-CPU kernel thread names exist for
/// these).
pub(crate) const MAX_CPUS: u32 = 256;

/// Unbound kworkers (used when a node needs more kernel threads than it has
/// per-CPU ones).
const KUNBOUND: u32 = 256;

/// A batch job spread over consecutive nodes.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// First node index.
    pub(crate) first: u32,
    /// Number of nodes.
    pub(crate) nodes: u32,
    /// Slurm job id.
    pub(crate) id: u32,
    /// Index into [`USERS`].
    pub(crate) user: u16,
    /// Index into [`APPS`].
    pub(crate) app: u16,
    /// Index of this job's first entry in [`Tables::cmds`]; see [`JobCmd`].
    pub(crate) cmds: u32,
}

/// The command entries each job owns, in order from [`Job::cmds`].
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub(crate) enum JobCmd {
    /// `slurmstepd: [J.extern]`.
    Extern = 0,
    /// `slurmstepd: [J.batch]`.
    Batch = 1,
    /// The batch script.
    Script = 2,
    /// `srun ... app`.
    Srun = 3,
    /// `slurmstepd: [J.0]`.
    Step = 4,
}

/// All commands, and where each family starts.
#[derive(Debug)]
pub(crate) struct Tables {
    /// Every command line of the cluster.
    pub(crate) cmds: Vec<Cmd>,
    /// pid 1.
    pub(crate) init: u32,
    /// pid 2.
    pub(crate) kthreadd: u32,
    kglobal: u32,
    kpercpu: u32,
    kunbound: u32,
    daemons: u32,
    /// `sleep 100000000` of the extern step.
    pub(crate) extern_sleep: u32,
    /// Per user: shell, sshd priv, 8 sshd pts, apps, shorts.
    users: u32,
}

/// Entries per user: shell, `sshd: u [priv]`, 8 × `sshd: u@pts/N`, apps,
/// shorts.
const PTS: u32 = 8;
const PER_USER: u32 = 2 + PTS + APPS.len() as u32 + SHORTS.len() as u32;

fn expand(s: &str, user: &str) -> String {
    s.replace("{home}", &format!("/home/{user}"))
        .replace("{scratch}", &format!("/scratch/{user}"))
        .replace("{user}", user)
}

fn classpath() -> String {
    const JARS: &[&str] = &[
        "activation-1.1.1",
        "aircompressor-0.25",
        "algebra_2.12-2.0.1",
        "annotations-17.0.0",
        "antlr4-runtime-4.9.3",
        "aopalliance-repackaged-2.6.1",
        "arpack-3.0.3",
        "arrow-format-12.0.1",
        "arrow-memory-core-12.0.1",
        "arrow-vector-12.0.1",
        "audience-annotations-0.5.0",
        "avro-1.11.2",
        "avro-ipc-1.11.2",
        "avro-mapred-1.11.2",
        "blas-3.0.3",
        "breeze_2.12-2.1.0",
        "cats-kernel_2.12-2.1.1",
        "chill-java-0.10.0",
        "chill_2.12-0.10.0",
        "commons-cli-1.5.0",
        "commons-codec-1.16.0",
        "commons-collections4-4.4",
        "commons-compiler-3.1.9",
        "commons-compress-1.23.0",
        "commons-io-2.13.0",
        "commons-lang3-3.12.0",
        "commons-math3-3.6.1",
        "commons-text-1.10.0",
        "compress-lzf-1.1.2",
        "curator-client-2.13.0",
        "datasketches-java-3.3.0",
        "flatbuffers-java-1.12.0",
        "gson-2.2.4",
        "guava-14.0.1",
        "hadoop-client-api-3.3.6",
        "hadoop-client-runtime-3.3.6",
        "hive-common-2.3.9",
        "hive-exec-2.3.9-core",
        "httpclient-4.5.14",
        "ivy-2.5.1",
        "jackson-core-2.15.2",
        "jackson-databind-2.15.2",
        "janino-3.1.9",
        "jersey-client-2.40",
        "jersey-server-2.40",
        "json4s-core_2.12-3.7.0-M11",
        "kryo-shaded-4.0.2",
        "log4j-core-2.20.0",
        "lz4-java-1.8.0",
        "netty-all-4.1.96.Final",
        "orc-core-1.9.1-shaded-protobuf",
        "parquet-column-1.13.1",
        "parquet-hadoop-1.13.1",
        "py4j-0.10.9.7",
        "scala-library-2.12.18",
        "snappy-java-1.1.10.3",
        "spark-core_2.12-3.5.0",
        "spark-sql_2.12-3.5.0",
        "zookeeper-3.6.3",
        "zstd-jni-1.5.5-4",
    ];
    let mut cp = String::from("/opt/spark/conf/");
    for j in JARS {
        let _ = write!(cp, ":/opt/spark/jars/{j}.jar");
    }
    cp
}

fn cmdline_of(args: &[String]) -> Box<[u8]> {
    let mut out = Vec::new();
    for a in args {
        out.extend_from_slice(a.as_bytes());
        out.push(0);
    }
    out.into_boxed_slice()
}

/// A `setproctitle` title: the text, then the NUL padding left where the
/// original arguments were.
fn title(text: &str, pad: usize) -> Box<[u8]> {
    let mut out = text.as_bytes().to_vec();
    out.resize(out.len() + 1 + pad, 0);
    out.into_boxed_slice()
}

fn cmd(comm: &str, cmdline: Box<[u8]>, exe: &str, cwd: &str, libs: Libs) -> Cmd {
    Cmd {
        summary: (Escaped::new(comm.as_bytes()), Args::from_cmdline(&cmdline)),
        comm: comm.into(),
        cmdline,
        exe: exe.into(),
        cwd: cwd.into(),
        libs,
    }
}

fn kthread(name: &str) -> Cmd {
    cmd(name, Box::new([]), "", "/", Libs::None)
}

impl Tables {
    /// Builds every table; `jobs` get their entries appended and their
    /// [`Job::cmds`] set.
    pub(crate) fn build(jobs: &mut [Job]) -> Self {
        let mut cmds = Vec::new();
        let init = cmds.len() as u32;
        cmds.push(cmd(
            "systemd",
            cmdline_of(&["/sbin/init".into()]),
            "/usr/lib/systemd/systemd",
            "/",
            Libs::Base,
        ));
        let kthreadd = cmds.len() as u32;
        cmds.push(kthread("kthreadd"));
        let kglobal = cmds.len() as u32;
        cmds.extend(KGLOBAL.iter().map(|n| kthread(n)));
        let kpercpu = cmds.len() as u32;
        for c in 0..MAX_CPUS {
            for p in KPERCPU {
                cmds.push(kthread(&p.replace("{}", &c.to_string())));
            }
        }
        let kunbound = cmds.len() as u32;
        const SUFFIX: &[&str] = &["-events_unbound", "-flush-259:0", "-ib-comp-unb-wq", ""];
        for k in 0..KUNBOUND {
            cmds.push(kthread(&format!(
                "kworker/u512:{k}{}",
                SUFFIX[k as usize % SUFFIX.len()]
            )));
        }
        let daemons = cmds.len() as u32;
        for dm in DAEMONS {
            let args: Vec<String> = dm.argv.iter().map(|a| a.to_string()).collect();
            let line = if dm.comm == "sshd" {
                title(&args[0], 22)
            } else {
                cmdline_of(&args)
            };
            cmds.push(cmd(dm.comm, line, dm.exe, "/", Libs::Base));
        }
        let extern_sleep = cmds.len() as u32;
        cmds.push(cmd(
            "sleep",
            cmdline_of(&["sleep".into(), "100000000".into()]),
            "/usr/bin/sleep",
            "/",
            Libs::Base,
        ));
        let users = cmds.len() as u32;
        let cp = classpath();
        let files: Vec<String> = (1..=150).map(|i| format!("file{i:04}.dat")).collect();
        for user in USERS {
            let home = format!("/home/{user}");
            cmds.push(cmd(
                "bash",
                cmdline_of(&["-bash".into()]),
                "/usr/bin/bash",
                &home,
                Libs::Base,
            ));
            cmds.push(cmd(
                "sshd",
                title(&format!("sshd: {user} [priv]"), 30),
                "/usr/sbin/sshd",
                "/",
                Libs::Base,
            ));
            for pts in 0..PTS {
                cmds.push(cmd(
                    "sshd",
                    title(&format!("sshd: {user}@pts/{pts}"), 30),
                    "/usr/sbin/sshd",
                    "/",
                    Libs::Base,
                ));
            }
            for app in APPS {
                let mut args = Vec::new();
                for a in app.argv {
                    if *a == "{classpath}" {
                        args.push(cp.clone());
                    } else {
                        args.push(expand(a, user));
                    }
                }
                cmds.push(cmd(
                    app.comm,
                    cmdline_of(&args),
                    &expand(app.exe, user),
                    &expand(app.cwd, user),
                    app.libs,
                ));
            }
            for sh in SHORTS {
                let mut args = Vec::new();
                for a in sh.argv {
                    if *a == "{files}" {
                        args.extend(files.iter().cloned());
                    } else {
                        args.push(expand(a, user));
                    }
                }
                cmds.push(cmd(
                    sh.comm,
                    cmdline_of(&args),
                    &expand(sh.exe, user),
                    &expand(sh.cwd, user),
                    Libs::Base,
                ));
            }
        }
        for job in jobs.iter_mut() {
            job.cmds = cmds.len() as u32;
            let user = USERS[usize::from(job.user)];
            let id = job.id;
            cmds.push(cmd(
                "slurmstepd",
                title(&format!("slurmstepd: [{id}.extern]"), 0),
                "/usr/sbin/slurmstepd",
                "/var/spool/slurmd",
                Libs::Base,
            ));
            cmds.push(cmd(
                "slurmstepd",
                title(&format!("slurmstepd: [{id}.batch]"), 0),
                "/usr/sbin/slurmstepd",
                "/var/spool/slurmd",
                Libs::Base,
            ));
            cmds.push(cmd(
                "slurm_script",
                cmdline_of(&[
                    "/bin/bash".into(),
                    format!("/var/spool/slurmd/job{id}/slurm_script"),
                ]),
                "/usr/bin/bash",
                &format!("/scratch/{user}"),
                Libs::Base,
            ));
            let app = &APPS[usize::from(job.app)];
            let mut args = vec![
                "srun".to_string(),
                "--mpi=pmix".to_string(),
                format!("--nodes={}", job.nodes),
                format!("--job-name=run {id}"),
            ];
            args.extend(app.argv.iter().map(|a| {
                if *a == "{classpath}" {
                    cp.clone()
                } else {
                    expand(a, user)
                }
            }));
            cmds.push(cmd(
                "srun",
                cmdline_of(&args),
                "/usr/bin/srun",
                &expand(app.cwd, user),
                Libs::Base,
            ));
            cmds.push(cmd(
                "slurmstepd",
                title(&format!("slurmstepd: [{id}.0]"), 0),
                "/usr/sbin/slurmstepd",
                "/var/spool/slurmd",
                Libs::Base,
            ));
        }
        Tables {
            cmds,
            init,
            kthreadd,
            kglobal,
            kpercpu,
            kunbound,
            daemons,
            extern_sleep,
            users,
        }
    }

    /// The command of a node's `j`-th kernel thread (after kthreadd), for a
    /// node with `cpus` CPUs: global threads, then per-CPU ones, then
    /// unbound kworkers.
    pub(crate) fn kthread(&self, j: u32, cpus: u32) -> u32 {
        let g = KGLOBAL.len() as u32;
        if j < g {
            return self.kglobal + j;
        }
        let k = j - g;
        let per = KPERCPU.len() as u32 * cpus.min(MAX_CPUS);
        if k < per {
            return self.kpercpu + k;
        }
        self.kunbound + (k - per) % KUNBOUND
    }

    /// The command of daemon `i` of [`DAEMONS`].
    pub(crate) fn daemon(&self, i: usize) -> u32 {
        self.daemons + i as u32
    }

    fn user_base(&self, user: usize) -> u32 {
        self.users + user as u32 * PER_USER
    }

    /// The login shell of user `user` (index into [`USERS`]).
    pub(crate) fn shell(&self, user: usize) -> u32 {
        self.user_base(user)
    }

    /// `sshd: user [priv]`.
    pub(crate) fn sshd_priv(&self, user: usize) -> u32 {
        self.user_base(user) + 1
    }

    /// `sshd: user@pts/N`.
    pub(crate) fn sshd_pts(&self, user: usize, pts: u32) -> u32 {
        self.user_base(user) + 2 + pts % PTS
    }

    /// Application `app` run by `user`.
    pub(crate) fn app(&self, user: usize, app: usize) -> u32 {
        self.user_base(user) + 2 + PTS + app as u32
    }

    /// Short command `i` of [`SHORTS`] run by `user`.
    pub(crate) fn short(&self, user: usize, i: usize) -> u32 {
        self.user_base(user) + 2 + PTS + APPS.len() as u32 + i as u32
    }

    /// A job's command entry.
    pub(crate) fn job(&self, job: &Job, which: JobCmd) -> u32 {
        job.cmds + which as u32
    }

    /// The command at an index (commands are never removed, so any index a
    /// process holds is valid).
    pub(crate) fn cmd(&self, i: u32) -> &Cmd {
        &self.cmds[i as usize]
    }
}
