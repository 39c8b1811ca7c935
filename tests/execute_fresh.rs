//! Statements that lock only relations their own open transaction created run as sent, without
//! pgwarden's timeouts and savepoint (src/proxy/session/fresh.rs); everything that also locks a
//! relation other sessions can see still runs under them. Real PostgreSQL, psql as Alembic
//! with psycopg2 sends it (one Query per statement, one transaction), audit log read back.
mod common;

use common::*;

/// The `injected` list of the audit `statement` record whose text starts with `prefix`.
fn injected(audit: &str, prefix: &str) -> Vec<String> {
    let rec = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| {
            r["type"] == "statement"
                && r["text"]
                    .as_str()
                    .is_some_and(|t| t.trim_start().starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("no statement record for {prefix:?}:\n{audit}"));
    rec["injected"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn has_timeouts(injected: &[String]) -> bool {
    injected.iter().any(|i| i.contains("class timeouts"))
}

#[test]
fn only_relations_of_the_open_transaction_skip_the_executor() {
    let c = Cluster::shared();
    let db = c.fresh_db("exec_fresh");
    c.sql(
        &db,
        "CREATE TABLE orders (id bigserial PRIMARY KEY, amount int NOT NULL);
         INSERT INTO orders (amount) SELECT g FROM generate_series(1, 50) g;",
    );
    let proxy = ProxyConfig {
        policy: vec!["mode = \"enforce\"".into()],
        ..ProxyConfig::default()
    }
    .start(c);
    let conn = c.conn(&db).with_port(proxy.port());
    let script = "BEGIN;
CREATE TABLE fresh_item (id int PRIMARY KEY, name text, order_id bigint);
CREATE INDEX ix_fresh_item_name ON fresh_item (name);
ALTER TABLE fresh_item ADD COLUMN is_admin boolean DEFAULT false NOT NULL;
ALTER TABLE fresh_item ADD CONSTRAINT fk_fresh_self FOREIGN KEY (id) REFERENCES fresh_item (id);
ALTER TABLE fresh_item ADD CONSTRAINT fk_fresh_orders FOREIGN KEY (order_id) REFERENCES orders (id);
ALTER TABLE orders ADD COLUMN note text;
COMMIT;
BEGIN;
CREATE INDEX ix_fresh_item_order ON fresh_item (order_id);
COMMIT;
";
    psql_stdin(&conn, &["-v", "ON_ERROR_STOP=1"], Some(script.as_bytes())).assert_success();
    // The end state is what the script asked for.
    assert_eq!(
        c.sql(
            &db,
            "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes \
             WHERE tablename = 'fresh_item'"
        )
        .trim(),
        "fresh_item_pkey,ix_fresh_item_name,ix_fresh_item_order"
    );
    assert_eq!(
        c.sql(
            &db,
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'fresh_item'::regclass \
             AND contype = 'f'"
        )
        .trim(),
        "2"
    );
    let audit = std::fs::read_to_string(
        proxy
            .config_path
            .parent()
            .expect("config dir")
            .join("pgwarden-audit.jsonl"),
    )
    .expect("audit log");
    // Locks only on the table this transaction created: run as sent.
    for stmt in [
        "CREATE INDEX ix_fresh_item_name",
        "ALTER TABLE fresh_item ADD COLUMN",
        "ALTER TABLE fresh_item ADD CONSTRAINT fk_fresh_self",
    ] {
        let i = injected(&audit, stmt);
        assert!(!has_timeouts(&i), "{stmt}: {i:?}");
    }
    // Also locks `orders`, which every session sees: under pgwarden's timeouts.
    for stmt in [
        "ALTER TABLE fresh_item ADD CONSTRAINT fk_fresh_orders",
        "ALTER TABLE orders ADD COLUMN",
        // The creating transaction has committed: the table is visible to everyone now.
        "CREATE INDEX ix_fresh_item_order",
    ] {
        let i = injected(&audit, stmt);
        assert!(has_timeouts(&i), "{stmt}: {i:?}");
    }
}
