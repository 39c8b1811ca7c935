//! pgwarden — a PostgreSQL wire-protocol proxy that makes schema migrations safe.
//!
//! ```text
//! client ──TCP/TLS──▶ listener ──▶ session task (one per client connection)
//!    startup:  SSLRequest / GSSENCRequest / CancelRequest / StartupMessage
//!              → connect upstream (TLS per config) → relay authentication byte-for-byte
//!    client → server:  frames → Query/Parse inspected → decision → forward | rewrite | reject
//!    server → client:  frames forwarded; ReadyForQuery, CommandComplete, ErrorResponse,
//!                      ParameterStatus, BackendKeyData observed (tx state, outcomes, settings)
//! analysis (pure, no I/O, shared with the offline `check` command):
//!    prefilter (lexer) → parse → statements → facts (kind, tables, lock level, rewrite?)
//!    → rules(context) → findings → policy → decision
//! context:   session state (tx status I/T/E, server version, client encoding, timeouts)
//!            + live catalog facts fetched with injected queries
//! audit:     events → bounded channel → writer task (JSON lines, flushed per record)
//! ```
//!
//! Layout follows the flow: `protocol` is the pure wire format, `proxy` the tokio I/O around it,
//! `sql` the analysis of statement text, `rules` the catalogue (one rule per file), `policy` the
//! decision step, `check` the offline front door, `audit` the DDL record, `config` the settings, `demo` the one-command showcase.
#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod check;
pub mod config;
pub mod demo;
pub mod enforce;
pub mod execute;
pub mod metrics;
pub mod policy;
pub mod protocol;
pub mod proxy;
pub mod rewrite;
pub mod rules;
pub mod sql;
