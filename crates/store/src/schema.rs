use telar_sql::Migration;

/// The event table. `(stream, version)` is unique: the database itself refuses a second event at
/// a version, whatever happens above it.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1_000_100,
    name: "telar event store",
    sqlite: "CREATE TABLE es_events (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        stream TEXT NOT NULL,
        version INTEGER NOT NULL,
        event_id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        type_version INTEGER NOT NULL,
        data TEXT NOT NULL,
        metadata TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        UNIQUE (stream, version)
    );",
    postgres: "CREATE TABLE es_events (
        position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        stream TEXT NOT NULL,
        version BIGINT NOT NULL,
        event_id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        type_version BIGINT NOT NULL,
        data TEXT NOT NULL,
        metadata TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        UNIQUE (stream, version)
    );",
}];
