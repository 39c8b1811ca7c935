//! The offline front door: `pgwarden check` on SQL files, `pgwarden rules`, `pgwarden explain`.
pub mod cli;
