//! The proxy: listener, one session task per client, upstream connection, TLS, shutdown.
pub mod cli;
pub mod hook;
