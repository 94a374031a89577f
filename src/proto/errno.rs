//! Linux errno values and the 9P2000 error strings that stand for them.
//!
//! 9P2000.L sends the errno (`Rlerror`), 9P2000.u a string and the errno,
//! plain 9P2000 only a string. One table serves both directions: the server
//! turns an errno into a string, the client turns a string from a Plan 9
//! style peer back into an errno.

#![allow(missing_docs)]

pub const EPERM: u32 = 1;
pub const ENOENT: u32 = 2;
pub const ESRCH: u32 = 3;
pub const EINTR: u32 = 4;
pub const EIO: u32 = 5;
pub const EBADF: u32 = 9;
pub const EAGAIN: u32 = 11;
pub const ENOMEM: u32 = 12;
pub const EACCES: u32 = 13;
pub const EFAULT: u32 = 14;
pub const EBUSY: u32 = 16;
pub const EEXIST: u32 = 17;
pub const ENOTDIR: u32 = 20;
pub const EISDIR: u32 = 21;
pub const EINVAL: u32 = 22;
pub const EMFILE: u32 = 24;
pub const EFBIG: u32 = 27;
pub const ENOSPC: u32 = 28;
pub const EROFS: u32 = 30;
pub const ERANGE: u32 = 34;
pub const ENAMETOOLONG: u32 = 36;
pub const ENOSYS: u32 = 38;
pub const ENOTEMPTY: u32 = 39;
pub const ELOOP: u32 = 40;
pub const ENODATA: u32 = 61;
pub const EPROTO: u32 = 71;
pub const EBADMSG: u32 = 74;
pub const EOVERFLOW: u32 = 75;
pub const EMSGSIZE: u32 = 90;
pub const EOPNOTSUPP: u32 = 95;
pub const ECONNRESET: u32 = 104;
pub const ETIMEDOUT: u32 = 110;
pub const ECONNREFUSED: u32 = 111;
pub const EHOSTDOWN: u32 = 112;
pub const EHOSTUNREACH: u32 = 113;
pub const ESTALE: u32 = 116;

/// (errno, 9P2000 string). The strings for the common cases are Plan 9's
/// own, so Plan 9 tools print what their users expect.
const TABLE: &[(u32, &str)] = &[
    (EPERM, "permission denied"),
    (ENOENT, "file does not exist"),
    (ESRCH, "no such process"),
    (EINTR, "interrupted"),
    (EIO, "i/o error"),
    (EBADF, "unknown fid"),
    (EAGAIN, "resource temporarily unavailable"),
    (ENOMEM, "out of memory"),
    (EACCES, "permission denied"),
    (EFAULT, "bad address"),
    (EBUSY, "device or resource busy"),
    (EEXIST, "file already exists"),
    (ENOTDIR, "not a directory"),
    (EISDIR, "is a directory"),
    (EINVAL, "bad arg in system call"),
    (EMFILE, "too many open files"),
    (EFBIG, "file too large"),
    (ENOSPC, "no space left on device"),
    (EROFS, "read-only file system"),
    (ERANGE, "result out of range"),
    (ENAMETOOLONG, "file name too long"),
    (ENOSYS, "function not implemented"),
    (ENOTEMPTY, "directory not empty"),
    (ELOOP, "too many levels of symbolic links"),
    (ENODATA, "no data available"),
    (EPROTO, "protocol error"),
    (EBADMSG, "bad message"),
    (EOVERFLOW, "value too large"),
    (EMSGSIZE, "message too long"),
    (EOPNOTSUPP, "operation not supported"),
    (ECONNRESET, "connection reset"),
    (ETIMEDOUT, "timed out"),
    (ECONNREFUSED, "connection refused"),
    (EHOSTDOWN, "host is down"),
    (EHOSTUNREACH, "no route to host"),
    (ESTALE, "stale file handle"),
];

/// The 9P2000 string for an errno.
pub fn to_string(errno: u32) -> String {
    TABLE
        .iter()
        .find(|(e, _)| *e == errno)
        .map(|(_, s)| (*s).to_string())
        .unwrap_or_else(|| format!("errno {errno}"))
}

/// The errno for a 9P2000 error string (Plan 9 servers send only strings).
/// Unknown strings map to EIO.
pub fn from_string(s: &str) -> u32 {
    if let Some(&(e, _)) = TABLE.iter().find(|(_, t)| *t == s) {
        return e;
    }
    if let Some(n) = s.strip_prefix("errno ").and_then(|n| n.parse().ok()) {
        return n;
    }
    // Common Plan 9 phrasings from other servers.
    let l = s.to_ascii_lowercase();
    if l.contains("not exist") || l.contains("not found") {
        ENOENT
    } else if l.contains("permission") {
        EACCES
    } else if l.contains("not a directory") {
        ENOTDIR
    } else {
        EIO
    }
}

/// The errno of a 9P2000.u `Rerror`: its errno field when it holds a Linux
/// errno (1 to 4095, the kernel's `MAX_ERRNO`), else the one its string
/// names. Servers that have no errno send 0 or ~0 (the reference p9fs
/// server sends ~0 with "file not found"), which must not reach a client
/// as `errno 4294967295`.
pub fn from_dotu(errno: u32, ename: &str) -> u32 {
    if (1..4096).contains(&errno) {
        errno
    } else {
        from_string(ename)
    }
}

/// The errno for an I/O error: the OS's own when it has one, otherwise one
/// chosen by its kind (a closed connection is ECONNRESET, anything unknown
/// EIO). The one mapping for the server's replies and the client's errors.
pub fn from_io(e: &std::io::Error) -> u32 {
    use std::io::ErrorKind as K;
    match e.raw_os_error() {
        Some(n) if n > 0 => n as u32,
        _ => match e.kind() {
            K::NotFound => ENOENT,
            K::PermissionDenied => EACCES,
            K::TimedOut => ETIMEDOUT,
            K::InvalidInput => EINVAL,
            K::ConnectionRefused => ECONNREFUSED,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                ECONNRESET
            }
            _ => EIO,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_map_back_to_their_errno() {
        for &(e, s) in TABLE {
            // EPERM and EACCES share Plan 9's string; the first one wins.
            if e != EACCES {
                assert_eq!(from_string(s), e, "{s}");
            }
        }
        assert_eq!(from_string(&to_string(999)), 999);
        assert_eq!(from_string("'foo' file does not exist"), ENOENT);
    }

    #[test]
    fn dotu_errors_without_an_errno_take_the_strings() {
        assert_eq!(from_dotu(2, "whatever"), ENOENT);
        assert_eq!(from_dotu(u32::MAX, "file not found"), ENOENT);
        assert_eq!(from_dotu(0, "permission denied"), EPERM);
        assert_eq!(from_dotu(70_000, "odd"), EIO);
    }

    #[test]
    fn io_errors_keep_the_os_errno_or_map_by_kind() {
        use std::io::{Error, ErrorKind};
        assert_eq!(from_io(&Error::from_raw_os_error(3)), ESRCH);
        assert_eq!(from_io(&Error::from(ErrorKind::NotFound)), ENOENT);
        assert_eq!(from_io(&Error::from(ErrorKind::BrokenPipe)), ECONNRESET);
        assert_eq!(from_io(&Error::other("x")), EIO);
    }
}
