use telar_sql::Migration;

/// The bus log. Envelopes are stored once (`bus_messages`); a delivery row per group is small:
/// claims read the envelope by `seq`.
const SCHEMA: &str = "
CREATE TABLE bus_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    subject TEXT,
    envelope BLOB NOT NULL,
    published_at INTEGER NOT NULL
);
CREATE TABLE bus_groups (
    name TEXT PRIMARY KEY,
    pattern TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE bus_deliveries (
    grp TEXT NOT NULL,
    seq INTEGER NOT NULL,
    subject TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    available_at INTEGER NOT NULL,
    lease_until INTEGER,
    lease_token INTEGER NOT NULL DEFAULT 0,
    history TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (grp, seq)
);
CREATE INDEX bus_deliveries_by_subject ON bus_deliveries (grp, subject, seq);
CREATE TABLE bus_dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    grp TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    subject TEXT,
    envelope BLOB NOT NULL,
    last_error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    history TEXT NOT NULL,
    dead_at TEXT NOT NULL
);
CREATE INDEX bus_dead_letters_by_group ON bus_dead_letters (grp, id);
";

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "bus log",
        sqlite: SCHEMA,
        // The embedded bus only ever runs on SQLite.
        postgres: "SELECT 1",
    },
    // Groups keep a cursor instead of a delivery row per message; `bus_deliveries` now holds
    // only retries and replays. Deliveries pending at the upgrade stay there and are served.
    Migration {
        version: 2,
        name: "bus group cursors",
        sqlite: "ALTER TABLE bus_groups ADD COLUMN cursor INTEGER NOT NULL DEFAULT 0;
                 UPDATE bus_groups SET cursor = (SELECT COALESCE(MAX(seq), 0) FROM bus_messages);",
        postgres: "SELECT 1",
    },
];
