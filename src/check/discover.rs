//! Configuration found by walking up from the current directory: `.pgwarden.toml` (a pgwarden
//! configuration file, as `--config` takes) and `.squawk.toml` (squawk's keys for its CLI:
//! excluded_rules, included_rules, excluded_paths, pg_version, assume_in_transaction).
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

/// The keys of a `.squawk.toml` pgwarden honours; squawk's others (upload_to_github) are ignored.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct SquawkFile {
    #[serde(default)]
    pub excluded_rules: Vec<String>,
    #[serde(default)]
    pub included_rules: Vec<String>,
    #[serde(default)]
    pub excluded_paths: Vec<String>,
    /// squawk writes it as a string ("15", "15.2").
    #[serde(default)]
    pub pg_version: Option<toml::Value>,
    #[serde(default)]
    pub assume_in_transaction: Option<bool>,
}

impl SquawkFile {
    pub fn load(path: &Path) -> Result<SquawkFile> {
        let name = path.display();
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
        toml::from_str(&text).with_context(|| format!("invalid {name}"))
    }

    /// The major version of `pg_version` (`"15.2"` → 15).
    pub fn pg_major(&self) -> Result<Option<u32>> {
        let text = match &self.pg_version {
            None => return Ok(None),
            Some(toml::Value::String(s)) => s.clone(),
            Some(toml::Value::Integer(n)) => n.to_string(),
            Some(toml::Value::Float(f)) => f.to_string(),
            Some(other) => {
                return Err(anyhow!(
                    ".squawk.toml: pg_version `{other}` is not a version"
                ))
            }
        };
        text.split('.')
            .next()
            .and_then(|m| m.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| anyhow!(".squawk.toml: pg_version `{text}` is not a version"))
    }
}

/// The nearest file called `name` in `start` or one of its parents.
pub fn find_up(start: &Path, name: &str) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_nearest_file_upwards() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(find_up(&deep, ".pgwarden-test-absent.toml"), None);
        std::fs::write(root.path().join("a/.squawk.toml"), "").unwrap();
        assert_eq!(
            find_up(&deep, ".squawk.toml"),
            Some(root.path().join("a/.squawk.toml"))
        );
        std::fs::write(root.path().join("a/b/.squawk.toml"), "").unwrap();
        assert_eq!(
            find_up(&deep, ".squawk.toml"),
            Some(root.path().join("a/b/.squawk.toml"))
        );
    }

    #[test]
    fn squawk_keys_are_read() {
        let f: SquawkFile = toml::from_str(
            "excluded_rules = [\"ban-drop-column\"]\npg_version = \"15.2\"\nassume_in_transaction = true\n[upload_to_github]\nfail_on_violations = true\n",
        )
        .unwrap();
        assert_eq!(f.excluded_rules, vec!["ban-drop-column"]);
        assert_eq!(f.pg_major().unwrap(), Some(15));
        assert_eq!(f.assume_in_transaction, Some(true));
    }
}
