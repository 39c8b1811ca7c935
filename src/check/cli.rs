//! Command-line entry points of `check`, `rules` and `explain`.
use std::path::PathBuf;

/// Flags of `pgwarden check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub pg_version: Option<u32>,
    #[arg(long)]
    pub stats: Option<PathBuf>,
    #[arg(long, default_value = "text")]
    pub format: String,
    /// Files, directories (recursing into *.sql) or `-` for stdin.
    #[arg(required = true)]
    pub paths: Vec<String>,
}

/// Flags of `pgwarden rules`.
#[derive(Debug, clap::Args)]
pub struct RulesArgs {
    #[arg(long, default_value = "text")]
    pub format: String,
}

/// Flags of `pgwarden explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    pub rule: String,
}

pub fn run_check(_args: CheckArgs) -> u8 {
    eprintln!("pgwarden check: not built yet");
    2
}

pub fn run_rules(_args: RulesArgs) -> u8 {
    eprintln!("pgwarden rules: not built yet");
    2
}

pub fn run_explain(_args: ExplainArgs) -> u8 {
    eprintln!("pgwarden explain: not built yet");
    2
}
