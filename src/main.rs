//! pgwarden command line: `serve`, `check`, `rules`, `explain`, `audit report`, `demo`.
//!
//! `main` only parses the command line and hands over to the front door of each job; every
//! subcommand returns the process exit code.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: the analysis builds and drops a syntax tree per DDL
/// statement, and rowan allocates a cursor for every node it visits (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "pgwarden",
    // "0.1.0 (3f2a9c1d04be)": the commit comes from build.rs ("unknown" without git).
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PGWARDEN_GIT_COMMIT"), ")"),
    about = "PostgreSQL proxy that makes schema migrations safe"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy: clients connect here instead of to PostgreSQL.
    Serve(pgwarden::proxy::cli::ServeArgs),
    /// Check SQL files (or stdin) against the rule catalogue, without a database.
    Check(pgwarden::check::cli::CheckArgs),
    /// List every rule with its default action.
    Rules(pgwarden::check::cli::RulesArgs),
    /// Print the documentation of one rule.
    Explain(pgwarden::check::cli::ExplainArgs),
    /// Write the `check --stats` JSON (rows and bytes of every table) from a live database.
    Stats(pgwarden::check::stats::StatsArgs),
    /// Read audit logs.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Show pgwarden at work: a real Alembic project against a 1,000,000-row table (starts a
    /// throw-away PostgreSQL unless --upstream is given; removes everything at the end).
    Demo(pgwarden::demo::DemoArgs),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Summarise what a deploy did, per session and migration revision.
    Report(pgwarden::audit::cli::ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(args) => pgwarden::proxy::cli::run(args),
        Command::Check(args) => pgwarden::check::cli::run_check(args),
        Command::Rules(args) => pgwarden::check::cli::run_rules(args),
        Command::Explain(args) => pgwarden::check::cli::run_explain(args),
        Command::Stats(args) => pgwarden::check::stats::run_stats(args),
        Command::Audit(AuditCommand::Report(args)) => pgwarden::audit::cli::run_report(args),
        Command::Demo(args) => pgwarden::demo::run(args),
    };
    ExitCode::from(code)
}
