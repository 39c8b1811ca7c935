//! The first packet of a connection, which has no type byte: SSLRequest, GSSENCRequest,
//! CancelRequest or StartupMessage.
use bytes::BytesMut;

use super::codec::{finish_message, put_cstr, Reader};
use super::ProtocolError;

/// Request codes PostgreSQL puts where the protocol version would be.
pub const SSL_REQUEST_CODE: i32 = 80877103;
pub const GSSENC_REQUEST_CODE: i32 = 80877104;
pub const CANCEL_REQUEST_CODE: i32 = 80877102;
/// Protocol 3.0 as a version number.
pub const PROTOCOL_3_0: i32 = 196608;

/// PostgreSQL's MAX_STARTUP_PACKET_LENGTH.
pub const MAX_STARTUP_LEN: usize = 10_000;
/// Smallest startup packet: length + code.
const MIN_STARTUP_LEN: usize = 8;
/// Protocol 3.2 (PostgreSQL 18) allows cancel keys up to 256 bytes.
const MAX_CANCEL_LEN: usize = 8 + 4 + 256;

/// A decoded first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupRequest {
    /// The client asks for TLS.
    SslRequest,
    /// The client asks for GSSAPI encryption.
    GssEncRequest,
    /// Cancel a query on another connection; `raw` is the whole packet, forwarded unchanged.
    Cancel { pid: i32, raw: Vec<u8> },
    /// A real startup message.
    Startup(StartupMessage),
}

/// A StartupMessage with protocol major version 3.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StartupMessage {
    /// Minor version the client asked for; pgwarden speaks 0.
    pub minor: u16,
    /// Ordinary parameters (`user`, `database`, `options`, ...), in client order, each key
    /// once: a repeated key keeps its first position and its *last* value, as PostgreSQL's
    /// `ProcessStartupPacket` assigns them one after the other (the last one wins).
    pub params: Vec<(String, String)>,
    /// Names of `_pq_.` protocol options, which pgwarden does not understand.
    pub protocol_options: Vec<String>,
}

impl StartupMessage {
    /// Value of a parameter by name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The database the server connects to: `database`, or the user name when it is absent
    /// or empty (PostgreSQL: "the database name defaults to the user name").
    pub fn database(&self) -> &str {
        match self.param("database") {
            Some(db) if !db.is_empty() => db,
            _ => self.param("user").unwrap_or(""),
        }
    }

    /// The value the server gives the setting `name` at startup: an explicit startup key
    /// beats `options` (`process_startup_options` applies the command-line switches first,
    /// then the startup keys), and inside `options` the last `-c name=value` /
    /// `--name=value` wins. `None` when the client set neither.
    pub fn setting(&self, name: &str) -> Option<String> {
        if let Some(v) = self.param(name) {
            return Some(v.to_owned());
        }
        let mut found = None;
        for (k, v) in option_settings(self.param("options").unwrap_or("")) {
            if k.eq_ignore_ascii_case(name) {
                found = Some(v);
            }
        }
        found
    }

    /// True when the client must be told pgwarden only speaks 3.0 without options.
    pub fn needs_negotiation(&self) -> bool {
        self.minor > 0 || !self.protocol_options.is_empty()
    }

    /// Re-encodes as a protocol 3.0 StartupMessage without `_pq_.` options, which is what
    /// pgwarden forwards after answering NegotiateProtocolVersion.
    pub fn encode_v30(&self, out: &mut BytesMut) {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
        for (k, v) in &self.params {
            put_cstr(out, k.as_bytes());
            put_cstr(out, v.as_bytes());
        }
        out.extend_from_slice(&[0]);
        finish_message(out, at);
    }
}

/// The `(name, value)` settings in a startup `options` string, read as the server reads it:
/// split at unescaped whitespace with `\` escaping the next character (`pg_split_opts`),
/// then `-c name=value`, `-cname=value` and `--name=value` with `-` in the name read as `_`
/// (`ParseLongOption`). Other switches are skipped; their arguments are not settings.
pub fn option_settings(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        if c.is_ascii_whitespace() {
            if in_word {
                words.push(std::mem::take(&mut cur));
                in_word = false;
            }
            continue;
        }
        in_word = true;
        if c == '\\' {
            if let Some(n) = chars.next() {
                cur.push(n);
            }
        } else {
            cur.push(c);
        }
    }
    if in_word {
        words.push(cur);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if let Some(long) = w.strip_prefix("--") {
            Some(long.to_owned())
        } else if w == "-c" {
            it.next()
        } else {
            w.strip_prefix("-c").map(str::to_owned)
        };
        if let Some((k, v)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            out.push((k.replace('-', "_"), v.to_owned()));
        }
    }
    out
}

/// Length of the complete first packet at the start of `buf`, or `Ok(None)` if more bytes are
/// needed. Refuses lengths outside PostgreSQL's bounds before any byte of the body is read.
pub fn check_startup(buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < MIN_STARTUP_LEN as i32 || len > MAX_STARTUP_LEN as i32 {
        return Err(ProtocolError::BadStartupLength(len.into()));
    }
    let len = len as usize;
    Ok((buf.len() >= len).then_some(len))
}

/// Decodes one complete first packet (as delimited by [`check_startup`]).
pub fn parse_startup(packet: &[u8]) -> Result<StartupRequest, ProtocolError> {
    let mut r = Reader::new(packet, "startup");
    let len = r.i32()?;
    if len as usize != packet.len() {
        return Err(r.err("length does not match packet"));
    }
    let code = r.i32()?;
    match code {
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => {
            r.finish()?;
            Ok(if code == SSL_REQUEST_CODE {
                StartupRequest::SslRequest
            } else {
                StartupRequest::GssEncRequest
            })
        }
        CANCEL_REQUEST_CODE => {
            if packet.len() < 16 || packet.len() > MAX_CANCEL_LEN {
                return Err(r.err("bad CancelRequest length"));
            }
            let pid = r.i32()?;
            Ok(StartupRequest::Cancel {
                pid,
                raw: packet.to_vec(),
            })
        }
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != 3 {
                return Err(ProtocolError::UnsupportedProtocol { major, minor });
            }
            let mut msg = StartupMessage {
                minor,
                ..Default::default()
            };
            loop {
                let key = r.cstr_utf8()?;
                if key.is_empty() {
                    break;
                }
                let value = r.cstr_utf8()?;
                if key.starts_with("_pq_.") {
                    msg.protocol_options.push(key.to_owned());
                } else if let Some(slot) = msg.params.iter_mut().find(|(k, _)| k == key) {
                    // The server keeps the last value of a repeated key; so must pgwarden,
                    // or a client could be audited and profiled as one user or database
                    // while the server logs it in as another.
                    slot.1 = value.to_owned();
                } else {
                    msg.params.push((key.to_owned(), value.to_owned()));
                }
            }
            r.finish()?;
            if msg.param("user").is_none_or(str::is_empty) {
                // PostgreSQL: "no PostgreSQL user name specified in startup packet".
                return Err(r.err("no user name in startup packet"));
            }
            Ok(StartupRequest::Startup(msg))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: i32, body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as i32).to_be_bytes().to_vec();
        v.extend_from_slice(&code.to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn ssl_gss_cancel() {
        assert_eq!(
            parse_startup(&packet(SSL_REQUEST_CODE, b"")),
            Ok(StartupRequest::SslRequest)
        );
        assert_eq!(
            parse_startup(&packet(GSSENC_REQUEST_CODE, b"")),
            Ok(StartupRequest::GssEncRequest)
        );
        let c = packet(CANCEL_REQUEST_CODE, &[0, 0, 0, 42, 1, 2, 3, 4]);
        assert_eq!(
            parse_startup(&c),
            Ok(StartupRequest::Cancel {
                pid: 42,
                raw: c.clone()
            })
        );
        assert!(parse_startup(&packet(CANCEL_REQUEST_CODE, &[0, 0])).is_err());
        assert!(parse_startup(&packet(SSL_REQUEST_CODE, b"x")).is_err());
    }

    #[test]
    fn startup_message_params_and_options() {
        let p = packet(
            PROTOCOL_3_0 + 2,
            b"user\0bob\0database\0db\0_pq_.foo\0x\0\0",
        );
        assert_eq!(check_startup(&p), Ok(Some(p.len())));
        let StartupRequest::Startup(m) = parse_startup(&p).unwrap() else {
            panic!("not a startup message")
        };
        assert_eq!(m.minor, 2);
        assert_eq!(m.param("user"), Some("bob"));
        assert_eq!(m.protocol_options, vec!["_pq_.foo".to_owned()]);
        assert!(m.needs_negotiation());
        let mut out = BytesMut::new();
        m.encode_v30(&mut out);
        let StartupRequest::Startup(again) = parse_startup(&out).unwrap() else {
            panic!("re-encoded packet is not a startup message")
        };
        assert_eq!(again.minor, 0);
        assert!(again.protocol_options.is_empty());
        assert_eq!(again.params, m.params);
    }

    #[test]
    fn repeated_keys_keep_the_last_value_as_the_server_does() {
        let p = packet(
            PROTOCOL_3_0,
            b"user\0alice\0database\0sandbox1\0user\0bob\0database\0postgres\0\0",
        );
        let StartupRequest::Startup(m) = parse_startup(&p).unwrap() else {
            panic!("not a startup message")
        };
        assert_eq!(m.param("user"), Some("bob"));
        assert_eq!(m.database(), "postgres");
        assert_eq!(m.params.len(), 2, "each key once: {:?}", m.params);
        // What pgwarden forwards carries only the values it acts on.
        let mut out = BytesMut::new();
        m.encode_v30(&mut out);
        assert!(!out.windows(5).any(|w| w == b"alice"));
        // A repeated user that ends empty is no user at all, as for the server.
        let p = packet(PROTOCOL_3_0, b"user\0alice\0user\0\0\0");
        assert!(parse_startup(&p).is_err());
        // The database defaults to the user when absent or empty.
        let p = packet(PROTOCOL_3_0, b"user\0bob\0database\0\0\0");
        let StartupRequest::Startup(m) = parse_startup(&p).unwrap() else {
            panic!("not a startup message")
        };
        assert_eq!(m.database(), "bob");
    }

    #[test]
    fn options_are_read_as_the_server_reads_them() {
        let s = option_settings(
            r"-c search_path=a\ b --lock-timeout=1s -csearch_path=c -B 100 -c application_name=x",
        );
        assert_eq!(
            s,
            vec![
                ("search_path".to_owned(), "a b".to_owned()),
                ("lock_timeout".to_owned(), "1s".to_owned()),
                ("search_path".to_owned(), "c".to_owned()),
                ("application_name".to_owned(), "x".to_owned()),
            ]
        );
        let m = StartupMessage {
            params: vec![
                ("user".into(), "u".into()),
                (
                    "options".into(),
                    "-c application_name=opt -c client_encoding=SJIS".into(),
                ),
                ("client_encoding".into(), "UTF8".into()),
            ],
            ..Default::default()
        };
        assert_eq!(m.setting("application_name").as_deref(), Some("opt"));
        // An explicit startup key beats options.
        assert_eq!(m.setting("client_encoding").as_deref(), Some("UTF8"));
        assert_eq!(m.setting("lock_timeout"), None);
    }

    #[test]
    fn garbage_first_packets_are_refused() {
        // An HTTP request: its first 4 bytes are a huge length.
        assert!(check_startup(b"GET / HTTP/1.1\r\n").is_err());
        assert!(check_startup(&[0, 0, 0, 3]).is_err());
        assert!(check_startup(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert_eq!(check_startup(&[0, 0, 0]), Ok(None));
        assert_eq!(check_startup(&[0, 0, 0, 20, 0]), Ok(None));
        // Protocol 2.0 and 1234.5679-style junk codes.
        assert!(matches!(
            parse_startup(&packet(0x0002_0000, b"user\0x\0\0")),
            Err(ProtocolError::UnsupportedProtocol { major: 2, .. })
        ));
        // Missing terminator, missing user, unterminated string.
        assert!(parse_startup(&packet(PROTOCOL_3_0, b"user\0bob\0")).is_err());
        assert!(parse_startup(&packet(PROTOCOL_3_0, b"database\0x\0\0")).is_err());
        assert!(parse_startup(&packet(PROTOCOL_3_0, b"user\0bo")).is_err());
        assert!(parse_startup(&packet(PROTOCOL_3_0, b"user\0bob\0\0junk")).is_err());
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any sequence of (repeated) keys: each key once, with its last value.
            #[test]
            fn repeated_keys_keep_the_last_value(
                pairs in proptest::collection::vec((0usize..4, "[a-z]{0,4}"), 1..12),
            ) {
                const KEYS: [&str; 4] = ["user", "database", "options", "application_name"];
                let mut body = Vec::new();
                for (k, v) in &pairs {
                    body.extend_from_slice(KEYS[*k].as_bytes());
                    body.push(0);
                    body.extend_from_slice(v.as_bytes());
                    body.push(0);
                }
                body.push(0);
                let last = |key: &str| {
                    pairs.iter().rev().find(|(k, _)| KEYS[*k] == key).map(|(_, v)| v.as_str())
                };
                match parse_startup(&packet(PROTOCOL_3_0, &body)) {
                    Ok(StartupRequest::Startup(m)) => {
                        for key in KEYS {
                            prop_assert_eq!(m.param(key), last(key));
                        }
                        let mut keys: Vec<_> = m.params.iter().map(|(k, _)| k).collect();
                        keys.sort();
                        keys.dedup();
                        prop_assert_eq!(keys.len(), m.params.len());
                    }
                    Ok(other) => prop_assert!(false, "{:?}", other),
                    Err(_) => prop_assert!(last("user").is_none_or(str::is_empty)),
                }
            }

            #[test]
            fn startup_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
                if let Ok(Some(len)) = check_startup(&data) {
                    let _ = parse_startup(&data[..len]);
                }
                let _ = parse_startup(&data);
            }
        }
    }
}
