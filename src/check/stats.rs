//! `pgwarden stats`: the `--stats` JSON of `pgwarden check` (estimated rows and total bytes of
//! every table, materialized view and partitioned table) read from a live database, so CI
//! against a production-sized snapshot gets the size awareness without the proxy.
//!
//! The query runs through `psql` (libpq): every connection form a team already uses works —
//! a `postgres://` URL, the PG* environment variables, ~/.pgpass, service files, TLS.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::sql::TableStats;

/// Flags of `pgwarden stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Connection URL (`postgres://user@host:5432/db`); without it libpq's PG* environment
    /// variables (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, ...) apply.
    #[arg(long)]
    pub url: Option<String>,
    /// Write the JSON here instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// The psql binary (default: `psql` on PATH).
    #[arg(long, default_value = "psql")]
    pub psql: PathBuf,
}

/// One JSON object, keys as `check --stats` looks them up: `name` for tables in `public`,
/// `schema.name` elsewhere; a never-analysed table (reltuples -1) counts 0 rows.
const QUERY: &str = "SELECT COALESCE(json_object_agg(k, v), '{}') FROM (\
SELECT CASE WHEN n.nspname = 'public' THEN c.relname ELSE n.nspname || '.' || c.relname END AS k, \
json_build_object('rows', GREATEST(c.reltuples, 0)::bigint, 'bytes', pg_total_relation_size(c.oid)) AS v \
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%') s";

pub fn run_stats(args: StatsArgs) -> u8 {
    match stats(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("pgwarden stats: {e:#}");
            2
        }
    }
}

fn stats(args: &StatsArgs) -> Result<()> {
    let mut cmd = Command::new(&args.psql);
    // -X: no ~/.psqlrc; -w: never prompt for a password (fail instead, as CI must).
    cmd.args([
        "-X",
        "-w",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        QUERY,
    ]);
    if let Some(url) = &args.url {
        cmd.arg("--dbname").arg(url);
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", args.psql.display()))?;
    if !out.status.success() {
        bail!(
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let tables: BTreeMap<String, TableStats> = serde_json::from_str(text.trim())
        .with_context(|| format!("unexpected answer from the server: {}", text.trim()))?;
    let json = serde_json::to_string_pretty(&tables).context("cannot encode the stats")? + "\n";
    match &args.output {
        Some(path) => std::fs::write(path, json)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{json}"),
    }
    Ok(())
}
