//! PostgreSQL wire format (protocol 3.0), pure: bytes in, typed views or bytes out, no sockets.
//!
//! The proxy forwards frames as raw bytes (DESIGN.md decision 1). This layer only *checks* frame
//! headers ([`frame`]), parses the untyped first packet ([`startup`]), decodes the few message
//! types the session must read, and builds the few messages pgwarden writes itself.
pub mod auth;
pub mod backend;
mod codec;
pub mod errors;
pub mod frame;
pub mod frontend;
pub mod negotiate;
pub mod startup;
pub mod tx;

pub use frame::{FrameHeader, FrameLimits};
pub use tx::TxStatus;

/// Why bytes from a peer are not a valid protocol message. Every variant closes only the
/// connection it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A length field below 4 (or below the startup minimum) or negative.
    #[error("invalid length {len} in message of type {tag:?}")]
    BadLength { tag: char, len: i64 },
    /// A length over the per-type cap (DESIGN.md decision 1).
    #[error("message of type {tag:?} is {len} bytes, over the limit of {cap} bytes")]
    TooLarge { tag: char, len: u64, cap: usize },
    /// A startup packet whose length is out of range.
    #[error("invalid startup packet length {0}")]
    BadStartupLength(i64),
    /// A startup packet with a protocol major version pgwarden does not speak.
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0")]
    UnsupportedProtocol { major: u16, minor: u16 },
    /// A client message other than an authentication response before AuthenticationOk.
    #[error(
        "expected an authentication response before authentication completed, got message \
         type {tag:?}"
    )]
    BeforeAuthentication { tag: char },
    /// A message whose body does not match its type.
    #[error("malformed {what} message: {why}")]
    Malformed {
        what: &'static str,
        why: &'static str,
    },
}

impl ProtocolError {
    pub(crate) fn malformed(what: &'static str, why: &'static str) -> Self {
        ProtocolError::Malformed { what, why }
    }
}
