//! Command-line entry points of `check`, `rules` and `explain`: flags, files, stdin, exit codes.
//!
//! Exit status of `check`: 0 nothing at reject level, 1 something is, 2 usage or I/O error
//! (the message names the file and the problem).
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::{check_text, render_explain, render_github, render_json, render_rules, render_text};
use super::{CheckOptions, Diagnostic, Format};
use crate::config::Config;
use crate::policy::Policy;
use crate::rules::Rule;
use crate::sql::TableStats;

/// Flags of `pgwarden check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Configuration file (its [policy] section applies).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Server major version the migration will run on (e.g. 15).
    #[arg(long)]
    pub pg_version: Option<u32>,
    /// JSON file of table sizes: {"table": {"rows": N, "bytes": N}}.
    #[arg(long)]
    pub stats: Option<PathBuf>,
    /// text | json | github
    #[arg(long, default_value = "text")]
    pub format: String,
    /// Files, directories (recursing into *.sql) or `-` for stdin.
    #[arg(required = true)]
    pub paths: Vec<String>,
}

/// Flags of `pgwarden rules`.
#[derive(Debug, clap::Args)]
pub struct RulesArgs {
    /// text | markdown
    #[arg(long, default_value = "text")]
    pub format: String,
}

/// Flags of `pgwarden explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    pub rule: String,
}

pub fn run_check(args: CheckArgs) -> u8 {
    match check(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pgwarden check: {e:#}");
            2
        }
    }
}

fn check(args: CheckArgs) -> Result<u8> {
    let format: Format = args.format.parse().map_err(|e: String| anyhow!(e))?;
    let cfg = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let policy = Policy::from_config(&cfg.policy)?;
    let stats = match &args.stats {
        Some(path) => read_stats(path)?,
        None => HashMap::new(),
    };
    let opts = CheckOptions {
        pg_version: args.pg_version,
        stats,
    };
    // Read everything first: an unreadable input is a usage error, not a half report.
    let mut inputs: Vec<(String, String)> = Vec::new();
    for p in &args.paths {
        if p == "-" {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("cannot read stdin")?;
            inputs.push(("<stdin>".to_string(), utf8("<stdin>", bytes)?));
            continue;
        }
        let path = Path::new(p);
        let meta = std::fs::metadata(path).with_context(|| format!("cannot read {p}"))?;
        if meta.is_dir() {
            let mut files = Vec::new();
            collect_sql(path, &mut files)?;
            if files.is_empty() {
                bail!("directory {p} contains no .sql files");
            }
            files.sort();
            for f in files {
                inputs.push(read_file(&f)?);
            }
        } else {
            inputs.push(read_file(path)?);
        }
    }
    let mut diags: Vec<Diagnostic> = Vec::new();
    for (name, text) in &inputs {
        diags.extend(check_text(name, text, &policy, &opts));
    }
    let report = match format {
        Format::Text => render_text(&diags, inputs.len()),
        Format::Json => render_json(&diags),
        Format::Github => render_github(&diags),
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a different exit code.
    let _ = stdout.write_all(report.as_bytes());
    let _ = stdout.flush();
    Ok(u8::from(diags.iter().any(|d| d.severity == "reject")))
}

fn read_file(path: &Path) -> Result<(String, String)> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {name}"))?;
    let text = utf8(&name, bytes)?;
    Ok((name, text))
}

fn utf8(name: &str, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        anyhow!(
            "{name} is not valid UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

fn collect_sql(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read directory {}", dir.display()))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .with_context(|| format!("cannot read {}", path.display()))?;
        if kind.is_dir() {
            collect_sql(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "sql") {
            out.push(path);
        }
    }
    Ok(())
}

fn read_stats(path: &Path) -> Result<HashMap<String, TableStats>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
    serde_json::from_str(&text).with_context(|| {
        format!("invalid stats file {name}: expected {{\"table\": {{\"rows\": N, \"bytes\": N}}}}")
    })
}

pub fn run_rules(args: RulesArgs) -> u8 {
    let markdown = match args.format.as_str() {
        "text" => false,
        "markdown" => true,
        other => {
            eprintln!("pgwarden rules: unknown format `{other}` (expected text or markdown)");
            return 2;
        }
    };
    print!("{}", render_rules(markdown));
    0
}

pub fn run_explain(args: ExplainArgs) -> u8 {
    match args.rule.parse::<Rule>() {
        Ok(rule) => {
            print!("{}", render_explain(rule));
            0
        }
        Err(e) => {
            eprintln!("pgwarden explain: {e}");
            2
        }
    }
}
