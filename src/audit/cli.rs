//! `pgwarden audit report FILE [--format text|json]`.
use std::io::Write;
use std::path::PathBuf;

use super::report::{build_report, render_text};
use super::AuditError;

/// Flags of `pgwarden audit report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Audit log file (JSON lines written by `pgwarden serve`).
    pub file: PathBuf,
    /// `text` for humans and CI logs, `json` for tools.
    #[arg(long, default_value = "text")]
    pub format: String,
}

/// Runs the report; exit code 0 on success, 2 on a usage, I/O or format error.
pub fn run_report(args: ReportArgs) -> u8 {
    let json = match args.format.as_str() {
        "text" => false,
        "json" => true,
        other => {
            eprintln!("pgwarden audit report: unknown --format {other:?} (use text or json)");
            return 2;
        }
    };
    let path = args.file.display().to_string();
    let bytes = match std::fs::read(&args.file) {
        Ok(b) => b,
        Err(source) => {
            eprintln!(
                "pgwarden audit report: {}",
                AuditError::Read { path, source }
            );
            return 2;
        }
    };
    let report = match build_report(&path, &bytes) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pgwarden audit report: {e}");
            return 2;
        }
    };
    let out = if json {
        match serde_json::to_string_pretty(&report) {
            Ok(mut s) => {
                s.push('\n');
                s
            }
            Err(e) => {
                eprintln!("pgwarden audit report: {e}");
                return 2;
            }
        }
    } else {
        render_text(&report)
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        // stdout closed (e.g. piped into `head`): nothing useful left to do.
        return 2;
    }
    0
}
