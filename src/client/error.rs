//! The client's error type: every variant names the server, and where a
//! file was involved, the path, so that an aggregator over thousands of
//! nodes and a user at a terminal both see *which* node and file failed.

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::proto::{Dialect, errno};

/// Why a 9P request or connection failed.
///
/// Errors are `Clone`: when a connection dies, the one error that killed it
/// is handed to every request in flight and to every later call.
#[derive(Debug, Clone, Error)]
pub enum ClientError {
    /// The transport failed (connect refused, reset, write error).
    #[error("{server}: {source}")]
    Io {
        /// The server's address.
        server: String,
        /// The I/O error; shared because the error is cloned to every
        /// waiter of a dead connection.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// No answer in time. For a request, a `Tflush` was sent for it.
    #[error("{server}{}: {op} timed out after {after:?}", path_part(.path))]
    Timeout {
        /// The server's address.
        server: String,
        /// What we were doing (`connect`, `walk`, `read`, ...).
        op: &'static str,
        /// The path involved, empty if none.
        path: String,
        /// The limit that expired.
        after: Duration,
    },
    /// The connection is closed: the server hung up (EOF), or the client
    /// was closed. Later calls on the connection fail with this too.
    #[error("{server}: connection closed: {reason}")]
    Closed {
        /// The server's address.
        server: String,
        /// What happened.
        reason: String,
    },
    /// The server broke the protocol (undecodable bytes, unknown tag, wrong
    /// reply type, oversized frame). The connection is closed.
    #[error("{server}: protocol error: {detail}")]
    Protocol {
        /// The server's address.
        server: String,
        /// What was wrong.
        detail: String,
    },
    /// The server answered the request with an error.
    #[error("{server}{}: {message}", path_part(.path))]
    Remote {
        /// The server's address.
        server: String,
        /// The operation that failed (`walk`, `open`, `read`, ...).
        op: &'static str,
        /// The path involved, empty if none.
        path: String,
        /// Linux errno (from `Rlerror`/.u `Rerror`, or mapped from a 9P2000
        /// error string).
        errno: u32,
        /// The server's text (9P2000/.u) or the errno's text (.L).
        message: String,
    },
    /// `Tversion` failed: the server speaks no dialect we do, offered an
    /// msize below 4096, or answered with an error.
    #[error("{server}: version negotiation failed: {detail}")]
    Version {
        /// The server's address.
        server: String,
        /// What went wrong.
        detail: String,
    },
    /// The operation does not exist in the dialect the server speaks
    /// (`readlink` or `statfs` in plain 9P2000).
    #[error("{server}{}: {op} is not supported in {dialect}", path_part(.path))]
    Unsupported {
        /// The server's address.
        server: String,
        /// The operation.
        op: &'static str,
        /// The path involved, empty if none.
        path: String,
        /// The dialect the connection speaks.
        dialect: Dialect,
    },
    /// A file or directory was larger than the caller's byte cap: a node
    /// must not be able to make us buffer without bound.
    #[error("{server}{}: larger than the {limit}-byte limit", path_part(.path))]
    TooLarge {
        /// The server's address.
        server: String,
        /// The path involved.
        path: String,
        /// The cap in bytes.
        limit: u64,
    },
    /// The request cannot be expressed in 9P (a name over 65535 bytes, a
    /// message over msize).
    #[error("{server}{}: {detail}", path_part(.path))]
    Invalid {
        /// The server's address.
        server: String,
        /// The path involved, empty if none.
        path: String,
        /// What is wrong.
        detail: String,
    },
}

/// `" /path"` or nothing, for messages like `host:564 /1/status: ...`.
fn path_part(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" {path}")
    }
}

impl ClientError {
    /// A Linux errno for this error, so that an aggregator serving the
    /// result over 9P can pass it on: the server's own errno for
    /// [`Remote`](Self::Remote), a transport errno for the rest.
    pub fn errno(&self) -> u32 {
        match self {
            ClientError::Io { source, .. } => errno::from_io(source),
            ClientError::Timeout { .. } => errno::ETIMEDOUT,
            ClientError::Closed { .. } => errno::ECONNRESET,
            ClientError::Protocol { .. } | ClientError::Version { .. } => errno::EPROTO,
            ClientError::Remote { errno, .. } => *errno,
            ClientError::Unsupported { .. } => errno::EOPNOTSUPP,
            ClientError::TooLarge { .. } => errno::EFBIG,
            ClientError::Invalid { .. } => errno::EINVAL,
        }
    }

    /// The server the error is about.
    pub fn server(&self) -> &str {
        match self {
            ClientError::Io { server, .. }
            | ClientError::Timeout { server, .. }
            | ClientError::Closed { server, .. }
            | ClientError::Protocol { server, .. }
            | ClientError::Remote { server, .. }
            | ClientError::Version { server, .. }
            | ClientError::Unsupported { server, .. }
            | ClientError::TooLarge { server, .. }
            | ClientError::Invalid { server, .. } => server,
        }
    }

    /// Whether the connection is unusable after this error (as opposed to
    /// one request failing): a pool reconnects on these.
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            ClientError::Io { .. }
                | ClientError::Closed { .. }
                | ClientError::Protocol { .. }
                | ClientError::Version { .. }
        )
    }

    pub(crate) fn io(server: &str, e: std::io::Error) -> Self {
        ClientError::Io {
            server: server.to_string(),
            source: Arc::new(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_server_and_path() {
        let e = ClientError::Remote {
            server: "127.0.0.1:5640".into(),
            op: "walk",
            path: "/1/statuss".into(),
            errno: errno::ENOENT,
            message: errno::to_string(errno::ENOENT),
        };
        assert_eq!(
            e.to_string(),
            "127.0.0.1:5640 /1/statuss: file does not exist"
        );
        assert_eq!(e.errno(), errno::ENOENT);
        let t = ClientError::Timeout {
            server: "n1:564".into(),
            op: "read",
            path: String::new(),
            after: Duration::from_secs(2),
        };
        assert_eq!(t.to_string(), "n1:564: read timed out after 2s");
        assert_eq!(t.errno(), errno::ETIMEDOUT);
        let io = ClientError::io(
            "n1:564",
            std::io::Error::from_raw_os_error(errno::ECONNREFUSED as i32),
        );
        assert_eq!(io.errno(), errno::ECONNREFUSED);
        assert!(io.is_connection_error());
    }
}
