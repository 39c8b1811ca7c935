//! The step planner's tests: which statements have a safe form and the exact steps.
use super::*;
use crate::sql::{analyze, AnalysisContext};

fn facts(sql: &str) -> StatementFacts {
    let a = analyze(sql, &AnalysisContext::default());
    a.statements[0].facts().cloned().expect("facts")
}

fn steps(sql: &str) -> (Shape, Vec<String>) {
    let s = shape(sql, &facts(sql)).expect("a safe form");
    let name = s.name.clone().unwrap_or_else(|| s.candidates[0].clone());
    let v = s.steps(&name).into_iter().map(|s| s.sql).collect();
    (s, v)
}

#[test]
fn foreign_key_named_and_unnamed() {
    let (s, v) = steps(
        "ALTER TABLE orders ADD CONSTRAINT fk_c FOREIGN KEY (customer_id) REFERENCES customers (id)",
    );
    assert_eq!(s.form, Form::ForeignKey);
    assert_eq!(s.in_place(), 1);
    assert_eq!(
        v,
        [
            "ALTER TABLE orders ADD CONSTRAINT fk_c FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID",
            "ALTER TABLE orders VALIDATE CONSTRAINT fk_c"
        ]
    );
    let (s, v) = steps("ALTER TABLE public.orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE");
    assert_eq!(s.candidates[0], "orders_customer_id_fkey");
    assert_eq!(
        v,
        [
            "ALTER TABLE public.orders ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE NOT VALID",
            "ALTER TABLE public.orders VALIDATE CONSTRAINT orders_customer_id_fkey"
        ]
    );
}

#[test]
fn check_needs_a_name() {
    let (_, v) = steps("ALTER TABLE orders ADD CONSTRAINT ck_amount CHECK (amount > 0)");
    assert_eq!(
        v,
        [
            "ALTER TABLE orders ADD CONSTRAINT ck_amount CHECK (amount > 0) NOT VALID",
            "ALTER TABLE orders VALIDATE CONSTRAINT ck_amount"
        ]
    );
    // Unnamed: added NOT VALID unnamed (the server names it), validated under the name read
    // back.
    let sql = "ALTER TABLE orders ADD CHECK (amount > 0)";
    let s = shape(sql, &facts(sql)).expect("unnamed check");
    assert!(s.named_by_server && s.candidates.is_empty());
    let v: Vec<String> = s
        .steps("orders_amount_check")
        .into_iter()
        .map(|s| s.sql)
        .collect();
    assert_eq!(
        v,
        [
            "ALTER TABLE orders ADD CHECK (amount > 0) NOT VALID",
            "ALTER TABLE orders VALIDATE CONSTRAINT orders_amount_check"
        ]
    );
    assert_eq!(
        s.steps("orders_amount_check")[0]
            .undo
            .as_ref()
            .map(|u| u.0.as_str()),
        Some("ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_amount_check")
    );
    let sql = "ALTER TABLE orders ADD CONSTRAINT c CHECK (amount > 0) NOT VALID";
    assert!(shape(sql, &facts(sql)).is_none(), "already the safe form");
}

#[test]
fn set_not_null_goes_through_a_helper_check() {
    let (s, v) = steps("ALTER TABLE orders ALTER COLUMN status SET NOT NULL");
    assert_eq!(s.form, Form::NotNull);
    assert_eq!(
        v,
        [
            "ALTER TABLE orders ADD CONSTRAINT pgwarden_status_not_null CHECK (status IS NOT NULL) NOT VALID",
            "ALTER TABLE orders VALIDATE CONSTRAINT pgwarden_status_not_null",
            "ALTER TABLE orders ALTER COLUMN status SET NOT NULL",
            "ALTER TABLE orders DROP CONSTRAINT pgwarden_status_not_null",
        ]
    );
    let all = s.steps("pgwarden_status_not_null");
    assert!(all[0].undo.as_ref().is_some_and(|(_, artifact)| *artifact));
    let sql = "ALTER TABLE orders ALTER COLUMN a SET NOT NULL, ADD COLUMN b int";
    assert!(shape(sql, &facts(sql)).is_none(), "one action only");
}

#[test]
fn indexes_become_concurrent() {
    let (s, v) = steps("CREATE UNIQUE INDEX ix_orders_amount ON orders (amount)");
    assert_eq!(
        (s.form, s.in_place(), s.tag()),
        (Form::Index, 0, "CREATE INDEX")
    );
    assert_eq!(
        v,
        ["CREATE UNIQUE INDEX CONCURRENTLY ix_orders_amount ON orders (amount)"]
    );
    let (s, v) = steps("CREATE INDEX ON orders (amount, id)");
    assert_eq!(s.candidates[0], "orders_amount_id_idx");
    assert_eq!(
        v,
        ["CREATE INDEX CONCURRENTLY orders_amount_id_idx ON orders (amount, id)"]
    );
    for sql in [
        "CREATE INDEX ON orders (lower(note))",
        "CREATE INDEX CONCURRENTLY i ON orders (a)",
        "CREATE INDEX IF NOT EXISTS i ON orders (a)",
    ] {
        assert!(shape(sql, &facts(sql)).is_none(), "{sql}");
    }
}

#[test]
fn unique_constraint_through_an_index() {
    let (s, v) = steps("ALTER TABLE orders ADD UNIQUE (id, amount)");
    assert_eq!(s.candidates[0], "orders_id_amount_key");
    assert!(s.taken_by_relations && s.taken_by_constraints);
    assert_eq!(
        v,
        [
            "CREATE UNIQUE INDEX CONCURRENTLY orders_id_amount_key ON orders (id, amount)",
            "ALTER TABLE orders ADD CONSTRAINT orders_id_amount_key UNIQUE USING INDEX orders_id_amount_key"
        ]
    );
    let sql = "ALTER TABLE orders ADD CONSTRAINT u UNIQUE USING INDEX i";
    assert!(shape(sql, &facts(sql)).is_none(), "already the safe form");
}

#[test]
fn unique_options_go_to_the_index_and_the_attach() {
    let (s, v) = steps(
        "ALTER TABLE orders ADD UNIQUE NULLS NOT DISTINCT (ref) INCLUDE (note) \
         WITH (fillfactor=70) USING INDEX TABLESPACE pg_default DEFERRABLE INITIALLY DEFERRED",
    );
    // PostgreSQL names the index after the INCLUDE columns too.
    assert_eq!(s.candidates[0], "orders_ref_note_key");
    assert_eq!(
        v,
        [
            "CREATE UNIQUE INDEX CONCURRENTLY orders_ref_note_key ON orders (ref) INCLUDE (note) \
             NULLS NOT DISTINCT WITH (fillfactor=70) TABLESPACE pg_default",
            "ALTER TABLE orders ADD CONSTRAINT orders_ref_note_key UNIQUE USING INDEX \
             orders_ref_note_key DEFERRABLE INITIALLY DEFERRED"
        ]
    );
    let (s, _) = steps("CREATE INDEX ON orders (amount) INCLUDE (ref)");
    assert_eq!(s.candidates[0], "orders_amount_ref_idx");
}

#[test]
fn primary_key_named_unnamed_and_long() {
    let (s, v) = steps("ALTER TABLE public.orders ADD PRIMARY KEY (id)");
    assert_eq!(s.form, Form::PrimaryKey);
    assert_eq!(s.candidates[..2], ["orders_pkey", "orders_pkey1"]);
    assert!(s.taken_by_relations && s.taken_by_constraints);
    assert_eq!(s.must_be_not_null(), ["id"]);
    assert_eq!((s.in_place(), s.tag()), (0, "ALTER TABLE"));
    assert_eq!(
        v,
        [
            "CREATE UNIQUE INDEX CONCURRENTLY orders_pkey ON public.orders (id)",
            "ALTER TABLE public.orders ADD CONSTRAINT orders_pkey PRIMARY KEY USING INDEX orders_pkey"
        ]
    );
    let all = s.steps("orders_pkey");
    assert_eq!(
        all[0].undo,
        Some((
            "DROP INDEX CONCURRENTLY IF EXISTS public.orders_pkey".into(),
            true
        ))
    );
    let (s, v) = steps(
        "ALTER TABLE orders ADD CONSTRAINT \"Orders PK\" PRIMARY KEY (id, amount) INCLUDE (ref) DEFERRABLE",
    );
    assert_eq!(s.name.as_deref(), Some("Orders PK"));
    assert_eq!(
        v[1],
        "ALTER TABLE orders ADD CONSTRAINT \"Orders PK\" PRIMARY KEY USING INDEX \"Orders PK\" DEFERRABLE"
    );
    let long = "t".repeat(70);
    let sql = format!("ALTER TABLE {long} ADD PRIMARY KEY (id)");
    let s = shape(&sql, &facts(&sql)).expect("pk");
    assert_eq!(s.candidates[0], format!("{}_pkey", "t".repeat(58)));
    assert_eq!(s.candidates[0].len(), 63);
}

#[test]
fn what_remains_names_the_finishing_statement() {
    let (s, _) = steps("ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES cust (id)");
    let all = s.steps("fk");
    let (what, finish) = s.remains("fk", &all, 1);
    assert!(what.contains("NOT VALID"), "{what}");
    assert_eq!(finish, "ALTER TABLE orders VALIDATE CONSTRAINT fk");
}

#[test]
fn later_statements_needing_a_deferred_object() {
    let (s, _) = steps("ALTER TABLE orders ADD UNIQUE (id, amount)");
    let mut d = Deferred::default();
    d.add(&s, "orders_id_amount_key");
    let sql = "COMMENT ON INDEX orders_id_amount_key IS 'x'";
    assert!(d.needed_by(sql, &facts(sql)).is_some());
    let sql =
        "ALTER TABLE items ADD CONSTRAINT f FOREIGN KEY (a, b) REFERENCES orders (id, amount)";
    assert!(d
        .needed_by(sql, &facts(sql))
        .unwrap()
        .contains("references orders"));
    let sql = "ALTER TABLE items ADD COLUMN note text DEFAULT 'orders_id_amount_key'";
    assert!(
        d.needed_by(sql, &facts(sql)).is_none(),
        "a literal is not a name"
    );
}

#[test]
fn a_deferred_primary_key_keeps_its_columns_not_null() {
    let (s, _) = steps("ALTER TABLE orders ADD PRIMARY KEY (id)");
    let mut d = Deferred::default();
    d.add(&s, "orders_pkey");
    let sql = "ALTER TABLE orders ALTER COLUMN id DROP NOT NULL";
    assert!(d
        .needed_by(sql, &facts(sql))
        .is_some_and(|w| w.contains("primary key")));
    let sql = "ALTER TABLE orders ALTER COLUMN note DROP NOT NULL";
    assert!(d.needed_by(sql, &facts(sql)).is_none());
    let sql = "ALTER TABLE items ADD CONSTRAINT f FOREIGN KEY (o) REFERENCES orders (id)";
    assert!(d.needed_by(sql, &facts(sql)).is_some());
}
