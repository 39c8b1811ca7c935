-- The database the Alembic tests migrate: one big table (>= 1,000,000 rows) and one small one.
CREATE TABLE accounts (
    id integer PRIMARY KEY,
    name varchar(50) NOT NULL,
    payload text,
    counter integer NOT NULL DEFAULT 0,
    owner_id integer,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO accounts (id, name, payload, owner_id)
SELECT g, 'account ' || g, 'p', g FROM generate_series(1, 300) g;

CREATE TABLE events (
    id bigint PRIMARY KEY,
    account_id integer NOT NULL,
    kind varchar(50) NOT NULL,
    payload text,
    counter integer NOT NULL DEFAULT 0,
    owner_id integer,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO events (id, account_id, kind, payload, owner_id)
SELECT g, 1 + g % 300, 'kind' || (g % 7), 'x', 1 + g % 300 FROM generate_series(1, 1000000) g;
ANALYZE accounts;
ANALYZE events;
