use telar_sql::Migration;

/// `audit_records`: the chain, one row per audited event, `seq` without gaps. `audit_head`: the
/// last `seq` and `hash` (one row), written with every append, so removing the newest records
/// is detected too.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1_000_300,
    name: "telar audit log",
    sqlite: "
CREATE TABLE audit_records (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    at TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    source TEXT NOT NULL,
    data TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_by_actor ON audit_records (actor, seq);
CREATE INDEX audit_by_entity ON audit_records (entity_type, entity_id, seq);
CREATE INDEX audit_by_time ON audit_records (at_ms);
CREATE TABLE audit_head (one INTEGER PRIMARY KEY CHECK (one = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);",
    postgres: "
CREATE TABLE audit_records (
    seq BIGINT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    at TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    source TEXT NOT NULL,
    data TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_by_actor ON audit_records (actor, seq);
CREATE INDEX audit_by_entity ON audit_records (entity_type, entity_id, seq);
CREATE INDEX audit_by_time ON audit_records (at_ms);
CREATE TABLE audit_head (one BIGINT PRIMARY KEY CHECK (one = 1), seq BIGINT NOT NULL, hash TEXT NOT NULL);",
}];
