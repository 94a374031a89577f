//! Addresses of 9P endpoints: `host:port` for TCP or `unix:/path` for a Unix
//! socket, as written on the command line and in the config file.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where a 9P server listens or a client connects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// `host:port` (a name, IPv4 or `[v6]`), resolved at connect/bind time.
    Tcp(String),
    /// A Unix domain socket path.
    Unix(PathBuf),
    /// `fd:N`: a listening socket (TCP or Unix) inherited as descriptor
    /// `N` from whoever started the server: a supervisor, or a test that
    /// bound port 0 itself and so knows the port without a race. Servers
    /// only; a client cannot connect to it.
    Inherited(i32),
}

/// Longest Unix socket path the kernel accepts (`sun_path` is 108 bytes,
/// one of them the terminating NUL). A longer path fails only at bind or
/// connect time, with a confusing error, so it is checked when parsed.
pub const MAX_UNIX_PATH: usize = 107;

impl Address {
    /// Parses `host:port`, `[::1]:port` or `unix:/absolute/path`. Port 0
    /// (any free port) is accepted for listeners.
    ///
    /// # Errors
    /// A message that says what was expected.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(n) = s.strip_prefix("fd:") {
            return match n.parse::<i32>() {
                Ok(fd) if fd >= 3 => Ok(Address::Inherited(fd)),
                _ => Err(format!(
                    "invalid address {s:?}: \"fd:N\" names an inherited listening socket, N a descriptor number of 3 or more"
                )),
            };
        }
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!(
                    "invalid address {s:?}: a unix socket path must be absolute, e.g. \"unix:/run/gproc/gproc.sock\""
                ));
            }
            if path.len() > MAX_UNIX_PATH {
                return Err(format!(
                    "invalid address {s:?}: unix socket path is {} bytes, the kernel limit is {MAX_UNIX_PATH}",
                    path.len()
                ));
            }
            if path.contains('\0') {
                return Err(format!("invalid address {s:?}: NUL in path"));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        let expected = "expected \"host:port\", \"[ipv6]:port\" or \"unix:/path\"";
        let port = if let Some(rest) = s.strip_prefix('[') {
            let Some((h, p)) = rest.split_once(']') else {
                return Err(format!("invalid address {s:?}: unclosed '[': {expected}"));
            };
            let Some(p) = p.strip_prefix(':') else {
                return Err(format!("invalid address {s:?}: missing port: {expected}"));
            };
            if h.is_empty()
                || !h
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || ":.%".contains(c))
            {
                return Err(format!("invalid address {s:?}: bad IPv6 address {h:?}"));
            }
            p
        } else {
            let Some((h, p)) = s.rsplit_once(':') else {
                return Err(format!("invalid address {s:?}: missing port: {expected}"));
            };
            if h.contains(':') {
                return Err(format!(
                    "invalid address {s:?}: put an IPv6 address in brackets, e.g. \"[::1]:5640\""
                ));
            }
            if h.is_empty() {
                return Err(format!("invalid address {s:?}: missing host: {expected}"));
            }
            if let Some(c) = h
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "-._".contains(*c)))
            {
                return Err(format!(
                    "invalid address {s:?}: character {c:?} in host name"
                ));
            }
            p
        };
        match p_port(port) {
            Some(_) => Ok(Address::Tcp(s.to_string())),
            None => Err(format!(
                "invalid address {s:?}: port {port:?} is not a number from 0 to 65535"
            )),
        }
    }

    /// Whether this is a TCP address (which needs authentication or an
    /// explicit `auth = "none"`).
    pub fn is_tcp(&self) -> bool {
        matches!(self, Address::Tcp(_))
    }
}

fn p_port(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok()
}

impl FromStr for Address {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Address::parse(s)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(s) => f.write_str(s),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Inherited(fd) => write!(f, "fd:{fd}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_rejects_garbage() {
        assert_eq!(
            "127.0.0.1:564".parse(),
            Ok(Address::Tcp("127.0.0.1:564".into()))
        );
        assert_eq!("[::1]:564".parse(), Ok(Address::Tcp("[::1]:564".into())));
        assert_eq!(
            "unix:/run/g.sock".parse(),
            Ok(Address::Unix("/run/g.sock".into()))
        );
        assert!("unix:".parse::<Address>().is_err());
        assert!("unix:relative.sock".parse::<Address>().is_err());
        assert!("::1:564".parse::<Address>().is_err(), "IPv6 needs brackets");
        assert!("localhost".parse::<Address>().is_err());
        assert!("h:99999".parse::<Address>().is_err());
        assert_eq!(Address::Unix("/x".into()).to_string(), "unix:/x");
        assert_eq!("fd:3".parse(), Ok(Address::Inherited(3)));
        assert_eq!(Address::Inherited(7).to_string(), "fd:7");
        for bad in ["fd:", "fd:2", "fd:-1", "fd:x"] {
            assert!(bad.parse::<Address>().is_err(), "{bad}");
        }
    }
}
