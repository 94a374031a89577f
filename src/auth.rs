//! MUNGE authentication, compatible with diod's (`libdiod/diod_auth.c`):
//! the client opens an auth fid with `Tauth`, writes the text credential
//! from `munge_encode` into it at consecutive offsets, and names the afid in
//! `Tattach`; the server decodes the credential with `munge_decode` and
//! accepts the attach only if the credential's uid is the one the attach
//! claims. munged rejects replayed and expired credentials itself.
//!
//! A credential names no receiver by itself, so one captured on node A
//! would be good on node B for its lifetime. gproc's clients therefore put
//! the receiver's name in the payload ([`RECEIVER_PREFIX`]`name`), and a
//! receiver refuses a credential that names someone else. A credential
//! without a payload (diod's tools) still proves its own uid for that one
//! attach, but only one addressed to the receiver lets a service identity
//! name other users on its connection.
//!
//! libmunge is loaded at run time (`dlopen("libmunge.so.2")`), so gproc
//! builds and runs without it and only `auth = "munge"` needs it installed;
//! when it is missing the error says so. A statically linked build
//! (`+crt-static`, musl) has no MUNGE at all: see [`STATIC_BUILD`].

use std::ffi::{CStr, CString, c_char, c_int, c_void};

/// What a credential's payload starts with when it names its receiver.
pub const RECEIVER_PREFIX: &str = "gproc-receiver=";

/// The uid and gid a credential proves, and whom it was made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The encoding process's uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
    /// The receiver its payload names; `None` for a credential without
    /// one (diod's tools) or with a payload that is not gproc's.
    pub receiver: Option<String>,
}

/// The receiver a payload names.
fn receiver_of(payload: &[u8]) -> Option<String> {
    let rest = payload.strip_prefix(RECEIVER_PREFIX.as_bytes())?;
    String::from_utf8(rest.to_vec()).ok()
}

/// Verifies credentials written to an auth fid.
pub trait Authenticator: Send + Sync + 'static {
    /// Decodes `cred`; blocking (called from a blocking-pool thread).
    ///
    /// # Errors
    /// Why the credential is not acceptable (expired, replayed, bad key...).
    fn verify(&self, cred: &[u8]) -> Result<Credential, String>;

    /// Name for logs.
    fn name(&self) -> &'static str;
}

type DecodeFn = unsafe extern "C" fn(
    cred: *const c_char,
    ctx: *mut c_void,
    buf: *mut *mut c_void,
    len: *mut c_int,
    uid: *mut libc::uid_t,
    gid: *mut libc::gid_t,
) -> c_int;
type EncodeFn = unsafe extern "C" fn(
    cred: *mut *mut c_char,
    ctx: *mut c_void,
    buf: *const c_void,
    len: c_int,
) -> c_int;
type StrerrorFn = unsafe extern "C" fn(e: c_int) -> *const c_char;

/// Why a statically linked gproc refuses MUNGE. A static binary cannot
/// load libmunge safely: `dlopen` would map the node's shared libc next to
/// the one linked in (two mallocs, two sets of locks), and on the old-libc
/// nodes such builds are for, a libc that may not match at all.
pub const STATIC_BUILD: &str = "MUNGE is unavailable in this statically linked build of gproc: \
     a static binary cannot load libmunge (dlopen would bring in the node's shared libc \
     beside the static one). Use the dynamically linked gproc where MUNGE is needed, \
     or serve the aggregator over a Unix socket or with --auth none on a trusted network";

#[cfg_attr(target_feature = "crt-static", allow(dead_code))]
struct Lib {
    decode: DecodeFn,
    encode: EncodeFn,
    strerror: StrerrorFn,
}

#[cfg(target_feature = "crt-static")]
fn lib() -> Result<&'static Lib, String> {
    Err(STATIC_BUILD.into())
}

#[cfg(not(target_feature = "crt-static"))]
fn lib() -> Result<&'static Lib, String> {
    static LIB: std::sync::OnceLock<Result<Lib, String>> = std::sync::OnceLock::new();
    LIB.get_or_init(|| {
        // SAFETY: dlopen/dlsym with NUL-terminated names; the handle is never
        // closed, so the function pointers stay valid for the process's life;
        // the symbols have the C signatures declared above (munge.h).
        unsafe {
            let mut h = std::ptr::null_mut();
            for name in [c"libmunge.so.2", c"libmunge.so"] {
                h = libc::dlopen(name.as_ptr(), libc::RTLD_NOW);
                if !h.is_null() {
                    break;
                }
            }
            if h.is_null() {
                return Err("libmunge is not installed (apt-get install libmunge2 munge)".into());
            }
            let sym = |n: &CStr| {
                let p = libc::dlsym(h, n.as_ptr());
                if p.is_null() {
                    Err(format!("libmunge lacks {}", n.to_string_lossy()))
                } else {
                    Ok(p)
                }
            };
            Ok(Lib {
                decode: std::mem::transmute::<*mut c_void, DecodeFn>(sym(c"munge_decode")?),
                encode: std::mem::transmute::<*mut c_void, EncodeFn>(sym(c"munge_encode")?),
                strerror: std::mem::transmute::<*mut c_void, StrerrorFn>(sym(c"munge_strerror")?),
            })
        }
    })
    .as_ref()
    .map_err(Clone::clone)
}

fn strerror(l: &Lib, e: c_int) -> String {
    // SAFETY: munge_strerror returns a pointer to a static string.
    unsafe {
        let p = (l.strerror)(e);
        if p.is_null() {
            format!("munge error {e}")
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

/// Decodes a MUNGE credential with the local munged.
///
/// # Errors
/// libmunge missing, or munged refuses the credential (the message is
/// libmunge's: "Replayed credential", "Expired credential", ...).
pub fn munge_decode(cred: &[u8]) -> Result<Credential, String> {
    let l = lib()?;
    let text = cred.strip_suffix(b"\0").unwrap_or(cred);
    let c = CString::new(text).map_err(|_| "credential contains a NUL byte".to_string())?;
    let (mut buf, mut len, mut uid, mut gid) = (std::ptr::null_mut(), 0, 0, 0);
    // SAFETY: `c` is NUL-terminated and outlives the call; the out pointers
    // are valid; a returned payload buffer is malloc'd and freed here.
    let rc = unsafe {
        (l.decode)(
            c.as_ptr(),
            std::ptr::null_mut(),
            &mut buf,
            &mut len,
            &mut uid,
            &mut gid,
        )
    };
    let mut receiver = None;
    if !buf.is_null() {
        if rc == 0 && len > 0 {
            // SAFETY: libmunge returned `len` bytes at `buf`.
            let payload = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len as usize) };
            receiver = receiver_of(payload);
        }
        // SAFETY: allocated by libmunge with malloc.
        unsafe { libc::free(buf) };
    }
    if rc != 0 {
        return Err(strerror(l, rc));
    }
    Ok(Credential { uid, gid, receiver })
}

/// Encodes a credential for this process's uid (for clients), naming
/// `receiver` in its payload when given.
///
/// # Errors
/// libmunge missing or munged not running.
pub fn munge_encode(receiver: Option<&str>) -> Result<String, String> {
    let l = lib()?;
    let payload = receiver.map(|r| format!("{RECEIVER_PREFIX}{r}"));
    let (ptr, len) = match &payload {
        Some(p) => (
            p.as_ptr().cast::<c_void>(),
            c_int::try_from(p.len()).map_err(|_| "receiver name too long".to_string())?,
        ),
        None => (std::ptr::null(), 0),
    };
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: `out` receives a malloc'd NUL-terminated string we free;
    // `ptr` points at `len` bytes that outlive the call.
    let rc = unsafe { (l.encode)(&mut out, std::ptr::null_mut(), ptr, len) };
    if rc != 0 || out.is_null() {
        return Err(strerror(l, rc));
    }
    // SAFETY: non-null NUL-terminated string from libmunge, freed once.
    let s = unsafe {
        let s = CStr::from_ptr(out).to_string_lossy().into_owned();
        libc::free(out.cast());
        s
    };
    Ok(s)
}

/// MUNGE as an [`Authenticator`] for the receiver called `name`.
pub struct Munge {
    name: String,
}

impl Munge {
    /// Checks that libmunge can be loaded; `name` is this receiver's (a
    /// node's name in the aggregator's config, by default the host name).
    ///
    /// # Errors
    /// It cannot.
    pub fn new(name: impl Into<String>) -> Result<Self, String> {
        lib()?;
        Ok(Munge { name: name.into() })
    }
}

/// Refuses a credential addressed to another receiver than `me`.
///
/// # Errors
/// It names someone else.
pub fn check_receiver(c: Credential, me: &str) -> Result<Credential, String> {
    match &c.receiver {
        Some(r) if r != me => Err(format!(
            "credential addressed to {r:?}, not to this server ({me:?}); \
             the aggregator's node name must match the agent's --name"
        )),
        _ => Ok(c),
    }
}

impl Authenticator for Munge {
    fn verify(&self, cred: &[u8]) -> Result<Credential, String> {
        check_receiver(munge_decode(cred)?, &self.name)
    }

    fn name(&self) -> &'static str {
        "munge"
    }
}
