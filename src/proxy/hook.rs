//! The single point where every statement passes before it is forwarded to the server.
//!
//! The session calls [`StatementHook::inspect`] for every statement text a client sends: each
//! simple `Query` (the whole text, which may hold several statements) and each `Parse` (with its
//! statement name; the empty name is the unnamed statement). A `Bind` of a remembered named
//! statement does not pass here again: its earlier verdict is reused by the session.

/// How the statement reached the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolPath<'a> {
    /// A simple-protocol `Query` message.
    Simple,
    /// An extended-protocol `Parse` message; `statement` is its name ("" = unnamed).
    Extended { statement: &'a str },
}

pub use crate::protocol::TxStatus;

/// What the session knows when a statement passes.
#[derive(Debug, Clone)]
pub struct SessionView<'a> {
    /// Proxy-assigned session id, unique per process run.
    pub session_id: u64,
    /// From the StartupMessage.
    pub user: &'a str,
    /// From the StartupMessage (defaults to the user name, as in Postgres).
    pub database: &'a str,
    /// From the StartupMessage or the latest ParameterStatus.
    pub application_name: &'a str,
    /// From ParameterStatus `server_version`.
    pub server_version: &'a str,
    /// From ParameterStatus `client_encoding`.
    pub client_encoding: &'a str,
    /// From ParameterStatus `standard_conforming_strings` (`on` → true).
    pub standard_conforming_strings: bool,
    /// From the last ReadyForQuery.
    pub tx_status: TxStatus,
    /// True while the client has sent extended-protocol messages not yet closed by a Sync.
    pub in_pipeline: bool,
}

/// The hook's answer for one statement text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward the client's bytes unchanged.
    Forward,
    /// Forward this text instead of the client's. For a `Parse`, the replacement declares no
    /// parameter types and every later `Bind` of that statement is re-encoded with zero
    /// parameters (DESIGN.md decision 5: a rejected statement becomes a parameterless `DO`
    /// block). Text containing a NUL byte cannot be sent and closes the session with 08P01.
    Replace(String),
}

/// Receives every statement before it is forwarded.
pub trait StatementHook: Send + Sync + 'static {
    fn inspect(&self, session: &SessionView<'_>, sql: &str, path: ProtocolPath<'_>) -> Verdict;
}

/// The hook of a proxy without rules: forwards everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl StatementHook for AllowAll {
    fn inspect(&self, _: &SessionView<'_>, _: &str, _: ProtocolPath<'_>) -> Verdict {
        Verdict::Forward
    }
}
