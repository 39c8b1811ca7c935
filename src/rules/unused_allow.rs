//! unused-allow: an allow or squawk-ignore comment that matched no finding.
pub const DOC: &str = r#"## What it does
Reports a `-- pgwarden:allow` or `-- squawk-ignore` comment naming a rule that did not fire on
the statement it is attached to.

## Why is this bad
Stale allows hide the next real finding of that rule on the statement, and misspelled ones
silently allow nothing.

## Example
```sql
-- pgwarden:allow ban-drop-column reason="cleanup"
ALTER TABLE orders ADD COLUMN note text;
```

## Use instead
Remove the comment.

## Rewrite safety
No rewrite. Reported by the policy step (see `crate::policy::inline`), which holds its tests.
"#;
