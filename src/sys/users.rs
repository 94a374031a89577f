//! This machine's user database (NSS: files, LDAP, sssd...): names of
//! uids and gids, uids of names, and group membership. One place for the
//! `*_r` calls, which retry with a larger buffer on ERANGE.

use std::ffi::{CStr, CString, c_char};

/// Calls a reentrant NSS lookup with a growing buffer; `f` returns the
/// `*_r` status and whether an entry was found.
fn with_buffer<T>(mut f: impl FnMut(&mut [u8]) -> (i32, Option<T>)) -> Option<T> {
    let mut buf = vec![0u8; 4096];
    loop {
        let (rc, v) = f(&mut buf);
        if rc == libc::ERANGE && buf.len() < 1 << 22 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return if rc == 0 { v } else { None };
    }
}

/// A C string from NSS, copied out (lossy UTF-8).
///
/// # Safety
/// `p` is null or points to a NUL-terminated string alive for the call.
unsafe fn owned(p: *const c_char) -> Option<String> {
    // SAFETY: per the function's contract.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// One `getpw*_r`/`getgr*_r` lookup: `call(entry, buf, len, out)` is the
/// reentrant function with its key bound, `pick` copies what is wanted out
/// of the entry found. `E` is `libc::passwd` or `libc::group`.
fn lookup<E, T>(
    call: impl Fn(*mut E, *mut c_char, usize, *mut *mut E) -> i32,
    pick: impl Fn(&E) -> Option<T>,
) -> Option<T> {
    with_buffer(|buf| {
        // SAFETY: `E` is a plain C struct (all zeroes is valid); `call`
        // writes into it and into `buf` (of the length passed), and the
        // strings it points to live in `buf`, which `pick` copies out of
        // before `buf` changes.
        let mut entry: E = unsafe { std::mem::zeroed() };
        let mut out: *mut E = std::ptr::null_mut();
        let rc = call(&mut entry, buf.as_mut_ptr().cast(), buf.len(), &mut out);
        (rc, if out.is_null() { None } else { pick(&entry) })
    })
}

/// (name, primary gid) of a uid.
pub fn passwd(uid: u32) -> Option<(String, u32)> {
    lookup(
        // SAFETY: the pointers come from `lookup`, valid for the call.
        |pw, b, l, o| unsafe { libc::getpwuid_r(uid, pw, b, l, o) },
        // SAFETY: `pw_name` is null or a C string in the lookup's buffer.
        |pw: &libc::passwd| unsafe { owned(pw.pw_name) }.map(|n| (n, pw.pw_gid)),
    )
}

/// The name of a uid.
pub fn user_name(uid: u32) -> Option<String> {
    passwd(uid).map(|(n, _)| n)
}

/// The name of a uid, or the uid in decimal when it has none (as `ps`
/// shows owners).
pub fn user_label(uid: u32) -> String {
    user_name(uid).unwrap_or_else(|| uid.to_string())
}

/// The name of a gid (`group`) or of a uid.
pub fn id_name(group: bool, id: u32) -> Option<String> {
    if group { group_name(id) } else { user_name(id) }
}

/// The name of a gid.
pub fn group_name(gid: u32) -> Option<String> {
    lookup(
        // SAFETY: as in `passwd`, for getgrgid_r.
        |gr, b, l, o| unsafe { libc::getgrgid_r(gid, gr, b, l, o) },
        // SAFETY: `gr_name` is null or a C string in the lookup's buffer.
        |gr: &libc::group| unsafe { owned(gr.gr_name) },
    )
}

/// The uid of a user name.
pub fn uid_by_name(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    lookup(
        // SAFETY: as in `passwd`, for getpwnam_r; `c` outlives the call.
        |pw, b, l, o| unsafe { libc::getpwnam_r(c.as_ptr(), pw, b, l, o) },
        |pw: &libc::passwd| Some(pw.pw_uid),
    )
}

/// The gid of a group name.
pub fn gid_by_name(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    lookup(
        // SAFETY: as in `passwd`, for getgrnam_r; `c` outlives the call.
        |gr, b, l, o| unsafe { libc::getgrnam_r(c.as_ptr(), gr, b, l, o) },
        |gr: &libc::group| Some(gr.gr_gid),
    )
}

/// Every group of a user (`getgrouplist`), the primary one included.
pub fn group_list(name: &str, primary: u32) -> Vec<u32> {
    let Ok(c) = CString::new(name) else {
        return vec![primary];
    };
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let mut count = n;
        // SAFETY: `groups` has room for `count` gids; getgrouplist sets
        // `count` to the number needed when it returns -1.
        let rc =
            unsafe { libc::getgrouplist(c.as_ptr(), primary, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return groups;
        }
        if count <= n || n > 65536 {
            return vec![primary];
        }
        n = count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_known_both_ways() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(uid_by_name("root"), Some(0));
        assert_eq!(group_name(0).as_deref(), Some("root"));
        assert_eq!(id_name(true, 0).as_deref(), Some("root"));
        assert_eq!(user_label(0), "root");
        assert_eq!(user_label(4_000_000_123), "4000000123");
        assert_eq!(gid_by_name("root"), Some(0));
        assert!(group_list("root", 0).contains(&0));
        assert_eq!(uid_by_name("no-such-user-gproc"), None);
        assert_eq!(uid_by_name("nul\0byte"), None);
    }
}
