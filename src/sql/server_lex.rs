//! The lexer settings the server will apply to a query text — or "unknown" — and how pgwarden
//! reads a text so that it never takes for plain DML what the server may read otherwise.
//!
//! Two settings change where a PostgreSQL statement ends: `client_encoding` (character
//! boundaries, see [`super::encoding`]) and `standard_conforming_strings` (whether `\'` ends a
//! plain string). The server applies the values in force when the message *arrives*: a Query
//! string is converted and lexed whole before its first statement runs, so `SET
//! standard_conforming_strings = off; SELECT '\'...` lexes the SELECT with the old value. The
//! values pgwarden knows are the ones the server reported (ParameterStatus, sent before each
//! ReadyForQuery and at startup, `options` included); they are the values the server will
//! apply only while nothing is in flight. A request sent before the previous one was answered,
//! or inside an unsynced extended-protocol pipeline, may follow a `SET`, `set_config()`,
//! `RESET`, `DISCARD ALL` or a function that changed them: then the settings are unknown and
//! every value is possible.
//!
//! Under unknown settings a text is read under every possibility that can lex differently (a
//! backslash is needed for `standard_conforming_strings` to matter, a byte >= 0x80 for the
//! encoding): it needs no attention only if *no* reading has DDL, and it is analysed only if
//! every reading splits it into the same statements; otherwise the caller waits until the
//! server has answered (the settings are then known) or fails closed.
use std::borrow::Cow;

use super::encoding::{server_text, Family, ALL_FAMILIES};
use super::lexer::{split, LexOptions, StatementClass, Unanalysable};

/// The settings the server will lex a text with; `None` = not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LexSettings {
    pub encoding: Option<Family>,
    pub standard_conforming_strings: Option<bool>,
}

/// One way the server may read a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub family: Family,
    pub standard_conforming_strings: bool,
}

impl Reading {
    /// The structural text the server's lexer sees under this reading.
    pub fn text<'a>(&self, bytes: &'a [u8]) -> Cow<'a, str> {
        server_text(bytes, self.family)
    }

    fn lex_options(&self, base: &LexOptions) -> LexOptions {
        LexOptions {
            standard_conforming_strings: self.standard_conforming_strings,
            ..*base
        }
    }
}

/// At most every family under both values of standard_conforming_strings.
const MAX_READINGS: usize = ALL_FAMILIES.len() * 2;

impl LexSettings {
    /// What the server reported, when it is what the server will apply. An encoding name
    /// pgwarden does not know counts as unknown.
    pub fn known(client_encoding: &str, standard_conforming_strings: bool) -> LexSettings {
        LexSettings {
            encoding: Family::from_name(client_encoding),
            standard_conforming_strings: Some(standard_conforming_strings),
        }
    }

    /// Nothing is known: an earlier request may have changed both.
    pub fn unknown() -> LexSettings {
        LexSettings {
            encoding: None,
            standard_conforming_strings: None,
        }
    }

    /// The readings of `bytes` that may differ, with the reported values first. Fills a fixed
    /// array: the hot path (everything known) allocates nothing.
    pub fn readings(&self, bytes: &[u8]) -> ([Reading; MAX_READINGS], usize) {
        let one;
        // Every family reads ASCII alike; the hot path (a known ASCII-safe encoding) does not
        // even look.
        let families: &[Family] = match self.encoding {
            Some(Family::AsciiSafe) => &ALL_FAMILIES[..1],
            _ if bytes.is_ascii() => &ALL_FAMILIES[..1],
            Some(f) => {
                one = [f];
                &one
            }
            None => &ALL_FAMILIES,
        };
        let scs: &[bool] = match self.standard_conforming_strings {
            Some(true) => &[true],
            Some(false) => &[false],
            // Without a backslash both values lex alike (a U& string the server refuses with
            // the setting off makes it refuse the whole message, which runs nothing).
            None if !bytes.contains(&b'\\') => &[true],
            None => &[true, false],
        };
        let mut out = [Reading {
            family: families[0],
            standard_conforming_strings: scs[0],
        }; MAX_READINGS];
        let mut n = 0;
        for &family in families {
            for &s in scs {
                out[n] = Reading {
                    family,
                    standard_conforming_strings: s,
                };
                n += 1;
            }
        }
        (out, n)
    }
}

/// True when some reading the server may make of `bytes` holds a DDL/utility statement (or
/// one the prefilter could not read): the enforcer must look at it. One lexer pass and no
/// allocation when the settings are known and the text is ASCII or UTF-8.
pub fn needs_attention(bytes: &[u8], settings: &LexSettings, base: &LexOptions) -> bool {
    needs_attention_of(bytes, None, settings, base)
}

/// [`needs_attention`] for a caller that already holds `text`, the bytes decoded under
/// `family` (`server_text(bytes, family)`): a reading under that family lexes `text` instead
/// of decoding the bytes again. The proxy decodes every Query once for its hook; decoding it
/// a second time here was a UTF-8 validation per Query.
pub fn needs_attention_decoded(
    bytes: &[u8],
    family: Family,
    text: &str,
    settings: &LexSettings,
    base: &LexOptions,
) -> bool {
    needs_attention_of(bytes, Some((family, text)), settings, base)
}

fn needs_attention_of(
    bytes: &[u8],
    decoded: Option<(Family, &str)>,
    settings: &LexSettings,
    base: &LexOptions,
) -> bool {
    // Plain DML, transaction control and SET are most of what arrives: a verdict-only scan
    // proves most of them harmless at a fraction of the splitter's cost. It only ever says
    // "no attention"; whatever it does not read itself goes to the splitter below.
    if super::prefilter::surely_plain(bytes, settings.encoding == Some(Family::AsciiSafe)) {
        return false;
    }
    full_verdict(bytes, decoded, settings, base)
}

/// The splitter's verdict over every reading: what [`super::prefilter`] must agree with.
pub(super) fn full_verdict(
    bytes: &[u8],
    decoded: Option<(Family, &str)>,
    settings: &LexSettings,
    base: &LexOptions,
) -> bool {
    let (readings, n) = settings.readings(bytes);
    readings[..n].iter().any(|r| {
        let text = match decoded {
            Some((family, text)) if family == r.family => Cow::Borrowed(text),
            _ => r.text(bytes),
        };
        split(&text, &r.lex_options(base)).any(|s| s.class == StatementClass::DdlOrUtility)
    })
}

/// The reading to analyse `bytes` under: the only one, or the first when every possible
/// reading splits the text into the same statements with the same classes (compared on
/// their ASCII bytes, non-ASCII runs collapsed); `None` when they disagree, and pgwarden
/// cannot know what the server will parse.
pub fn exact_reading(bytes: &[u8], settings: &LexSettings, base: &LexOptions) -> Option<Reading> {
    let (readings, n) = settings.readings(bytes);
    if n == 1 {
        return Some(readings[0]);
    }
    let shape = |r: &Reading| -> Vec<(StatementClass, Option<Unanalysable>, Vec<u8>)> {
        let text = r.text(bytes);
        split(&text, &r.lex_options(base))
            .map(|s| (s.class, s.unanalysable, skeleton(s.text(&text))))
            .collect()
    };
    let first = shape(&readings[0]);
    readings[1..n]
        .iter()
        .all(|r| shape(r) == first)
        .then_some(readings[0])
}

/// The ASCII bytes of `s` with every run of non-ASCII characters as one 0x80 byte: what two
/// readings of the same bytes under different encodings have in common when they agree.
fn skeleton(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b < 0x80 {
            out.push(b);
        } else if out.last() != Some(&0x80) {
            out.push(0x80);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> LexOptions {
        LexOptions::default()
    }

    #[test]
    fn known_settings_read_once() {
        let s = LexSettings::known("UTF8", true);
        assert_eq!(s.readings(b"select '\\'").1, 1);
        assert_eq!(
            LexSettings::known("SJIS", false).readings(b"x\x95\x5c").1,
            1
        );
        // An unknown name is an unknown encoding.
        assert_eq!(LexSettings::known("KLINGON", true).readings(b"\xe9").1, 5);
        assert_eq!(LexSettings::known("KLINGON", true).readings(b"ascii").1, 1);
    }

    #[test]
    fn unknown_settings_read_every_way_that_can_differ() {
        let u = LexSettings::unknown();
        assert_eq!(u.readings(b"select 1").1, 1);
        assert_eq!(u.readings(b"select '\\'").1, 2);
        assert_eq!(u.readings(b"select '\xe9'").1, 5);
        assert_eq!(u.readings(b"select '\xe9\\'").1, 10);
    }

    /// The SJIS character 0x95 0x5C hides a DROP TABLE from a byte-wise reader.
    #[test]
    fn sjis_hides_nothing_when_read_by_characters() {
        let sql = b"SELECT '\x95\x5c'; DROP TABLE t; SELECT '1'";
        assert!(needs_attention(
            sql,
            &LexSettings::known("SJIS", false),
            &base()
        ));
        // The lossy UTF-8 reading (what pgwarden did before) sees `\'` and one long string.
        assert!(!needs_attention(
            sql,
            &LexSettings::known("UTF8", false),
            &base()
        ));
        // Unknown settings: some reading has the DROP.
        assert!(needs_attention(sql, &LexSettings::unknown(), &base()));
    }

    #[test]
    fn standard_conforming_strings_unknown() {
        let sql = b"SELECT 'a\\'; DROP TABLE t; --'";
        assert!(needs_attention(
            sql,
            &LexSettings::known("UTF8", true),
            &base()
        ));
        assert!(!needs_attention(
            sql,
            &LexSettings::known("UTF8", false),
            &base()
        ));
        assert!(needs_attention(sql, &LexSettings::unknown(), &base()));
        assert_eq!(exact_reading(sql, &LexSettings::unknown(), &base()), None);
        // A backslash that lexes alike both ways leaves one reading to analyse.
        let same = b"ALTER TABLE t ADD c text DEFAULT 'a\\b'";
        assert!(exact_reading(same, &LexSettings::unknown(), &base()).is_some());
    }

    #[test]
    fn plain_dml_under_unknown_settings_needs_nothing() {
        let u = LexSettings::unknown();
        assert!(!needs_attention(
            "INSERT INTO t VALUES ('é', 'a\\b')".as_bytes(),
            &u,
            &base()
        ));
        assert!(!needs_attention(b"SELECT 1; SELECT 2", &u, &base()));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        /// Bytes rich in what matters: quotes, backslashes, `;`, DDL words, high bytes.
        fn sqlish() -> impl Strategy<Value = Vec<u8>> {
            let pieces: Vec<&'static [u8]> = vec![
                b"'",
                b"\\",
                b";",
                b" ",
                b"E'",
                b"$$",
                b"--",
                b"\n",
                b"SELECT ",
                b"DROP TABLE t",
                b"\x95",
                b"\x5c",
                b"\x81",
                b"\x30",
                b"\x8f",
                b"\xa1",
                b"\xe9",
                b"a",
            ];
            proptest::collection::vec(proptest::sample::select(pieces), 0..24)
                .prop_map(|v| v.concat())
        }

        proptest! {
            /// Handing over the decoded text changes no verdict, whatever the family it was
            /// decoded under and the settings.
            #[test]
            fn a_decoded_text_gives_the_same_verdict(data in sqlish()) {
                let base = LexOptions::default();
                let mut all = vec![LexSettings::unknown()];
                for name in ["UTF8", "SJIS", "BIG5", "GB18030", "JOHAB", "LATIN1"] {
                    for scs in [true, false] {
                        all.push(LexSettings::known(name, scs));
                    }
                }
                for settings in &all {
                    let want = needs_attention(&data, settings, &base);
                    for family in ALL_FAMILIES {
                        let text = server_text(&data, family);
                        prop_assert_eq!(
                            needs_attention_decoded(&data, family, &text, settings, &base),
                            want,
                            "{:?} {:?}", family, settings
                        );
                    }
                }
            }

            /// Unknown settings are never less careful than any known ones, and an exact
            /// reading under unknown settings splits like every known reading.
            #[test]
            fn unknown_settings_cover_every_known_reading(data in sqlish()) {
                let base = LexOptions::default();
                let u = LexSettings::unknown();
                let any = needs_attention(&data, &u, &base);
                let exact = exact_reading(&data, &u, &base);
                for name in ["UTF8", "SJIS", "BIG5", "GB18030", "JOHAB", "LATIN1"] {
                    for scs in [true, false] {
                        let k = LexSettings::known(name, scs);
                        if needs_attention(&data, &k, &base) {
                            prop_assert!(any, "{} {}", name, scs);
                        }
                        if let Some(r) = exact {
                            let (rs, n) = k.readings(&data);
                            let count = |r: &Reading| {
                                split(&r.text(&data), &r.lex_options(&base)).count()
                            };
                            prop_assert_eq!(n, 1);
                            prop_assert_eq!(count(&r), count(&rs[0]));
                        }
                    }
                }
            }
        }
    }
}
