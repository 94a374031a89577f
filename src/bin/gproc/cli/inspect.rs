//! `gproc ls`, `gproc cat`, `gproc stat`: look at one 9P server's tree
//! (a node agent, diod, an aggregator) the way `ls`, `cat` and `stat(1)` look
//! at a local one.
//!
//! Like coreutils and ripgrep, an error on one path is reported on stderr
//! (naming the server and the path) and the command goes on with the next;
//! the exit status is 1 if anything failed, 2 for usage errors (clap).

use std::collections::HashMap;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use clap::Args;
use futures::StreamExt;

use gproc::client::{
    Client, ClientError, ClientOptions, DirEntryInfo, FidHandle, FileKind, Metadata, OpenMode, s_if,
};
use gproc::net::Address;
use gproc::proto::{Dialect, errno};

/// How to reach the server; shared by `ls`, `cat` and `stat`.
#[derive(Debug, Args)]
pub struct ConnArgs {
    /// The 9P server: host:port or unix:/path.
    #[arg(long, value_parser = super::agent::parse_addr)]
    server: Address,
    /// The tree to attach: "" for a gproc agent, the exported path for
    /// diod (e.g. /proc).
    #[arg(long, default_value = "")]
    aname: String,
    /// Force a dialect (9P2000.L, 9P2000.u, 9P2000); default: ask for
    /// 9P2000.L and accept what the server offers.
    #[arg(long, value_parser = Dialect::parse)]
    dialect: Option<Dialect>,
    /// User name to attach as (default: $USER).
    #[arg(long)]
    uname: Option<String>,
    /// Give up on a request after this long (e.g. 500ms, 10s).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Options of `gproc ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Long listing: mode, links, owner, group, size, mtime, name.
    #[arg(short = 'l')]
    long: bool,
    /// Paths relative to the attach root (default: /).
    paths: Vec<String>,
}

/// Options of `gproc cat`.
#[derive(Debug, Args)]
pub struct CatArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Files to print, relative to the attach root.
    #[arg(required = true)]
    paths: Vec<String>,
}

/// Options of `gproc stat`.
#[derive(Debug, Args)]
pub struct StatArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Files to describe, relative to the attach root.
    #[arg(required = true)]
    paths: Vec<String>,
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Connects and attaches, or prints why not.
async fn open_root(cmd: &str, a: &ConnArgs) -> Option<FidHandle> {
    let opts = ClientOptions {
        dialect: a.dialect,
        request_timeout: a.timeout,
        connect_timeout: a.timeout.min(Duration::from_secs(10)),
        ..ClientOptions::default()
    };
    let uname = a
        .uname
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "nobody".into());
    let res = async {
        let c = Client::connect(&a.server, opts).await?;
        c.attach(&uname, &a.aname, Some(euid())).await
    }
    .await;
    match res {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("gproc: {cmd} {e}");
            None
        }
    }
}

/// Files `gproc cat` reads at once: each file is a few round trips that
/// wait on the server, so many paths go as fast as the server answers, not
/// one latency after another. Output stays in argument order.
const READ_AHEAD: usize = 16;

/// Bytes of one file read ahead while it waits its turn; a longer file
/// streams the rest a message at a time when its turn comes, so memory
/// stays bounded by `READ_AHEAD` times this (plus one message each).
const AHEAD_BYTES: u64 = 1 << 20;

/// Runs `gproc cat`.
pub async fn run_cat(a: CatArgs) -> Result<ExitCode> {
    let Some(root) = open_root("cat", &a.conn).await else {
        return Ok(ExitCode::FAILURE);
    };
    let mut failed = false;
    let stdout = io::stdout();
    let root = &root;
    let mut files = futures::stream::iter(&a.paths)
        .map(|p| read_ahead(root, p))
        .buffered(READ_AHEAD);
    while let Some(got) = files.next().await {
        match write_file(got, &mut stdout.lock()).await {
            Ok(()) => {}
            Err(CatError::Out(e)) => return Err(e.into()),
            Err(CatError::Remote(e)) => {
                eprintln!("gproc: cat {e}");
                failed = true;
            }
        }
    }
    Ok(exit(failed))
}

enum CatError {
    /// Writing to stdout failed (BrokenPipe ends the command quietly).
    Out(io::Error),
    /// The server failed this path.
    Remote(ClientError),
}

/// The start of one file, read before its turn to be printed.
struct Ahead {
    /// The bytes read so far, in order.
    data: Vec<bytes::Bytes>,
    /// Done (`None`), more to stream from this open fid and offset, or
    /// the error that stopped the reading after `data`.
    rest: Result<Option<(FidHandle, u64)>, ClientError>,
}

/// Walks to, opens and reads `path` until its end or [`AHEAD_BYTES`].
async fn read_ahead(root: &FidHandle, path: &str) -> Ahead {
    let mut data = Vec::new();
    let rest = async {
        let mut f = root.walk(path).await?;
        f.open(OpenMode::Read).await?;
        let mut offset = 0u64;
        while offset < AHEAD_BYTES {
            let chunk = f.read_at(offset, u32::MAX).await?;
            if chunk.is_empty() {
                return Ok(None);
            }
            offset += chunk.len() as u64;
            data.push(chunk);
        }
        Ok(Some((f, offset)))
    }
    .await;
    Ahead { data, rest }
}

/// Prints a file read ahead, then streams what is left of it, a message
/// at a time.
async fn write_file(got: Ahead, out: &mut impl Write) -> Result<(), CatError> {
    for d in &got.data {
        out.write_all(d).map_err(CatError::Out)?;
    }
    if let Some((f, mut offset)) = got.rest.map_err(|e| {
        // What was read before the error is printed, as a plain cat would.
        let _ = out.flush();
        CatError::Remote(e)
    })? {
        loop {
            let data = f
                .read_at(offset, u32::MAX)
                .await
                .map_err(CatError::Remote)?;
            if data.is_empty() {
                break;
            }
            offset += data.len() as u64;
            out.write_all(&data).map_err(CatError::Out)?;
        }
    }
    out.flush().map_err(CatError::Out)
}

fn exit(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs `gproc ls`.
pub async fn run_ls(a: LsArgs) -> Result<ExitCode> {
    let Some(root) = open_root("ls", &a.conn).await else {
        return Ok(ExitCode::FAILURE);
    };
    let paths = if a.paths.is_empty() {
        vec!["/".to_string()]
    } else {
        a.paths.clone()
    };
    let mut names = NameCache::default();
    let mut failed = false;
    let mut out = io::BufWriter::new(io::stdout().lock());
    for (i, p) in paths.iter().enumerate() {
        let meta = match root.metadata(p).await {
            Ok(m) => m,
            Err(e) => {
                eprintln!("gproc: ls {e}");
                failed = true;
                continue;
            }
        };
        if !meta.is_dir() {
            if a.long {
                let target = link_target(&root, p, &meta).await;
                let row = Row::new(&meta, p.clone(), target, &mut names);
                print_rows(&mut out, &[row])?;
            } else {
                writeln!(out, "{p}")?;
            }
            continue;
        }
        let mut ents = match root.read_dir(p).await {
            Ok(e) => e,
            Err(e) => {
                eprintln!("gproc: ls {e}");
                failed = true;
                continue;
            }
        };
        ents.sort_by(|x, y| x.name.cmp(&y.name));
        if paths.len() > 1 {
            if i > 0 {
                writeln!(out)?;
            }
            writeln!(out, "{p}:")?;
        }
        if !a.long {
            for e in &ents {
                writeln!(out, "{}", e.name)?;
            }
            continue;
        }
        let dir = match root.walk(p).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("gproc: ls {e}");
                failed = true;
                continue;
            }
        };
        let details: Vec<_> = futures::stream::iter(ents)
            .map(|e| entry_details(&dir, e))
            .buffered(64)
            .collect()
            .await;
        let mut rows = Vec::new();
        for d in details {
            match d {
                Ok(Some((m, name, target))) => rows.push(Row::new(&m, name, target, &mut names)),
                Ok(None) => {}
                Err(e) => {
                    eprintln!("gproc: ls {e}");
                    failed = true;
                }
            }
        }
        print_rows(&mut out, &rows)?;
    }
    out.flush()?;
    Ok(exit(failed))
}

/// Metadata and link target of one listed entry. `None` when the entry
/// vanished since the listing (a process that exited): it no longer exists,
/// so it is not shown, and that is not an error.
async fn entry_details(
    dir: &FidHandle,
    e: DirEntryInfo,
) -> Result<Option<(Metadata, String, Option<String>)>, ClientError> {
    let meta = match e.meta {
        Some(m) => m,
        None => match dir.metadata(&e.name).await {
            Ok(m) => m,
            Err(err) if err.errno() == errno::ENOENT => return Ok(None),
            Err(err) => return Err(err),
        },
    };
    let target = link_target(dir, &e.name, &meta).await;
    Ok(Some((meta, e.name, target)))
}

/// A symlink's target for display; `None` when it cannot be read.
async fn link_target(dir: &FidHandle, name: &str, meta: &Metadata) -> Option<String> {
    if !meta.is_symlink() {
        return None;
    }
    if let Some(t) = &meta.link_target {
        return Some(t.clone());
    }
    dir.readlink(name).await.ok()
}

/// One `ls -l` line before column alignment.
struct Row {
    mode: String,
    nlink: String,
    user: String,
    group: String,
    size: String,
    mtime: String,
    name: String,
}

impl Row {
    fn new(m: &Metadata, name: String, target: Option<String>, names: &mut NameCache) -> Self {
        let name = match target {
            Some(t) => format!("{name} -> {t}"),
            None => name,
        };
        Row {
            mode: mode_string(m.mode),
            nlink: m.nlink.unwrap_or(1).to_string(),
            user: owner(m.user.as_deref(), m.uid, false, names),
            group: owner(m.group.as_deref(), m.gid, true, names),
            size: m.size.to_string(),
            mtime: ls_time(m.mtime),
            name,
        }
    }
}

fn print_rows(out: &mut impl Write, rows: &[Row]) -> io::Result<()> {
    let w = |f: fn(&Row) -> usize| rows.iter().map(f).max().unwrap_or(0);
    let (wn, wu, wg, ws) = (
        w(|r| r.nlink.len()),
        w(|r| r.user.len()),
        w(|r| r.group.len()),
        w(|r| r.size.len()),
    );
    for r in rows {
        writeln!(
            out,
            "{} {:>wn$} {:<wu$} {:<wg$} {:>ws$} {} {}",
            r.mode, r.nlink, r.user, r.group, r.size, r.mtime, r.name
        )?;
    }
    Ok(())
}

/// The name the server gave, else the local name of the number (cluster
/// nodes share their user database), else the number.
fn owner(name: Option<&str>, id: Option<u32>, group: bool, names: &mut NameCache) -> String {
    if let Some(n) = name {
        return n.to_string();
    }
    match id {
        Some(id) => names.get(group, id).unwrap_or_else(|| id.to_string()),
        None => "?".into(),
    }
}

/// uid/gid -> local name, looked up once each.
#[derive(Default)]
struct NameCache(HashMap<(bool, u32), Option<String>>);

impl NameCache {
    fn get(&mut self, group: bool, id: u32) -> Option<String> {
        self.0
            .entry((group, id))
            .or_insert_with(|| gproc::sys::users::id_name(group, id))
            .clone()
    }
}

/// `drwxr-xr-x`, `lrwxrwxrwx`, `-rwsr-xr-x`, as `ls -l` prints modes.
pub fn mode_string(mode: u32) -> String {
    let t = match FileKind::from_mode(mode) {
        FileKind::Dir => 'd',
        FileKind::Symlink => 'l',
        FileKind::CharDevice => 'c',
        FileKind::BlockDevice => 'b',
        FileKind::Fifo => 'p',
        FileKind::Socket => 's',
        FileKind::File | FileKind::Unknown => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    let bit = |b: u32, c: char| if mode & b != 0 { c } else { '-' };
    let exec =
        |x: u32, special: u32, on: char, off: char| match (mode & x != 0, mode & special != 0) {
            (true, true) => on,
            (false, true) => off,
            (true, false) => 'x',
            (false, false) => '-',
        };
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(exec(0o100, s_if::ISUID, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(exec(0o010, s_if::ISGID, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(exec(0o001, s_if::ISVTX, 't', 'T'));
    s
}

/// Local broken-down time and its UTC offset in seconds.
fn local_time(t: SystemTime) -> Option<(libc::tm, i64, u32)> {
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    let secs = libc::time_t::try_from(d.as_secs()).ok()?;
    // SAFETY: localtime_r writes only into `tm`, which is owned here;
    // `secs` lives across the call.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return None;
        }
        let off = tm.tm_gmtoff;
        Some((tm, off, d.subsec_nanos()))
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Jan  2 15:04` for recent times, `Jan  2  2023` for those over six
/// months away, as `ls -l` prints them.
fn ls_time(t: SystemTime) -> String {
    let Some((tm, _, _)) = local_time(t) else {
        return "?".into();
    };
    let mon = MONTHS
        .get(usize::try_from(tm.tm_mon).unwrap_or(0))
        .copied()
        .unwrap_or("???");
    let half_year = Duration::from_secs(183 * 24 * 3600);
    let now = SystemTime::now();
    let recent = match now.duration_since(t) {
        Ok(ago) => ago < half_year,
        Err(ahead) => ahead.duration() < half_year,
    };
    if recent {
        format!("{mon} {:>2} {:02}:{:02}", tm.tm_mday, tm.tm_hour, tm.tm_min)
    } else {
        format!("{mon} {:>2} {:>5}", tm.tm_mday, tm.tm_year + 1900)
    }
}

/// `2024-01-02 15:04:05.123456789 +0000`, as `stat(1)` prints times.
fn stat_time(t: SystemTime) -> String {
    let Some((tm, off, nsec)) = local_time(t) else {
        return "?".into();
    };
    let sign = if off < 0 { '-' } else { '+' };
    let off = off.unsigned_abs();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:09} {sign}{:02}{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        nsec,
        off / 3600,
        (off % 3600) / 60
    )
}

/// Runs `gproc stat`.
pub async fn run_stat(a: StatArgs) -> Result<ExitCode> {
    let Some(root) = open_root("stat", &a.conn).await else {
        return Ok(ExitCode::FAILURE);
    };
    let mut names = NameCache::default();
    let mut failed = false;
    let mut out = io::BufWriter::new(io::stdout().lock());
    for p in &a.paths {
        let m = match root.metadata(p).await {
            Ok(m) => m,
            Err(e) => {
                eprintln!("gproc: stat {e}");
                failed = true;
                continue;
            }
        };
        let target = link_target(&root, p, &m).await;
        let file = match target {
            Some(t) => format!("{p} -> {t}"),
            None => p.clone(),
        };
        let id = |n: Option<u32>| n.map(|n| n.to_string()).unwrap_or_else(|| "?".into());
        writeln!(out, "  File: {file}")?;
        writeln!(out, "  Type: {}", m.kind().describe())?;
        writeln!(
            out,
            "  Mode: ({:04o}/{})  Uid: ({:>5}/{:>8})   Gid: ({:>5}/{:>8})",
            m.mode & 0o7777,
            mode_string(m.mode),
            id(m.uid),
            owner(m.user.as_deref(), m.uid, false, &mut names),
            id(m.gid),
            owner(m.group.as_deref(), m.gid, true, &mut names),
        )?;
        let links = m.nlink.map(|n| n.to_string()).unwrap_or_else(|| "?".into());
        writeln!(out, "  Size: {:<15} Links: {links}", m.size)?;
        writeln!(
            out,
            "   Qid: type 0x{:02x}  version {}  path 0x{:016x}",
            m.qid.ty, m.qid.version, m.qid.path
        )?;
        writeln!(out, "Access: {}", stat_time(m.atime))?;
        writeln!(out, "Modify: {}", stat_time(m.mtime))?;
        match m.ctime {
            Some(c) => writeln!(out, "Change: {}", stat_time(c))?,
            None => writeln!(out, "Change: -")?,
        }
    }
    out.flush()?;
    Ok(exit(failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_print_like_ls() {
        assert_eq!(mode_string(s_if::DIR | 0o555), "dr-xr-xr-x");
        assert_eq!(mode_string(s_if::LNK | 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(s_if::REG | 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(s_if::REG | 0o1644), "-rw-r--r-T");
        assert_eq!(mode_string(s_if::REG | 0o444), "-r--r--r--");
    }

    #[test]
    fn dialect_names() {
        assert_eq!(Dialect::parse("9P2000.L"), Ok(Dialect::P2000L));
        assert_eq!(Dialect::parse("9p2000.u"), Ok(Dialect::P2000u));
        assert_eq!(Dialect::parse("9P2000"), Ok(Dialect::P2000));
        assert!(Dialect::parse("9P2001").is_err());
    }

    #[test]
    fn times_format() {
        assert_eq!(ls_time(UNIX_EPOCH).len(), "Jan  1  1970".len());
        assert!(stat_time(UNIX_EPOCH).contains(":00.000000000 "));
    }
}
