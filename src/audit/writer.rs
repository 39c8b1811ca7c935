//! The audit writer: a dedicated thread fed by a bounded channel, and the handle sessions use.
//!
//! Flow (what the session does, and why):
//! 1. Before forwarding a DDL/utility (or rejected) statement, the session awaits
//!    [`AuditHandle::ddl`] with its `statement` record. Only when that returns `Ok` is the
//!    statement forwarded; `Err` means "refuse this DDL" (`on_audit_failure = "reject-ddl"`):
//!    an audit log that can only be written *after* the DDL ran could not keep DDL from running
//!    unaudited.
//! 2. When the server's answer (CommandComplete/ErrorResponse) arrives, the session awaits
//!    `ddl` with the `outcome` record *before* forwarding the answer to the client. So after a
//!    `kill -9`, every statement whose outcome the client saw has its `statement` and `outcome`
//!    lines in the file.
//! 3. Fate records (from [`super::txfate::TxFateTracker::ready_for_query`]) are awaited with
//!    `ddl` before the ReadyForQuery that decided them is forwarded, for the same reason.
//! 4. `session_start`/`session_end` go through the non-blocking [`AuditHandle::record`].
//!
//! Plain DML never touches this module except through `record`, which never waits: when the
//! channel is full, the record is dropped, counted and logged. `ddl` does wait for room.
//!
//! Each record is one `write_all` of one line on a file opened with `O_APPEND`; batches of
//! queued records are written together and (with `fsync = "always"`) made durable by one
//! `fdatasync` before any of them is acknowledged. Writes run on the writer's own thread (with
//! a single-threaded runtime of its own for the channel and the `interval` timer), so a slow
//! disk never stalls a session thread or the main thread. An awaited record costs the session
//! one hand-over to that thread and one back; the writer used to be a task on the main thread
//! that passed each batch on to tokio's blocking pool, two more thread wake-ups per batch.
//! A record that needs no fsync before the session goes on skips even those when nothing is
//! queued: the session appends it itself ([`AuditHandle::write_inline`]); fsyncs stay here.
//!
//! Group commit ([`Durability::Written`], [`AuditHandle::barrier`]): a record whose statement
//! cannot take durable effect on the server before a later point (a DDL inside an open
//! transaction block: nothing it does survives unless its COMMIT is forwarded) only needs to be
//! *written* before the statement is forwarded — that is what survives a `kill -9` of pgwarden.
//! Its `fdatasync` can wait for that later point: the session notes the record's line number
//! in its [`SessionMark`] and, before it forwards anything that could make the transaction
//! durable, awaits [`AuditHandle::barrier`], which fsyncs once for every line written so far
//! (any session's). Every fsync covers all earlier lines, so a durable record also settles
//! earlier written ones.
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use super::record::{Record, SessionEnd, SessionStart};
use super::AuditError;
use crate::config::audit::{AuditConfig, FsyncPolicy, OnAuditFailure};

/// Most records written by one blocking call (bounds the time acks wait behind a batch).
const MAX_BATCH: usize = 512;

/// A `write(2)` slower than this (a stalled disk, dirty-page throttling) turns the sessions'
/// inline writes off until a write is fast again: the writer thread takes every record, so a
/// slow disk stalls the sessions that wait for a record, not every session of their thread.
const INLINE_SLOW: std::time::Duration = std::time::Duration::from_millis(2);

/// How far a record must have got before its `ddl` call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Written and (with `fsync = "always"`) fsynced: the statement may take durable effect as
    /// soon as it is forwarded, or the client is about to see an answer that is durable.
    Durable,
    /// Written (`write(2)` returned: survives a `kill -9` of pgwarden, not a crash of its
    /// host); the fsync is left to the next [`AuditHandle::barrier`] or durable record. Only
    /// for records whose statement cannot become durable on the server before that barrier.
    Written,
}

/// Line number of a written record (1 = the first line this process wrote), or 0 for none.
pub type Line = u64;

/// The lines a session wrote with [`Durability::Written`] since its last barrier (first and
/// last): what its next [`AuditHandle::barrier`] must cover. Shared by the session's two
/// directions (outcomes are written by the server side, statements by the client side).
#[derive(Debug, Default)]
pub struct SessionMark {
    first: AtomicU64,
    last: AtomicU64,
    /// `seq`s of statement records written only, until their outcome is written
    /// ([`super::AuditSession`] writes that outcome written-only too).
    statements: Mutex<Vec<u64>>,
}

impl SessionMark {
    /// Statement `seq`'s record was written with [`Durability::Written`] (its line noted).
    pub fn statement_written(&self, seq: u64) {
        self.statements
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(seq);
    }

    /// Whether statement `seq`'s record was written only; forgets it.
    pub fn take_statement(&self, seq: u64) -> bool {
        let mut v = self.statements.lock().unwrap_or_else(|p| p.into_inner());
        match v.iter().position(|s| *s == seq) {
            Some(i) => {
                v.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Records that line `line` was written and not necessarily fsynced.
    pub fn note(&self, line: Line) {
        if line == 0 {
            return;
        }
        let _ = self
            .first
            .compare_exchange(0, line, Ordering::Relaxed, Ordering::Relaxed);
        self.last.fetch_max(line, Ordering::Relaxed);
    }

    /// The highest line noted.
    pub fn get(&self) -> Line {
        self.last.load(Ordering::Relaxed)
    }
}

type Ack = oneshot::Sender<Result<Line, String>>;

enum Msg {
    /// One encoded line; `ack` is answered after it was written (and, when `durable`, fsynced
    /// per policy) with its line number.
    Line {
        bytes: Vec<u8>,
        ack: Option<Ack>,
        durable: bool,
    },
    /// fsync (policy `always`) unless every line written so far is already covered.
    Sync(oneshot::Sender<Result<(), String>>),
    /// Close and reopen the file (logrotate renamed it).
    Reopen(oneshot::Sender<Result<(), String>>),
    /// Write what is queued, fsync, stop.
    Shutdown(oneshot::Sender<()>),
}

/// Counters of the writer, for metrics and the shutdown log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AuditStats {
    /// Lines written.
    pub written: u64,
    /// Non-critical records dropped because the channel was full or the writer gone.
    pub dropped: u64,
    /// Lines that could not be written (I/O error).
    pub failed: u64,
    /// fdatasync calls that succeeded.
    pub fsyncs: u64,
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    fsyncs: AtomicU64,
    /// Lines an fsync has covered (all lines up to this number).
    synced: AtomicU64,
    /// Lines whose fsync failed (first and last; 0 = none): they may never reach the disk.
    lost_from: AtomicU64,
    lost_through: AtomicU64,
    /// The last write took longer than [`INLINE_SLOW`]: sessions do not write inline.
    inline_off: std::sync::atomic::AtomicBool,
}

impl Counters {
    /// Every write's duration decides whether the next ones may be inline.
    fn timed(&self, elapsed: std::time::Duration) {
        let slow = elapsed > INLINE_SLOW;
        if self.inline_off.swap(slow, Ordering::Relaxed) != slow && slow {
            tracing::warn!(
                took_ms = elapsed.as_millis() as u64,
                "audit: a write to the log was slow; records go through the writer thread until a write is fast again"
            );
        }
    }
}

struct Inner {
    tx: mpsc::Sender<Msg>,
    counters: Arc<Counters>,
    /// The sink the writer thread writes to, shared so that a session can write a
    /// written-only record itself ([`AuditHandle::write_inline`]).
    sink: Arc<Mutex<Sink>>,
    /// Lines sent to the writer and not yet written by it: a session writes inline only when
    /// this is 0 (under the sink's lock), so no line lands before one queued earlier.
    pending: Arc<AtomicU64>,
    policy: FsyncPolicy,
    on_failure: OnAuditFailure,
    /// Whether written-only records ever need a barrier (`fsync = "always"` on a file).
    group_commit: bool,
    /// For error messages.
    path: String,
    /// Prepared transactions by gid, for the COMMIT/ROLLBACK PREPARED of any session.
    prepared: super::twophase::Registry,
}

/// What sessions hold: cheap to clone, all methods safe to call from any task.
#[derive(Clone)]
pub struct AuditHandle {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for AuditHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Some(i) => write!(f, "AuditHandle({})", i.path),
            None => write!(f, "AuditHandle(disabled)"),
        }
    }
}

/// Identifies this process run in session ids, so ids stay unique in a file that outlives
/// restarts: start time in ms (hex) and pid.
fn run_id() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        format!("{ms:x}-{}", std::process::id())
    })
}

impl AuditHandle {
    /// Opens the sink and starts the writer thread. With `enabled = false` returns a handle
    /// whose methods do nothing and succeed.
    pub fn start(cfg: &AuditConfig) -> Result<AuditHandle, AuditError> {
        let (handle, writer) = AuditHandle::open(cfg)?;
        if let Some(writer) = writer {
            writer.spawn(&cfg.path)?;
        }
        Ok(handle)
    }

    /// The handle, and the writer that is to serve its channel (`None` when disabled).
    fn open(cfg: &AuditConfig) -> Result<(AuditHandle, Option<Writer>), AuditError> {
        if !cfg.enabled {
            return Ok((AuditHandle::disabled(), None));
        }
        let target = if cfg.path == "-" {
            Target::Stdout
        } else {
            Target::File(PathBuf::from(&cfg.path))
        };
        let mut sink = Sink {
            target,
            file: None,
            lines: 0,
            synced: 0,
            stopped: false,
        };
        if let Target::File(p) = &sink.target {
            sink.file = Some(open_log(p).map_err(|source| AuditError::Open {
                path: cfg.path.clone(),
                source,
            })?);
        }
        let (tx, rx) = mpsc::channel(cfg.channel_capacity);
        let counters = Arc::new(Counters::default());
        let sink = Arc::new(Mutex::new(sink));
        let pending = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            rx,
            sink: sink.clone(),
            policy: cfg.fsync,
            interval: cfg.fsync_interval,
            counters: counters.clone(),
            pending: pending.clone(),
        };
        let handle = AuditHandle {
            inner: Some(Arc::new(Inner {
                tx,
                counters,
                sink,
                pending,
                policy: cfg.fsync,
                on_failure: cfg.on_audit_failure,
                group_commit: cfg.fsync == FsyncPolicy::Always && cfg.path != "-",
                path: cfg.path.clone(),
                prepared: Default::default(),
            })),
        };
        Ok((handle, Some(writer)))
    }

    /// A handle that records nothing (`enabled = false`).
    pub fn disabled() -> AuditHandle {
        AuditHandle { inner: None }
    }

    /// Whether records go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The process's registry of prepared transactions (`None` when disabled).
    pub fn prepared(&self) -> Option<&super::twophase::Registry> {
        self.inner.as_ref().map(|i| &i.prepared)
    }

    /// The audit log's session id for the proxy's per-run session number `n`.
    pub fn session_id(&self, n: u64) -> String {
        format!("{}-{n}", run_id())
    }

    /// Writer counters.
    pub fn stats(&self) -> AuditStats {
        match &self.inner {
            None => AuditStats::default(),
            Some(i) => AuditStats {
                written: i.counters.written.load(Ordering::Relaxed),
                dropped: i.counters.dropped.load(Ordering::Relaxed),
                failed: i.counters.failed.load(Ordering::Relaxed),
                fsyncs: i.counters.fsyncs.load(Ordering::Relaxed),
            },
        }
    }

    /// Queues a `session_start` record without waiting.
    /// Records queued for the writer and not yet taken (for the metrics).
    pub fn queue_depth(&self) -> usize {
        match &self.inner {
            Some(i) => i.tx.max_capacity() - i.tx.capacity(),
            None => 0,
        }
    }

    pub fn session_start(&self, rec: SessionStart) {
        self.record(&Record::SessionStart(rec));
    }

    /// Queues a `session_end` record without waiting.
    pub fn session_end(&self, rec: SessionEnd) {
        self.record(&Record::SessionEnd(rec));
    }

    /// Queues a non-critical record; never waits. A full channel drops the record (counted,
    /// logged at the first drop and every 1000th after).
    pub fn record(&self, rec: &Record) {
        let Some(inner) = &self.inner else { return };
        let bytes = match encode(rec) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "audit: cannot encode record; dropped");
                inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        inner.pending.fetch_add(1, Ordering::AcqRel);
        if inner
            .tx
            .try_send(Msg::Line {
                bytes,
                ack: None,
                durable: false,
            })
            .is_err()
        {
            inner.pending.fetch_sub(1, Ordering::AcqRel);
            let n = inner.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n % 1000 == 0 {
                tracing::error!(
                    dropped = n,
                    path = %inner.path,
                    "audit: writer queue full or stopped; non-critical audit records dropped"
                );
            }
        }
    }

    /// Writes a record that must be durable before the session goes on (statement, outcome,
    /// fate). Returns when the line is written (and fsynced with `fsync = "always"`).
    ///
    /// `Err` means: refuse the DDL (`on_audit_failure = "reject-ddl"`). With `"continue"` a
    /// failure is logged and counted and `Ok` is returned.
    pub async fn ddl(&self, rec: &Record) -> Result<(), AuditError> {
        self.ddl_all(std::slice::from_ref(rec)).await
    }

    /// [`Self::ddl`] for several records: all are queued in order before the first ack is
    /// awaited, so they share the writer's batch (one write, one fsync).
    pub async fn ddl_all(&self, recs: &[Record]) -> Result<(), AuditError> {
        self.ddl_all_with(recs, Durability::Durable)
            .await
            .map(|_| ())
    }

    /// [`Self::ddl_all`] with the durability the caller needs; returns the last record's line
    /// number (0 when nothing was written: audit disabled, or a failure under `"continue"`).
    /// With [`Durability::Written`] the caller must [`SessionMark::note`] it and await
    /// [`Self::barrier`] before anything that could make the statements durable is forwarded.
    pub async fn ddl_all_with(
        &self,
        recs: &[Record],
        durability: Durability,
    ) -> Result<Line, AuditError> {
        let Some(inner) = &self.inner else {
            return Ok(0);
        };
        match Self::write_acked(inner, recs, durability == Durability::Durable).await {
            Ok(line) => Ok(line),
            Err(e) => match inner.on_failure {
                OnAuditFailure::RejectDdl => {
                    tracing::error!(error = %e, "audit: records not written; DDL refused");
                    Err(e)
                }
                OnAuditFailure::Continue => {
                    tracing::error!(
                        error = %e,
                        "audit: records NOT written; DDL continues unaudited (on_audit_failure = \"continue\")"
                    );
                    Ok(0)
                }
            },
        }
    }

    /// Whether lines up to `mark` may still be only written, not fsynced (cheap: two atomic
    /// loads; false unless `fsync = "always"` on a file).
    pub fn unsynced(&self, mark: &SessionMark) -> bool {
        let Some(inner) = &self.inner else {
            return false;
        };
        if !inner.group_commit || mark.first.load(Ordering::Relaxed) == 0 {
            return false;
        }
        inner.counters.synced.load(Ordering::Acquire) < mark.get() || Self::lost(inner, mark)
    }

    /// Whether an fsync failed over a line this session wrote since its last barrier.
    fn lost(inner: &Inner, mark: &SessionMark) -> bool {
        let through = inner.counters.lost_through.load(Ordering::Acquire);
        through != 0
            && through >= mark.first.load(Ordering::Relaxed)
            && inner.counters.lost_from.load(Ordering::Acquire) <= mark.get()
    }

    /// Group commit: returns when every line up to `mark` is fsynced (one fsync for all lines
    /// written so far, by any session; none when an earlier fsync already covered them). Await
    /// it before forwarding anything that could make written-only records' statements durable
    /// (a COMMIT). `Err` (fsync failed, writer gone) under `on_audit_failure = "reject-ddl"`:
    /// do not forward it.
    pub async fn barrier(&self, mark: &SessionMark) -> Result<(), AuditError> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        if !self.unsynced(mark) {
            return Ok(());
        }
        let (first, last) = (mark.first.load(Ordering::Relaxed), mark.get());
        let (ack, done) = oneshot::channel();
        let mut r = match inner.tx.send(Msg::Sync(ack)).await {
            Err(_) => Err(AuditError::Closed),
            Ok(()) => match done.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(message)) => Err(AuditError::Write {
                    path: inner.path.clone(),
                    message,
                }),
                Err(_) => Err(AuditError::Closed),
            },
        };
        if r.is_ok() && Self::lost(inner, mark) {
            r = Err(AuditError::Write {
                path: inner.path.clone(),
                message: "an earlier fsync failed over records of this transaction".into(),
            });
        }
        if r.is_ok() {
            // Covered: later lines start a new range (a line noted meanwhile keeps it open).
            let _ = mark
                .first
                .compare_exchange(first, 0, Ordering::Relaxed, Ordering::Relaxed);
            if mark.get() > last {
                mark.first.store(last + 1, Ordering::Relaxed);
            }
        }
        match (r, inner.on_failure) {
            (Ok(()), _) => Ok(()),
            (Err(e), OnAuditFailure::RejectDdl) => {
                tracing::error!(error = %e, "audit: written records not made durable; transaction end refused");
                Err(e)
            }
            (Err(e), OnAuditFailure::Continue) => {
                tracing::error!(
                    error = %e,
                    "audit: written records NOT made durable; continuing (on_audit_failure = \"continue\")"
                );
                mark.first.store(0, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// The session writes the records itself, on its own thread, when all of this holds
    /// (`None` otherwise: the writer thread takes them):
    /// - they need no fsync before the caller goes on: written-only records
    ///   ([`Durability::Written`], whose fsync is the next barrier's, on the writer thread), or
    ///   any record under `fsync = "never"`;
    /// - the log is a file, and the sink's lock is free right now (the writer thread may be in
    ///   an fsync: a session never waits for one here);
    /// - no line sent to the writer is still unwritten (`pending`, read under the lock): the
    ///   file keeps the order in which records were handed over;
    /// - the last write was not slow ([`INLINE_SLOW`]): on a stalled disk a session thread,
    ///   which serves other sessions too, must not be the one that waits.
    ///
    /// A written-only record is the DDL inside a transaction block, twice per statement
    /// (statement and outcome): through the writer thread each cost a hand-over there and
    /// one back, two thread wake-ups on the statement's path (BENCHMARKS.md). Here it costs the
    /// `write(2)` into the page cache that the writer thread would have made.
    fn write_inline(
        inner: &Inner,
        recs: &[Record],
        durable: bool,
    ) -> Option<Result<Line, AuditError>> {
        // `interval` fsyncs what its batches wrote: it stays with the writer thread.
        if inner.policy == FsyncPolicy::Interval
            || (durable && inner.policy != FsyncPolicy::Never)
            || inner.counters.inline_off.load(Ordering::Relaxed)
        {
            return None;
        }
        let mut lines = Vec::with_capacity(recs.len());
        for rec in recs {
            match encode(rec) {
                Ok(b) => lines.push(b),
                Err(e) => return Some(Err(e)),
            }
        }
        let mut sink = inner.sink.try_lock().ok()?;
        if sink.stopped
            || !matches!(sink.target, Target::File(_))
            || inner.pending.load(Ordering::Acquire) != 0
        {
            return None;
        }
        let mut last = 0;
        for bytes in &lines {
            let started = std::time::Instant::now();
            let written = sink.write_line(bytes);
            inner.counters.timed(started.elapsed());
            if let Err(e) = written {
                inner.counters.failed.fetch_add(1, Ordering::Relaxed);
                return Some(Err(AuditError::Write {
                    path: inner.path.clone(),
                    message: e.to_string(),
                }));
            }
            inner.counters.written.fetch_add(1, Ordering::Relaxed);
            sink.lines += 1;
            last = sink.lines;
        }
        Some(Ok(last))
    }

    /// Queues every record, then waits for every ack; the first failure is the answer, else
    /// the last line number.
    async fn write_acked(
        inner: &Inner,
        recs: &[Record],
        durable: bool,
    ) -> Result<Line, AuditError> {
        if let Some(r) = Self::write_inline(inner, recs, durable) {
            return r;
        }
        let mut acks = Vec::with_capacity(recs.len());
        let mut result = Ok(0);
        for rec in recs {
            let sent = async {
                let bytes = encode(rec)?;
                let (ack, done) = oneshot::channel();
                inner.pending.fetch_add(1, Ordering::AcqRel);
                if inner
                    .tx
                    .send(Msg::Line {
                        bytes,
                        ack: Some(ack),
                        durable,
                    })
                    .await
                    .is_err()
                {
                    inner.pending.fetch_sub(1, Ordering::AcqRel);
                    return Err(AuditError::Closed);
                }
                Ok::<_, AuditError>(done)
            }
            .await;
            match sent {
                Ok(done) => acks.push(done),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // Every queued record's ack is awaited even after a failure: the writer still owns them.
        for done in acks {
            let r = match done.await {
                Ok(Ok(line)) => Ok(line),
                Ok(Err(message)) => Err(AuditError::Write {
                    path: inner.path.clone(),
                    message,
                }),
                Err(_) => Err(AuditError::Closed),
            };
            match (&result, r) {
                (Ok(_), r) => result = r,
                (Err(_), _) => {}
            }
        }
        result
    }

    /// Closes and reopens the file (SIGHUP after logrotate renamed it). Records queued before
    /// the call land in the old file, later ones in the new.
    pub async fn reopen(&self) -> Result<(), AuditError> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let (ack, done) = oneshot::channel();
        inner
            .tx
            .send(Msg::Reopen(ack))
            .await
            .map_err(|_| AuditError::Closed)?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(AuditError::Write {
                path: inner.path.clone(),
                message,
            }),
            Err(_) => Err(AuditError::Closed),
        }
    }

    /// Spawns a task that calls [`Self::reopen`] on every SIGHUP (logrotate's `postrotate`
    /// sends it). Errors only if the signal handler cannot be installed. The proxy may instead
    /// call `reopen` from a signal loop of its own.
    pub fn reopen_on_sighup(&self) -> Result<tokio::task::JoinHandle<()>, AuditError> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).map_err(|source| AuditError::Open {
            path: "SIGHUP handler".into(),
            source,
        })?;
        let handle = self.clone();
        Ok(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match handle.reopen().await {
                    Ok(()) => tracing::info!("audit: log reopened after SIGHUP"),
                    Err(AuditError::Closed) => return,
                    Err(e) => tracing::error!(error = %e, "audit: reopen after SIGHUP failed"),
                }
            }
        }))
    }

    /// Writes everything queued, fsyncs and stops the writer.
    pub async fn shutdown(&self) {
        let Some(inner) = &self.inner else { return };
        let (ack, done) = oneshot::channel();
        if inner.tx.send(Msg::Shutdown(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

/// One JSON object and a newline. serde_json escapes control characters inside strings, so a
/// statement's newlines can never split a record.
fn encode(rec: &Record) -> Result<Vec<u8>, AuditError> {
    let mut v = serde_json::to_vec(rec)?;
    v.push(b'\n');
    Ok(v)
}

enum Target {
    Stdout,
    File(PathBuf),
}

struct Sink {
    target: Target,
    /// `None` after a failed (re)open: every write retries the open.
    file: Option<File>,
    /// Lines written so far (the last line's number).
    lines: Line,
    /// Lines an fsync has covered (successfully, or by failing: see `Counters::lost`).
    synced: Line,
    /// The writer has shut down: nothing is written any more, inline either.
    stopped: bool,
}

/// Opens for append, creating with mode 0600 (the log holds statement texts), and cuts a torn
/// last line left by a crash mid-write: a record only counts once its newline is on disk, and
/// appending after a fragment would glue it to the next record.
fn open_log(path: &Path) -> io::Result<File> {
    let mut f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    repair_torn_tail(&mut f, path)?;
    Ok(f)
}

fn repair_torn_tail(f: &mut File, path: &Path) -> io::Result<()> {
    let meta = f.metadata()?;
    if !meta.is_file() || meta.len() == 0 {
        return Ok(());
    }
    let len = meta.len();
    let mut last = [0u8; 1];
    f.seek(SeekFrom::Start(len - 1))?;
    f.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Search backwards for the last newline, in chunks.
    let mut end = len;
    let mut keep = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..n])?;
        if let Some(p) = buf[..n].iter().rposition(|&b| b == b'\n') {
            keep = start + p as u64 + 1;
            break;
        }
        end = start;
    }
    tracing::warn!(
        path = %path.display(),
        bytes = len - keep,
        "audit: removing a torn last record left by a crash"
    );
    f.set_len(keep)
}

/// `write_all` that says, when it fails, how many bytes of `line` it had appended.
fn append_counted(f: &mut impl Write, line: &[u8]) -> Result<(), (io::Error, usize)> {
    let mut done = 0;
    while done < line.len() {
        match f.write(&line[done..]) {
            Ok(0) => return Err((io::Error::from(io::ErrorKind::WriteZero), done)),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((e, done)),
        }
    }
    Ok(())
}

impl Sink {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match &self.target {
            Target::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(line)?;
                out.flush()
            }
            Target::File(path) => {
                if self.file.is_none() {
                    self.file = Some(open_log(path)?);
                }
                let Some(f) = self.file.as_mut() else {
                    return Err(io::Error::other("audit file not open"));
                };
                let started = std::time::Instant::now();
                let written = append_counted(f, line);
                crate::metrics::audit_write_took(started.elapsed());
                if let Err((e, done)) = written {
                    // A partial line (ENOSPC midway) must not stay: the next record would be
                    // appended to it and neither would parse. What this write put down is
                    // counted, so the file is measured only then (not before every record).
                    if done > 0 {
                        if let Some(len) =
                            f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len())
                        {
                            let _ = f.set_len(len.saturating_sub(done as u64));
                        }
                    }
                    return Err(e);
                }
                Ok(())
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        match (&self.target, self.file.as_mut()) {
            (Target::File(_), Some(f)) => {
                let started = std::time::Instant::now();
                let r = f.sync_data();
                crate::metrics::audit_fsync_took(started.elapsed());
                r
            }
            (Target::File(_), None) => Err(io::Error::other("audit file not open")),
            (Target::Stdout, _) => Ok(()),
        }
    }

    /// fsyncs unless every written line is covered already; publishes how far lines are
    /// durable. A failed fsync marks the uncovered lines as lost for good (after a failed
    /// fdatasync the kernel may drop the dirty pages and a later fsync succeed without them),
    /// so no later barrier over them can succeed.
    fn settle_all(&mut self, c: &Counters) -> io::Result<()> {
        if self.lines == self.synced {
            return Ok(());
        }
        let r = self.sync();
        match &r {
            Ok(()) => {
                c.fsyncs.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                let from = self.synced + 1;
                let _ = c
                    .lost_from
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| {
                        Some(if f == 0 { from } else { f.min(from) })
                    });
                c.lost_through.fetch_max(self.lines, Ordering::AcqRel);
            }
        }
        self.synced = self.lines;
        c.synced.store(self.lines, Ordering::Release);
        r
    }

    fn reopen(&mut self) -> io::Result<()> {
        if let Some(mut f) = self.file.take() {
            let _ = f.flush();
            let _ = f.sync_data();
        }
        if let Target::File(path) = &self.target {
            self.file = Some(open_log(path)?);
        }
        Ok(())
    }
}

/// What the writer thread owns: the channel's receiving end and the sink.
struct Writer {
    rx: mpsc::Receiver<Msg>,
    sink: Arc<Mutex<Sink>>,
    policy: FsyncPolicy,
    interval: std::time::Duration,
    counters: Arc<Counters>,
    pending: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer thread (`path` names the log in an error).
    fn spawn(self, path: &str) -> Result<(), AuditError> {
        let open_error = |source| AuditError::Open {
            path: path.to_string(),
            source,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(open_error)?;
        std::thread::Builder::new()
            .name("pgwarden-audit".into())
            .spawn(move || {
                let Writer {
                    rx,
                    sink,
                    policy,
                    interval,
                    counters,
                    pending,
                } = self;
                runtime.block_on(run_writer(rx, sink, policy, interval, counters, pending))
            })
            .map_err(open_error)?;
        Ok(())
    }
}

async fn run_writer(
    mut rx: mpsc::Receiver<Msg>,
    sink: Arc<Mutex<Sink>>,
    policy: FsyncPolicy,
    interval: std::time::Duration,
    counters: Arc<Counters>,
    pending: Arc<AtomicU64>,
) {
    let mut ticker = tokio::time::interval(interval.max(std::time::Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dirty = false;
    loop {
        let first = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => m,
                None => break,
            },
            _ = ticker.tick(), if policy == FsyncPolicy::Interval && dirty => {
                if let Ok(Err(e)) = unwind(|| lock(&sink).settle_all(&counters)) {
                    tracing::error!(error = %e, "audit: fsync failed");
                }
                dirty = false;
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        match unwind(|| write_batch(&sink, batch, policy, &counters, &pending)) {
            Ok(BatchEnd { stop, unsynced }) => {
                dirty = unsynced;
                if stop {
                    return;
                }
            }
            Err(()) => {
                // A panic in a batch drops its acks: waiting DDL gets `Closed`.
                tracing::error!("audit: writer batch panicked");
            }
        }
    }
    // All handles gone: make what was written durable.
    let _ = unwind(|| lock(&sink).settle_all(&counters));
}

/// Runs `f` on the writer thread; a panic in it is caught so that the writer goes on with the
/// next batch (the panicking batch's acks are dropped: their waiters get `Closed`).
fn unwind<T>(f: impl FnOnce() -> T) -> Result<T, ()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| ())
}

fn lock(s: &Mutex<Sink>) -> std::sync::MutexGuard<'_, Sink> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// A waiting `ddl` call, the result it will get, and whether it waits for the fsync.
struct PendingAck {
    ack: Ack,
    result: Result<Line, String>,
    durable: bool,
}

struct BatchEnd {
    stop: bool,
    /// Lines are written that no fsync covers yet.
    unsynced: bool,
}

fn write_batch(
    sink: &Mutex<Sink>,
    batch: Vec<Msg>,
    policy: FsyncPolicy,
    c: &Counters,
    pending: &AtomicU64,
) -> BatchEnd {
    let mut sink = lock(sink);
    let mut acks: Vec<PendingAck> = Vec::new();
    let mut syncs: Vec<oneshot::Sender<Result<(), String>>> = Vec::new();
    // Something in this batch waits for an fsync (a durable record, a barrier).
    let mut wants_sync = false;
    let mut stop: Option<oneshot::Sender<()>> = None;
    for msg in batch {
        match msg {
            Msg::Line {
                bytes,
                ack,
                durable,
            } => {
                let started = std::time::Instant::now();
                let r = sink.write_line(&bytes).map_err(|e| e.to_string());
                c.timed(started.elapsed());
                // Written (or failed) under the lock: a session may write inline after it.
                pending.fetch_sub(1, Ordering::AcqRel);
                let r = match r {
                    Ok(()) => {
                        c.written.fetch_add(1, Ordering::Relaxed);
                        sink.lines += 1;
                        Ok(sink.lines)
                    }
                    Err(e) => {
                        c.failed.fetch_add(1, Ordering::Relaxed);
                        if ack.is_none() {
                            tracing::error!(error = %e, "audit: record not written");
                        }
                        Err(e)
                    }
                };
                if let Some(ack) = ack {
                    wants_sync |= durable;
                    acks.push(PendingAck {
                        ack,
                        result: r,
                        durable,
                    });
                }
            }
            Msg::Sync(a) => {
                wants_sync = true;
                syncs.push(a);
            }
            Msg::Reopen(a) => {
                // Records before the reopen belong to the old file: make them durable there.
                if policy != FsyncPolicy::Never {
                    settle(&mut sink, c, &mut acks, &mut syncs);
                }
                let r = sink.reopen().map_err(|e| e.to_string());
                if let Err(e) = &r {
                    tracing::error!(error = %e, "audit: reopen failed; retrying on each record");
                }
                let _ = a.send(r);
            }
            Msg::Shutdown(a) => {
                stop = Some(a);
                sink.stopped = true;
                break;
            }
        }
    }
    if (wants_sync && policy == FsyncPolicy::Always) || stop.is_some() {
        settle(&mut sink, c, &mut acks, &mut syncs);
    }
    for p in acks {
        let _ = p.ack.send(p.result);
    }
    // A barrier under `interval`/`never` has nothing to wait for: the policy decides.
    for a in syncs {
        let _ = a.send(Ok(()));
    }
    let unsynced = sink.lines > sink.synced;
    match stop {
        Some(a) => {
            let _ = a.send(());
            BatchEnd {
                stop: true,
                unsynced,
            }
        }
        None => BatchEnd {
            stop: false,
            unsynced,
        },
    }
}

/// fsyncs what is written and answers the durable acks and barriers queued so far; a failed
/// fsync turns them into errors: a record that may not be on disk must not let its DDL run.
fn settle(
    sink: &mut Sink,
    c: &Counters,
    acks: &mut [PendingAck],
    syncs: &mut Vec<oneshot::Sender<Result<(), String>>>,
) {
    if let Err(e) = sink.settle_all(c) {
        tracing::error!(error = %e, "audit: fsync failed");
        for p in acks.iter_mut() {
            if p.durable && p.result.is_ok() {
                p.result = Err(format!("fsync failed: {e}"));
            }
        }
        for a in syncs.drain(..) {
            let _ = a.send(Err(format!("fsync failed: {e}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{now_rfc3339, Decision, StatementRecord};
    use crate::protocol::TxStatus;

    /// Takes `room` bytes in writes of at most 3, then fails as a full disk does.
    struct Full {
        got: Vec<u8>,
        room: usize,
    }

    impl std::io::Write for Full {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = buf.len().min(3).min(self.room - self.got.len());
            if n == 0 {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_append_says_how_much_of_the_line_it_put_down() {
        let mut f = Full {
            got: b"earlier\n".to_vec(),
            room: 15,
        };
        let (e, done) = super::append_counted(&mut f, b"{\"a\":1}\n").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28));
        assert_eq!(done, 7, "short writes are continued until the error");
        assert_eq!(
            f.got.len() - done,
            b"earlier\n".len(),
            "cut back to the last whole line"
        );
        let mut f = Full {
            got: Vec::new(),
            room: 100,
        };
        assert!(super::append_counted(&mut f, b"line\n").is_ok());
        assert_eq!(f.got, b"line\n");
    }

    fn cfg(path: &std::path::Path) -> AuditConfig {
        AuditConfig {
            path: path.display().to_string(),
            ..AuditConfig::default()
        }
    }

    fn stmt(n: u64) -> Record {
        Record::Statement(StatementRecord::new(
            "s-1",
            n,
            TxStatus::Idle,
            "CREATE TABLE t (id int)",
            true,
            Decision::Allow,
        ))
    }

    #[tokio::test]
    async fn torn_tail_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("a.jsonl");
        std::fs::write(&p, b"{\"a\":1}\n{\"b\":").unwrap_or_else(|e| panic!("{e}"));
        let h = AuditHandle::start(&cfg(&p)).unwrap_or_else(|e| panic!("{e}"));
        h.ddl(&stmt(1)).await.unwrap_or_else(|e| panic!("{e}"));
        h.shutdown().await;
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{e}"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], "{\"a\":1}");
        assert!(lines[1].starts_with("{\"type\":\"statement\""));
        let _ = now_rfc3339();
    }

    #[tokio::test]
    async fn disabled_handle_is_a_no_op() {
        let h = AuditHandle::disabled();
        assert!(!h.is_enabled());
        h.ddl(&stmt(1)).await.unwrap_or_else(|e| panic!("{e}"));
        h.record(&stmt(2));
        assert_eq!(h.stats(), AuditStats::default());
        assert!(h.session_id(7).ends_with("-7"));
    }

    #[tokio::test]
    async fn full_channel_drops_non_critical_records_without_waiting() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("a.jsonl");
        let mut c = cfg(&p);
        c.channel_capacity = 1;
        // The writer starts only once the queue is full: one record queued, nine dropped, and
        // `record` never waited for room.
        let (h, writer) = AuditHandle::open(&c).unwrap_or_else(|e| panic!("{e}"));
        for n in 0..10 {
            h.record(&stmt(n));
        }
        assert_eq!(h.stats().dropped, 9);
        writer
            .expect("an enabled log has a writer")
            .spawn(&c.path)
            .unwrap_or_else(|e| panic!("{e}"));
        h.shutdown().await;
        assert_eq!(h.stats().written, 1);
    }
}

#[cfg(test)]
mod inline_tests {
    //! The session-side write of written-only records ([`AuditHandle::write_inline`]): when it
    //! happens, and that it never reorders the file or outlives the writer.
    use super::*;
    use crate::audit::record::{Decision, StatementRecord};
    use crate::protocol::TxStatus;

    fn stmt(n: u64) -> Record {
        Record::Statement(StatementRecord::new(
            "s-1",
            n,
            TxStatus::InTransaction,
            &format!("CREATE TABLE t{n} (id int)"),
            true,
            Decision::Allow,
        ))
    }

    fn seqs(p: &Path) -> Vec<u64> {
        std::fs::read_to_string(p)
            .unwrap_or_else(|e| panic!("{e}"))
            .lines()
            .map(|l| {
                let v: serde_json::Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}"));
                v["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {l}"))
            })
            .collect()
    }

    /// With nothing queued, a written-only record is written by the caller itself: it is in
    /// the file although the writer thread has not even started (through the thread the call
    /// could not return). A durable one still waits for the writer and its fsync.
    #[tokio::test]
    async fn a_written_record_with_nothing_queued_is_written_by_the_session() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("a.jsonl");
        let c = AuditConfig {
            path: p.display().to_string(),
            ..AuditConfig::default()
        };
        let (h, writer) = AuditHandle::open(&c).unwrap_or_else(|e| panic!("{e}"));
        let Some(inner) = h.inner.clone() else {
            panic!("enabled")
        };
        for n in 1..=3 {
            // A write slowed by a busy machine would send the next record to the thread (see
            // the slow-write test): what is tested here is the path after a fast one.
            inner.counters.timed(std::time::Duration::ZERO);
            let line = tokio::time::timeout(
                std::time::Duration::from_secs(60),
                h.ddl_all_with(&[stmt(n)], Durability::Written),
            )
            .await
            .unwrap_or_else(|_| panic!("record {n} waited for the writer thread"))
            .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(line, n, "line numbers go on counting");
        }
        assert_eq!(seqs(&p), vec![1, 2, 3]);
        assert_eq!(h.stats().written, 3);
        assert_eq!(h.stats().fsyncs, 0);
        let mark = SessionMark::default();
        mark.note(3);
        assert!(h.unsynced(&mark), "written inline, not fsynced");
        writer
            .expect("an enabled log has a writer")
            .spawn(&c.path)
            .unwrap_or_else(|e| panic!("{e}"));
        // The barrier's fsync on the writer thread covers the lines written inline.
        h.barrier(&mark).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(!h.unsynced(&mark));
        assert_eq!(h.stats().fsyncs, 1);
        h.ddl(&stmt(4)).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            h.stats().fsyncs,
            2,
            "a durable record went through the fsync"
        );
        h.shutdown().await;
        assert_eq!(seqs(&p), vec![1, 2, 3, 4]);
    }

    /// A record queued for the writer (a `session_start`, say) and not written yet keeps a
    /// later written-only record off the inline path: the file keeps the hand-over order.
    #[tokio::test]
    async fn a_queued_record_is_never_overtaken() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("a.jsonl");
        let c = AuditConfig {
            path: p.display().to_string(),
            ..AuditConfig::default()
        };
        let (h, writer) = AuditHandle::open(&c).unwrap_or_else(|e| panic!("{e}"));
        h.record(&stmt(1));
        let h2 = h.clone();
        let later =
            tokio::spawn(async move { h2.ddl_all_with(&[stmt(2)], Durability::Written).await });
        // Not written while the first record waits in the queue (the writer is not running):
        // give the task every chance to run, then look.
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert!(
            !later.is_finished(),
            "the later record went past the queued one"
        );
        assert!(seqs(&p).is_empty());
        writer
            .expect("an enabled log has a writer")
            .spawn(&c.path)
            .unwrap_or_else(|e| panic!("{e}"));
        let line = later
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(line, 2);
        assert_eq!(seqs(&p), vec![1, 2]);
        // The queue is empty again: the next one is written inline, after both.
        h.ddl_all_with(&[stmt(3)], Durability::Written)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        h.shutdown().await;
        assert_eq!(seqs(&p), vec![1, 2, 3]);
    }

    /// After a slow write the sessions' records go through the writer thread; its next fast
    /// write lets them write inline again.
    #[tokio::test]
    async fn a_slow_write_sends_records_through_the_writer_until_one_is_fast() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("a.jsonl");
        let c = AuditConfig {
            path: p.display().to_string(),
            ..AuditConfig::default()
        };
        let (h, writer) = AuditHandle::open(&c).unwrap_or_else(|e| panic!("{e}"));
        let Some(inner) = h.inner.clone() else {
            panic!("enabled")
        };
        inner.counters.timed(INLINE_SLOW * 2);
        let h2 = h.clone();
        let call =
            tokio::spawn(async move { h2.ddl_all_with(&[stmt(1)], Durability::Written).await });
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert!(!call.is_finished(), "written inline after a slow write");
        // The writer thread writes it.
        writer
            .expect("an enabled log has a writer")
            .spawn(&c.path)
            .unwrap_or_else(|e| panic!("{e}"));
        call.await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        // Whether that write was fast is the machine's business; what a fast one does is not.
        inner.counters.timed(std::time::Duration::ZERO);
        assert!(!inner.counters.inline_off.load(Ordering::Relaxed));
        // Inline again, once the writer thread has let go of the sink after its batch.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match AuditHandle::write_inline(&inner, &[stmt(2)], false) {
                Some(r) => {
                    assert_eq!(r.unwrap_or_else(|e| panic!("{e}")), 2);
                    break;
                }
                None => {
                    assert!(std::time::Instant::now() < deadline, "never inline again");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
        h.shutdown().await;
        assert_eq!(seqs(&p), vec![1, 2]);
    }

    /// After shutdown nothing is written, inline either: the DDL is refused as before.
    #[tokio::test]
    async fn nothing_is_written_inline_after_shutdown() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("a.jsonl");
        let h = AuditHandle::start(&AuditConfig {
            path: p.display().to_string(),
            ..AuditConfig::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        h.ddl_all_with(&[stmt(1)], Durability::Written)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        h.shutdown().await;
        let r = h.ddl_all_with(&[stmt(2)], Durability::Written).await;
        assert!(matches!(r, Err(AuditError::Closed)), "{r:?}");
        assert_eq!(seqs(&p), vec![1]);
    }

    /// Under `interval` the writer thread fsyncs what it wrote at its ticks: written-only
    /// records stay with it (an inline line would be missed by the tick).
    #[tokio::test]
    async fn interval_keeps_records_on_the_writer_thread() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("a.jsonl");
        let c = AuditConfig {
            path: p.display().to_string(),
            fsync: FsyncPolicy::Interval,
            ..AuditConfig::default()
        };
        let (h, writer) = AuditHandle::open(&c).unwrap_or_else(|e| panic!("{e}"));
        let h2 = h.clone();
        let call =
            tokio::spawn(async move { h2.ddl_all_with(&[stmt(1)], Durability::Written).await });
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert!(!call.is_finished(), "written without the writer thread");
        writer
            .expect("an enabled log has a writer")
            .spawn(&c.path)
            .unwrap_or_else(|e| panic!("{e}"));
        call.await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        h.shutdown().await;
        assert_eq!(seqs(&p), vec![1]);
    }
}
