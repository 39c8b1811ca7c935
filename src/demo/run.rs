//! Running the demo's external programs (initdb, pg_ctl, psql, python) with their output captured.
//!
//! The pid of the program running right now is kept, so a Ctrl-C/SIGTERM handler can end it
//! before it removes the directories that program works in.
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use super::DemoError;

pub type Cmd = Command;

/// Pid of the child the demo waits for (0: none).
static CURRENT: AtomicU32 = AtomicU32::new(0);

/// What a program printed, and how it ended.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub what: String,
}

impl Output {
    /// Ok when the program exited 0; otherwise an error carrying everything it printed.
    pub fn ok(self, step: &str) -> Result<(), DemoError> {
        if self.status.success() {
            Ok(())
        } else {
            Err(DemoError::Step {
                step: format!("{step} ({}: {})", self.what, self.status),
                output: format!("{}{}", self.stdout, self.stderr),
            })
        }
    }
}

/// Runs `cmd` to completion with stdin closed and stdout/stderr captured.
pub fn run(mut cmd: Cmd) -> Result<Output, DemoError> {
    // After Ctrl-C the cleanup owns the machine: start nothing new behind its back.
    if super::INTERRUPTED.load(Ordering::SeqCst) {
        return Err(DemoError::Interrupted);
    }
    let what = format!("{:?}", cmd.get_program());
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| DemoError::Spawn {
            program: what.clone(),
            source: e,
        })?;
    CURRENT.store(child.id(), Ordering::SeqCst);
    let out = child.wait_with_output();
    CURRENT.store(0, Ordering::SeqCst);
    let out = out.map_err(|e| DemoError::Spawn {
        program: what.clone(),
        source: e,
    })?;
    Ok(Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        what,
    })
}

/// Ends the program the demo is waiting for, if any (signal handler path).
pub fn kill_current() {
    let pid = CURRENT.swap(0, Ordering::SeqCst);
    if pid != 0 {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
