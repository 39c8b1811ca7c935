//! Command-line entry points of `check`, `rules` and `explain`: flags, files, stdin, exit codes.
//!
//! Exit status of `check`: 0 nothing at reject level, 1 something is, 2 usage or I/O error
//! (the message names the file and the problem).
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::discover::{find_up, SquawkFile};
use super::reports::{render_gitlab, render_sarif};
use super::{check_text, render_explain, render_github, render_json, render_rules, render_text};
use super::{CheckOptions, Diagnostic, Format};
use crate::config::Config;
use crate::policy::Policy;
use crate::rules::{Action, Rule};
use crate::sql::TableStats;

/// Flags of `pgwarden check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Configuration file (its [policy] section applies). Without it, the nearest
    /// `.pgwarden.toml` in the current directory or a parent is used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Server major version the migration will run on (e.g. 15).
    #[arg(long)]
    pub pg_version: Option<u32>,
    /// JSON file of table sizes: {"table": {"rows": N, "bytes": N}}.
    #[arg(long)]
    pub stats: Option<PathBuf>,
    /// text | json | github | sarif | gitlab
    #[arg(long, default_value = "text")]
    pub format: String,
    /// The migration tool runs each file in its own transaction: statements start inside one,
    /// and a COMMIT/ROLLBACK of the file ends the tool's transaction (transaction-nesting).
    #[arg(long)]
    pub assume_in_transaction: bool,
    /// Rules to switch on (at reject) when they are off; comma-separated ids or aliases.
    #[arg(long, value_delimiter = ',')]
    pub include: Vec<String>,
    /// Rules to switch off; comma-separated ids or aliases.
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Glob of files to skip (`*` matches any characters, `/` included); repeatable.
    #[arg(long)]
    pub exclude_path: Vec<String>,
    /// The file name stdin (`-`) is reported under and matched against --exclude-path.
    #[arg(long)]
    pub stdin_filepath: Option<String>,
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
    // Found by walking up from the current directory unless --config names the file.
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let cfg = match args
        .config
        .clone()
        .or_else(|| find_up(&cwd, ".pgwarden.toml"))
    {
        Some(path) => Config::load(&path)?,
        None => Config::default(),
    };
    let squawk = match find_up(&cwd, ".squawk.toml") {
        Some(path) => SquawkFile::load(&path)?,
        None => SquawkFile::default(),
    };
    let mut policy = Policy::from_config(&cfg.policy)?;
    // Command-line lists add to the squawk file's; an exclusion wins over an inclusion.
    for id in squawk.included_rules.iter().chain(&args.include) {
        for rule in Rule::expand(id)? {
            if policy.action(*rule) == Action::Off {
                policy.set_action(*rule, Action::Reject);
            }
        }
    }
    for id in squawk.excluded_rules.iter().chain(&args.exclude) {
        for rule in Rule::expand(id)? {
            policy.set_action(*rule, Action::Off);
        }
    }
    let excluded_paths: Vec<&String> = squawk
        .excluded_paths
        .iter()
        .chain(&args.exclude_path)
        .collect();
    let skipped = |name: &str| {
        let name = name.strip_prefix("./").unwrap_or(name);
        excluded_paths
            .iter()
            .any(|g| crate::policy::glob(g.strip_prefix("./").unwrap_or(g), name))
    };
    let stats = match &args.stats {
        Some(path) => read_stats(path)?,
        None => HashMap::new(),
    };
    let opts = CheckOptions {
        pg_version: args.pg_version.or(squawk.pg_major()?),
        stats,
        assume_in_transaction: args.assume_in_transaction
            || squawk.assume_in_transaction.unwrap_or(false),
    };
    // Read everything first: an unreadable input is a usage error, not a half report.
    let mut inputs: Vec<(String, String)> = Vec::new();
    for p in &args.paths {
        if p == "-" {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("cannot read stdin")?;
            let name = args
                .stdin_filepath
                .clone()
                .unwrap_or_else(|| "<stdin>".into());
            if !skipped(&name) {
                let text = utf8(&name, bytes)?;
                inputs.push((name, text));
            }
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
                if !skipped(&f.display().to_string()) {
                    inputs.push(read_file(&f)?);
                }
            }
        } else if !skipped(p) {
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
        Format::Sarif => render_sarif(&diags),
        Format::Gitlab => render_gitlab(&diags),
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
