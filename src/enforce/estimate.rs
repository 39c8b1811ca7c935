//! Which data changes of a text pgwarden asks the server to estimate (`EXPLAIN`, no ANALYZE),
//! and how the answers reach the rules (`rules::unbatched_backfill`).
//!
//! Only inside a transaction block that already changed the schema — a migration — and only
//! for UPDATE/DELETE on a table the transaction holds no write-blocking lock on (that one is
//! `backfill-under-lock`'s) and that is not a migration tool's bookkeeping table. The EXPLAIN
//! itself travels with the catalog lookup, inside pgwarden's savepoint (`enforce::lookup`).
use crate::sql::context::{is_schema_change, CatalogFacts, Estimate};
use crate::sql::{Analysis, AnalysisContext, ObjectName, Outcome, TxState};

use super::engine::Situation;
use crate::rules::unbatched_backfill::{estimated_target, has_bind_parameters};

/// The data changes of one text to estimate.
#[derive(Debug, Default)]
pub struct Candidates {
    /// The tables they change (their size and identity come with the lookup).
    pub tables: Vec<ObjectName>,
    /// (statement offset, statement text) to EXPLAIN, in the lookup's order.
    pub explain: Vec<(usize, String)>,
    /// (statement offset, why not) for those pgwarden cannot EXPLAIN.
    pub skipped: Vec<(usize, String)>,
}

/// The UPDATE/DELETE statements of `sql` that run in a migration transaction.
pub fn candidates(
    sql: &str,
    analysis: &Analysis,
    ctx: &AnalysisContext,
    s: Situation,
) -> Candidates {
    let mut out = Candidates::default();
    // An unsynced pipeline gets nothing injected; outside a transaction block there is no
    // migration transaction (and no savepoint to protect anything with).
    if ctx.tx != TxState::InTransaction || s.pipelined {
        return out;
    }
    let mut changed = ctx.schema_changed;
    for st in &analysis.statements {
        match &st.outcome {
            Outcome::Facts(f) => changed |= is_schema_change(f),
            Outcome::Dml if changed => {
                let Some(text) = sql.get(st.span.clone()) else {
                    continue;
                };
                let Some(target) = estimated_target(text) else {
                    continue;
                };
                if ctx.held_locks.iter().any(|h| h.table.same_as(&target)) {
                    continue;
                }
                if !out.tables.contains(&target) {
                    out.tables.push(target);
                }
                if !s.utf8 && !text.is_ascii() {
                    // The text was read lossily: the EXPLAIN would not be the client's text.
                    out.skipped.push((
                        st.span.start,
                        "the client encoding is not UTF-8 and the statement is not ASCII".into(),
                    ));
                } else if has_bind_parameters(text) {
                    out.skipped.push((
                        st.span.start,
                        "it has bind parameters ($1, ...): PostgreSQL cannot plan it without \
                         their values"
                            .into(),
                    ));
                } else {
                    let text = text.trim().trim_end_matches(';').trim_end();
                    out.explain.push((st.span.start, text.to_string()));
                }
            }
            _ => {}
        }
    }
    out
}

/// Puts the server's estimates (`None`: no lookup answer) into the catalog the rules read,
/// and says for the log and the audit record what each one was.
pub fn apply(
    sql: &str,
    c: &Candidates,
    answers: Option<&[Estimate]>,
    catalog: &mut CatalogFacts,
) -> Vec<String> {
    let mut said = Vec::new();
    let name = |at: usize| {
        let text = sql.get(at..).unwrap_or_default();
        let target = estimated_target(text).map_or_else(String::new, |t| t.to_string());
        let verb = text
            .trim_start()
            .split(|ch: char| !ch.is_ascii_alphabetic())
            .next()
            .unwrap_or("DML")
            .to_ascii_uppercase();
        format!("{verb} on {target}")
    };
    for (i, (at, _)) in c.explain.iter().enumerate() {
        let estimate = match answers.and_then(|a| a.get(i)) {
            Some(e) => e.clone(),
            None => Estimate::Unknown {
                why: "no answer to pgwarden's lookup".into(),
                own_error: false,
            },
        };
        said.push(match &estimate {
            Estimate::Rows(r) => format!(
                "pgwarden EXPLAIN (no ANALYZE, inside SAVEPOINT pgwarden_estimate, rolled back) \
                 of {}: ~{r} rows",
                name(*at)
            ),
            Estimate::Unknown { why, .. } => format!(
                "pgwarden EXPLAIN (no ANALYZE, inside SAVEPOINT pgwarden_estimate, rolled back) \
                 of {}: no estimate, decided without it: {why}",
                name(*at)
            ),
        });
        catalog.estimates.insert(*at, estimate);
    }
    for (at, why) in &c.skipped {
        said.push(format!(
            "{} not estimated, decided without it: {why}",
            name(*at)
        ));
        catalog.estimates.insert(
            *at,
            Estimate::Unknown {
                why: why.clone(),
                own_error: false,
            },
        );
    }
    said
}
