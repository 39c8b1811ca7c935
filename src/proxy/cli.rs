//! `pgwarden serve`: load the config, set up logging, bind, run the proxy until a signal.
use std::path::PathBuf;

/// Command-line flags of `pgwarden serve`; flags override the config file.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file (TOML). See config/pgwarden.toml.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to accept clients on (default 127.0.0.1:6432).
    #[arg(long)]
    pub listen: Option<String>,
    /// PostgreSQL server to forward to (default 127.0.0.1:5432).
    #[arg(long)]
    pub upstream: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    pub log_format: Option<String>,
}

/// Runs the proxy; returns the process exit code.
pub fn run(_args: ServeArgs) -> u8 {
    eprintln!("pgwarden serve: not built yet");
    2
}
