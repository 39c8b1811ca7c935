//! Redaction of secrets in statement text before it reaches the audit log.
//!
//! Covered: `PASSWORD '...'` / `ENCRYPTED PASSWORD '...'` in CREATE/ALTER ROLE/USER/GROUP,
//! `password '...'` / `sslpassword '...'` options of CREATE/ALTER SERVER and USER MAPPING
//! (including `SET`/`ADD` forms), and the password inside a `CONNECTION '...'` conninfo of
//! CREATE/ALTER SUBSCRIPTION (key/value form and URI form, `user:secret@` included).
//!
//! It works on tokens, so a secret in any literal form (`'..'` with doubled quotes, `E'..'` with
//! backslash escapes, `$tag$..$tag$`) is found, and the word `password` inside a comment or a
//! string is not mistaken for the keyword. A redacted literal is replaced by `'[REDACTED]'`; a
//! conninfo keeps its other keys (host, dbname are useful to an auditor) and is re-emitted as a
//! standard `'...'` literal. When in doubt (a literal form it cannot decode, an unterminated
//! string) it redacts the whole literal.
use std::borrow::Cow;

use super::lex::{contains_ci, quote_literal, string_value, tokenize, Kind};

/// Replacement text for a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Redacts secrets in `sql`; borrows when there is nothing to redact (the common case costs two
/// substring scans and no allocation).
pub fn redact(sql: &str, standard_conforming_strings: bool) -> Cow<'_, str> {
    redact_collect(sql, standard_conforming_strings, &mut Vec::new())
}

/// The secret values [`redact`] would remove from `sql` (decoded, and as written between the
/// quotes). Used to scrub the same secrets from text derived from the statement where tokens
/// cannot find them: the `DO ... RAISE` of a rejection quotes the statement inside a string,
/// and a server error message may echo part of it.
pub fn secret_values(sql: &str, standard_conforming_strings: bool) -> Vec<String> {
    let mut v = Vec::new();
    let _ = redact_collect(sql, standard_conforming_strings, &mut v);
    v.retain(|s| !s.is_empty());
    v.dedup();
    v
}

/// Replaces every occurrence of each secret in `text` (also with quotes doubled or
/// backslashes doubled, as when quoted again) by `[REDACTED]`.
pub fn redact_values<'a>(text: &'a str, secrets: &[String]) -> Cow<'a, str> {
    let mut variants: Vec<String> = Vec::new();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        for v in [
            s.clone(),
            s.replace('\'', "''"),
            s.replace('\'', "''''"),
            s.replace('\\', "\\\\"),
        ] {
            if !variants.contains(&v) {
                variants.push(v);
            }
        }
    }
    // Longest first, so a variant that contains another is replaced whole.
    variants.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let mut out: Cow<'a, str> = Cow::Borrowed(text);
    for v in &variants {
        if out.contains(v.as_str()) {
            out = Cow::Owned(out.replace(v.as_str(), REDACTED));
        }
    }
    out
}

fn redact_collect<'a>(
    sql: &'a str,
    standard_conforming_strings: bool,
    secrets: &mut Vec<String>,
) -> Cow<'a, str> {
    // Cheap gate: every covered form contains one of these words.
    if !contains_ci(sql, "password") && !contains_ci(sql, "connection") {
        return Cow::Borrowed(sql);
    }
    let toks = tokenize(sql, standard_conforming_strings);
    // (byte range, replacement) in ascending order.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        let Some(next) = toks.get(i + 1) else { break };
        if next.kind != Kind::String {
            continue;
        }
        let is_secret_key = match t.kind {
            Kind::Word => t.is_word(sql, "password") || t.is_word(sql, "sslpassword"),
            // OPTIONS ("password" '...') is legal too.
            Kind::QuotedIdent => matches!(t.text(sql), "\"password\"" | "\"sslpassword\""),
            _ => false,
        };
        if is_secret_key {
            let lit = next.text(sql);
            if let Some(v) = string_value(lit, standard_conforming_strings) {
                secrets.push(v);
            }
            // As written: the body between the opening and the closing quote/tag.
            let body = lit
                .find(['\'', '$'])
                .and_then(|a| lit.get(a + 1..))
                .map(|b| b.trim_end_matches(['\'', '$']))
                .unwrap_or("");
            secrets.push(body.to_string());
            edits.push((next.start, next.end, format!("'{REDACTED}'")));
        } else if t.is_word(sql, "connection") {
            let lit = next.text(sql);
            let replacement = match string_value(lit, standard_conforming_strings) {
                Some(v) => match redact_conninfo_collect(&v, secrets) {
                    Cow::Borrowed(_) => continue,
                    Cow::Owned(r) => quote_literal(&r),
                },
                None => format!("'{REDACTED}'"),
            };
            edits.push((next.start, next.end, replacement));
        }
    }
    if edits.is_empty() {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut pos = 0;
    for (s, e, r) in edits {
        out.push_str(&sql[pos..s]);
        out.push_str(&r);
        pos = e;
    }
    out.push_str(&sql[pos..]);
    Cow::Owned(out)
}

/// Redacts `password=` / `sslpassword=` values in a libpq conninfo string, and the password of
/// a `postgres[ql]://user:secret@host` URI (including `?password=` parameters).
pub fn redact_conninfo(conninfo: &str) -> Cow<'_, str> {
    redact_conninfo_collect(conninfo, &mut Vec::new())
}

fn redact_conninfo_collect<'a>(conninfo: &'a str, secrets: &mut Vec<String>) -> Cow<'a, str> {
    let trimmed = conninfo.trim_start();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        return redact_uri(conninfo, secrets);
    }
    if !contains_ci(conninfo, "password") {
        return Cow::Borrowed(conninfo);
    }
    let b = conninfo.as_bytes();
    let mut out = String::with_capacity(conninfo.len());
    let mut i = 0;
    let mut changed = false;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            out.push(b[i] as char);
            i += 1;
            continue;
        }
        // key
        let ks = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &conninfo[ks..i];
        out.push_str(key);
        while i < b.len() && b[i].is_ascii_whitespace() {
            out.push(b[i] as char);
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        out.push('=');
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            out.push(b[i] as char);
            i += 1;
        }
        // value: 'quoted with \ escapes' or up to whitespace
        let vs = i;
        if b.get(i) == Some(&b'\'') {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i = (i + 1).min(b.len());
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i = i.min(b.len());
        }
        let key_l = key.to_ascii_lowercase();
        if key_l == "password" || key_l == "sslpassword" {
            let raw = &conninfo[vs..i];
            let unquoted = raw
                .strip_prefix('\'')
                .map(|r| r.strip_suffix('\'').unwrap_or(r))
                .unwrap_or(raw);
            secrets.push(unquoted.replace("\\'", "'").replace("\\\\", "\\"));
            secrets.push(raw.to_string());
            out.push_str(REDACTED);
            changed = true;
        } else {
            out.push_str(&conninfo[vs..i]);
        }
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(conninfo)
    }
}

fn redact_uri<'a>(uri: &'a str, secrets: &mut Vec<String>) -> Cow<'a, str> {
    let mut out = uri.to_string();
    let mut changed = false;
    // userinfo: scheme://user:secret@host
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map_or(out.len(), |p| p + rest_start);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let s = rest_start + colon + 1;
                let e = rest_start + at;
                secrets.push(out[s..e].to_string());
                out.replace_range(s..e, REDACTED);
                changed = true;
            }
        }
    }
    // query parameters: ?password=...&sslpassword=...
    if let Some(q) = out.find('?') {
        let mut rebuilt = String::with_capacity(out.len());
        rebuilt.push_str(&out[..=q]);
        for (n, pair) in out[q + 1..].split('&').enumerate() {
            if n > 0 {
                rebuilt.push('&');
            }
            let key = pair.split('=').next().unwrap_or("").to_ascii_lowercase();
            if (key == "password" || key == "sslpassword") && pair.contains('=') {
                let eq = pair.find('=').unwrap_or(0);
                secrets.push(pair[eq + 1..].to_string());
                rebuilt.push_str(&pair[..=eq]);
                rebuilt.push_str(REDACTED);
                changed = true;
            } else {
                rebuilt.push_str(pair);
            }
        }
        out = rebuilt;
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        redact(s, true).into_owned()
    }

    #[test]
    fn role_passwords() {
        assert_eq!(
            r("CREATE ROLE app LOGIN PASSWORD 's3cret'"),
            "CREATE ROLE app LOGIN PASSWORD '[REDACTED]'"
        );
        assert_eq!(
            r("alter user app with encrypted password 'md5abc' valid until 'infinity'"),
            "alter user app with encrypted password '[REDACTED]' valid until 'infinity'"
        );
        assert_eq!(
            r("ALTER ROLE app PASSWORD 'it''s; PASSWORD x'"),
            "ALTER ROLE app PASSWORD '[REDACTED]'"
        );
        assert_eq!(
            r("ALTER ROLE app PASSWORD E'a\\'b' LOGIN"),
            "ALTER ROLE app PASSWORD '[REDACTED]' LOGIN"
        );
        assert_eq!(
            r("ALTER ROLE app PASSWORD $pw$ x'y $pw$"),
            "ALTER ROLE app PASSWORD '[REDACTED]'"
        );
        assert_eq!(
            r("ALTER ROLE app PASSWORD /* note */ 'x' -- PASSWORD 'not a secret'\n"),
            "ALTER ROLE app PASSWORD /* note */ '[REDACTED]' -- PASSWORD 'not a secret'\n"
        );
        assert_eq!(
            r("ALTER ROLE app PASSWORD NULL"),
            "ALTER ROLE app PASSWORD NULL"
        );
        // unterminated: everything after the quote is treated as secret
        assert_eq!(
            r("ALTER ROLE app PASSWORD 'abc"),
            "ALTER ROLE app PASSWORD '[REDACTED]'"
        );
    }

    #[test]
    fn password_word_in_strings_or_identifiers_is_not_a_keyword() {
        let s = "COMMENT ON COLUMN users.password IS 'hash of the password ''x'''";
        assert_eq!(r(s), s);
        assert!(matches!(redact(s, true), Cow::Borrowed(_)));
    }

    #[test]
    fn server_and_user_mapping_options() {
        assert_eq!(
            r("CREATE USER MAPPING FOR bob SERVER foo OPTIONS (user 'bob', password 'pw')"),
            "CREATE USER MAPPING FOR bob SERVER foo OPTIONS (user 'bob', password '[REDACTED]')"
        );
        assert_eq!(
            r("ALTER USER MAPPING FOR bob SERVER foo OPTIONS (SET password 'pw2', ADD \"password\" 'x')"),
            "ALTER USER MAPPING FOR bob SERVER foo OPTIONS (SET password '[REDACTED]', ADD \"password\" '[REDACTED]')"
        );
        assert_eq!(
            r("CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'h', sslpassword 'k')"),
            "CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'h', sslpassword '[REDACTED]')"
        );
    }

    #[test]
    fn subscription_conninfo() {
        assert_eq!(
            r("CREATE SUBSCRIPTION s CONNECTION 'host=db port=5432 password=s3cr3t dbname=app' PUBLICATION p"),
            "CREATE SUBSCRIPTION s CONNECTION 'host=db port=5432 password=[REDACTED] dbname=app' PUBLICATION p"
        );
        assert_eq!(
            r("ALTER SUBSCRIPTION s CONNECTION E'host=db password = \\'a b\\' user=x'"),
            "ALTER SUBSCRIPTION s CONNECTION 'host=db password = [REDACTED] user=x'"
        );
        assert_eq!(
            r("CREATE SUBSCRIPTION s CONNECTION 'postgresql://rep:pa%40ss@db:5432/app?sslmode=require&password=x' PUBLICATION p"),
            "CREATE SUBSCRIPTION s CONNECTION 'postgresql://rep:[REDACTED]@db:5432/app?sslmode=require&password=[REDACTED]' PUBLICATION p"
        );
        let plain = "CREATE SUBSCRIPTION s CONNECTION 'host=db dbname=app' PUBLICATION p";
        assert_eq!(r(plain), plain);
    }

    #[test]
    fn secrets_are_scrubbed_from_derived_text() {
        let sql = "ALTER ROLE app PASSWORD 'it''s-s3cret'";
        let secrets = secret_values(sql, true);
        assert!(secrets.contains(&"it's-s3cret".to_string()), "{secrets:?}");
        // A rejection quotes the statement inside a string inside a dollar quote, where the
        // tokenizer sees one string and no PASSWORD keyword.
        let sent = "DO $pgwarden$ BEGIN RAISE EXCEPTION 'rejected' USING DETAIL = 'ALTER ROLE app PASSWORD ''it''''s-s3cret'''; END $pgwarden$";
        assert!(redact(sent, true).contains("s3cret"));
        let r = redact_values(sent, &secrets);
        assert!(!r.contains("s3cret"), "{r}");
        // A server message echoing the literal.
        let msg = "syntax error at or near \"'it''s-s3cret'\"";
        assert!(!redact_values(msg, &secrets).contains("s3cret"));
        let conn = secret_values(
            "CREATE SUBSCRIPTION s CONNECTION 'postgresql://u:pw9@h/db' PUBLICATION p",
            true,
        );
        assert_eq!(conn, vec!["pw9".to_string()]);
        let kv = secret_values(
            "CREATE SUBSCRIPTION s CONNECTION 'host=h password=''a b''' PUBLICATION p",
            true,
        );
        assert!(kv.contains(&"a b".to_string()), "{kv:?}");
        assert!(secret_values("CREATE TABLE t ()", true).is_empty());
        assert!(matches!(
            redact_values("nothing here", &secrets),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn scs_off_changes_string_boundaries() {
        // With standard_conforming_strings=off, \' does not end the string.
        let s = r"ALTER ROLE a PASSWORD 'x\' y'";
        assert_eq!(redact(s, false), "ALTER ROLE a PASSWORD '[REDACTED]'");
    }
}
