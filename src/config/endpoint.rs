//! Addresses: `host:port`, `[v6]:port` and `unix:/path`, for both the
//! aggregator's listeners and the nodes it dials, plus the `{name}` address
//! templates of `[[nodes]]` groups.
//!
//! TCP hosts are kept as written and not resolved here: resolving is I/O, and
//! a node's DNS name may only resolve on the cluster network.

/// Listener and node addresses are the crate's one address type.
pub use crate::net::{Address as Endpoint, MAX_UNIX_PATH};

/// A node's address: the same two transports as a listener.
pub type NodeAddr = Endpoint;

/// The placeholder an address template substitutes with each node's name.
pub const NAME_PLACEHOLDER: &str = "{name}";

/// Checks that a template uses no placeholder other than `{name}`.
///
/// # Errors
/// A message naming the stray brace or placeholder.
pub fn check_template(t: &str) -> Result<(), String> {
    let stripped = t.replace(NAME_PLACEHOLDER, "");
    if let Some(i) = stripped.find('{') {
        let rest = &stripped[i..];
        let shown = rest.split_inclusive('}').next().unwrap_or(rest);
        return Err(format!(
            "unknown placeholder {shown:?} in address {t:?}: only {{name}} is replaced"
        ));
    }
    if stripped.contains('}') {
        return Err(format!(
            "stray '}}' in address {t:?}: only {{name}} is replaced"
        ));
    }
    Ok(())
}

/// Substitutes `name` into a template and parses the result.
///
/// # Errors
/// The [`Endpoint::parse`] message for the substituted address.
pub fn instantiate(template: &str, name: &str) -> Result<Endpoint, String> {
    Endpoint::parse(&template.replace(NAME_PLACEHOLDER, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_forms() {
        assert_eq!(
            Endpoint::parse("127.0.0.1:5640"),
            Ok(Endpoint::Tcp("127.0.0.1:5640".into()))
        );
        assert_eq!(
            Endpoint::parse("n0001:564"),
            Ok(Endpoint::Tcp("n0001:564".into()))
        );
        assert_eq!(
            Endpoint::parse("n1.ib.cluster:564"),
            Ok(Endpoint::Tcp("n1.ib.cluster:564".into()))
        );
        assert_eq!(
            Endpoint::parse("[::1]:5640"),
            Ok(Endpoint::Tcp("[::1]:5640".into()))
        );
        assert_eq!(Endpoint::parse("[::]:5640").map(|e| e.is_tcp()), Ok(true));
    }

    #[test]
    fn unix_forms() {
        assert_eq!(
            Endpoint::parse("unix:/run/gproc/gproc.sock"),
            Ok(Endpoint::Unix("/run/gproc/gproc.sock".into()))
        );
        assert_eq!(
            Endpoint::parse("unix:/run/gproc/gproc.sock")
                .unwrap()
                .to_string(),
            "unix:/run/gproc/gproc.sock"
        );
        assert!(
            Endpoint::parse("unix:relative.sock")
                .unwrap_err()
                .contains("absolute")
        );
        let long = format!("unix:/{}", "x".repeat(200));
        assert!(
            Endpoint::parse(&long)
                .unwrap_err()
                .contains("kernel limit is 107")
        );
    }

    #[test]
    fn tcp_errors() {
        let e = |s| Endpoint::parse(s).unwrap_err();
        assert!(e("localhost").contains("missing port"));
        assert!(e(":564").contains("missing host"));
        assert!(e("host:").contains("is not a number"));
        assert!(e("host:70000").contains("is not a number"));
        assert!(e("host:http").contains("is not a number"));
        assert!(e("::1:564").contains("brackets"));
        assert!(e("[::1]").contains("missing port"));
        assert!(e("[::1:564").contains("unclosed"));
        assert!(e("a b:564").contains("character ' '"));
        assert!(e("n/1:564").contains("character '/'"));
    }

    #[test]
    fn templates() {
        assert_eq!(check_template("{name}:5640"), Ok(()));
        assert_eq!(check_template("unix:/run/gproc/{name}.sock"), Ok(()));
        assert_eq!(check_template("10.0.0.1:5640"), Ok(()));
        assert!(
            check_template("{host}:5640")
                .unwrap_err()
                .contains("\"{host}\"")
        );
        assert!(check_template("{name}}:1").unwrap_err().contains("stray"));
        assert!(
            check_template("{name:1")
                .unwrap_err()
                .contains("unknown placeholder")
        );
        assert_eq!(
            instantiate("{name}-ib:564", "n1"),
            Ok(Endpoint::Tcp("n1-ib:564".into()))
        );
        assert_eq!(
            instantiate("unix:/tmp/{name}.sock", "n1"),
            Ok(Endpoint::Unix("/tmp/n1.sock".into()))
        );
    }
}
