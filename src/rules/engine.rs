//! Runs the catalogue over an analysed text: statement by statement, with the state that
//! evolves between them; a long file (`pgwarden check`) on several threads.
//!
//! Why the threads can split the file: a rule is a pure function of one statement's facts and
//! the state before it. The state depends on the statements (BEGIN, CREATE TABLE, SET ...) and
//! on the findings of only three rules (the timeout rules speak once, lock-held-across-
//! statements once per transaction). A cheap first pass runs just those three and records the
//! state where each share of the file begins; each thread then runs every rule over its share
//! from that state, exactly as one thread would have. Results are concatenated in file order.
use super::*;

/// Below this many statements one thread does it all (a proxy Query never reaches it).
const PARALLEL_MIN_STATEMENTS: usize = 256;
/// Threads at most, whatever the machine has.
const MAX_THREADS: usize = 8;

/// Rules whose findings change the state the next statements are checked in.
const FEEDS_STATE: [Rule; 3] = [
    Rule::RequireLockTimeout,
    Rule::RequireStatementTimeout,
    Rule::LockHeldAcrossStatements,
];

/// [`super::evaluate_proving`] over the rules `run` names only. `pgwarden check` leaves out the
/// rules its policy switches off: their findings would be dropped by the policy step anyway,
/// and what those rules say feeds only their own later findings.
pub fn evaluate_selected(
    text: &str,
    analysis: &Analysis,
    ctx: &AnalysisContext,
    thresholds: &SizeThresholds,
    run: &dyn Fn(Rule) -> bool,
    prove: &dyn Fn(Rule) -> bool,
) -> Evaluation {
    let stmts = &analysis.statements;
    let workers = if ctx.file_mode
        && stmts.len() >= PARALLEL_MIN_STATEMENTS
        && text.len() >= crate::sql::PARALLEL_MIN_BYTES
    {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
    } else {
        1
    };
    evaluate_on(text, analysis, ctx, thresholds, run, prove, workers)
}

/// What every statement's turn reads; shared by the threads.
struct Shared<'a, P: Fn(Rule) -> bool + ?Sized> {
    text: &'a str,
    stmts: &'a [AnalysedStatement],
    ctx: &'a AnalysisContext,
    thresholds: &'a SizeThresholds,
    text_indexes: Vec<(&'a ObjectName, &'a [String])>,
    /// Prove this rule's rewrites? Asked only when a finding offers one (the proxy checks
    /// one short Query at a time: no table built in advance).
    prove: &'a P,
}

fn evaluate_on(
    text: &str,
    analysis: &Analysis,
    ctx: &AnalysisContext,
    thresholds: &SizeThresholds,
    run: &dyn Fn(Rule) -> bool,
    prove: &dyn Fn(Rule) -> bool,
    workers: usize,
) -> Evaluation {
    // Looked up once per text, not once per rule and statement.
    let checks: Vec<(Rule, CheckFn)> = Rule::ALL
        .iter()
        .filter(|r| run(**r))
        .filter_map(|r| Some((*r, r.check_fn()?)))
        .collect();
    let stmts = analysis.statements.as_slice();
    let shared = Shared {
        text,
        stmts,
        ctx,
        thresholds,
        // (table, columns) of every top-level CREATE INDEX, collected once (see Cx).
        text_indexes: stmts
            .iter()
            .filter_map(|s| s.facts())
            .filter(|s| s.kind == crate::sql::StatementKind::CreateIndex)
            .filter_map(|s| Some((s.table.as_ref()?, s.index_columns.as_slice())))
            .collect(),
        prove,
    };
    let mut state = ScriptState::from_context(ctx);
    let mut findings = Vec::new();
    if workers <= 1 || stmts.len() < 2 {
        for i in 0..stmts.len() {
            step(&shared, &checks, i, &mut state, &mut findings);
        }
    } else {
        // The threads share the answers as a table (the caller's closure need not be Sync).
        let table: Vec<bool> = Rule::ALL.iter().map(|r| prove(*r)).collect();
        let prove_table = |r: Rule| table[r as usize];
        let shared = Shared {
            text: shared.text,
            stmts: shared.stmts,
            ctx: shared.ctx,
            thresholds: shared.thresholds,
            text_indexes: shared.text_indexes,
            prove: &prove_table,
        };
        // Pass 1: the state at the start of each share, from the three rules that feed it.
        let feeding: Vec<(Rule, CheckFn)> = checks
            .iter()
            .filter(|(r, _)| FEEDS_STATE.contains(r))
            .copied()
            .collect();
        let total: usize = stmts.iter().map(|s| s.span.len() + 1).sum();
        let share = total.div_ceil(workers);
        let mut starts: Vec<(usize, ScriptState)> = vec![(0, state.clone())];
        let mut acc = 0;
        let mut scratch = Vec::new();
        for (i, stmt) in stmts.iter().enumerate() {
            if acc >= share && starts.len() < workers {
                starts.push((i, state.clone()));
                acc = 0;
            }
            acc += stmt.span.len() + 1;
            step(&shared, &feeding, i, &mut state, &mut scratch);
            scratch.clear();
        }
        // Pass 2: every rule, each share from its own start state.
        let ends: Vec<usize> = starts
            .iter()
            .skip(1)
            .map(|(i, _)| *i)
            .chain([stmts.len()])
            .collect();
        let run_share = |(start, mut st): (usize, ScriptState), end: usize| -> Vec<Finding> {
            let mut out = Vec::new();
            for i in start..end {
                step(&shared, &checks, i, &mut st, &mut out);
            }
            out
        };
        let shares: Vec<((usize, ScriptState), usize)> = starts.into_iter().zip(ends).collect();
        let results: Vec<Vec<Finding>> = std::thread::scope(|scope| {
            let mut shares = shares.into_iter();
            // This thread takes the first share; the others get a thread each.
            let first = shares.next();
            let handles: Vec<_> = shares
                .map(|(s, end)| {
                    let s2 = s.clone();
                    std::thread::Builder::new()
                        .name("pgwarden-rules".into())
                        .spawn_scoped(scope, move || run_share(s, end))
                        // A thread the system refuses leaves its share to this thread.
                        .map_err(|_| Box::new((s2, end)))
                })
                .collect();
            let mut results = Vec::with_capacity(handles.len() + 1);
            if let Some((s, end)) = first {
                results.push(run_share(s, end));
            }
            for h in handles {
                results.push(match h {
                    Ok(h) => match h.join() {
                        Ok(v) => v,
                        // A rule panic is a bug: re-raised as one thread would have raised it.
                        Err(panic) => std::panic::resume_unwind(panic),
                    },
                    Err(share) => run_share(share.0, share.1),
                });
            }
            results
        });
        findings = results.into_iter().flatten().collect();
    }
    if ctx.file_mode {
        ban_uncommitted_transaction::at_end(&state, &mut findings);
    }
    Evaluation { findings, state }
}

/// Statement `i`'s turn: its findings onto `findings`, then `state` moves past it.
fn step<P: Fn(Rule) -> bool + ?Sized>(
    sh: &Shared<'_, P>,
    checks: &[(Rule, CheckFn)],
    i: usize,
    state: &mut ScriptState,
    findings: &mut Vec<Finding>,
) {
    let stmt = &sh.stmts[i];
    let before = findings.len();
    let cx = Cx {
        text: sh.text,
        ctx: sh.ctx,
        state: &*state,
        thresholds: sh.thresholds,
        earlier: &sh.stmts[..i],
        later: &sh.stmts[i + 1..],
        text_indexes: &sh.text_indexes,
    };
    match &stmt.outcome {
        // `DROP TABLE IF EXISTS` of a table that does not exist: the server does nothing.
        Outcome::Facts(f) if crate::sql::identity::is_noop(sh.ctx, state, f) => {}
        Outcome::Facts(f) => {
            check_statement(f, &cx, checks, sh.prove, findings);
            // Statements read out of a DO body are checked like top-level ones.
            for inner in &f.body {
                check_statement(inner, &cx, checks, sh.prove, findings);
            }
        }
        Outcome::Unanalysable(_) | Outcome::ParseError(_) => {
            findings.push(cannot_analyse::finding(stmt));
        }
        Outcome::Dml => {
            findings.extend(lock_held_across_statements::on_dml(stmt, &cx));
            findings.extend(backfill_under_lock::on_dml(stmt, &cx));
            findings.extend(unbatched_backfill::on_dml(stmt, &cx));
            findings.extend(enum_value_in_transaction::on_dml(stmt, &cx));
            // DML target lists are read in files only (the proxy never parses DML), and only
            // when the rule runs at all.
            if sh.ctx.file_mode
                && checks
                    .iter()
                    .any(|(r, _)| *r == Rule::BanDuplicateColumnAssignments)
            {
                findings.extend(ban_duplicate_column_assignments::on_dml(stmt, &cx));
            }
        }
        Outcome::Empty => {}
    }
    if let Outcome::Facts(f) = &stmt.outcome {
        state.advance(f);
        backfill_under_lock::track(f, sh.ctx, state);
    }
    if !state.search_path_changed {
        let own = sh.text.get(stmt.span.clone()).unwrap_or_default();
        state.search_path_changed = crate::sql::identity::may_change_search_path(own);
    }
    for rule in [Rule::RequireLockTimeout, Rule::RequireStatementTimeout] {
        if findings[before..].iter().any(|f| f.rule == rule) && !state.spoken.contains(&rule.id()) {
            state.spoken.push(rule.id());
        }
    }
    // lock-held-across-statements speaks once per transaction.
    if findings[before..]
        .iter()
        .any(|f| f.rule == Rule::LockHeldAcrossStatements)
    {
        state.ael_reported = true;
    }
}

fn check_statement<P: Fn(Rule) -> bool + ?Sized>(
    f: &StatementFacts,
    cx: &Cx<'_>,
    checks: &[(Rule, CheckFn)],
    prove: &P,
    out: &mut Vec<Finding>,
) {
    let first = out.len();
    for &(rule, check) in checks {
        let start = out.len();
        check(f, cx, out);
        for finding in &mut out[start..] {
            if let Some(edit) = finding.rewrite.take() {
                if prove(rule) {
                    finding.rewrite = prove_rewrite(rule, check, f, cx, edit);
                }
            }
        }
    }
    // Live facts only (no fixture can hold them): called here, not through `check_fn`.
    invalid_index_kept::check(f, cx, out);
    unused::drop_required_field_on_empty(f, cx, out, first);
    drop_add_rename::annotate(f, cx, &mut out[first..]);
    fk_referenced::annotate(f, cx, &mut out[first..]);
    unused::relax(f, cx, &mut out[first..]);
}

/// A rewrite is used only if the edited statement parses and the rule no longer fires on it.
fn prove_rewrite(
    rule: Rule,
    check: CheckFn,
    f: &StatementFacts,
    cx: &Cx<'_>,
    edit: TextEdit,
) -> Option<TextEdit> {
    let (new_text, facts) = cx.reparse_with(f, &edit)?;
    // The neighbours' spans index the old text: the proof sees the statement alone.
    let sub = Cx {
        text: &new_text,
        earlier: &[],
        later: &[],
        text_indexes: &[],
        ..*cx
    };
    let mut again = Vec::new();
    check(&facts, &sub, &mut again);
    if again.iter().any(|g| g.rule == rule) {
        None
    } else {
        Some(edit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::analyze;

    /// A file with every kind of statement the state depends on, repeated: transactions,
    /// timeouts set and reset, ACCESS EXCLUSIVE locks followed by more statements, tables
    /// created then altered, enum values added then used, DML, a parse error.
    fn long_file() -> String {
        let block = "\
            CREATE TABLE t{k} (id int PRIMARY KEY, a int);\n\
            ALTER TABLE orders ADD COLUMN c{k} int DEFAULT random();\n\
            BEGIN;\n\
            ALTER TABLE orders ALTER COLUMN a TYPE bigint;\n\
            UPDATE orders SET a = 1;\n\
            ALTER TYPE mood ADD VALUE 'v{k}';\n\
            INSERT INTO x VALUES ('v{k}');\n\
            COMMIT;\n\
            SET lock_timeout = '2s';\n\
            CREATE INDEX i{k} ON orders (a);\n\
            RESET lock_timeout;\n\
            ALTER TABLE t{k} ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES orders (id);\n\
            DROP INDEX i{k};\n\
            ALTER TABLE orders DROP COLUMN b{k}, RENAME COLUMN x TO y;\n\
            SET statement_timeout = 0;\n\
            CREATE TABLE broken (a int,);\n\
            BEGIN;\n\
            ALTER TABLE big SET NOT NULL;\n\
            SELECT 1;\n\
            ROLLBACK;\n";
        (0..40)
            .map(|k| block.replace("{k}", &k.to_string()))
            .collect()
    }

    #[test]
    fn shares_on_threads_give_what_one_thread_gives() {
        let text = long_file();
        let ctx = AnalysisContext {
            file_mode: true,
            ..AnalysisContext::default()
        };
        let a = analyze(&text, &ctx);
        assert!(a.statements.len() > 700);
        let t = SizeThresholds::default();
        for run in [&(|_| true) as &dyn Fn(Rule) -> bool, &|r| {
            r.default_action() != Action::Off
        }] {
            let one = evaluate_on(&text, &a, &ctx, &t, run, &|_| true, 1);
            assert!(one.findings.len() > 500, "{}", one.findings.len());
            for workers in [2, 3, 7] {
                let many = evaluate_on(&text, &a, &ctx, &t, run, &|_| true, workers);
                assert_eq!(many.findings, one.findings, "{workers} workers");
                assert_eq!(many.state.tx, one.state.tx);
                assert_eq!(many.state.spoken, one.state.spoken);
            }
        }
    }

    #[test]
    fn the_timeout_and_lock_rules_speak_as_often_on_threads() {
        // The state these rules feed is what pass 1 must carry across a share boundary.
        let text = long_file();
        let ctx = AnalysisContext {
            file_mode: true,
            ..AnalysisContext::default()
        };
        let a = analyze(&text, &ctx);
        let t = SizeThresholds::default();
        let count = |e: &Evaluation, r: Rule| e.findings.iter().filter(|f| f.rule == r).count();
        let one = evaluate_on(&text, &a, &ctx, &t, &|_| true, &|_| false, 1);
        let two = evaluate_on(&text, &a, &ctx, &t, &|_| true, &|_| false, 2);
        for r in FEEDS_STATE {
            assert_eq!(count(&one, r), count(&two, r), "{r}");
        }
        assert!(count(&one, Rule::LockHeldAcrossStatements) >= 40);
    }
}
