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

/// (name, primary gid) of a uid.
pub fn passwd(uid: u32) -> Option<(String, u32)> {
    with_buffer(|buf| {
        // SAFETY: `pw` is plain data (zero is valid); getpwuid_r writes into
        // it and into `buf` (of the length passed); the name points into
        // `buf` and is copied before `buf` changes.
        unsafe {
            let mut pw: libc::passwd = std::mem::zeroed();
            let mut out: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out);
            (
                rc,
                if out.is_null() {
                    None
                } else {
                    owned(pw.pw_name).map(|n| (n, pw.pw_gid))
                },
            )
        }
    })
}

/// The name of a uid.
pub fn user_name(uid: u32) -> Option<String> {
    passwd(uid).map(|(n, _)| n)
}

/// The name of a gid.
pub fn group_name(gid: u32) -> Option<String> {
    with_buffer(|buf| {
        // SAFETY: as in `passwd`, for getgrgid_r.
        unsafe {
            let mut gr: libc::group = std::mem::zeroed();
            let mut out: *mut libc::group = std::ptr::null_mut();
            let rc = libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut out);
            (
                rc,
                if out.is_null() {
                    None
                } else {
                    owned(gr.gr_name)
                },
            )
        }
    })
}

/// The uid of a user name.
pub fn uid_by_name(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    with_buffer(|buf| {
        // SAFETY: as in `passwd`, for getpwnam_r; `c` outlives the call.
        unsafe {
            let mut pw: libc::passwd = std::mem::zeroed();
            let mut out: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwnam_r(
                c.as_ptr(),
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut out,
            );
            (rc, (!out.is_null()).then_some(pw.pw_uid))
        }
    })
}

/// The gid of a group name.
pub fn gid_by_name(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    with_buffer(|buf| {
        // SAFETY: as in `passwd`, for getgrnam_r; `c` outlives the call.
        unsafe {
            let mut gr: libc::group = std::mem::zeroed();
            let mut out: *mut libc::group = std::ptr::null_mut();
            let rc = libc::getgrnam_r(
                c.as_ptr(),
                &mut gr,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut out,
            );
            (rc, (!out.is_null()).then_some(gr.gr_gid))
        }
    })
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
        assert_eq!(gid_by_name("root"), Some(0));
        assert!(group_list("root", 0).contains(&0));
        assert_eq!(uid_by_name("no-such-user-gproc"), None);
        assert_eq!(uid_by_name("nul\0byte"), None);
    }
}
