//! allow-without-reason: an inline allow comment that gives no reason (and is therefore ignored).
pub const DOC: &str = r#"## What it does
Reports a `-- pgwarden:allow <rule>` comment without `reason="..."`.

## Why is this bad
Allows are exceptions to a safety policy; the reason goes to the audit log so the next person
knows why the dangerous statement was accepted. Without one the allow is not honoured.

## Example
```sql
-- pgwarden:allow ban-drop-column
ALTER TABLE orders DROP COLUMN legacy_code;
```

## Use instead
```sql
-- pgwarden:allow ban-drop-column reason="column unused since release 42"
ALTER TABLE orders DROP COLUMN legacy_code;
```

## Rewrite safety
No rewrite. Reported by the policy step (see `crate::policy::inline`), which holds its tests.
"#;
