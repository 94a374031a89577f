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
}

impl FromStr for Address {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(format!(
                    "{s:?}: empty Unix socket path (expected unix:/path)"
                ));
            }
            return Ok(Address::Unix(PathBuf::from(p)));
        }
        match s.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {
                Ok(Address::Tcp(s.to_string()))
            }
            _ => Err(format!(
                "{s:?}: expected host:port (e.g. 127.0.0.1:5640) or unix:/path/to.sock"
            )),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(s) => f.write_str(s),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
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
        assert!("localhost".parse::<Address>().is_err());
        assert!("h:99999".parse::<Address>().is_err());
        assert_eq!(Address::Unix("/x".into()).to_string(), "unix:/x");
    }
}
