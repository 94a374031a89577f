//! Which requests on a proc tree may sleep on another process, and so must
//! run on a thread of their own.
//!
//! A read of `/proc/<pid>/cmdline` takes that process's `mmap_lock`; when
//! one of its threads is stuck in a page fault on a hung network file
//! system with a writer queued behind it, the read sleeps as long as the
//! file system does (the classic hung `ps`). Such a read on one of the
//! agent's async workers would stall every request that worker serves, so
//! it runs on a dedicated thread ([`Class::Isolated`]). Everything else
//! ([`Class::Fast`]) runs on the worker itself, with no hand-off: procfs
//! answers it from kernel memory under spinlocks, RCU or short sleeping
//! locks whose holders cannot wait on another process.
//!
//! The classification is read from the kernel's code, not guessed: every
//! entry of [`PROCESS_ENTRIES`] names the function that answers it and the
//! lock it takes, as of Linux 6.12 (`fs/proc/base.c` `tgid_base_stuff`
//! and `tid_base_stuff`, `fs/proc/array.c`, `fs/proc/task_mmu.c`,
//! `fs/proc/fd.c`, `fs/proc/namespaces.c`); line numbers are 6.12's.
//!
//! One judgement call is stated here rather than hidden: several entries
//! (`stat`, `wchan`, `io`, `personality`, `stack`, the `cwd`/`root`/`exe`
//! and `ns/*` links, `auxv`'s open) take the target's `exec_update_lock`
//! for reading. Its only writer is that process's own `execve`, from
//! `exec_mmap` (fs/exec.c:973) to the end of `begin_new_exec`
//! (fs/exec.c:1442), after `de_thread` has ended the process's other
//! threads; the kernel keeps file-system waits out of that window (the
//! close-on-exec flushes run before it, fs/exec.c:1297). The one wait in
//! it that can depend on others is `mmap_read_lock_killable(old_mm)`
//! (fs/exec.c:983), which only another process's stuck *writer* of that
//! memory map could hold up. These entries are [`Class::Fast`].
//!
//! A per-process name this table does not know (a newer kernel's) is
//! [`Class::Isolated`]: unknown is not known to be fast.

use std::ffi::OsStr;
use std::path::{Component, Path};

/// Where a request runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// On the calling thread (an async worker), switched to the asking
    /// user's credentials for the call when that user is not the agent.
    Fast,
    /// On a thread of its own (tokio's blocking pool for the agent's own
    /// identity, a per-user thread otherwise): it may sleep on another
    /// process for as long as that process is stuck.
    Isolated,
}

/// What a request does to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Walk to it or stat it (procfs lookup, revalidation, getattr).
    Lookup,
    /// Open and read it: a file's contents, a directory's listing, a
    /// symlink's target.
    Open,
}

/// One entry of a process directory, how opening it is classified, and
/// where in the kernel that is decided.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The name in `/proc/<pid>/` (and `/proc/<pid>/task/<tid>/`).
    pub name: &'static str,
    /// How [`Op::Open`] of it runs (lookups are [`Class::Fast`], except
    /// below `map_files`).
    pub class: Class,
    /// The kernel function that answers it and the lock that decides.
    pub kernel: &'static str,
}

const fn fast(name: &'static str, kernel: &'static str) -> Entry {
    Entry {
        name,
        class: Class::Fast,
        kernel,
    }
}

const fn isolated(name: &'static str, kernel: &'static str) -> Entry {
    Entry {
        name,
        class: Class::Isolated,
        kernel,
    }
}

/// Every entry of a Linux 6.12 process (and thread) directory.
pub const PROCESS_ENTRIES: &[Entry] = &[
    // --- may sleep on another process: isolated ---
    isolated(
        "cmdline",
        "proc_pid_cmdline_read (base.c:384) -> get_mm_cmdline (base.c:282) -> access_remote_vm (base.c:328, 350) -> mmap_read_lock_killable (mm/memory.c:6645)",
    ),
    isolated(
        "environ",
        "environ_read (base.c:986) -> access_remote_vm (base.c:1024) -> mmap_read_lock_killable",
    ),
    isolated(
        "mem",
        "mem_rw (base.c:879) -> access_remote_vm (base.c:911) -> mmap_read_lock_killable",
    ),
    isolated(
        "maps",
        "proc_pid_maps_op m_start (task_mmu.c:145) -> mmap_read_lock_killable (task_mmu.c:166)",
    ),
    isolated(
        "smaps",
        "proc_pid_smaps_op (task_mmu.c:1307) shares m_start -> mmap_read_lock_killable (task_mmu.c:166)",
    ),
    isolated(
        "numa_maps",
        "proc_pid_numa_maps_op (task_mmu.c:3207) shares m_start -> mmap_read_lock_killable (task_mmu.c:166)",
    ),
    isolated(
        "smaps_rollup",
        "show_smaps_rollup (task_mmu.c:1184) -> mmap_read_lock_killable (task_mmu.c:1203, 1225)",
    ),
    isolated(
        "pagemap",
        "pagemap_read (task_mmu.c:1972) -> mmap_read_lock_killable (task_mmu.c:2013, 2038)",
    ),
    isolated(
        "map_files",
        "proc_map_files_readdir (base.c:2382) -> mmap_read_lock_killable (base.c:2413); lookup (base.c:2353), d_revalidate (base.c:2208) and get_link (base.c:2254) too",
    ),
    isolated(
        "fdinfo",
        "seq_show (fd.c:23) -> the file's show_fdinfo: epoll's takes ep->mtx (eventpoll.c:1252), held across a watched file's poll (eventpoll.c:1874), which a FUSE file answers from its daemon",
    ),
    isolated(
        "syscall",
        "proc_pid_syscall (base.c:672) -> task_current_syscall -> wait_task_inactive (lib/syscall.c:81): waits for the target to leave its CPU",
    ),
    isolated(
        "mounts",
        "m_start (fs/namespace.c:1590) -> down_read(&namespace_sem) (fs/namespace.c:1595): uninterruptible, node-wide, write-held by every mount and umount",
    ),
    isolated(
        "mountinfo",
        "as mounts: m_start -> down_read(&namespace_sem)",
    ),
    isolated(
        "mountstats",
        "as mounts: m_start -> down_read(&namespace_sem)",
    ),
    isolated(
        "cpu_resctrl_groups",
        "proc_resctrl_show (arch/x86/kernel/cpu/resctrl/rdtgroup.c:882) -> mutex_lock(&rdtgroup_mutex), held by resctrl file system operations",
    ),
    // --- exec_update_lock for reading (see the module doc): fast ---
    fast(
        "stat",
        "do_task_stat: down_read_killable(exec_update_lock) (array.c:488); vsize is task_vsize(mm), a counter (array.c:497); no mmap_lock",
    ),
    fast(
        "wchan",
        "proc_pid_wchan (base.c:412): exec_update_lock (base.c:419), get_wchan",
    ),
    fast(
        "io",
        "do_io_accounting (base.c:3015): exec_update_lock (base.c:3020), counters",
    ),
    fast(
        "personality",
        "proc_pid_personality (base.c:3218) -> lock_trace: exec_update_lock (base.c:441)",
    ),
    fast(
        "stack",
        "proc_pid_stack (base.c:460) -> lock_trace (base.c:485), stack_trace_save_tsk",
    ),
    fast(
        "auxv",
        "auxv_open (base.c:1056) -> mm_access: exec_update_lock (kernel/fork.c:1587); auxv_read copies mm->saved_auxv (base.c:1061)",
    ),
    fast(
        "cwd",
        "call_proc_get_link (base.c:1778): exec_update_lock (base.c:1786), task_lock",
    ),
    fast("root", "call_proc_get_link (base.c:1778), task_lock"),
    fast(
        "exe",
        "call_proc_get_link (base.c:1778), the mm's exe_file under RCU",
    ),
    fast(
        "ns",
        "proc_ns_get_link, proc_ns_readlink (namespaces.c:42, 78): exec_update_lock (namespaces.c:58, 90)",
    ),
    // --- no lock another process can hold for long: fast ---
    fast(
        "status",
        "proc_pid_status (array.c:439): task_mem reads counters (task_mmu.c:34), task_sig under siglock",
    ),
    fast(
        "statm",
        "proc_pid_statm (array.c:684): task_statm, counters",
    ),
    fast("comm", "comm_show (base.c:1733): task_lock"),
    fast("limits", "proc_pid_limits (base.c:628): lock_task_sighand"),
    fast(
        "sched",
        "sched_show (base.c:1482) -> proc_sched_show_task (kernel/sched/debug.c): statistics",
    ),
    fast("schedstat", "proc_pid_schedstat (base.c:508): counters"),
    fast(
        "autogroup",
        "sched_autogroup_show (base.c:1534): the autogroup's spinlock",
    ),
    fast(
        "timens_offsets",
        "timens_offsets_show (base.c:1605): task_lock",
    ),
    fast("timers", "timers_start (base.c:2489): lock_task_sighand"),
    fast(
        "timerslack_ns",
        "timerslack_ns_show (base.c:2627): task fields",
    ),
    fast("latency", "lstats_show_proc (base.c:524): task fields"),
    fast(
        "cgroup",
        "proc_cgroup_show (kernel/cgroup/cgroup.c:6445): rcu, css_set_lock spinlock (cgroup.c:6458)",
    ),
    fast(
        "cpuset",
        "proc_cpuset_show (kernel/cgroup/cpuset.c:4359): rcu, css_set_lock spinlock (cpuset.c:4372)",
    ),
    fast("oom_score", "proc_oom_score (base.c:582): counters"),
    fast("oom_adj", "oom_adj_read (base.c:1083): lock_task_sighand"),
    fast(
        "oom_score_adj",
        "oom_score_adj_read (base.c:1241): lock_task_sighand",
    ),
    fast("loginuid", "proc_loginuid_read (base.c:1293): audit fields"),
    fast(
        "sessionid",
        "proc_sessionid_read (base.c:1359): audit fields",
    ),
    fast(
        "make-it-fail",
        "proc_fault_inject_read (base.c:1382): a task field",
    ),
    fast("fail-nth", "proc_fail_nth_read (base.c:1456): a task field"),
    fast(
        "coredump_filter",
        "proc_coredump_filter_read (base.c:2938): mm->flags, no lock",
    ),
    fast(
        "uid_map",
        "uid_m_show (kernel/user_namespace.c): the user namespace's extents",
    ),
    fast(
        "gid_map",
        "gid_m_show (kernel/user_namespace.c): the user namespace's extents",
    ),
    fast(
        "projid_map",
        "projid_m_show (kernel/user_namespace.c): the user namespace's extents",
    ),
    fast(
        "setgroups",
        "proc_setgroups_show (kernel/user_namespace.c): namespace flags",
    ),
    fast(
        "patch_state",
        "proc_pid_patch_state (base.c:3230): a task field",
    ),
    fast(
        "stack_depth",
        "proc_stack_depth (base.c:3271): a task field",
    ),
    fast(
        "arch_status",
        "proc_pid_arch_status (arch/x86/kernel/fpu/xstate.c): task fields",
    ),
    fast(
        "seccomp_cache",
        "proc_pid_seccomp_cache (kernel/seccomp.c): filter bitmaps",
    ),
    fast(
        "ksm_merging_pages",
        "proc_pid_ksm_merging_pages (base.c:3239): a counter",
    ),
    fast("ksm_stat", "proc_pid_ksm_stat (base.c:3252): counters"),
    fast(
        "clear_refs",
        "proc_clear_refs_operations (task_mmu.c:1630): write-only, no read operation",
    ),
    fast(
        "children",
        "get_children_pid (array.c:721): tasklist_lock for reading",
    ),
    fast(
        "task",
        "proc_task_readdir (base.c:3903): the thread list under RCU",
    ),
    fast(
        "fd",
        "proc_readfd_common (fd.c:244), proc_fd_link (fd.c:175): the file table under RCU and file_lock",
    ),
    fast(
        "attr",
        "proc_pid_attr_read (base.c:2760): the LSM's getprocattr",
    ),
    fast(
        "net",
        "proc_tgid_net_lookup (fs/proc/proc_net.c): the process's network namespace's files",
    ),
];

/// Node-wide files that are isolated although nothing blocks them: they
/// are huge, so one read (up to [`super::MAX_FILE_BYTES`]) is tens of
/// milliseconds of work that must not hold an async worker.
pub const BULK_NODE_FILES: &[Entry] = &[
    isolated(
        "kcore",
        "read_kcore_iter (kcore.c:324): the size of memory; down_read(&kclist_lock) (kcore.c:340)",
    ),
    isolated(
        "kpagecount",
        "kpagecount_read (page.c:45): 8 bytes per page frame of the node",
    ),
    isolated(
        "kpageflags",
        "kpageflags_read (page.c:225): 8 bytes per page frame",
    ),
    isolated(
        "kpagecgroup",
        "kpagecgroup_read (page.c:273): 8 bytes per page frame",
    ),
];

/// The [`PROCESS_ENTRIES`] row for `name`.
pub fn process_entry(name: &str) -> Option<&'static Entry> {
    PROCESS_ENTRIES.iter().find(|e| e.name == name)
}

fn is_number(s: &OsStr) -> bool {
    !s.is_empty() && s.as_encoded_bytes().iter().all(u8::is_ascii_digit)
}

/// How `op` on `path` (relative to the proc root, as the agent names its
/// places) runs.
pub fn classify(path: &Path, op: Op) -> Class {
    let parts: Vec<&OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s),
            _ => None,
        })
        .collect();
    // The process or thread directory this path is in, if any: `<pid>`,
    // `self`, `<pid>/task/<tid>`, `self/task/<tid>`, `thread-self`.
    let rest: &[&OsStr] = match parts.as_slice() {
        [] => return Class::Fast,
        [first, rest @ ..] if is_number(first) || *first == "self" => match rest {
            [task, tid, inner @ ..] if *task == "task" && is_number(tid) => inner,
            _ => rest,
        },
        [first, rest @ ..] if *first == "thread-self" => rest,
        // `/proc/mounts` is a link to `self/mounts`.
        [only] if *only == "mounts" => return open_class(op, "mounts"),
        [only] => {
            return match BULK_NODE_FILES.iter().find(|e| *only == e.name) {
                Some(e) if op == Op::Open => e.class,
                _ => Class::Fast,
            };
        }
        // Node-wide files and directories (`sys`, `net`, `irq`, ...).
        _ => return Class::Fast,
    };
    match rest {
        // The process directory itself: lookup, getattr, listing.
        [] => Class::Fast,
        // Every step below map_files takes the memory map's lock.
        [dir, _, ..] if *dir == "map_files" => Class::Isolated,
        // Below fdinfo: the lookup revalidates under RCU; the read is the
        // file type's show_fdinfo.
        [dir, _] if *dir == "fdinfo" => open_class(op, "fdinfo"),
        // The fdinfo and task listings are fast.
        [dir] if *dir == "fdinfo" || *dir == "task" => Class::Fast,
        [name] => match name.to_str() {
            Some(n) => open_class(op, n),
            None => open_class(op, ""),
        },
        // Below fd, ns, net, attr: as their directory.
        [dir, ..] => match dir.to_str() {
            Some(d) => open_class(op, d),
            None => open_class(op, ""),
        },
    }
}

/// A process directory entry's class for `op`: lookups are fast, an open
/// is as [`PROCESS_ENTRIES`] says (isolated when it does not know it).
fn open_class(op: Op, name: &str) -> Class {
    match op {
        Op::Lookup => Class::Fast,
        Op::Open => process_entry(name).map_or(Class::Isolated, |e| e.class),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(p: &str, op: Op) -> Class {
        classify(Path::new(p), op)
    }

    #[test]
    fn reads_that_take_another_process_memory_map_are_isolated() {
        for name in [
            "cmdline",
            "environ",
            "mem",
            "maps",
            "smaps",
            "smaps_rollup",
            "numa_maps",
            "pagemap",
            "syscall",
            "mounts",
            "mountinfo",
            "mountstats",
        ] {
            for dir in ["42", "self", "42/task/43", "self/task/7", "thread-self"] {
                let p = format!("{dir}/{name}");
                assert_eq!(c(&p, Op::Open), Class::Isolated, "{p}");
                assert_eq!(c(&p, Op::Lookup), Class::Fast, "lookup of {p}");
            }
        }
        // /proc/mounts is self/mounts.
        assert_eq!(c("mounts", Op::Open), Class::Isolated);
    }

    #[test]
    fn the_hot_files_are_fast() {
        for p in [
            "42/stat",
            "42/status",
            "42/statm",
            "42/comm",
            "42/io",
            "42/wchan",
            "42/auxv",
            "42/cgroup",
            "42/task/43/stat",
            "42/task/43/children",
            "self/status",
            "42/exe",
            "42/cwd",
            "42/ns/net",
            "42/fd/3",
            "42/net/dev",
            "42/attr/current",
            "42",
            "42/task",
            "42/fd",
            "42/fdinfo",
        ] {
            assert_eq!(c(p, Op::Open), Class::Fast, "{p}");
            assert_eq!(c(p, Op::Lookup), Class::Fast, "{p}");
        }
        for p in [
            "",
            "loadavg",
            "meminfo",
            "stat",
            "uptime",
            "net/dev",
            "sys/kernel/hostname",
            "cpuinfo",
            "self",
            "net",
        ] {
            assert_eq!(c(p, Op::Open), Class::Fast, "{p:?}");
        }
    }

    #[test]
    fn map_files_and_fdinfo_files_are_isolated() {
        assert_eq!(c("42/map_files", Op::Lookup), Class::Fast);
        assert_eq!(c("42/map_files", Op::Open), Class::Isolated, "listing");
        for op in [Op::Lookup, Op::Open] {
            assert_eq!(c("42/map_files/400000-401000", op), Class::Isolated);
            assert_eq!(c("42/task/43/map_files/400000-401000", op), Class::Isolated);
        }
        assert_eq!(c("42/fdinfo/3", Op::Lookup), Class::Fast);
        assert_eq!(c("42/fdinfo/3", Op::Open), Class::Isolated);
    }

    #[test]
    fn huge_node_files_and_unknown_process_entries_are_isolated() {
        for p in ["kcore", "kpagecount", "kpageflags", "kpagecgroup"] {
            assert_eq!(c(p, Op::Open), Class::Isolated, "{p}");
            assert_eq!(c(p, Op::Lookup), Class::Fast, "{p}");
        }
        // A name a newer kernel may add: not known to be fast.
        assert_eq!(c("42/some_new_file", Op::Open), Class::Isolated);
        assert_eq!(c("42/some_new_file", Op::Lookup), Class::Fast);
        // A directory named like a pid below the root is not a process.
        assert_eq!(c("sys/42/cmdline", Op::Open), Class::Fast);
    }

    /// Every entry of the 6.12 process directory is classified, once,
    /// with its kernel source location.
    #[test]
    fn the_table_covers_the_kernel_process_directory() {
        let kernel_6_12 = [
            "task",
            "fd",
            "map_files",
            "fdinfo",
            "ns",
            "net",
            "environ",
            "auxv",
            "status",
            "personality",
            "limits",
            "sched",
            "autogroup",
            "timens_offsets",
            "comm",
            "syscall",
            "cmdline",
            "stat",
            "statm",
            "maps",
            "numa_maps",
            "mem",
            "cwd",
            "root",
            "exe",
            "mounts",
            "mountinfo",
            "mountstats",
            "clear_refs",
            "smaps",
            "smaps_rollup",
            "pagemap",
            "attr",
            "wchan",
            "stack",
            "schedstat",
            "latency",
            "cpuset",
            "cgroup",
            "cpu_resctrl_groups",
            "oom_score",
            "oom_adj",
            "oom_score_adj",
            "loginuid",
            "sessionid",
            "make-it-fail",
            "fail-nth",
            "coredump_filter",
            "io",
            "uid_map",
            "gid_map",
            "projid_map",
            "setgroups",
            "timers",
            "timerslack_ns",
            "patch_state",
            "stack_depth",
            "arch_status",
            "seccomp_cache",
            "ksm_merging_pages",
            "ksm_stat",
            "children",
        ];
        for n in kernel_6_12 {
            assert!(process_entry(n).is_some(), "{n} is not classified");
        }
        let mut names: Vec<_> = PROCESS_ENTRIES.iter().map(|e| e.name).collect();
        assert_eq!(names.len(), kernel_6_12.len());
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PROCESS_ENTRIES.len(), "each entry once");
        for e in PROCESS_ENTRIES.iter().chain(BULK_NODE_FILES) {
            assert!(e.kernel.contains('('), "{}: cite the kernel", e.name);
        }
    }

    /// On this machine: every entry of a real process directory is in the
    /// table. A name missing from it would be isolated, which is safe but
    /// slow: a failure here says the table needs a newer kernel's names.
    #[test]
    fn this_kernels_process_directory_is_known() {
        let unknown: Vec<String> = std::fs::read_dir("/proc/self")
            .unwrap()
            .chain(std::fs::read_dir("/proc/thread-self").unwrap())
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| process_entry(n).is_none())
            .collect();
        assert!(unknown.is_empty(), "not in the table: {unknown:?}");
    }
}
