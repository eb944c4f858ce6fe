use telar_sql::Migration;

/// `saga_instances`: one row per saga, its status and where it is. `step` is the next step to
/// run while Running, and the next step to compensate (counting down, -1: none left) while
/// Compensating. `saga_steps`: the step log, every attempt's outcome.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1_000_200,
    name: "telar sagas",
    sqlite: "
CREATE TABLE saga_instances (
    id TEXT PRIMARY KEY,
    saga_type TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    outputs TEXT NOT NULL,
    step INTEGER NOT NULL,
    reason TEXT,
    abort_requested INTEGER NOT NULL DEFAULT 0,
    runner TEXT,
    lease_until INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX saga_instances_by_status ON saga_instances (status, updated_at);
CREATE TABLE saga_steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    saga_id TEXT NOT NULL,
    step TEXT NOT NULL,
    phase TEXT NOT NULL,
    outcome TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    detail TEXT,
    duration_ms INTEGER NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX saga_steps_by_saga ON saga_steps (saga_id, id);",
    postgres: "
CREATE TABLE saga_instances (
    id TEXT PRIMARY KEY,
    saga_type TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    outputs TEXT NOT NULL,
    step BIGINT NOT NULL,
    reason TEXT,
    abort_requested BIGINT NOT NULL DEFAULT 0,
    runner TEXT,
    lease_until BIGINT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX saga_instances_by_status ON saga_instances (status, updated_at);
CREATE TABLE saga_steps (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    saga_id TEXT NOT NULL,
    step TEXT NOT NULL,
    phase TEXT NOT NULL,
    outcome TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    detail TEXT,
    duration_ms BIGINT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX saga_steps_by_saga ON saga_steps (saga_id, id);",
},
    // Wait steps: the stored deadline of the current wait, and signals delivered to sagas.
    Migration {
        version: 1_000_202,
        name: "telar saga waits",
        sqlite: "ALTER TABLE saga_instances ADD COLUMN wake_at INTEGER;
                 CREATE TABLE saga_signals (saga_id TEXT NOT NULL, name TEXT NOT NULL, payload TEXT NOT NULL, received_at TEXT NOT NULL, PRIMARY KEY (saga_id, name));",
        postgres: "ALTER TABLE saga_instances ADD COLUMN wake_at BIGINT;
                   CREATE TABLE saga_signals (saga_id TEXT NOT NULL, name TEXT NOT NULL, payload TEXT NOT NULL, received_at TEXT NOT NULL, PRIMARY KEY (saga_id, name));",
    },
];
