//! Shared shapes of the object-compatibility rules: DROP of an object other than a table, and
//! the sub-commands of an ALTER on any object, each reported with what it is about.
use super::*;
use crate::sql::facts::{ActionFacts, ActionKind, ObjectOption, ObjectType, StatementKind};

/// One finding per generic DROP of one of `types`, naming every object it drops.
pub(crate) fn flag_drops(
    f: &StatementFacts,
    out: &mut Vec<Finding>,
    rule: Rule,
    types: &[ObjectType],
    help: &str,
) {
    if f.kind != StatementKind::DropObject {
        return;
    }
    let Some(ty) = f.object.filter(|t| types.contains(t)) else {
        return;
    };
    let names: Vec<String> = f.targets.iter().map(ToString::to_string).collect();
    out.push(Finding::new(
        rule,
        f,
        format!(
            "DROP {} {} breaks application code and other objects that still use it{}",
            ty.label().to_uppercase(),
            names.join(", "),
            if f.flags.cascade {
                " (CASCADE also drops everything that depends on it)"
            } else {
                ""
            }
        ),
        help.to_string(),
    ));
}

/// What an ALTER statement is about, for messages: `orders (~12.4M rows)`, `view v`, `type t`.
/// `None` for a table created earlier in this transaction or file (exempt, like every
/// breaking-change rule) and for statements that are not an ALTER.
pub(crate) fn subject(f: &StatementFacts, cx: &Cx<'_>) -> Option<String> {
    let name = || {
        f.targets
            .first()
            .map(ToString::to_string)
            .unwrap_or_default()
    };
    match f.kind {
        StatementKind::AlterTable => altered_table(f, cx).map(|(t, _)| cx.describe(t)),
        StatementKind::AlterObject => Some(format!(
            "{} {}",
            f.object.unwrap_or(ObjectType::Other).label(),
            name()
        )),
        StatementKind::AlterType => Some(format!("type {}", name())),
        StatementKind::AlterDomain => Some(format!("domain {}", name())),
        StatementKind::AlterIndex => Some(format!("index {}", name())),
        _ => None,
    }
}

/// One finding per sub-command `pick` accepts, at the sub-command, on any ALTER statement
/// (see [`subject`]). `pick` returns the words for the message (`DROP DEFAULT`).
pub(crate) fn flag_sub_commands(
    f: &StatementFacts,
    cx: &Cx<'_>,
    out: &mut Vec<Finding>,
    rule: Rule,
    pick: impl Fn(&StatementFacts, &ActionFacts) -> Option<&'static str>,
    consequence: &str,
    help: &str,
) {
    // The subject (a formatted name, maybe with the table's size) only once a sub-command is
    // picked: most statements have none, and every ALTER passes through ~20 of these rules.
    let mut what: Option<String> = None;
    for a in &f.actions {
        if let Some(words) = pick(f, a) {
            if what.is_none() {
                what = subject(f, cx);
            }
            let Some(what) = what.as_deref() else { return };
            out.push(
                Finding::new(
                    rule,
                    f,
                    format!("{words} on {what} {consequence}"),
                    help.to_string(),
                )
                .at(a.span.clone())
                .lock(Some(a.lock)),
            );
        }
    }
}

/// `kind` as a picker for [`flag_sub_commands`].
pub(crate) fn only(
    kind: ActionKind,
    words: &'static str,
) -> impl Fn(&StatementFacts, &ActionFacts) -> Option<&'static str> {
    move |_, a| (a.kind == kind).then_some(words)
}

/// ALTER CONSTRAINT ... NOT ENFORCED (PG 18): the constraint stays but is no longer checked.
pub(crate) fn not_enforced(cx: &Cx<'_>, a: &ActionFacts) -> bool {
    cx.text
        .get(a.span.clone())
        .is_some_and(|t| t.to_ascii_lowercase().contains("not enforced"))
}

/// One finding per option of an `ALTER <object>` statement that `hit` selects (given the
/// object type and the option); `message` gets what the statement is about (`extension e`).
pub(crate) fn flag_object_options(
    f: &StatementFacts,
    out: &mut Vec<Finding>,
    rule: Rule,
    hit: impl Fn(Option<ObjectType>, &ObjectOption) -> bool,
    message: impl Fn(&str) -> String,
    help: &str,
) {
    if f.kind != StatementKind::AlterObject {
        return;
    }
    let what = format!(
        "{} {}",
        f.object.unwrap_or(ObjectType::Other).label(),
        f.targets
            .first()
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    for (o, span) in &f.options {
        if hit(f.object, o) {
            out.push(
                Finding::new(rule, f, message(what.trim()), help.to_string()).at(span.clone()),
            );
        }
    }
}
