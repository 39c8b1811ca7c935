//! The demo's own SQL: psql against the server (never through pgwarden) to set up, check and
//! drop the demo database.
use std::path::PathBuf;

use super::run::{run, Cmd};
use super::DemoError;

/// Where the demo's server is and how to log in to it.
#[derive(Debug, Clone)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The private cluster's random password; `None` = libpq's own ($PGPASSWORD, ~/.pgpass).
    pub password: Option<String>,
    /// Directory holding `psql`.
    pub bindir: PathBuf,
}

impl Server {
    /// `HOST:PORT` for pgwarden's upstream.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The libpq environment of a connection to `db` (for psql and for psycopg2 under Alembic).
    pub fn env(&self, db: &str) -> Vec<(String, String)> {
        let mut env = vec![
            ("PGHOST".to_string(), self.host.clone()),
            ("PGPORT".to_string(), self.port.to_string()),
            ("PGUSER".to_string(), self.user.clone()),
            ("PGDATABASE".to_string(), db.to_string()),
            ("PGCONNECT_TIMEOUT".to_string(), "10".to_string()),
            ("PGAPPNAME".to_string(), "pgwarden-demo".to_string()),
        ];
        if let Some(p) = &self.password {
            env.push(("PGPASSWORD".to_string(), p.clone()));
        }
        env
    }

    /// A psql command running `sql` on `db`, stopping at the first error.
    pub fn psql_command(&self, db: &str, sql: &str) -> Cmd {
        let mut c = Cmd::new(self.bindir.join("psql"));
        c.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .envs(self.env(db));
        c
    }

    /// Runs `sql` on `db`; returns psql's unaligned output without the trailing newline.
    pub fn sql(&self, db: &str, sql: &str) -> Result<String, DemoError> {
        let out = run(self.psql_command(db, sql))?;
        if !out.status.success() {
            return Err(DemoError::Step {
                step: format!("psql on {} database {db}", self.addr()),
                output: format!("{}{}", out.stdout, out.stderr),
            });
        }
        Ok(out.stdout.trim_end_matches('\n').to_string())
    }
}

/// `name` as a double-quoted SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The demo's big table: the kind of table a real migration meets, with enough rows that
/// pgwarden treats it as large (`large_rows` = 1,000,000 by default), generated in one INSERT.
pub const SETUP_SQL: &str = "\
SET synchronous_commit = off;
CREATE TABLE events (
    id bigint PRIMARY KEY,
    account_id integer NOT NULL,
    kind text NOT NULL,
    payload text,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO events (id, account_id, kind, payload, created_at)
SELECT g, 1 + g % 5000, 'kind' || (g % 7), 'x', now() - g * interval '1 second'
FROM generate_series(1, 1000000) g;
ANALYZE events;";

/// Rows in the big table, as printed.
pub const ROWS: &str = "1,000,000";
