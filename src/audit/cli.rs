//! `pgwarden audit report`.
use std::path::PathBuf;

/// Flags of `pgwarden audit report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    pub file: PathBuf,
    #[arg(long, default_value = "text")]
    pub format: String,
}

pub fn run_report(_args: ReportArgs) -> u8 {
    eprintln!("pgwarden audit report: not built yet");
    2
}
