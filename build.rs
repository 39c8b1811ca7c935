//! Build script: records the git commit the binary is built from, for `pgwarden --version`.
//!
//! `PGWARDEN_GIT_COMMIT` (environment) wins, for builds from a tree without `.git` whose commit
//! is known (a Docker build context, a packager); otherwise `git rev-parse` when this directory
//! is the top of a git work tree; otherwise "unknown" (a tarball, no git installed). It never
//! fails the build.
//!
//! Rebuilds: cargo reruns this script only when HEAD or the branch it points to moves (or the
//! variable changes) — not on every source edit, which is cargo's default for a build script.
use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PGWARDEN_GIT_COMMIT");
    let commit = match std::env::var("PGWARDEN_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => from_git().unwrap_or_else(|| "unknown".into()),
    };
    println!("cargo:rustc-env=PGWARDEN_GIT_COMMIT={commit}");
}

fn from_git() -> Option<String> {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    // A tarball unpacked inside some other repository must not take that repository's commit.
    let top = PathBuf::from(git(&dir, &["rev-parse", "--show-toplevel"])?);
    if top.canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    let commit = git(&dir, &["rev-parse", "--short=12", "HEAD"])?;
    // HEAD is per work tree; branch refs live in the common dir (they differ in a `git worktree`).
    let git_dir = git(&dir, &["rev-parse", "--absolute-git-dir"]).map(PathBuf::from);
    let common = git(&dir, &["rev-parse", "--git-common-dir"]).map(|c| {
        let p = PathBuf::from(c);
        if p.is_absolute() {
            p
        } else {
            dir.join(p)
        }
    });
    let mut watch = Vec::new();
    if let Some(g) = &git_dir {
        watch.push(g.join("HEAD"));
    }
    if let (Some(common), Some(branch)) = (&common, git(&dir, &["symbolic-ref", "-q", "HEAD"])) {
        watch.push(common.join(&branch));
        // A ref can live only in packed-refs (after `git gc`).
        watch.push(common.join("packed-refs"));
    }
    // Only files that exist: cargo reruns a script on every build for a missing one.
    for path in watch.iter().filter(|p| p.is_file()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    Some(commit)
}
