//! `pgwarden audit report`: what a deploy did, per session and migration revision.
//!
//! Reads an audit file, joins `statement`, `outcome` and `fate` records by session and `seq`,
//! and groups each session's statements by the migration revision that covers them. A torn
//! last line (the writer was killed mid-record) is reported and skipped; an invalid line
//! anywhere else is an error naming its line number, because it means the file was damaged or
//! is not an audit log, and a report that silently skipped it would lie.
use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::migration::{Direction, MigrationRevision, MigrationTool};
use super::record::{
    Decision, Fate, FateReason, Outcome, Record, SessionCounts, SessionEnd, SessionStart,
};
use super::AuditError;

/// The whole report (also the `--format json` output).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// File it was read from.
    pub file: String,
    /// Records read.
    pub records: usize,
    /// Line number of a torn last line that was skipped.
    pub truncated_last_line: Option<usize>,
    /// Lines whose `type` this version does not know (skipped), with their numbers.
    pub unknown_lines: Vec<usize>,
    /// Sessions in order of first appearance.
    pub sessions: Vec<SessionReport>,
    /// Counts over all sessions.
    pub totals: Totals,
}

/// One client session.
#[derive(Debug, Clone, Serialize)]
pub struct SessionReport {
    pub session_id: String,
    pub user: Option<String>,
    pub database: Option<String>,
    pub application_name: Option<String>,
    pub client_addr: Option<String>,
    pub server_pid: Option<i32>,
    pub tls: Option<bool>,
    pub started: Option<String>,
    /// Absent when the session has no `session_end` (still running, or the proxy died).
    pub ended: Option<String>,
    pub counts: Option<SessionCounts>,
    /// Statements grouped by migration revision, in statement order.
    pub groups: Vec<RevisionGroup>,
}

/// Statements of one migration revision (or of no known revision).
#[derive(Debug, Clone, Serialize)]
pub struct RevisionGroup {
    /// `None`: no migration bookkeeping covered these statements.
    pub migration: Option<MigrationRevision>,
    /// No revision covers them, but they ran after this revision's bookkeeping in the same
    /// session: they belong to the revision after it (whose bookkeeping never came).
    pub after_revision: Option<MigrationRevision>,
    /// The fate shared by all statements, `None` when they differ or are unknown.
    pub fate: Option<Fate>,
    pub statements: Vec<StatementReport>,
}

/// One audited statement with everything known about it.
#[derive(Debug, Clone, Serialize)]
pub struct StatementReport {
    pub seq: u64,
    pub time: String,
    pub text: String,
    pub fingerprint: String,
    pub decision: Decision,
    pub rules: Vec<String>,
    pub rewritten: Option<String>,
    /// Table sizes the decision used.
    pub table_sizes: Vec<super::record::TableSize>,
    /// `None`: no `outcome` record (the proxy stopped before the server answered).
    pub outcome: Option<Outcome>,
    pub duration_ms: Option<f64>,
    /// `None`: no `fate` record.
    pub fate: Option<Fate>,
    pub fate_reason: Option<FateReason>,
    /// pgwarden's lock-timeout retries of the statement (empty: it ran once).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<crate::execute::Attempt>,
    /// The steps pgwarden sent for a multi-step rewrite of the statement.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<super::steps::Step>,
    /// Two-phase commit: the gid of the prepared transaction holding it.
    pub gid: Option<String>,
    /// Two-phase commit: the session that ran COMMIT/ROLLBACK PREPARED.
    pub finished_by: Option<String>,
    /// `dry-run` mode: what enforce mode would have done.
    pub would: Option<Decision>,
}

/// Counts over the whole file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub sessions: usize,
    pub statements: usize,
    pub committed: usize,
    pub rolled_back: usize,
    /// Prepared, unknown, or no fate record (statements that ran).
    pub undecided: usize,
    /// Never run: skipped by the server after an earlier error in the same request.
    pub skipped: usize,
    pub errors: usize,
    pub allow: usize,
    pub warn: usize,
    pub rewrite: usize,
    pub reject: usize,
}

#[derive(Default)]
struct SessionAcc {
    order: usize,
    start: Option<SessionStart>,
    end: Option<SessionEnd>,
    statements: BTreeMap<u64, StatementReport>,
    /// seq → covering revision (from fate records).
    revision_of: BTreeMap<u64, MigrationRevision>,
    /// Revisions whose transaction held no audited statement: (position after seq, rev, fate).
    empty_revisions: Vec<(u64, MigrationRevision, Fate)>,
    /// Highest statement seq read so far (file order): places revisions recorded in a
    /// transaction without audited statements (golang-migrate's own transactions).
    last_seq: u64,
    fates: BTreeMap<u64, (Fate, FateReason)>,
    /// seq → (gid, session that finished it) for prepared transactions.
    two_phase: BTreeMap<u64, (Option<String>, Option<String>)>,
    /// seq → the revision whose bookkeeping preceded it (statements no revision covers).
    after_of: BTreeMap<u64, MigrationRevision>,
    /// seq → which transaction (fate record) held it; all committed autocommit statements
    /// share one key so they read as one block.
    tx_of: BTreeMap<u64, usize>,
    n_fates: usize,
    outcomes: BTreeMap<u64, (Outcome, f64)>,
    attempts: BTreeMap<u64, Vec<crate::execute::Attempt>>,
    steps: BTreeMap<u64, Vec<super::steps::Step>>,
}

/// Reads and summarises an audit file.
pub fn build_report(path: &str, bytes: &[u8]) -> Result<Report, AuditError> {
    let mut sessions: BTreeMap<String, SessionAcc> = BTreeMap::new();
    let mut report = Report {
        file: path.to_string(),
        records: 0,
        truncated_last_line: None,
        unknown_lines: Vec::new(),
        sessions: Vec::new(),
        totals: Totals::default(),
    };
    let ends_with_newline = bytes.last() == Some(&b'\n');
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if ends_with_newline || bytes.is_empty() {
        lines.pop();
    }
    let n_lines = lines.len();
    // gid → (session, seqs) of the last prepared transaction with that gid: a COMMIT/ROLLBACK
    // PREPARED recorded by another session (or after a restart) finds its statements here.
    let mut prepared: std::collections::HashMap<String, (String, Vec<u64>)> =
        std::collections::HashMap::new();
    for (idx, raw) in lines.into_iter().enumerate() {
        let line_no = idx + 1;
        let is_last_unterminated = line_no == n_lines && !ends_with_newline;
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad = |message: String| AuditError::BadLine {
            path: path.to_string(),
            line: line_no,
            message,
        };
        let rec: Record = match serde_json::from_slice(raw) {
            Ok(r) => r,
            Err(e) => {
                if is_last_unterminated {
                    report.truncated_last_line = Some(line_no);
                    continue;
                }
                // A well-formed object of a record type this version does not know: skip it
                // (a newer pgwarden wrote it); anything else is damage.
                match serde_json::from_slice::<serde_json::Value>(raw) {
                    Ok(v)
                        if v.get("type").and_then(|t| t.as_str()).is_some_and(|t| {
                            !matches!(
                                t,
                                "session_start"
                                    | "session_end"
                                    | "statement"
                                    | "outcome"
                                    | "fate"
                                    | "attempts"
                                    | "steps"
                            )
                        }) =>
                    {
                        report.unknown_lines.push(line_no);
                        continue;
                    }
                    _ => return Err(bad(e.to_string())),
                }
            }
        };
        report.records += 1;
        let next_order = sessions.len();
        let mut rec = rec;
        if let Record::Fate(r) = &mut rec {
            match (r.reason, &r.gid) {
                (FateReason::Prepare, Some(g)) => {
                    prepared.insert(g.clone(), (r.session_id.clone(), r.seqs.clone()));
                }
                (FateReason::CommitPrepared | FateReason::RollbackPrepared, Some(g)) => {
                    if let Some((sid, seqs)) = prepared.remove(g) {
                        if r.seqs.is_empty() {
                            r.finished_by.get_or_insert(r.session_id.clone());
                            r.session_id = sid;
                            r.seqs = seqs;
                        }
                    }
                }
                _ => {}
            }
        }
        let sid = match &rec {
            Record::SessionStart(r) => &r.session_id,
            Record::SessionEnd(r) => &r.session_id,
            Record::Statement(r) => &r.session_id,
            Record::Outcome(r) => &r.session_id,
            Record::Fate(r) => &r.session_id,
            Record::Attempts(r) => &r.session_id,
            Record::Steps(r) => &r.session_id,
        }
        .clone();
        let acc = sessions.entry(sid).or_insert_with(|| SessionAcc {
            order: next_order,
            ..SessionAcc::default()
        });
        match rec {
            Record::SessionStart(r) => acc.start = Some(r),
            Record::SessionEnd(r) => acc.end = Some(r),
            Record::Statement(r) => {
                acc.last_seq = acc.last_seq.max(r.seq);
                acc.statements.insert(
                    r.seq,
                    StatementReport {
                        seq: r.seq,
                        time: r.time,
                        text: r.text,
                        fingerprint: r.fingerprint,
                        decision: r.decision,
                        rules: r.rules,
                        rewritten: r.rewritten,
                        table_sizes: r.table_sizes,
                        outcome: None,
                        duration_ms: None,
                        fate: None,
                        fate_reason: None,
                        attempts: Vec::new(),
                        steps: Vec::new(),
                        gid: None,
                        finished_by: None,
                        would: r.would,
                    },
                );
            }
            Record::Outcome(r) => {
                acc.outcomes.insert(r.seq, (r.outcome, r.duration_ms));
            }
            Record::Attempts(r) => {
                acc.attempts.insert(r.seq, r.attempts);
            }
            Record::Steps(r) => {
                acc.steps.entry(r.seq).or_default().extend(r.steps);
            }
            Record::Fate(r) => {
                let tx = if r.reason == FateReason::Autocommit && r.fate == Fate::Committed {
                    usize::MAX
                } else {
                    acc.n_fates
                };
                acc.n_fates += 1;
                for s in &r.seqs {
                    acc.fates.insert(*s, (r.fate, r.reason));
                    acc.tx_of.insert(*s, tx);
                    if r.gid.is_some() {
                        acc.two_phase
                            .insert(*s, (r.gid.clone(), r.finished_by.clone()));
                    }
                }
                if let Some(after) = &r.after_revision {
                    let covered: std::collections::HashSet<u64> = r
                        .migrations
                        .iter()
                        .flat_map(|m| m.seqs.iter().copied())
                        .collect();
                    for s in r.seqs.iter().filter(|s| !covered.contains(s)) {
                        acc.after_of.insert(*s, after.clone());
                    }
                }
                // A revision without statements sits after the statements of the revisions
                // recorded before it in the same transaction, else before the transaction's
                // first statement, else (no statements at all) where the file has got to.
                let mut covered_before: Option<u64> = None;
                for m in r.migrations {
                    if m.seqs.is_empty() {
                        let pos = match (covered_before, r.seqs.iter().min()) {
                            (Some(p), _) => p,
                            (None, Some(first)) => first.saturating_sub(1),
                            (None, None) => acc.last_seq,
                        };
                        acc.empty_revisions.push((pos, m.revision, r.fate));
                    } else {
                        covered_before = m.seqs.iter().copied().max().max(covered_before);
                        for s in m.seqs {
                            acc.after_of.remove(&s);
                            acc.revision_of.insert(s, m.revision.clone());
                        }
                    }
                }
            }
        }
    }

    let mut accs: Vec<(String, SessionAcc)> = sessions.into_iter().collect();
    accs.sort_by_key(|(_, a)| a.order);
    for (sid, mut acc) in accs {
        for (seq, st) in acc.statements.iter_mut() {
            if let Some((o, d)) = acc.outcomes.remove(seq) {
                st.outcome = Some(o);
                st.duration_ms = Some(d);
            }
            if let Some(a) = acc.attempts.remove(seq) {
                st.attempts = a;
            }
            if let Some(s) = acc.steps.remove(seq) {
                st.steps = s;
            }
            if let Some((f, r)) = acc.fates.get(seq) {
                st.fate = Some(*f);
                st.fate_reason = Some(*r);
            }
            if let Some((g, by)) = acc.two_phase.get(seq) {
                st.gid = g.clone();
                st.finished_by = by.clone();
            }
        }
        let mut groups: Vec<RevisionGroup> = Vec::new();
        acc.empty_revisions.sort_by_key(|(pos, _, _)| *pos);
        let mut empties = acc.empty_revisions.into_iter().peekable();
        let mut last_key: Option<usize> = None;
        for (seq, st) in acc.statements {
            while let Some((pos, rev, fate)) = empties.next_if(|(pos, _, _)| *pos < seq) {
                let _ = pos;
                groups.push(RevisionGroup {
                    migration: Some(rev),
                    after_revision: None,
                    fate: Some(fate),
                    statements: Vec::new(),
                });
            }
            let rev = acc.revision_of.get(&seq).cloned();
            let after = match rev {
                None => acc.after_of.get(&seq).cloned(),
                Some(_) => None,
            };
            // Statements without a revision are grouped per transaction.
            let key = if rev.is_none() {
                acc.tx_of.get(&seq).copied()
            } else {
                None
            };
            t_count(&mut report.totals, &st);
            match groups.last_mut() {
                Some(g)
                    if g.migration == rev
                        && g.after_revision == after
                        && !(g.statements.is_empty() && rev.is_some())
                        && (last_key == key || after.is_some()) =>
                {
                    g.statements.push(st)
                }
                _ => groups.push(RevisionGroup {
                    migration: rev,
                    after_revision: after,
                    fate: None,
                    statements: vec![st],
                }),
            }
            last_key = key;
        }
        for (_, rev, fate) in empties {
            groups.push(RevisionGroup {
                migration: Some(rev),
                after_revision: None,
                fate: Some(fate),
                statements: Vec::new(),
            });
        }
        let mut groups = attribute_golang_migrate(groups);
        for g in &mut groups {
            if !g.statements.is_empty() {
                let first = g.statements[0].fate;
                g.fate = if g.statements.iter().all(|s| s.fate == first) {
                    first
                } else {
                    None
                };
            }
        }
        let start = acc.start;
        let end = acc.end;
        let pick = |a: Option<&String>, b: Option<&String>| a.or(b).cloned();
        report.sessions.push(SessionReport {
            session_id: sid,
            user: pick(
                start.as_ref().map(|s| &s.user),
                end.as_ref().map(|e| &e.user),
            ),
            database: pick(
                start.as_ref().map(|s| &s.database),
                end.as_ref().map(|e| &e.database),
            ),
            application_name: pick(
                start.as_ref().map(|s| &s.application_name),
                end.as_ref().map(|e| &e.application_name),
            ),
            client_addr: pick(
                start.as_ref().map(|s| &s.client_addr),
                end.as_ref().map(|e| &e.client_addr),
            ),
            server_pid: start
                .as_ref()
                .and_then(|s| s.server_pid)
                .or(end.as_ref().and_then(|e| e.server_pid)),
            tls: start
                .as_ref()
                .map(|s| s.tls)
                .or(end.as_ref().map(|e| e.tls)),
            started: start.as_ref().map(|s| s.time.clone()),
            ended: end.as_ref().map(|e| e.time.clone()),
            counts: end.as_ref().map(|e| e.counts),
            groups,
        });
    }
    infer_directions(&mut report);
    report.totals.sessions = report.sessions.len();
    Ok(report)
}

/// Alembic's UPDATE of its version row looks the same both ways (`from` → `revision`). A step
/// whose way is known elsewhere in the file — the same step, or its reverse — tells it: an
/// upgrade `A → B` makes a later `B → A` a downgrade.
fn infer_directions(report: &mut Report) {
    let mut known: std::collections::HashMap<(String, String), Direction> =
        std::collections::HashMap::new();
    let each = |report: &mut Report, f: &mut dyn FnMut(&mut MigrationRevision)| {
        for s in &mut report.sessions {
            for g in &mut s.groups {
                for m in g.migration.iter_mut().chain(g.after_revision.iter_mut()) {
                    if m.tool == MigrationTool::Alembic {
                        f(m);
                    }
                }
            }
        }
    };
    each(report, &mut |m| {
        if let (Some(from), Some(d)) = (&m.from, m.direction) {
            known.insert((from.clone(), m.revision.clone()), d);
        }
    });
    each(report, &mut |m| {
        if m.direction.is_some() {
            return;
        }
        let Some(from) = &m.from else { return };
        m.direction = match known.get(&(from.clone(), m.revision.clone())) {
            Some(d) => Some(*d),
            None => match known.get(&(m.revision.clone(), from.clone())) {
                Some(Direction::Upgrade) => Some(Direction::Downgrade),
                Some(Direction::Downgrade) => Some(Direction::Upgrade),
                None => None,
            },
        };
    });
}

/// golang-migrate records `(version, dirty=true)` in a transaction of its own before running a
/// migration and `(version, dirty=false)` after it, so its DDL is never in the same transaction
/// as its version row. Statements without a revision between a dirty mark and the next
/// revision (normally the clean mark of the same version) belong to that version: merge them
/// into one group labelled with the version (still `[dirty]` when the clean mark never came,
/// i.e. the migration failed).
fn attribute_golang_migrate(groups: Vec<RevisionGroup>) -> Vec<RevisionGroup> {
    use super::migration::MigrationTool;
    let mut out: Vec<RevisionGroup> = Vec::with_capacity(groups.len());
    let mut open: Option<usize> = None; // index in `out` of the group collecting statements
    for g in groups {
        match &g.migration {
            Some(m) if m.tool == MigrationTool::GolangMigrate && g.statements.is_empty() => {
                if m.dirty == Some(true) {
                    out.push(g);
                    open = Some(out.len() - 1);
                    continue;
                }
                // The clean mark closes a dirty group of the same version.
                if let Some(i) = open.take() {
                    let same = out[i]
                        .migration
                        .as_ref()
                        .is_some_and(|d| d.revision == m.revision);
                    if same {
                        out[i].migration = g.migration;
                        out[i].fate = None;
                        continue;
                    }
                }
                out.push(g);
            }
            None => match open {
                Some(i) => out[i].statements.extend(g.statements),
                None => out.push(g),
            },
            Some(_) => {
                open = None;
                out.push(g);
            }
        }
    }
    out
}

fn t_count(t: &mut Totals, st: &StatementReport) {
    t.statements += 1;
    let skipped = matches!(st.outcome, Some(Outcome::Skipped));
    match st.fate {
        _ if skipped => t.skipped += 1,
        Some(Fate::Committed) => t.committed += 1,
        Some(Fate::RolledBack) => t.rolled_back += 1,
        _ => t.undecided += 1,
    }
    if matches!(st.outcome, Some(Outcome::Error { .. })) {
        t.errors += 1;
    }
    match st.decision {
        Decision::Allow => t.allow += 1,
        Decision::Warn => t.warn += 1,
        Decision::Rewrite => t.rewrite += 1,
        Decision::Reject => t.reject += 1,
    }
}

fn one_line(s: &str, max: usize) -> String {
    let collapsed: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() > max {
        let mut t: String = collapsed.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    } else {
        collapsed
    }
}

fn human_bytes(b: i64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn fate_str(f: Option<Fate>) -> &'static str {
    match f {
        Some(f) => f.as_str(),
        None => "no fate record",
    }
}

fn migration_label(m: &MigrationRevision) -> String {
    let tool = serde_json::to_value(m.tool)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut s = match (m.direction, &m.from) {
        (Some(Direction::Upgrade), Some(from)) => {
            format!("{tool} {} (upgrade from {from})", m.revision)
        }
        (Some(Direction::Upgrade), None) => format!("{tool} {} (upgrade)", m.revision),
        // The UPDATE of a downgrade writes the parent: the statements are `from`'s downgrade.
        (Some(Direction::Downgrade), Some(from)) => {
            format!("{tool} downgrade of {from} (to {})", m.revision)
        }
        (Some(Direction::Downgrade), None) => format!("{tool} downgrade of {}", m.revision),
        (None, Some(from)) => format!("{tool} {from} -> {}", m.revision),
        (None, None) => format!("{tool} {}", m.revision),
    };
    if let Some(d) = &m.description {
        let _ = write!(s, " ({d})");
    }
    if m.dirty == Some(true) {
        s.push_str(" [dirty]");
    }
    s
}

/// Plain-text rendering for a CI log.
pub fn render_text(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "pgwarden audit report: {} ({} records, {} sessions, {} audited statements)",
        r.file, r.records, r.totals.sessions, r.totals.statements
    );
    if let Some(l) = r.truncated_last_line {
        let _ = writeln!(
            o,
            "note: line {l} is an incomplete record (the writer stopped mid-write); skipped"
        );
    }
    if !r.unknown_lines.is_empty() {
        let _ = writeln!(
            o,
            "note: {} record(s) of unknown type skipped (lines {:?})",
            r.unknown_lines.len(),
            r.unknown_lines
        );
    }
    for s in &r.sessions {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "session {}  user={} db={} app={} client={} tls={} server_pid={}",
            s.session_id,
            s.user.as_deref().unwrap_or("?"),
            s.database.as_deref().unwrap_or("?"),
            s.application_name
                .as_deref()
                .filter(|a| !a.is_empty())
                .unwrap_or("-"),
            s.client_addr.as_deref().unwrap_or("?"),
            match s.tls {
                Some(true) => "yes",
                Some(false) => "no",
                None => "?",
            },
            s.server_pid.map_or("?".to_string(), |p| p.to_string()),
        );
        let _ = writeln!(
            o,
            "  started {}  ended {}",
            s.started.as_deref().unwrap_or("?"),
            s.ended.as_deref().unwrap_or("(no session_end record)")
        );
        if let Some(c) = s.counts {
            let _ = writeln!(
                o,
                "  statements seen {}, warned {}, rejected {}, rewritten {}",
                c.statements, c.warned, c.rejected, c.rewritten
            );
        }
        for g in &s.groups {
            let label = match (&g.migration, &g.after_revision) {
                (Some(m), _) => format!("revision {}", migration_label(m)),
                (None, Some(a)) => format!(
                    "the revision after {} (its version row never came: it failed or was refused)",
                    migration_label(a)
                ),
                (None, None)
                    if !g.statements.is_empty()
                        && g.statements
                            .iter()
                            .all(|s| s.fate_reason == Some(FateReason::Autocommit)) =>
                {
                    "no migration revision recorded, autocommit".to_string()
                }
                (None, None) if g.statements.iter().all(|s| s.fate.is_none()) => {
                    "no migration revision recorded".to_string()
                }
                (None, None) => "no migration revision recorded, one transaction".to_string(),
            };
            let fate = match g.fate {
                Some(f) => f.as_str().to_string(),
                None if g.statements.is_empty() => "no fate record".into(),
                None => "mixed/unknown (see statements)".into(),
            };
            let _ = writeln!(o, "  {label}: {fate}");
            if g.statements.is_empty() {
                let _ = writeln!(o, "    (no audited statements)");
            }
            for st in &g.statements {
                let outcome = match &st.outcome {
                    Some(Outcome::Ok { tag }) => tag.clone(),
                    Some(Outcome::Error { sqlstate, message }) => {
                        format!("ERROR {sqlstate}: {}", one_line(message, 100))
                    }
                    Some(Outcome::Unknown) => "no answer (connection lost)".into(),
                    Some(Outcome::Skipped) => {
                        "not run (an earlier statement of the same request failed)".into()
                    }
                    None => "no outcome record".into(),
                };
                let dur = st
                    .duration_ms
                    .map_or("-".to_string(), |d| format!("{d:.1} ms"));
                let rules = if st.rules.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", st.rules.join(", "))
                };
                let fate = match (st.fate, st.fate_reason) {
                    (Some(f), Some(r)) => format!(
                        "{} ({})",
                        f.as_str(),
                        serde_json::to_value(r)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default()
                    ),
                    (f, _) => fate_str(f).to_string(),
                };
                let fate = match (st.fate, &st.gid, &st.finished_by) {
                    (Some(Fate::Prepared), g, _) => format!(
                        "{fate}, gid {}: no COMMIT/ROLLBACK PREPARED seen by pgwarden (still \
                         pending, or finished directly on the server or through a pgwarden \
                         writing another log: see pg_prepared_xacts)",
                        g.as_deref().unwrap_or("?")
                    ),
                    (Some(_), Some(g), Some(by)) => format!("{fate}, gid {g}, by session {by}"),
                    _ => fate,
                };
                let fate = match (st.fate_reason, st.fate) {
                    (Some(FateReason::SavepointRollback), _) => {
                        format!("{fate}: undone by ROLLBACK TO SAVEPOINT")
                    }
                    _ => fate,
                };
                let decision = match st.would {
                    Some(w) => format!("{} (would {})", st.decision.as_str(), w.as_str()),
                    None => st.decision.as_str().to_string(),
                };
                let _ = writeln!(
                    o,
                    "    #{:<4} {:<7}{rules} {}",
                    st.seq,
                    decision,
                    one_line(&st.text, 90)
                );
                if !st.table_sizes.is_empty() {
                    let sizes: Vec<String> = st
                        .table_sizes
                        .iter()
                        .map(|t| {
                            format!(
                                "{} ({} rows, {})",
                                t.table,
                                t.rows.map_or("?".into(), |r| r.to_string()),
                                t.bytes.map_or("? bytes".into(), human_bytes)
                            )
                        })
                        .collect();
                    let _ = writeln!(o, "          tables: {}", sizes.join(", "));
                }
                if let Some(rw) = &st.rewritten {
                    let _ = writeln!(o, "          sent instead: {}", one_line(rw, 90));
                }
                for a in &st.attempts {
                    let _ = writeln!(
                        o,
                        "          {}",
                        one_line(&super::attempts::describe(a), 400)
                    );
                }
                for s in &st.steps {
                    let _ = writeln!(o, "          {}", one_line(&super::steps::describe(s), 400));
                }
                let _ = writeln!(o, "          -> {outcome}  {dur}  {fate}");
            }
        }
    }
    let t = &r.totals;
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "totals: {} statements: {} committed, {} rolled back, {} undecided{}; {} errors; decisions: allow {}, warn {}, rewrite {}, reject {}",
        t.statements,
        t.committed,
        t.rolled_back,
        t.undecided,
        if t.skipped > 0 {
            format!(", {} not run", t.skipped)
        } else {
            String::new()
        },
        t.errors,
        t.allow,
        t.warn,
        t.rewrite,
        t.reject
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = concat!(
        r#"{"type":"session_start","time":"2026-11-26T12:00:00.000Z","session_id":"r-1","client_addr":"127.0.0.1:5000","user":"app","database":"app","application_name":"alembic","server_pid":42,"tls":false}"#,
        "\n",
        r#"{"type":"statement","time":"2026-11-26T12:00:00.010Z","session_id":"r-1","seq":2,"tx_status":"in_transaction","text":"CREATE TABLE a (id int)","redacted":false,"fingerprint":"0000000000000001","decision":"allow","rules":[],"rewritten":null,"injected":[],"table_sizes":[]}"#,
        "\n",
        r#"{"type":"outcome","time":"2026-11-26T12:00:00.020Z","session_id":"r-1","seq":2,"outcome":{"result":"ok","tag":"CREATE TABLE"},"duration_ms":3.5}"#,
        "\n",
        r#"{"type":"statement","time":"2026-11-26T12:00:00.030Z","session_id":"r-1","seq":4,"tx_status":"in_transaction","text":"CREATE INDEX i ON big (x)","redacted":false,"fingerprint":"0000000000000002","decision":"reject","rules":["require-concurrent-index"],"rewritten":"DO $pgwarden$ BEGIN RAISE EXCEPTION 'x'; END $pgwarden$","injected":[],"table_sizes":[{"table":"public.big","rows":1000000,"bytes":null}]}"#,
        "\n",
        r#"{"type":"outcome","time":"2026-11-26T12:00:00.040Z","session_id":"r-1","seq":4,"outcome":{"result":"error","sqlstate":"XP001","message":"rejected"},"duration_ms":0.7}"#,
        "\n",
        r#"{"type":"fate","time":"2026-11-26T12:00:00.050Z","session_id":"r-1","seqs":[2,4],"fate":"rolled_back","reason":"rollback","migrations":[{"tool":"alembic","revision":"0001","seqs":[2]}]}"#,
        "\n",
    );

    #[test]
    fn groups_by_revision_and_joins_outcomes() {
        let r = build_report("x", SAMPLE.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.records, 6);
        let s = &r.sessions[0];
        assert_eq!(s.groups.len(), 2);
        assert_eq!(
            s.groups[0].migration.as_ref().map(|m| m.revision.as_str()),
            Some("0001")
        );
        assert_eq!(s.groups[0].fate, Some(Fate::RolledBack));
        assert!(s.groups[1].migration.is_none());
        let st = &s.groups[1].statements[0];
        assert!(
            matches!(&st.outcome, Some(Outcome::Error { sqlstate, .. }) if sqlstate == "XP001")
        );
        assert_eq!(
            (r.totals.rolled_back, r.totals.errors, r.totals.reject),
            (2, 1, 1)
        );
        let text = render_text(&r);
        assert!(
            text.contains("revision alembic 0001: rolled_back"),
            "{text}"
        );
        assert!(text.contains("ERROR XP001: rejected"), "{text}");
    }

    #[test]
    fn golang_migrate_versions_claim_the_ddl_between_their_marks() {
        let mk = |v: &str| {
            let mut s = String::new();
            let line = |s: &mut String, l: String| {
                s.push_str(&l);
                s.push('\n');
            };
            line(
                &mut s,
                format!(
                    r#"{{"type":"fate","time":"t","session_id":"g","seqs":[],"fate":"committed","reason":"commit","migrations":[{{"tool":"golang-migrate","revision":"{v}","dirty":true,"seqs":[]}}]}}"#
                ),
            );
            s
        };
        let stmt = |seq: u64, fate: &str| {
            format!(
                "{}\n{}\n",
                format_args!(
                    r#"{{"type":"statement","time":"t","session_id":"g","seq":{seq},"tx_status":"idle","text":"CREATE TABLE t{seq} ()","redacted":false,"fingerprint":"0","decision":"allow","rules":[],"rewritten":null,"injected":[],"table_sizes":[]}}"#
                ),
                format_args!(
                    r#"{{"type":"fate","time":"t","session_id":"g","seqs":[{seq}],"fate":"{fate}","reason":"autocommit","migrations":[]}}"#
                )
            )
        };
        let clean = |v: &str| {
            format!(
                r#"{{"type":"fate","time":"t","session_id":"g","seqs":[],"fate":"committed","reason":"commit","migrations":[{{"tool":"golang-migrate","revision":"{v}","dirty":false,"seqs":[]}}]}}"#
            ) + "\n"
        };
        let data = format!(
            "{}{}{}{}{}{}",
            mk("1"),
            stmt(3, "committed"),
            stmt(4, "committed"),
            clean("1"),
            mk("2"),
            stmt(7, "rolled_back")
        );
        let r = build_report("g", data.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let g = &r.sessions[0].groups;
        assert_eq!(g.len(), 2, "{g:#?}");
        assert_eq!(
            g[0].migration
                .as_ref()
                .map(|m| (m.revision.as_str(), m.dirty)),
            Some(("1", Some(false)))
        );
        assert_eq!(g[0].statements.len(), 2);
        assert_eq!(g[0].fate, Some(Fate::Committed));
        assert_eq!(
            g[1].migration
                .as_ref()
                .map(|m| (m.revision.as_str(), m.dirty)),
            Some(("2", Some(true)))
        );
        assert_eq!(g[1].fate, Some(Fate::RolledBack));
        let text = render_text(&r);
        assert!(
            text.contains("revision golang-migrate 2 [dirty]: rolled_back"),
            "{text}"
        );
    }

    #[test]
    fn revision_without_statements_keeps_its_place() {
        let data = SAMPLE.replace(
            r#""migrations":[{"tool":"alembic","revision":"0001","seqs":[2]}]"#,
            r#""migrations":[{"tool":"alembic","revision":"0001","seqs":[2]},{"tool":"alembic","revision":"0002","seqs":[]},{"tool":"alembic","revision":"0003","seqs":[4]}]"#,
        );
        let r = build_report("x", data.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let labels: Vec<String> = r.sessions[0]
            .groups
            .iter()
            .map(|g| {
                g.migration
                    .as_ref()
                    .map_or("-".into(), |m| m.revision.clone())
            })
            .collect();
        assert_eq!(labels, vec!["0001", "0002", "0003"]);
        assert!(render_text(&r).contains("tables: public.big (1000000 rows, ? bytes)"));
    }

    #[test]
    fn truncated_last_line_is_reported_not_fatal() {
        let mut data = SAMPLE.to_string();
        data.push_str(r#"{"type":"statement","time":"2026"#);
        let r = build_report("x", data.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.truncated_last_line, Some(7));
        assert!(render_text(&r).contains("line 7 is an incomplete record"));
    }

    #[test]
    fn bad_line_in_the_middle_names_its_number() {
        let data = SAMPLE.replacen("{\"type\":\"outcome\"", "{\"type\":\"outcome\",", 1);
        let e = build_report("audit.jsonl", data.as_bytes())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("audit.jsonl:3: not a valid audit record"),
            "{e}"
        );
        // A torn line *followed* by more lines is damage, not a crash tail.
        let data = format!("{{\"type\":\"sess\n{SAMPLE}");
        let e = build_report("f", data.as_bytes())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("f:1:"), "{e}");
    }

    #[test]
    fn unknown_record_types_are_skipped_with_a_note() {
        let data = format!("{SAMPLE}{{\"type\":\"from_the_future\",\"x\":1}}\n");
        let r = build_report("x", data.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.unknown_lines, vec![7]);
    }
}
